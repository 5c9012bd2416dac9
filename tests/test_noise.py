"""Numbers users can trust on a busy machine: disturbed and unstable rows are marked, and nothing judges them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from partialnet.bench import load, stability
from partialnet.bench.compare import compare_results

QUIET = {"cores": 2, "wall_s": 3.0, "own_cpu_s": 6.0, "others_cpu_s": 0.03, "others_cores": 0.01, "steal_cores": 0.0, "loadavg_1m": [0.1, 0.2]}
BUSY = {**QUIET, "others_cpu_s": 2.9, "others_cores": 0.97, "loadavg_1m": [1.0, 1.4]}


def quiet_samples(rng, median_ms=5.0, n=200):
    return median_ms / 1e3 * rng.lognormal(0.0, 0.03, n)


def test_quiet_samples_are_not_marked():
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert stability.instability(quiet_samples(rng)) is None


@pytest.mark.parametrize("damage, fragment", [
    (lambda x: np.concatenate([x[: len(x) // 2], 1.3 * x[len(x) // 2:]]), "second half +30 %"),  # the machine changed mid-run
    (lambda x: np.where(np.arange(len(x)) % 4 == 0, 3 * x, x), "p90/p50"),  # a fat tail: one call in four 3x slower
    (lambda x: np.where(np.arange(len(x)) % 10 == 0, 30 * x, x), "CoV"),  # rare huge stalls
])
def test_damaged_samples_are_marked_with_the_reading_that_fired(damage, fragment):
    why = stability.instability(damage(quiet_samples(np.random.default_rng(1))))
    assert why is not None and fragment in why


def test_a_reading_just_past_its_limit_never_reads_as_equal_to_it():
    """`p90/p50 1.30 > 1.3` and `second half -10 % (limit ±10 %)` read as if the limit were met."""
    from partialnet.bench.stability import past

    assert past(1.3004, 1.3, 2) == "1.3004" and past(1.35, 1.3, 2) == "1.35" and past(10.4, 10, 0) == "10.4" and past(31.2, 10, 0) == "31"
    x = np.full(40, 1e-3)
    x[20:] *= 1.1004  # the second half 10.04 % slower
    assert "second half +10.04 % vs first (limit ±10 %)" in stability.instability(x)


def test_too_few_samples_give_no_drift_reading():
    assert stability.readings([0.001] * 5)["drift"] is None and stability.instability([0.001, 0.001]) is None


def test_disturbance_reads_the_record_and_survives_a_strangers_file():
    assert load.disturbance(QUIET) is None
    assert "other processes used 0.97 of 2 cores" in load.disturbance(BUSY)
    assert "stolen by the hypervisor" in load.disturbance({**QUIET, "steal_cores": 0.5})
    for hostile in (None, [], "x", {"others_cores": "1"}, {"others_cores": float("nan")}, {"others_cores": True}, {"others_cores": -3},
                    {"others_cores": 0.9, "cores": "two", "loadavg_1m": "high"}):
        assert load.disturbance(hostile) is None or load.disturbance(hostile).startswith("other processes used")


def test_the_probe_reads_this_machine():
    probe = load.LoadProbe.start()
    end = __import__("time").perf_counter() + 0.3
    while __import__("time").perf_counter() < end:
        pass
    record = probe.finish()
    assert record["cores"] >= 1 and record["own_cpu_s"] > 0.2 and record["wall_s"] >= 0.3
    if load.read_cpu_jiffies(load.usable_cpus()) is not None:  # Linux
        assert record["others_cores"] is not None and record["others_cores"] >= 0 and len(record["loadavg_1m"]) == 2


def _bench(rows: dict[str, tuple[np.ndarray, dict]]) -> dict:
    return {
        "schema": "partialnet.bench/1", "protocol": {"name": "quick"}, "machine": {"id": "m", "cpu": {"model": "x"}},
        "rows": [{"model": "m", "runtime": rt, "precision": "fp32", "batch": 1, "threads": 1, "status": "ok", "samples_s": list(s),
                  "machine_load": ml} for rt, (s, ml) in rows.items()],
    }


def test_compare_gives_no_verdict_from_a_marked_row():
    rng = np.random.default_rng(3)
    base = _bench({"onnxruntime": (quiet_samples(rng), QUIET), "openvino": (quiet_samples(rng), QUIET)})
    slow = _bench({"onnxruntime": (1.5 * quiet_samples(rng), BUSY), "openvino": (quiet_samples(rng), QUIET)})
    report = compare_results(base, slow)
    verdicts = {r["runtime"]: r for r in report["rows"]}
    assert verdicts["onnxruntime"]["verdict"] == "noisy" and "candidate row is disturbed" in verdicts["onnxruntime"]["why"]
    assert verdicts["openvino"]["verdict"] == "ok" and report["noisy"] == 1 and report["regressions"] == 0
    drifting = quiet_samples(rng)
    drifting[100:] *= 1.4
    report = compare_results(base, _bench({"onnxruntime": (drifting, QUIET), "openvino": (quiet_samples(rng), QUIET)}))
    assert {r["runtime"]: r["verdict"] for r in report["rows"]}["onnxruntime"] == "noisy"


def test_claims_say_inconclusive_on_a_disturbed_cell():
    from partialnet.bench.claims import INCONCLUSIVE
    from partialnet.bench.claims_run import judge

    rng = np.random.default_rng(4)
    fasternet, partialnet = quiet_samples(rng, 5.0), quiet_samples(rng, 4.0)
    cell = {"size": "t2", "runtime": "onnxruntime", "batch": 1, "threads": 1, "status": "ok", "latency_ratio": 0.8, "latency_ci": [0.79, 0.81],
            "fasternet": {"samples_s": list(fasternet)}, "partialnet": {"samples_s": list(partialnet)}}
    clean = [r for r in judge([{**cell, "machine_load": QUIET}], ["t2"], "cpu", 0.05) if r["runtime"] == "onnxruntime" and r["ratio"]]
    busy = [r for r in judge([{**cell, "machine_load": BUSY}], ["t2"], "cpu", 0.05) if r["runtime"] == "onnxruntime" and r["ratio"]]
    assert clean and all(r["why"] is None for r in clean)  # judged on its interval (whatever that says)
    assert busy and all(r["verdict"] == INCONCLUSIVE and r["why"].startswith("noisy: rerun: disturbed") for r in busy)


def test_alternation_takes_the_steps_in_random_order():
    from partialnet.bench.measure import SWITCH_WARMUP, alternating
    from partialnet.bench.protocols import Protocol

    seen = []
    protocol = Protocol(name="t", description="t", warmup_iters=0, warmup_seconds=0, min_iters=40, min_seconds=0, max_iters=None)
    samples = alternating({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, protocol, block=1)
    calls = SWITCH_WARMUP + 1  # a block: the untimed calls after the switch, then the timed one
    rounds = ["".join(seen[i:i + 2 * calls]) for i in range(0, len(seen), 2 * calls)]
    assert set(rounds) == {"a" * calls + "b" * calls, "b" * calls + "a" * calls}  # whole blocks, the switch's warm-up inside each
    assert rounds != [rounds[0], rounds[1]] * (len(rounds) // 2) and len(set(rounds)) == 2  # neither fixed nor ABBA
    assert len(seen) == calls * sum(map(len, samples.values()))  # the calls after a switch are never samples


def test_doctor_prints_json_and_advice(cli):
    result = cli("doctor", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["cpu"]["model"] and data["default_threads"] >= 1 and data["advice"]
    assert {r["runtime"] for r in data["runtimes"]} >= {"pytorch", "onnxruntime"}
    text = cli("doctor")
    assert text.code == 0 and "advice" in text.out and "threads" in text.out


@pytest.mark.slow
def test_a_busy_neighbour_marks_the_row(cli, tmp_path, t0_onnx):
    """A real bench on every core while a busy loop holds one: the row is marked (on an already noisy machine, marked
    either way). A row on fewer threads leaves the neighbour its core (test_others_on_the_cores_a_row_left_free...)."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = tmp_path / "busy.json"
        every_core = str(len(load.usable_cpus()))
        result = cli("bench", t0_onnx, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", every_core, "--json", out)
    finally:
        busy.kill()
        busy.wait()
    assert result.code == 0, result.err
    (row,) = json.loads(out.read_text())["rows"]
    if load.read_cpu_jiffies(load.usable_cpus()) is None:
        pytest.skip("no /proc/stat here: the machine's load cannot be read")
    # the loop shares the cores with the row's own threads: it gets about half of one (0.49 in one CI run), past the limit
    assert row["machine_load"]["others_cores"] > load.DISTURBED_CORES and row["disturbed"] and "other processes used" in row["why"]
    assert "~" in result.out and "not a figure to publish" in result.out


@pytest.mark.slow
def test_bench_aa_reports_the_runs_resolution(cli, tmp_path, t0_onnx):
    out = tmp_path / "aa.json"
    result = cli("bench", t0_onnx, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--aa", "--json", out)
    assert result.code == 0, result.err
    (control,) = json.loads(out.read_text())["aa"]
    assert control["runtime"] == "onnxruntime" and control["status"] == "ok"
    assert control["ci"][0] <= control["ratio"] <= control["ci"][1] and 0.5 < control["ratio"] < 2
    assert "A/A on onnxruntime" in result.out


def test_non_finite_samples_are_unstable():
    assert "non-finite" in stability.instability([0.001] * 20 + [float("nan")])
    assert stability.judgement([0.001] * 20 + [float("inf")], QUIET)["unstable"]


def test_a_verdict_reached_off_the_papers_conditions_says_so():
    """`claims --protocol quick --imgsz 64` read "reproduced" with nothing beside it but the table's title."""
    from partialnet.bench.claims_run import judge, off_papers
    from partialnet.bench.protocols import get_protocol

    paper = {"device": "cpu", "protocol": get_protocol("paper").to_dict(), "imgsz": [224, 224], "batch": 1, "threads": 1, "precision": "fp32"}
    gpu = {**paper, "device": "cuda", "protocol": get_protocol("paper", "cuda").to_dict(), "batch": 64, "threads": None}
    assert off_papers(paper) == [] and off_papers(gpu) == []
    assert off_papers({**gpu, "precision": "fp16"}) == ["fp16"]  # the reference code's --half; the papers state fp32
    quick = {**paper, "protocol": get_protocol("quick").to_dict(), "imgsz": [64, 64], "threads": 2, "precision": "bf16"}
    assert off_papers(quick) == ["the quick protocol", "64x64 inputs", "bf16"]
    assert off_papers({**paper, "threads": 2, "cuda_graphs": True, "batch": "x" * 10**6}) == ["2 threads", "CUDA graphs"]
    no_top = {k: v for k, v in paper.items() if k not in ("batch", "threads")}  # a stranger's file: the cells say what ran
    assert off_papers({**no_top, "measurements": [{"batch": 1, "threads": 2}, {"batch": 1, "threads": 1}]}) == ["2 threads"]
    rng = np.random.default_rng(5)
    cell = {"size": "t2", "runtime": "onnxruntime", "batch": 1, "threads": 1, "status": "ok", "latency_ratio": 0.8, "latency_ci": [0.79, 0.81],
            "fasternet": {"samples_s": list(quiet_samples(rng, 5.0))}, "partialnet": {"samples_s": list(quiet_samples(rng, 4.0))},
            "machine_load": QUIET}
    rows = [r for r in judge([cell], ["t2"], "cpu", 0.05, off_papers(quick)) if r["ratio"]]
    assert rows and all(r["why"] == "under the quick protocol, 64x64 inputs, bf16: not the papers' conditions" for r in rows)


def test_others_on_the_cores_a_row_left_free_do_not_disturb_it():
    """`--threads 1` on 2 cores beside a busy neighbour is what the docs advise (every runtime within 1.06x there),
    and was marked disturbed all the same: no compare verdict on a shared CI machine."""
    from partialnet.bench.load import disturbance

    beside = {"cores": 2, "wall_s": 3.0, "others_cores": 1.0, "steal_cores": 0.0, "loadavg_1m": [1.0, 1.0]}
    assert disturbance({**beside, "threads": 1}) is None
    assert "limit 0.2;" in disturbance({**beside, "threads": 2})  # its own cores taken
    assert "limit 0.2;" in disturbance(beside)  # an older file without the row's threads: read as before
    assert "limit 0.2 + 1 core(s) the row left free" in disturbance({**beside, "others_cores": 1.5, "threads": 1})
