"""`compare` on a noisy machine: regressions stay regressions, noise says "rerun", a file vs itself says so.

Synthetic latencies only (no benchmark runs): log-normal jitter plus the slow mode a busy 2-core VM adds.
"""

import json
import re

import numpy as np
import pytest

from partialnet.bench.compare import compare_results, failure, judge, std_cov, why_lines
from partialnet.bench.run import SCHEMA
from partialnet.bench.stats import summarize

N = 120


def latencies(rng: np.random.Generator, median_ms: float, n: int = N, jitter: float = 0.06) -> np.ndarray:
    """Seconds per iteration: log-normal jitter and 3 % preemption spikes, as a quiet machine gives."""
    x = median_ms / 1e3 * rng.lognormal(0.0, jitter, n)
    spikes = rng.random(n) < 0.03
    x[spikes] *= rng.uniform(1.5, 3.0, spikes.sum())
    return x


def disturbed(rng: np.random.Generator, median_ms: float, slow_share: float, n: int = N) -> np.ndarray:
    """A run where another tenant slowed `slow_share` of the iterations about 4.5x (the VM's slow mode)."""
    x = latencies(rng, median_ms, n)
    slow = rng.random(n) < slow_share
    x[slow] *= rng.lognormal(np.log(4.5), 0.5, slow.sum())
    return x


# -- the rule, on raw samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_identical_distributions_are_ok(seed):
    rng = np.random.default_rng(seed)
    v = judge(latencies(rng, 5.0), latencies(rng, 5.0))
    assert v["verdict"] == "ok" and v["noise_reasons"] == [] and v["why"].startswith("ok: median ratio")


@pytest.mark.parametrize("seed", range(20))
def test_thirty_percent_slower_is_a_regression_with_its_reason(seed):
    rng = np.random.default_rng(100 + seed)
    v = judge(latencies(rng, 5.0), latencies(rng, 6.5))
    assert v["verdict"] == "regression", v["why"]
    match = re.fullmatch(
        r"regression: median ratio (\d\.\d\d) \(95% CI (\d\.\d\d)-(\d\.\d\d)\), Mann-Whitney U one-sided p=(\S+) < 0\.01, above the 10% gate",
        v["why"],
    )
    assert match, v["why"]
    ratio, low, high, p = (float(g) for g in match.groups())
    assert low <= ratio <= high and abs(ratio - 1.3) < 0.05 and p == pytest.approx(v["p_slower"], rel=0.05) and p < 1e-6


@pytest.mark.parametrize("seed", range(10))
def test_a_median_moved_by_interference_is_noisy_and_names_the_side(seed):
    """The issue: two runs of one checkpoint, the candidate's median 3-4x, its std/mean CoV near 1."""
    rng = np.random.default_rng(200 + seed)
    v = judge(latencies(rng, 5.0), disturbed(rng, 5.0, slow_share=0.7))
    assert v["ratio"] > 2.5 and v["candidate_cov"] > 0.5 > v["baseline_cov"]
    assert v["verdict"] == "noisy" and "shape" in v["noise_reasons"], v["why"]
    assert v["p_slower"] < 1e-6  # the rank test alone would have called it a regression
    assert "the candidate's median sits" in v["why"] and "CoV candidate" in v["why"] and "rerun" in v["why"]


def test_a_uniformly_slower_candidate_is_a_regression_however_dispersed_the_runs():
    """Every sample x1.5 of a run with a slow mode: every quantile moved, so the code did."""
    base = disturbed(np.random.default_rng(3), 5.0, slow_share=0.35)
    v = judge(base, base * 1.5)
    assert base.std() / base.mean() > 0.5 and v["floor_ratio"] == pytest.approx(v["ratio"])
    assert v["verdict"] == "regression", v["why"]


def test_a_genuine_speedup_is_an_improvement():
    rng = np.random.default_rng(4)
    v = judge(latencies(rng, 5.0), latencies(rng, 3.5))
    assert v["verdict"] == "improvement" and v["why"].startswith("improvement: median ratio 0.7")


def test_too_few_samples_for_the_gate_is_noisy_not_ok():
    """Eight wildly jittered samples a side: no test finds a slowdown, and none could rule out 10 %."""
    rng = np.random.default_rng(5)
    v = judge(latencies(rng, 5.0, n=8, jitter=0.3), latencies(rng, 5.0, n=8, jitter=0.3))
    assert v["verdict"] == "noisy" and "unresolved" in v["noise_reasons"], v["why"]
    assert "too few samples" in v["why"] and "rerun with more iterations" in v["why"]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_doubled_median_on_too_few_samples_never_passes(n):
    """Three samples a side cannot make the rank test significant at 0.01, however far apart they are."""
    base = [0.0100, 0.0101, 0.0102][:n]
    v = judge(base, [2 * x for x in base])
    assert v["verdict"] == "noisy" and "untestable" in v["noise_reasons"], v["why"]
    assert f"{n} baseline and {n} candidate samples" in v["why"] and "rerun with more iterations" in v["why"]
    assert judge([0.010] * 4, [0.010] * 4)["noise_reasons"] == ["untestable"]  # four a side: the best p is 0.014 >= 0.01
    assert "untestable" not in judge([0.010] * 5, [0.010] * 5)["noise_reasons"]


def test_an_interval_wholly_past_the_gate_is_never_ok():
    """The medians' interval excludes the gate, but the samples overlap: not a regression the test confirms,
    and not an ok either."""
    v = judge([0.010] * 7 + [0.040], [0.020] * 7 + [0.005])  # each side's one outlier sits beyond the other side
    assert v["ratio_ci95"][0] > 1.1 and v["p_slower"] >= 0.01
    assert v["verdict"] == "noisy" and "unconfirmed" in v["noise_reasons"], v["why"]
    assert "the whole interval lies past the 10% gate" in v["why"]


def test_no_gate_edge_to_reach_when_max_slowdown_is_zero():
    """--max-slowdown 0 gates on any significant slowdown; quiet identical runs must not turn noisy."""
    rng = np.random.default_rng(6)
    assert judge(latencies(rng, 5.0), latencies(rng, 5.0), max_slowdown=0.0)["verdict"] == "ok"


def test_cov_is_the_one_bench_prints():
    x = disturbed(np.random.default_rng(7), 5.0, slow_share=0.3)
    assert std_cov(x) == pytest.approx(summarize(x)["cov"], rel=1e-12)
    assert std_cov([0.01]) == 0.0


# -- whole reports and the CLI --------------------------------------------------------------------------


def result(rows: dict[str, np.ndarray], machine_id: str = "machine-a") -> dict:
    """A bench result as `load_result` accepts it: schema, machine fingerprint, protocol, raw samples."""
    return {
        "schema": SCHEMA,
        "machine": {"id": machine_id, "cpu": {"model": "Test CPU"}},
        "protocol": {"name": "latency"},
        "rows": [
            {"model": "m", "runtime": runtime, "precision": "fp32", "batch": 1, "threads": 1, "status": "ok",
             "samples_s": [float(s) for s in samples]}
            for runtime, samples in rows.items()
        ],
    }


def write(path, data: dict):
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def runs(tmp_path):
    """Baseline and four candidates: unchanged, 30 % slower, disturbed by another tenant, and both."""
    rng = np.random.default_rng(11)
    base = latencies(rng, 5.0)
    cands = {
        "same": latencies(rng, 5.0),
        "slow": latencies(rng, 6.5),
        "noisy": disturbed(rng, 5.0, slow_share=0.7),
    }
    paths = {"base": write(tmp_path / "base.json", result({"onnxruntime": base}))}
    for name, samples in cands.items():
        paths[name] = write(tmp_path / f"{name}.json", result({"onnxruntime": samples}))
    paths["base2"] = write(tmp_path / "base2.json", result({"onnxruntime": base, "openvino": base}))
    paths["slow+noisy"] = write(tmp_path / "both.json", result({"onnxruntime": cands["slow"], "openvino": cands["noisy"]}))
    return paths


def strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_cli_unchanged_exits_0_with_both_covs_and_reasons(cli, runs):
    res = cli("compare", runs["base"], runs["same"])
    assert res.code == 0, res.err
    assert "base CoV" in res.out and "cand CoV" in res.out and "no latency regression" in res.out
    assert "m / onnxruntime / fp32 / b1 / 1t: ok: median ratio" in res.out  # few rows: every reason is shown
    row = strict(cli("compare", runs["base"], runs["same"], "--json").out)["rows"][0]
    assert row["verdict"] == "ok" and 0 < row["baseline_cov"] < 1 and 0 < row["candidate_cov"] < 1 and row["why"].startswith("ok:")


def test_cli_regression_exits_1_and_says_regression(cli, runs):
    res = cli("compare", runs["base"], runs["slow"])
    assert res.code == 1 and "1 latency regression(s) beyond 10% (p < 0.01)" in res.err and "noisy" not in res.err
    assert re.search(r"m / onnxruntime / fp32 / b1 / 1t: regression: median ratio 1\.\d\d \(95% CI .*p=\S+ < 0\.01, above the 10% gate", res.out)


def test_cli_noisy_exits_1_saying_rerun_and_ignore_lets_it_pass(cli, runs):
    res = cli("compare", runs["base"], runs["noisy"])
    assert res.code == 1 and "noisy: rerun 1 row(s)" in res.err and "regression" not in res.err
    assert "NOISY" in res.out and "the candidate's median sits" in res.out
    ignored = cli("compare", runs["base"], runs["noisy"], "--noise", "ignore")
    assert ignored.code == 0 and "1 noisy row(s) not judged" in ignored.out
    report = strict(cli("compare", runs["base"], runs["noisy"], "--noise", "ignore", "--json").out)
    assert report["noisy"] == 1 and report["regressions"] == 0 and report["noise"] == "ignore"
    assert report["rows"][0]["candidate_cov"] > 0.5 and report["rows"][0]["noise_reasons"] == ["shape", "marked"]  # its CoV marks it too


def test_noise_ignore_never_hides_a_regression(cli, runs):
    res = cli("compare", runs["base2"], runs["slow+noisy"], "--noise", "ignore")
    assert res.code == 1 and "1 latency regression(s)" in res.err and "also 1 noisy row(s) to rerun" in res.err


def test_cli_bad_noise_policy_exits_2(cli, runs):
    res = cli("compare", runs["base"], runs["same"], "--noise", "sometimes")
    assert res.code == 2 and "--noise 'sometimes'" in res.err


@pytest.mark.parametrize("how", ["same path", "copy", "same samples elsewhere"])
def test_cli_self_compare_says_so_and_exits_0(cli, runs, tmp_path, how):
    base = runs["base"]
    if how == "same path":
        other, reason = base, "are the same file"
    elif how == "copy":
        other, reason = tmp_path / "copy.json", "have identical content"
        other.write_bytes(base.read_bytes())
    else:
        data = json.loads(base.read_text())
        data["created_utc"] = "2001-01-01T00:00:00+00:00"
        other, reason = write(tmp_path / "renamed.json", data), "hold identical samples in every row"
    res = cli("compare", base, other)
    assert res.code == 0 and f"note: baseline and candidate {reason} (" in res.out and "every row is trivially ok" in res.out
    as_json = cli("compare", base, other, "--json")
    report = strict(as_json.out)
    assert as_json.code == 0 and report["same_input"] is True and "trivially ok" in as_json.err
    assert all(r["verdict"] == "ok" for r in report["rows"])


def test_a_noisy_file_compared_with_itself_is_still_trivially_ok(cli, runs):
    assert cli("compare", runs["noisy"], runs["noisy"]).code == 0


def test_report_keeps_machine_check_and_unmatched_rows():
    rng = np.random.default_rng(12)
    base = result({"onnxruntime": latencies(rng, 5.0), "pytorch": latencies(rng, 9.0)})
    cand = result({"onnxruntime": latencies(rng, 5.0), "openvino": latencies(rng, 4.0)}, machine_id="machine-b")
    with pytest.raises(Exception, match="different machines"):
        compare_results(base, cand)
    report = compare_results(base, cand, allow_different_machines=True)
    assert report["same_machine"] is False and report["same_input"] is False
    assert report["only_in_baseline"] == [{"key": ["m", "pytorch", "fp32", 1, 1], "reason": "absent from the candidate"}]
    assert report["only_in_candidate"] == [["m", "openvino", "fp32", 1, 1]] and report["regressions"] == 0
    # a baseline row the candidate never measured is out of the gate's sight: it fails unless the user says it may
    assert "1 row(s) measured in the baseline were not measured in the candidate" in failure(report)
    assert failure(compare_results(base, cand, allow_different_machines=True, missing="ignore")) is None


def _second_row_not_ok(seed: int, status: str, reason: str) -> tuple[dict, dict]:
    """Two matching two-row results whose candidate did not measure its second row (openvino)."""
    rng = np.random.default_rng(seed)
    base = result({"onnxruntime": latencies(rng, 5.0), "openvino": latencies(rng, 5.0)})
    cand = result({"onnxruntime": latencies(rng, 5.0), "openvino": latencies(rng, 5.0)})
    cand["rows"][1] = {**cand["rows"][1], "status": status, "reason": reason}
    del cand["rows"][1]["samples_s"]
    return base, cand


def test_a_row_the_candidate_skipped_fails_the_gate_with_its_reason_unless_ignored(cli, tmp_path):
    base, cand = _second_row_not_ok(15, "skipped", "not installed: pip install 'partialnet[openvino]'")
    files = write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand)
    gated = cli("compare", *files)
    assert gated.code == 1 and "the gate never saw them: m / openvino / fp32 / 1 / 1: skipped: not installed" in gated.err, gated.err
    assert "only in baseline: m / openvino / fp32 / 1 / 1: skipped: not installed" in gated.out
    passed = cli("compare", *files, "--missing", "ignore")
    assert passed.code == 0 and "(1 baseline row(s) not measured: --missing ignore)" in passed.out, passed.out
    assert cli("compare", *files, "--missing", "maybe").code == 2


@pytest.mark.parametrize("change, refused", [
    (lambda d: d["rows"][0].update(imgsz=[128, 128]), "timed at [64, 64] in the baseline and [128, 128] in the candidate"),
    (lambda d: d["protocol"].update(name="quick"), "timed differently (protocol latency vs quick)"),
    (lambda d: d["settings"].update(streams=2), "timed differently (streams off vs 2)"),
    (lambda d: d["settings"].pop("precision"), "timed differently (precision fp32 vs not recorded)"),  # read "vs None"
    # asked for fp16: OpenVINO's fp16 IR runs, and its row says, fp32, so the row's key was an fp32 build's
    (lambda d: d["settings"].update(precision="fp16"), "timed differently (precision fp32 vs fp16)"),
    (lambda d: d["rows"][0].update(mode="async"), "timed differently (mode of m / onnxruntime / fp32 / 1 / 1 sync vs async)"),
    (lambda d: d.update(mode="ab"), "timed differently (run one model per row vs ab)"),  # alternated beside another model
    (lambda d: d["protocol"].update(min_iters=20), "timed differently (protocol latency with min_iters None vs 20)"),
    (lambda d: d.update(settings=None), "timed differently (device cpu vs not recorded; imgsz [64, 64] vs not recorded"),  # read "vs None"
])
def test_rows_timed_differently_are_not_judged(cli, tmp_path, change, refused):
    """compare matches rows by model, runtime, precision, batch and threads; what else shapes the samples must
    agree too, or a 64x64 baseline against a 128x128 candidate reads as a 2.6x regression."""
    rng = np.random.default_rng(16)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    base["settings"] = {"device": "cpu", "imgsz": [64, 64], "streams": None, "precision": "fp32"}
    base["rows"][0].update(imgsz=[64, 64], mode="sync")
    cand = json.loads(json.dumps(base))
    cand["rows"][0]["samples_s"] = [float(x) for x in latencies(rng, 5.0)]
    change(cand)
    files = write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand)
    res = cli("compare", *files)
    assert res.code == 2 and refused in res.err and res.err.count("\n") == 1, res.err
    waived = cli("compare", *files, "--allow-different-settings")
    assert waived.code == (2 if "timed at" in refused else 0), waived.err  # two input sizes are never one build's before and after


def test_no_row_in_common_names_the_one_field_that_differs(cli, tmp_path):
    """A CI job that changed --threads matched no row: the refusal says so instead of only listing the key."""
    rng = np.random.default_rng(17)
    base, cand = result({"onnxruntime": latencies(rng, 5.0)}), result({"onnxruntime": latencies(rng, 5.0)})
    cand["rows"][0]["threads"] = 2
    res = cli("compare", write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand))
    assert res.code == 2 and res.err.strip().endswith("no rows in common (matched by model, runtime, precision, batch, threads); "
                                                      "the rows differ in threads only: 1 vs 2"), res.err


def test_the_gate_is_a_fraction_up_to_one(cli, runs):
    for bad in ("10", "1.5", "-0.1", "nan"):
        res = cli("compare", runs["base"], runs["same"], "--max-slowdown", bad)
        assert res.code == 2 and f"--max-slowdown {float(bad)}: expected a fraction from 0 to 1 (0.10 = 10 %)" in res.err, res.err
    assert cli("compare", runs["base"], runs["same"], "--max-slowdown", "1").code == 0


def test_a_row_that_failed_in_the_candidate_fails_the_gate(cli, tmp_path):
    base, cand = _second_row_not_ok(14, "failed", "worker exited -11: Segmentation fault")
    report = compare_results(base, cand)
    assert report["failed_in_candidate"] == [{"key": ["m", "openvino", "fp32", 1, 1], "reason": "worker exited -11: Segmentation fault"}]
    assert report["only_in_baseline"] == [] and report["regressions"] == 0
    assert "1 row(s) measured in the baseline failed in the candidate" in failure(report)
    result_ = cli("compare", write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand))
    assert result_.code == 1 and "FAILED in the candidate: m / openvino / fp32 / 1 / 1: worker exited -11" in result_.out
    assert "gate cannot clear them" in result_.err and "Traceback" not in result_.err


def test_report_and_compare_print_the_p50_bench_prints(tmp_path):
    """An even count of samples: the mean of the two middle ones, in every command (report once took the upper one)."""
    from partialnet.bench.report import merge

    samples = np.array([0.001, 0.002, 0.003, 0.004] * 25)  # the latency protocol's 100
    path = write(tmp_path / "even.json", result({"onnxruntime": samples}))
    assert merge([path])["bench"][0]["p50_ms"] == pytest.approx(2.5)
    assert compare_results(json.loads(path.read_text()), json.loads(path.read_text()))["rows"][0]["baseline_p50_ms"] == pytest.approx(2.5)
    assert summarize(samples)["p50_ms"] == pytest.approx(2.5)


def test_two_runs_of_one_machine_are_told_apart_by_their_file(tmp_path, cli):
    """Two files from one machine printed two groups of rows that read alike; one file per machine names none."""
    from partialnet.bench.report import merge

    rng = np.random.default_rng(21)
    first, second = (write(tmp_path / f"{name}.json", result({"onnxruntime": latencies(rng, 5.0)})) for name in ("monday", "tuesday"))
    assert [row["run"] for row in merge([first, second])["bench"]] == ["monday.json", "tuesday.json"]
    assert [row["run"] for row in merge([first])["bench"]] == [None]
    done = cli("report", first, second, "-o", tmp_path / "r.md")
    assert done.code == 0 and "monday.json" in done.out and "tuesday.json" in done.out, done.out
    assert re.search(r"\| Test CPU `[0-9a-f]{8}` monday\.json \| m \|", (tmp_path / "r.md").read_text())  # the id recomputed from the record


def test_report_markdown_marks_an_unstable_row_and_a_plot_it_cannot_draw_is_refused_first(tmp_path, cli):
    rng = np.random.default_rng(15)
    wild = latencies(rng, 5.0) * rng.lognormal(0.0, 1.2, N)  # CoV far above 0.5: unstable
    path = write(tmp_path / "wild.json", result({"onnxruntime": wild}))
    done = cli("report", path, "-o", tmp_path / "r.md")
    assert done.code == 0, done.err
    md = (tmp_path / "r.md").read_text()
    assert "| m! | onnxruntime |" in md and "- ! m on onnxruntime (batch 1): unstable: " in md and "not a figure to publish" in md
    twice = cli("report", path, path)
    assert twice.code == 2 and "holds a measurement also in" in twice.err  # its rows would count twice
    (tmp_path / "copy.json").write_bytes(path.read_bytes())
    assert cli("report", path, tmp_path / "copy.json").code == 2
    refused = cli("report", path, "-o", tmp_path / "r2.md", "--plot", tmp_path / "r2.png")
    assert refused.code == 2 and "leave out --plot" in refused.err
    assert "bench rows across machines" not in refused.out and not (tmp_path / "r2.md").exists()


def test_many_rows_print_only_the_reasons_that_matter():
    rng = np.random.default_rng(13)
    names = [f"rt{i}" for i in range(8)]
    base = result({n: latencies(rng, 5.0) for n in names})
    cand = result({n: latencies(rng, 6.5 if n == "rt3" else 5.0) for n in names})
    lines = why_lines(compare_results(base, cand))
    assert len(lines) == 1 and lines[0].startswith("m / rt3 / fp32 / b1 / 1t: regression:")


def test_a_bench_report_tells_sizes_apart_and_shows_no_empty_claims_table(cli, tmp_path):
    rng = np.random.default_rng(17)
    small, large = result({"onnxruntime": latencies(rng, 1.0)}), result({"onnxruntime": latencies(rng, 2.6)})
    small["rows"][0]["imgsz"], large["rows"][0]["imgsz"] = [64, 64], [128, 128]
    md = tmp_path / "r.md"
    res = cli("report", write(tmp_path / "s.json", small), write(tmp_path / "l.json", large), "-o", md)
    assert res.code == 0, res.err
    assert "64x64" in res.out and "128x128" in res.out and "claims across" not in res.out
    assert "| precision | size | batch |" in md.read_text() and "| 128x128 |" in md.read_text()


def test_a_marked_row_gets_no_verdict_and_a_pass_over_its_regression_is_warned_about(cli, tmp_path):
    """A row bench marks unstable (CoV > 0.5) is noisy whatever its samples read; every sample x3 of it read as
    'cannot tell a 10% slowdown from noise', and --noise ignore passed it without a word."""
    rng = np.random.default_rng(3)
    base = disturbed(rng, 5.0, slow_share=0.35)
    files = write(tmp_path / "b.json", result({"onnxruntime": base})), write(tmp_path / "c.json", result({"onnxruntime": base * 3}))
    gated = cli("compare", *files)
    assert gated.code == 1 and "1 marked unstable or disturbed (no verdict from such a row; 1 read as a regression on their samples alone)" in gated.err
    assert "cannot tell" not in gated.err and "the samples alone read: regression" in gated.out, gated.out
    ignored = cli("compare", *files, "--noise", "ignore", "--json")
    assert ignored.code == 0 and strict(ignored.out)["noisy_reading_slower"] == ["m / onnxruntime / fp32 / b1 / 1t"]
    assert "warning: 1 noisy row(s) passed by --noise ignore read as a regression on their samples alone" in ignored.err


def test_a_row_of_too_few_samples_says_so_and_not_that_they_overlap(cli, tmp_path):
    quick = {"name": "quick"}  # its 10 samples a side cannot reach p < 1e-5 (at best 9e-5)
    few = write(tmp_path / "b.json", {**result({"onnxruntime": np.linspace(1.00, 1.09, 10) / 1e3}), "protocol": quick})
    slower = write(tmp_path / "c.json", {**result({"onnxruntime": np.linspace(2.00, 2.09, 10) / 1e3}), "protocol": quick})
    res = cli("compare", few, slower, "--alpha", "1e-5")
    assert res.code == 1 and "1 with too few samples for the rank test" in res.err, res.err
    assert "overlap" not in res.out + res.err and "10 baseline and 10 candidate samples" in res.out


def test_a_row_holding_fewer_samples_than_its_protocol_times_is_refused(cli, tmp_path):
    """Two samples under the latency protocol (at least 100): their "95 % interval" is their range, and a cut or
    forged candidate cleared the gate (exit 0)."""
    rng = np.random.default_rng(3)
    base = write(tmp_path / "b.json", result({"onnxruntime": latencies(rng, 5.0)}))
    for count in (1, 2, 3, 99):
        cut = write(tmp_path / f"c{count}.json", result({"onnxruntime": latencies(rng, 5.0)[:count]}))
        for command in (("compare", base, cut), ("report", cut)):
            refused = cli(*command)
            assert refused.code == 2 and f"rows[0] holds {count} samples; the latency protocol times at least 100" in refused.err, refused.err
    data = result({"onnxruntime": latencies(rng, 5.0)})
    data["machine"]["cpu"]["logical_cores"] = 2
    for edit, said in (({"threads": 64}, "rows[0]: threads 64, more than the 2 logical cores"),
                       ({"device": "cuda"}, "rows[0]: device cuda, but the run was on cpu")):
        changed = {**data, "settings": {"device": "cpu"}, "rows": [{**data["rows"][0], **edit}]}
        refused = cli("compare", base, write(tmp_path / "edit.json", changed))
        assert refused.code == 2 and said in refused.err, refused.err
    unknown = cli("compare", base, write(tmp_path / "u.json", {**data, "protocol": {"name": "hand-timed"}}))
    assert unknown.code == 2 and "unknown protocol 'hand-timed'" in unknown.err, unknown.err


def test_the_machine_is_judged_by_its_record_not_by_the_id_a_file_claims(cli, tmp_path):
    """The fingerprint is recomputed from each record: an edited CPU under the baseline's id compared as the
    same machine, and one CPU name with and without AMX too."""
    rng = np.random.default_rng(5)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    base["machine"]["cpu"]["flags"] = ["avx2", "avx512f"]
    other = json.loads(json.dumps(base))
    other["rows"][0]["samples_s"] = [float(x) for x in latencies(rng, 5.0)]
    other["machine"]["cpu"]["model"] = "AMD EPYC 9654 96-Core Processor"  # the id left as the baseline's
    files = write(tmp_path / "b.json", base), write(tmp_path / "c.json", other)
    res = cli("compare", *files)
    assert res.code == 2 and "results come from different machines (Test CPU vs AMD EPYC 9654" in res.err, res.err
    other["machine"]["cpu"].update(model="Test CPU", flags=["avx2", "avx512f", "amx_tile"])
    write(files[1], other)
    res = cli("compare", *files)
    assert res.code == 2 and "one CPU name, Test CPU, but other instruction sets: amx_tile only in the candidate" in res.err, res.err
    allowed = cli("compare", *files, "--allow-different-machines")
    assert allowed.code == 0 and "note: the two results come from different machines" in allowed.out, allowed.out


def test_a_candidate_whose_every_row_was_skipped_names_why(cli, tmp_path):
    """Every runtime broke in the candidate: that is the reason to print, not 'no rows in common' (exit 2)."""
    rng = np.random.default_rng(6)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    cand = json.loads(json.dumps(base))
    cand["rows"][0].update(status="skipped", reason="not installed: pip install onnxruntime")
    del cand["rows"][0]["samples_s"]
    files = write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand)
    res = cli("compare", *files)
    assert res.code == 1 and "m / onnxruntime / fp32 / 1 / 1: skipped: not installed" in res.err, res.err
    ignored = cli("compare", *files, "--missing", "ignore")  # passes missing rows beside judged ones: here none was judged
    assert ignored.code == 1 and "no row was judged: the candidate measured none of the baseline's 1 row(s)" in ignored.err, ignored.err
    base = result({"onnxruntime": latencies(rng, 5.0), "openvino": latencies(rng, 5.0)})
    cand = result({"onnxruntime": disturbed(rng, 5.0, 0.4)})  # the one row in common is noisy; the other was not measured
    files = write(tmp_path / "b2.json", base), write(tmp_path / "c2.json", cand)
    both = cli("compare", *files, "--missing", "ignore", "--noise", "ignore")  # passed: nothing at all had been judged
    assert both.code == 1 and "no row was judged: the candidate's 1 row(s) in common were all noisy (--noise ignore)" in both.err, both.err


def test_report_markdown_escapes_a_strangers_pipes_and_knows_a_relabelled_copy(cli, tmp_path):
    """A `|` in a model name added cells, putting a forged 0.500 under p50; a copy with only its date edited
    counted its rows twice."""
    rng = np.random.default_rng(8)
    data = result({"onnxruntime": latencies(rng, 5.0)})
    data["rows"][0]["model"] = "m | onnxruntime | fp32 | 64x64 | 1 | 1 | 0.500 |"
    path = write(tmp_path / "a.json", data)
    done = cli("report", path, "-o", tmp_path / "r.md")
    assert done.code == 0, done.err
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines() if "0.500" in line)
    assert row.count("\\|") == 7 and len(re.split(r"(?<!\\)\|", row)) == 10, row  # eight cells, the name's pipes escaped
    data["created_utc"] = "2026-12-06T00:00:00+00:00"
    copy = write(tmp_path / "b.json", data)
    touched = cli("report", path, copy)
    assert touched.code == 2 and "holds a measurement also in" in touched.err, touched.err


def test_report_refuses_a_copy_before_bootstrapping_any_row(tmp_path, monkeypatch):
    """Each row's stability judgement bootstraps its samples: a stranger's copies cost those seconds before the refusal."""
    from partialnet.bench import report
    from partialnet.errors import BadInput

    data = result({"onnxruntime": latencies(np.random.default_rng(10), 5.0)})
    paths = [write(tmp_path / "a.json", data), write(tmp_path / "b.json", data)]
    monkeypatch.setattr(report, "merge_loaded", lambda loaded: pytest.fail("rows were merged before the copy was refused"))
    with pytest.raises(BadInput, match="holds a measurement also in"):
        report.merge(paths)


def test_report_merges_a_reworded_protocol_description_and_names_what_differs(cli, tmp_path):
    rng = np.random.default_rng(9)
    first = result({"onnxruntime": latencies(rng, 5.0)})
    first["protocol"].update(description="warm-up, then timed", min_iters=100)
    second = json.loads(json.dumps(first))
    second["rows"][0]["samples_s"] = [float(x) for x in latencies(rng, 5.0)]
    second["protocol"]["description"] = "another partialnet's words for the same protocol"
    files = write(tmp_path / "a.json", first), write(tmp_path / "b.json", second)
    assert cli("report", *files).code == 0
    second["protocol"]["min_iters"] = 10
    mixed = cli("report", files[0], write(files[1], second))
    assert mixed.code == 2 and f"different protocols and are not mixed: latency with min_iters 100 vs 10 in {files[0]} and {files[1]}" in mixed.err


def test_an_integer_beyond_a_floats_range_is_bad_input_not_a_bug(cli, tmp_path):
    """`math.isfinite(10**400)` raises OverflowError: one huge sample, or a machine_load reading, was exit 4."""
    data = result({"onnxruntime": latencies(np.random.default_rng(11), 5.0)})
    base = write(tmp_path / "a.json", data)
    data["rows"][0]["samples_s"][0] = 10**400
    huge = cli("compare", base, write(tmp_path / "b.json", data))
    assert huge.code == 2 and "rows[0].samples_s is not a list of 1 to 200,000 timings, each a finite number of seconds" in huge.err, huge.err
    from partialnet.inputs import finite_number

    assert [finite_number(v) for v in (10**400, 1e308, 2, True, float("nan"), "1")] == [False, True, True, False, False, False]


def test_a_mistyped_load_reading_is_refused_not_read_as_a_quiet_machine(cli, tmp_path):
    """`others_cores` of 1e400, "1.9" or -1.9 read as no reading, so a disturbed candidate passed the gate (exit 0)."""
    rng = np.random.default_rng(12)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    cand = result({"onnxruntime": latencies(rng, 5.0)})
    load = {"cores": 2, "threads": 2, "wall_s": 3.0, "own_cpu_s": 6.0, "others_cpu_s": 5.7, "others_cores": 1.9, "steal_cores": 0.0,
            "loadavg_1m": [2.1, 2.4]}
    cand["rows"][0]["machine_load"] = load
    files = write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand)
    marked = cli("compare", *files)
    assert marked.code == 1 and "disturbed" in marked.err, marked.err  # the honest record: no verdict
    for bad, expected in (("1.9", "rows[0].machine_load.others_cores is not a finite number from 0 to"), (-1.9, "from 0 to"),
                          ("1e400", "from 0 to")):
        text = (tmp_path / "c.json").read_text().replace('"others_cores": 1.9', f'"others_cores": {json.dumps(bad) if bad == "1.9" else bad}')
        refused = cli("compare", files[0], write_text(tmp_path / "bad.json", text))
        assert refused.code == 2 and expected in refused.err, (bad, refused.err)
    reported = cli("report", write_text(tmp_path / "bad2.json", (tmp_path / "bad.json").read_text()))
    assert reported.code == 2 and "machine_load.others_cores" in reported.err, reported.err
    # readings that fit their types but not the machine: as many "free" cores as the limit allows read as quiet
    for data in (base, cand):
        data["machine"]["cpu"]["logical_cores"] = 2
    files = write(tmp_path / "b.json", base), files[1]
    for edit, expected in (({"cores": 1024, "others_cores": 1000}, "machine_load.cores 1024: more than the 2 logical cores"),
                           ({"threads": 99}, "machine_load.threads 99: more than the 2 cores"), ({"wall_s": 0}, "machine_load.wall_s 0")):
        cand["rows"][0]["machine_load"] = {**load, **edit}
        refused = cli("compare", files[0], write(tmp_path / "bad3.json", cand))
        assert refused.code == 2 and expected in refused.err, (edit, refused.err)
    cand["rows"][0]["machine_load"] = {k: v for k, v in load.items() if k != "others_cores"}  # left out: read from its two parts
    derived = cli("compare", files[0], write(tmp_path / "c4.json", cand))
    assert derived.code == 1 and "disturbed" in derived.err, derived.err
    base["rows"][0]["machine_load"], cand["rows"][0]["machine_load"] = load, {}  # no readings: quiet or not, nobody can say
    unread = cli("compare", write(tmp_path / "b5.json", base), write(tmp_path / "c5.json", cand), "--json")
    assert json.loads(unread.out)["load_unread"] == ["candidate"], unread.out
    assert "note: the candidate's rows record no machine-load readings" in unread.err + unread.out, unread.err


def write_text(path, text: str):
    path.write_text(text)
    return path


def test_a_baseline_row_that_failed_is_named_not_no_rows_in_common(cli, tmp_path):
    rng = np.random.default_rng(13)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    cand = result({"onnxruntime": latencies(rng, 5.0)})
    base["rows"][0].update(status="failed", reason="worker crashed")
    del base["rows"][0]["samples_s"]
    done = cli("compare", write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand))
    assert done.code == 2 and "baseline row m / onnxruntime / fp32 / 1 / 1 failed (worker crashed): there is nothing to compare" in done.err
    assert "rerun the baseline" in done.err and "no rows in common" not in done.err
    # beside a row that was judged: named, not "only in candidate"; and a row both runs failed is not lost
    same = latencies(rng, 5.0)
    base = result({"onnxruntime": latencies(rng, 5.0), "openvino": same})
    cand = result({"onnxruntime": latencies(rng, 5.0), "openvino": same * 1.0001})
    base["rows"][0].update(status="failed", reason="worker crashed")
    del base["rows"][0]["samples_s"]
    files = write(tmp_path / "b2.json", base), write(tmp_path / "c2.json", cand)
    done = cli("compare", *files)
    assert done.code == 0 and "not judged: m / onnxruntime / fp32 / 1 / 1: the baseline's row failed (worker crashed); the candidate's is ok" in done.out
    assert "only in candidate" not in done.out, done.out
    cand["rows"][0].update(status="failed", reason="worker crashed again")
    del cand["rows"][0]["samples_s"]
    both = cli("compare", files[0], write(tmp_path / "c3.json", cand), "--json")
    assert both.code == 0 and json.loads(both.out)["unmeasured_in_baseline"] == [
        {"key": ["m", "onnxruntime", "fp32", 1, 1], "status": "failed", "reason": "worker crashed", "candidate": "failed"}]


def test_compare_says_when_the_two_runs_used_other_software(cli, tmp_path):
    """An onnxruntime upgraded between baseline and candidate (or a job pinned to fewer cores) gave a verdict without a word."""
    rng = np.random.default_rng(14)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    cand = result({"onnxruntime": latencies(rng, 5.0)})
    base["machine"].update(versions={"onnxruntime": "1.10.0", "torch": "2.13.0"}, cpu={"model": "Test CPU", "usable_cores": 2})
    cand["machine"].update(versions={"onnxruntime": "1.32.0", "torch": "2.13.0"}, cpu={"model": "Test CPU", "usable_cores": 1})
    done = cli("compare", write(tmp_path / "b.json", base), write(tmp_path / "c.json", cand), "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["software_differs"] == ["onnxruntime 1.10.0 vs 1.32.0", "usable cores 2 vs 1"]
    text = cli("compare", tmp_path / "b.json", tmp_path / "c.json")
    assert "note: the two results were timed with different software (onnxruntime 1.10.0 vs 1.32.0; usable cores 2 vs 1)" in text.out + text.err
    del cand["machine"]["versions"]["onnxruntime"]  # on one side only: said too
    cand["machine"]["versions"]["torch"] = "2." + "9" * 5000  # cut where it says so, not into a plausible version
    one = cli("compare", tmp_path / "b.json", write(tmp_path / "c2.json", cand), "--json")
    assert json.loads(one.out)["software_differs"][:2] == ["onnxruntime 1.10.0 vs not recorded", "torch 2.13.0 vs 2." + "9" * 37 + "…"]
    cand["machine"]["cpu"]["usable_cores"] = 0
    zero = cli("compare", tmp_path / "b.json", write(tmp_path / "c3.json", cand))
    assert zero.code == 2 and "cpu.usable_cores is not an integer from 1 to 1024" in zero.err, zero.err


def test_report_refuses_an_empty_result_and_a_reordered_copy(cli, tmp_path):
    """An empty rows list printed nothing, exit 0 (and vanished beside another file); the same samples in another
    order were merged as a second measurement."""
    rng = np.random.default_rng(31)
    base = result({"onnxruntime": latencies(rng, 5.0)})
    first = write(tmp_path / "a.json", base)
    empty = cli("report", write(tmp_path / "empty.json", {**base, "rows": []}))
    assert empty.code == 2 and "a bench result with no rows: nothing was measured to report" in empty.err, empty.err
    shuffled = json.loads(json.dumps(base))
    shuffled["rows"][0]["samples_s"] = list(reversed(shuffled["rows"][0]["samples_s"]))
    twice = cli("report", first, write(tmp_path / "b.json", shuffled))
    assert twice.code == 2 and "holds a measurement also in" in twice.err, twice.err
    for stray in ([1, "a"], [None, 1], [{"a": 1}, {"b": 2}]):  # a list of that name anywhere, unread otherwise: sorting it was exit 4
        hostile = cli("report", write(tmp_path / "x.json", {**base, "extra": {"samples_s": stray}}))
        assert hostile.code == 0, hostile.err


def test_a_hypervisor_share_that_rounds_to_nothing_is_not_printed():
    from partialnet.bench.load import disturbance

    load = {"cores": 2, "threads": 2, "wall_s": 3.0, "others_cores": 0.9, "steal_cores": 0.003}
    assert "stolen" not in disturbance(load) and "stolen by the hypervisor" in disturbance({**load, "steal_cores": 0.05})


def test_a_bench_markdown_escapes_the_machine_a_target_reported():
    """A target's probe names its CPU and OS: the terminal showed them escaped, report escaped them, but a bench
    --md wrote the ESC and BEL bytes and the pipes as they came."""
    from partialnet.bench.results import to_markdown

    data = result({"onnxruntime": latencies(np.random.default_rng(41), 5.0)})
    data["machine"]["cpu"].update(model="\x1b]0;PWNED\x07\x1b[31mEVIL | a | b |", logical_cores=2)
    data["machine"]["os"] = "Linux <td>x</td>"
    data["settings"], data["protocol"]["description"] = {"device": "cpu"}, "latency protocol"
    for row in data["rows"]:
        from partialnet.bench.stats import summarize

        row.update(stats=summarize(np.array(row["samples_s"])), images_per_s=200.0)
    text = to_markdown(data)
    machine = next(line for line in text.splitlines() if "Machine:" in line)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b" in machine, machine
    assert "EVIL \\| a \\| b \\|" in machine and "\\<td\\>" in machine, machine
