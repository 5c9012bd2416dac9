"""`partialnet claims`: the verdict rule on synthetic intervals, and one real CPU run at 64x64."""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers import run_cli
from partialnet.bench.claims import CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, NOT_VERIFIED, REPRODUCED, VERDICTS, get_claim, verdict

CPU = get_claim("patnet_t2_cpu_latency")  # PartialNet-T2 latency = 0.76 x FasterNet-T2's
GPU = get_claim("patnet_t2_gpu_throughput")  # PartialNet-T2 throughput = 1.25 x FasterNet-T2's


@pytest.mark.parametrize(
    "claim, ci, expected",
    [
        (CPU, (0.66, 0.70), REPRODUCED),  # well inside: faster than claimed
        (CPU, (0.76, 0.79), REPRODUCED),  # within the 5 % tolerance of 0.76 (threshold 0.798)
        (CPU, (0.90, 0.95), NOT_REPRODUCED),  # well outside
        (CPU, (0.75, 0.85), INCONCLUSIVE),  # straddles the threshold: never a verdict either way
        (GPU, (1.30, 1.40), REPRODUCED),
        (GPU, (1.00, 1.10), NOT_REPRODUCED),
        (GPU, (1.15, 1.25), INCONCLUSIVE),  # threshold 1.1875
    ],
)
def test_verdicts_on_synthetic_intervals(claim, ci, expected):
    assert verdict(claim, claim.published[0], ci, tolerance=0.05) == expected


def test_a_non_finite_interval_never_decides_a_verdict():
    assert verdict(CPU, 0.76, (float("nan"), 0.5)) == "not measurable here"
    assert verdict(GPU, 1.25, (2.0, float("inf"))) == "not measurable here"


def test_accuracy_claims_are_never_verified_by_speed():
    claim = get_claim("patnet_t2_top1")
    assert verdict(claim, claim.published[0], (1.5, 1.6)) == NOT_VERIFIED


def test_every_claim_row_is_complete_data():
    for claim in CLAIMS:
        assert claim.metric in ("latency", "throughput", "accuracy") and claim.device in ("cpu", "cuda")
        assert len(claim.sizes) == len(claim.published) and claim.source and claim.sentence
    assert get_claim("partialnet_repo_figure_gpu_throughput").published_for("t2") == pytest.approx(4760 / 4190, abs=1e-3)


@pytest.fixture(scope="module")
def quick_claims(tmp_path_factory):
    """One real claims run (T0 at 64x64, ONNX Runtime, quick) of the command: (its result, what it wrote)."""
    out = tmp_path_factory.mktemp("claims") / "claims.json"
    result = run_cli("claims", "--sizes", "t0", "--protocol", "quick", "--imgsz", "64", "--runtime", "onnxruntime", "--threads", "1", "--json", out)
    assert result.code == 0, result.err
    return result, json.loads(out.read_text())


@pytest.fixture
def claims_result(quick_claims):
    import copy

    return copy.deepcopy(quick_claims[1])  # each test may change its own copy


def test_claims_quick_on_one_size_and_runtime(quick_claims):
    """The quick tier's claims run: one size, one runtime, the JSON's shape (the module's run, which the report
    tests below read)."""
    result, data = quick_claims
    (cell,) = data["measurements"]
    assert (cell["size"], cell["runtime"], cell["status"], cell["threads"]) == ("t0", "onnxruntime", "ok", 1)
    assert all(row["verdict"] in VERDICTS for row in data["claims"]) and "published claims vs this machine" in result.out
    assert "PartialNet vs FasterNet, batch 1, fp32, 1 thread(s), 64x64" in result.out  # the precision timed, on screen too
    assert data["timed_model"] == "exported deploy artifacts (other runtimes)"  # no PyTorch row: none named


@pytest.mark.slow
def test_claims_on_cpu_at_small_size(tmp_path, cli):
    out, md, png = tmp_path / "claims.json", tmp_path / "claims.md", tmp_path / "claims.png"
    # PyTorch eager alone (the papers' protocol): ONNX Runtime's cells are the quick test's and the report tests' run
    result = cli("claims", "--sizes", "t0,t2", "--protocol", "quick", "--imgsz", "64", "--runtime", "pytorch", "--threads", "1",
                 "--unfolded", "--json", out, "--md", md, "--plot", png)
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert data["schema"] == "partialnet.claims/1" and data["machine"]["cpu"] and "random" in data["weights"]
    for row in data["claims"]:
        assert {"id", "size", "runtime", "metric", "published", "ratio", "ci", "verdict"} <= set(row) and row["verdict"] in VERDICTS
    rows = {(r["id"], r["runtime"]): r for r in data["claims"]}
    cpu = rows[("patnet_t2_cpu_latency", "pytorch")]
    assert cpu["size"] == "t2" and cpu["ratio"] > 0 and cpu["ci"][0] <= cpu["ratio"] <= cpu["ci"][1]
    assert rows[("patnet_t2_gpu_throughput", "pytorch")]["verdict"] == "not measurable here"  # no GPU claim on a CPU run
    assert rows[("patnet_t2_top1", None)]["verdict"] == "not verified"
    cells = data["measurements"]
    assert {(c["size"], c["runtime"]) for c in cells} == {(size, runtime) for size in ("t0", "t2") for runtime in ("pytorch", "pytorch-unfolded")}
    for cell in cells:
        assert cell["status"] == "ok" and cell["threads"] == 1 and len(cell["partialnet"]["samples_s"]) >= 10
    assert {c["name"] for c in data["costs"]} == {"partialnet_t0", "fasternet_t0", "partialnet_t2", "fasternet_t2"}
    assert "patnet_t2_cpu_latency" in md.read_text() and "Tolerance 5%" in md.read_text()
    assert "published claims vs this machine" in result.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pytest.importorskip("matplotlib")
    from partialnet.bench import plot

    figure = plot.claims_figure(data)
    (axes,) = figure.axes
    assert axes.get_xscale() == "log" and axes.get_yscale() == "log" and "latency" in axes.get_ylabel()
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {f"{family} · {runtime}" for family in ("PartialNet", "FasterNet") for runtime in ("pytorch", "pytorch-unfolded")}
    assert all(len(line.get_xdata()) == 2 for line in lines.values())  # one point per size
    title = axes.get_title()
    assert data["machine"]["cpu"]["model"] in title and "protocol quick" in title and data["created_utc"][:10] in title
    plot.save(figure, tmp_path / "again.png")
    merged = cli("report", out, "-o", tmp_path / "report.md")  # a run with --unfolded is merged like any other: it was refused
    assert merged.code == 0 and "pytorch-unfolded" in (tmp_path / "report.md").read_text(), merged.err


@pytest.mark.parametrize("args, message", [(["--sizes", "t9"], "--sizes"), (["--tolerance", "nan"], "--tolerance"), (["--device", "tpu"], "--device"),
                                           (["--sizes", ",t0"], "--sizes ',t0': an empty item between commas")])
def test_bad_claims_options_exit_2(args, message, cli):
    result = cli("claims", *args)
    assert result.code == 2 and message in result.err


def test_more_threads_than_cores_is_refused_before_the_first_row(cli):
    import os

    result = cli("claims", "--threads", str(os.cpu_count() + 1), "--runtime", "onnxruntime", "--sizes", "t0", "--protocol", "quick")
    assert result.code == 2 and "logical cores" in result.err and "fasternet" not in result.out + result.err


def remeasured(data: dict) -> dict:
    """A copy of a claims result as another run would give: every raw sample 0.1 % slower (report takes a file
    that shares raw samples with another for a copy of the same measurement)."""
    import copy

    other = copy.deepcopy(data)
    for cell in other["measurements"]:
        for side in (cell.get(f) for f in ("fasternet", "partialnet", "fasternet_control")):
            if isinstance(side, dict) and side.get("samples_s"):
                side["samples_s"] = [s * 1.001 for s in side["samples_s"]]
    return other


def _write(path, data):
    from partialnet.outputs import dumps_strict

    path.write_text(dumps_strict(data))
    return path


def test_report_merges_machines_and_recomputes_every_figure(claims_result, tmp_path, cli):
    from partialnet.machine import machine_id

    first = _write(tmp_path / "xeon.json", claims_result)
    other = remeasured(claims_result)
    other["machine"]["id"], other["machine"]["cpu"]["model"] = "0123456789abcdef", "Another CPU"  # the id is recomputed, not read
    other["measurements"][0]["latency_ratio"] = 0.01  # a stranger's file: derived numbers are never trusted
    second = _write(tmp_path / "other.json", other)
    md, png, merged = tmp_path / "r.md", tmp_path / "r.png", tmp_path / "r.json"
    result = cli("report", first, second, "-o", md, "--plot", png, "--json", merged)
    assert result.code == 0, result.err
    report = json.loads(merged.read_text())
    theirs = machine_id(other["machine"])
    assert report["schema"] == "partialnet.report/1" and set(report["machines"]) == {claims_result["machine"]["id"], theirs}
    ratios = {r["machine_id"]: r["latency_ratio"] for r in report["measurements"]}
    assert ratios[theirs] == pytest.approx(claims_result["measurements"][0]["latency_ratio"])  # both sides x 1.001: the same ratio
    assert "Claims measured at 64x64 fp32, judged at ±0.05 tolerance." in md.read_text()
    assert all(r["machine_id"] and r["cpu"] for r in report["claims"] + report["measurements"])
    assert "Another CPU" in md.read_text() and png.read_bytes()[:4] == b"\x89PNG"
    # the Markdown holds what the terminal showed: the latency pairs, and why each claim got a verdict short of reproduced
    assert "| FasterNet p50 ms | PartialNet p50 ms | ratio | 95% CI |" in md.read_text()
    for why in (r["why"] for r in report["claims"] if r["verdict"] != "reproduced" and r["why"]):
        assert why in md.read_text() and why in result.out.replace("\n", "")
    from partialnet.bench import plot, report as report_mod

    figure = plot.report_figure(report, report_mod.model_gmacs(report))
    assert len(figure.axes) == 2 and all(ax.get_xscale() == "log" for ax in figure.axes)  # one panel per machine


def test_report_refuses_mixed_protocols_and_bad_files(claims_result, tmp_path, cli):
    import copy

    first = _write(tmp_path / "a.json", claims_result)
    other = copy.deepcopy(claims_result)
    other["protocol"]["min_seconds"] = 0.5  # another run of the quick protocol's kind, which its samples could have come from
    mixed = cli("report", first, _write(tmp_path / "b.json", other))
    assert mixed.code == 2 and "different protocols" in mixed.err
    graphs = copy.deepcopy(claims_result)
    graphs["cuda_graphs"] = True  # the GPU's own work, without host launches: another question than eager timing
    replayed = cli("report", first, _write(tmp_path / "g.json", graphs))
    assert replayed.code == 2 and "with CUDA graphs in" in replayed.err
    broken = copy.deepcopy(claims_result)
    broken["measurements"][0]["partialnet"]["samples_s"][0] = -1.0
    bad = cli("report", _write(tmp_path / "c.json", broken))
    assert bad.code == 2 and "timings, each a finite number of seconds" in bad.err
    (tmp_path / "d.json").write_text('{"schema": "something else"}')
    assert cli("report", tmp_path / "d.json").code == 2
    for field, value, said in (("imgsz", [128, 128], "128x128 fp32, judged at ±0.05 tolerance in"),
                               ("precision", "fp16", "64x64 fp16, judged at ±0.05 tolerance in")):
        changed = {**copy.deepcopy(claims_result), field: value}  # rows that name no size or precision must not sit in one table
        apart = cli("report", first, _write(tmp_path / f"{field}.json", changed))
        assert apart.code == 2 and "different input sizes or precisions" in apart.err and said in apart.err, apart.err
    for field, value, said in (("imgsz", [-64, 0], "imgsz[0] is not an integer in 32..4096"), ("measurements", [], "measurements is not a list of 1 to 200"),
                               ("precision", 5, "precision")):
        hostile = cli("report", _write(tmp_path / f"h_{field}.json", {**copy.deepcopy(claims_result), field: value}))
        assert hostile.code == 2 and said in hostile.err, hostile.err


def test_report_judges_claims_only_on_cells_that_could_carry_a_verdict(claims_result, tmp_path, cli):
    """Review findings: a file judged at its own 50 % tolerance beside one at 5 % gave one measurement two
    verdicts; one sample a side was 'reproduced'; a cell given twice, an unknown runtime (a stranger's HTML), a
    batch other than the run's and a cuda run from a machine without a GPU were all judged."""
    import copy

    first = _write(tmp_path / "a.json", claims_result)
    loose = {**remeasured(claims_result), "tolerance": 0.5}
    apart = cli("report", first, _write(tmp_path / "loose.json", loose))
    assert apart.code == 2 and "judged at different tolerances" in apart.err and "±0.5 tolerance in" in apart.err, apart.err
    cell = next(c for c in claims_result["measurements"] if c["status"] == "ok")
    few = copy.deepcopy(claims_result)
    next(c for c in few["measurements"] if c["status"] == "ok")["partialnet"]["samples_s"] = cell["partialnet"]["samples_s"][:1]
    twice = copy.deepcopy(claims_result)
    twice["measurements"].append(copy.deepcopy(cell))
    logical = claims_result["machine"]["cpu"]["logical_cores"]
    for name, data, said in (
        ("few", few, "(partialnet) holds 1 samples; the quick protocol times at least 10"),
        ("twice", twice, f"are both t0 / {cell['runtime']}; a result measures each once"),
        ("runtime", {**claims_result, "measurements": [{**cell, "runtime": "onnxruntime</td><td>reproduced"}]},
         "measurements[0].runtime is not one of pytorch, onnxruntime"),
        ("batch", {**claims_result, "measurements": [{**cell, "batch": 64}]}, "batch 64, but the run was at batch 1"),
        ("cuda", {**claims_result, "device": "cuda"}, "a cuda result from a machine that records no GPU"),
        ("tolerance", {**claims_result, "tolerance": "0.5"}, "tolerance is not a finite number from 0 to 0.5"),
        ("failed_timed", {**claims_result, "measurements": [{**cell, "status": "failed"}]},
         "measurements[0] is failed and holds a side's raw samples: a row that was not measured has none"),
        ("load", {**claims_result, "measurements": [{**cell, "machine_load": {**cell["machine_load"], "cores": logical + 1}}]},
         f"measurements[0].machine_load.cores {logical + 1}: more than the {logical} logical cores"),  # free cores read as quiet
        ("threads", {**claims_result, "threads": 64, "measurements": [{**cell, "threads": 64, "machine_load": None}]},
         f"threads 64, more than the {logical} logical cores of the machine the file records"),  # as bench rows are held
    ):
        refused = cli("report", _write(tmp_path / f"{name}.json", data))
        assert refused.code == 2 and said in refused.err, (name, refused.err)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_the_markdown_and_plot_say_what_was_timed(claims_result):
    """A CUDA-graph result (the GPU's own work) must not read as the papers' eager protocol in any of its files."""
    from partialnet.bench import claims_run, plot

    eager = claims_run.to_markdown(claims_result)
    assert "batch 1, fp32, 1 thread(s)" in eager and "Timed: exported deploy artifacts" in eager and "CUDA graph" not in eager
    graphs = {**claims_result, "precision": "fp16", "cuda_graphs": True,
              "timed_model": f"{claims_result['timed_model']}; {claims_run.GRAPHS_NOTE}"}
    text = claims_run.to_markdown(graphs)
    assert "batch 1, fp16, 1 thread(s)" in text and "replay each forward as one CUDA graph" in text
    figure = plot.claims_figure(graphs)
    title = figure.axes[0].get_title()
    assert "fp16, CUDA graphs (not eager)" in title and "CUDA graphs" not in plot.claims_figure(claims_result).axes[0].get_title()


@pytest.mark.skipif(_cuda(), reason="this machine has a GPU: the GPU test below runs instead")
def test_gpu_claims_without_a_gpu_exit_3_with_the_reason(cli):
    result = cli("claims", "--device", "cuda", "--sizes", "t0", "--runtime", "pytorch", "--imgsz", "64")
    assert result.code == 3 and "no runtime can run on cuda here (pytorch: no GPU driver on this machine" in result.err


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU: the papers' GPU protocol (batch 64, 50 warm-up, cudnn.benchmark)")
def test_gpu_claims_use_the_papers_gpu_protocol(tmp_path, cli):
    out = tmp_path / "gpu.json"
    result = cli("claims", "--device", "cuda", "--sizes", "t2", "--runtime", "pytorch", "--imgsz", "64", "--json", out)
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert data["batch"] == 64 and data["protocol"]["warmup_iters"] == 50 and data["machine"]["gpus"]
    rows = {(r["id"], r["size"]): r for r in data["claims"]}
    t2 = rows[("patnet_t2_gpu_throughput", "t2")]
    assert t2["metric"] == "throughput" and t2["ratio"] > 0 and t2["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert rows[("patnet_t2_cpu_latency", "t2")]["verdict"] == "not measurable here"


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda() or importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT and a CUDA GPU")
def test_gpu_claims_build_and_time_tensorrt_engines(tmp_path, cli):
    out = tmp_path / "trt.json"
    result = cli("claims", "--device", "cuda", "--sizes", "t0", "--runtime", "tensorrt", "--protocol", "quick", "--imgsz", "64", "--json", out)
    assert result.code == 0, result.err
    (cell,) = json.loads(out.read_text())["measurements"]
    assert cell["runtime"] == "tensorrt" and cell["status"] == "ok" and cell["latency_ratio"] > 0


def test_a_cell_computed_at_another_precision_says_so(claims_result):
    """An fp16 run whose runtime computed fp32 (OpenVINO without native f16) must not read as fp16 on screen."""
    import copy
    import io

    from rich.console import Console

    from partialnet import render

    changed = copy.deepcopy(claims_result)
    changed["precision"] = "fp16"
    cell = next(c for c in changed["measurements"] if c["status"] == "ok")
    for family in ("fasternet", "partialnet"):
        cell[family]["precision"] = "fp32"
    console = Console(file=io.StringIO(), width=200)
    console.print(render.claims_measurements_table(changed))
    text = console.file.getvalue()
    assert "batch 1, fp16," in text and f"{cell['runtime']} (ran fp32)" in text
