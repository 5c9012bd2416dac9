"""`partialnet bench` and `partialnet compare` as a CI job would run them, on T0 at 64×64."""

import copy
import importlib.util
import hashlib
import json

import numpy as np
import pytest
import torch

from helpers import golden
from partialnet import BadInput, fold, load_checkpoint
from partialnet.exporters.onnx import OnnxOptions, export
from partialnet.runtimes.onnxruntime import OnnxRuntimeRunner
from partialnet.runtimes.torch_eager import TorchRunner

SIZE = (64, 64)
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def t0_small(tmp_path_factory):
    model, _ = load_checkpoint(golden("t0")[0])
    deploy, _ = fold(model, SIZE)
    path = tmp_path_factory.mktemp("runners") / "t0_64.onnx"
    export(deploy, path, OnnxOptions(imgsz=SIZE, dynamic=True), {})
    x = np.random.default_rng(0).standard_normal((2, 3, *SIZE), dtype=np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return model, deploy, path, x, reference


def runners(t0_small):
    _, deploy, path, _, _ = t0_small
    found = [TorchRunner(deploy, threads=1), OnnxRuntimeRunner(path, threads=1)]
    if HAS_OPENVINO:
        from partialnet.runtimes.openvino import OpenVinoRunner

        found.append(OpenVinoRunner(path, threads=1))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_runtime_matches_pytorch_on_t0(t0_small, index):
    available = runners(t0_small)
    if index >= len(available):
        pytest.skip("openvino is not installed (pip install 'partialnet[openvino]')")
    runner = available[index]
    runner.prepare()
    out = runner.infer(t0_small[3])
    runner.close()
    assert np.abs(out - t0_small[4]).max() <= 1e-5
    assert runner.precision == "fp32" and runner.threads == 1


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed")
def test_openvino_reports_the_precision_it_runs(t0_small):
    from partialnet.runtimes.openvino import OpenVinoRunner

    pinned = OpenVinoRunner(t0_small[2], threads=1, precision="fp32")
    pinned.prepare()
    assert pinned.precision == "fp32"
    relaxed = OpenVinoRunner(t0_small[2], threads=1, precision="bf16")
    relaxed.prepare()
    # bf16 where the CPU has it; OpenVINO falls back (and says so) where it does not.
    assert relaxed.precision in ("bf16", "fp32")
    from partialnet.runtimes.openvino import cpu_capabilities

    half = OpenVinoRunner(t0_small[2], threads=1, precision="fp16")
    half.prepare()
    # f16 where the CPU computes it; never bf16 behind the user's back (the plugin's fallback for f16 on a bf16 CPU)
    native = "FP16" in cpu_capabilities()
    assert half.precision == ("fp16" if native else "fp32")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick bench of the default model at 64×64 with every output requested."""
    from helpers import run_cli

    out = tmp_path_factory.mktemp("bench")
    code = run_cli("bench", "--protocol", "quick", "--imgsz", "64", "--threads", "1",
                   "--json", out / "r.json", "--csv", out / "r.csv", "--md", out / "r.md", "--plot", out / "r.png").code
    return out, code


@pytest.mark.slow
def test_quick_bench_writes_every_output(quick_run):
    out, code = quick_run
    assert code == 0
    result = json.loads((out / "r.json").read_text())
    assert result["schema"] == "partialnet.bench/1"
    assert result["protocol"]["name"] == "quick" and result["protocol"]["min_iters"] == 10
    assert result["machine"]["cpu"]["logical_cores"] and result["machine"]["id"]
    assert "infer" in result["timed_region"]
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    assert {r["runtime"] for r in ok} >= {"pytorch", "onnxruntime"}
    for row in ok:
        assert len(row["samples_s"]) >= 10 and row["threads"] == 1 and row["precision"] == "fp32"
        lo, hi = row["stats"]["median_ci95_ms"]
        assert lo <= row["stats"]["p50_ms"] <= hi
        assert row["parity_max_abs"] is not None and row["parity_max_abs"] < 1e-4
    formats = {r["runtime"]: r["format"] for r in ok}
    assert formats["onnxruntime"] == "onnx" and formats["pytorch"] == "deploy"
    if "openvino" in formats:
        assert formats["openvino"] == "openvino"  # OpenVINO times its own IR, built from the checkpoint
    skipped = {r["runtime"]: r["reason"] for r in result["rows"] if r["status"] == "skipped"}
    if not torch.cuda.is_available():
        assert "cuda only" in skipped["tensorrt"]
    assert (out / "r.csv").read_text().startswith("model,weights,runtime,device")
    assert "| partialnet_t0 (random weights) |" in (out / "r.md").read_text()
    for row in ok:  # cold start and memory, per row, beside the latency
        assert row["random_weights"] is True
        assert row["cold"]["load_s"] > 0 and row["cold"]["first_infer_s"] > 0 and row["cold"]["import_s"] >= 0
        assert 0 < row["memory"]["baseline_rss_mb"] <= row["memory"]["peak_rss_mb"]
    assert (out / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_model_name_keeps_its_marks_in_the_table(quick_run):
    """The name column cut `partialnet_t0:model.pth!~` to `partialnet_t0:model.pt…`: the marks that say
    "not a figure to publish" were the part lost."""
    from rich.console import Console

    from partialnet import render

    result = json.loads((quick_run[0] / "r.json").read_text())
    for row in result["rows"]:
        row.update(model="partialnet_t0:" + "a_long_training_run_name_" * 3 + ".pth", unstable=True, disturbed=True)
    console = Console(width=120, record=True)
    console.print(render.bench_table(result))
    names = "".join(line.split("│")[1].strip() for line in console.export_text().splitlines() if line.startswith("│"))  # the model column
    assert names.count(".pth*!~") == sum(r["status"] == "ok" for r in result["rows"]) > 0


def test_compare_with_itself_exits_0(cli, quick_run):
    path = quick_run[0] / "r.json"
    result = cli("compare", path, path)
    assert result.code == 0 and "no latency regression" in result.out


def slowed(result: dict, factor: float) -> dict:
    out = copy.deepcopy(result)
    for row in out["rows"]:
        if row["status"] == "ok":
            row["samples_s"] = [s * factor for s in row["samples_s"]]
            row["stats"]["p50_ms"] *= factor
    return out


def calm(result: dict) -> dict:
    """A real result with each row's samples replaced by a tight spread around its own median and no load
    record: what this test judges must not depend on how busy the machine running it was (a busy one marks
    the rows, and compare then rightly says noisy; tests/test_noise.py covers that)."""
    out = copy.deepcopy(result)
    for row in out["rows"]:
        if row["status"] == "ok":
            median = sorted(row["samples_s"])[len(row["samples_s"]) // 2]
            row["samples_s"] = [median * (1 + 0.01 * ((7 * i) % 11 - 5) / 5) for i in range(60)]
            row["machine_load"] = None
    return out


def test_compare_flags_a_slowed_candidate_with_exit_1(cli, quick_run, tmp_path):
    base = calm(json.loads((quick_run[0] / "r.json").read_text()))
    (tmp_path / "base.json").write_text(json.dumps(base))
    cand = tmp_path / "slow.json"
    cand.write_text(json.dumps(slowed(base, 1.5)))
    result = cli("compare", tmp_path / "base.json", cand, "--json")
    assert result.code == 1 and "regression" in result.err
    assert all(r["verdict"] == "regression" for r in json.loads(result.out)["rows"])


def test_compare_refuses_other_machines_unless_allowed(cli, quick_run, tmp_path):
    base = json.loads((quick_run[0] / "r.json").read_text())
    other = copy.deepcopy(base)
    other["machine"]["id"] = "0123456789abcdef"  # the id a file claims is not read: it is recomputed from its record
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert cli("compare", quick_run[0] / "r.json", path).code == 0
    other["machine"]["cpu"]["model"] = "Another CPU"
    path.write_text(json.dumps(other))
    refused = cli("compare", quick_run[0] / "r.json", path)
    assert refused.code == 2 and "different machines" in refused.err
    assert cli("compare", quick_run[0] / "r.json", path, "--allow-different-machines").code == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["compare", "MISSING", "GOOD"], "no such file"),
        (["compare", "NOTJSON", "GOOD"], "not JSON"),
        (["compare", "WRONGSCHEMA", "GOOD"], "not a partialnet bench result"),
        (["compare", "GOOD", "GOOD", "--alpha", "2"], "--alpha"),
        (["bench", "--runtime", "tensorflow", "--protocol", "quick"], "unknown runtime"),
        (["bench", "--protocol", "forever"], "unknown protocol"),
        (["bench", "--batch", "0"], "--batch"),
        (["bench", "--device", "tpu"], "--device"),
        (["bench", "nope.onnx", "--protocol", "quick"], "no such file"),
        (["bench", "--precision", "int8", "--protocol", "quick"], "needs calibration data: --data digits"),
        (["bench", "--data", "digits", "--protocol", "quick"], "--data is calibration data for --precision int8"),
        (["bench", "--precision", "int4"], "--precision"),
        # options that would change nothing are refused, never dropped; lists name each item once
        (["bench", "--batch", "1,1"], "--batch '1,1': 1 given twice"),
        (["bench", "--batch", "1,,2"], "--batch '1,,2': an empty item between commas"),  # was read as 1,2
        (["bench", "--runtime", "pytorch,"], "--runtime 'pytorch,': an empty item"),
        (["bench", "--label", ""], "--label '': an empty row name"),  # was ignored: the row kept its model's name
        (["bench", "--label", "x\nerror: forged"], "--label 'x\\nerror: forged': the name holds control characters (\\n)"),
        (["bench", "--label", "a\u202eb"], "control characters (\\u202e)"),
        (["bench", "--runtime", "onnxruntime,ort"], "onnxruntime given twice"),
        (["claims", "--sizes", "t0,T0"], "--sizes 't0,T0': t0 given twice"),
        (["bench", "--runtime", "onnxruntime", "--block", "3"], "--block is the A/B block size"),
        (["bench", "--runtime", "onnxruntime", "--block", "10"], "--block is the A/B block size"),  # typed at its default: was ignored
        (["bench", "--runtime", "onnxruntime", "--calib-size", "5"], "--calib-size is the number of calibration images"),
        (["bench", "--runtime", "onnxruntime", "--channels-last"], "--channels-last changes how the PyTorch model runs"),
        (["bench", "--runtime", "onnxruntime", "--threads", "1", "--streams", "2"], "--streams 2 with 1 thread(s)"),
        # every source is named before the first is built, and no two share a row name (compare matches by it)
        (["bench", "partialnet_t0", "96", "--runtime", "onnxruntime"], "'96' is neither a file nor a known variant"),
        (["bench", "partialnet_t0", "PartialNet-T0"], "partialnet_t0 and PartialNet-T0 are the same model, given twice"),
        (["bench", "A/model.onnx", "B/model.onnx"], "would both be rows named model.onnx"),
        (["bench", "--ab", "A/model.onnx", "A/model.onnx"], "the same model on both sides; --aa times a model against itself"),
        (["bench", "--ab", "partialnet_t0", "partialnet_t1", "--label", "x"], "an A/B's rows are named by its two sides"),
        (["bench", "--ab", "partialnet_t1", " "], "--ab side B: an empty string names no model"),
        (["bench", "partialnet_t0", "MISSING.pt", "--runtime", "onnxruntime"], "missing.pt: no such file"),  # found before T0 is built
        (["bench", "--ab", "partialnet_t0", "MISSING.pt", "--runtime", "onnxruntime"], "missing.pt: no such file"),
        # what no machine can run is usage (exit 2), found with the options; these were exit 3, "not possible here"
        (["bench", "A/model.onnx", "--runtime", "pytorch"], "(pytorch: runs checkpoints and variant names, not exported artifacts)"),
        (["bench", "A/model.mlpackage", "--runtime", "onnxruntime,pte"], "(onnxruntime: does not run coreml artifacts; executorch: does not run"),
        (["bench", "--runtime", "coreml"], "on any machine (coreml: runs exported artifacts only: give one (partialnet export --format coreml))"),
        # an artifact runs at its own precision: a --precision beside artifacts only was recorded in the result and never used
        (["bench", "A/model.onnx", "--precision", "int8", "--data", "digits"], "--precision int8 builds checkpoints and variant names at that precision"),
        (["bench", "A/model.onnx", "--precision", "fp16"], "every source given is an artifact, which runs at its own"),
        (["bench", "A/model.onnx", "--precision", "FP16"], "every source given is an artifact, which runs at its own"),
        # an A/B gate no run could pass, and A/B shapes that were cut down without a word
        (["bench", "--ab", "partialnet_t0", "A/model.onnx", "--runtime", "onnxruntime,pytorch", "--max-slowdown", "0.1"],
         "--max-slowdown gates every runtime of the A/B, and pytorch cannot run both sides on any machine"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--batch", "2,1"], "--ab compares A and B at one batch size; --batch 2,1 names 2"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--protocol", "quick", "--block", "10"],
         "--block 10 with --protocol quick: its 10 iterations a side would alternate fewer than 5 times; give --block 2 or less, "
         "or --protocol latency (100 iterations a side)"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--block", "41"], "give --block 20 or less\n"),  # no protocol repeats it: none named
        # the runtime a given artifact runs in has no multi-stream mode (was exit 3 "here" without --runtime)
        (["bench", "A/model.pte", "--streams", "2"], "the sources given run in executorch only, which has no multi-stream mode"),
        (["bench", "A/model.onnx", "--weights", "state_dict_ema"], "--weights state_dict_ema picks one of the model copies in a checkpoint file"),
        (["bench", "partialnet_t0", "--weights", "ema"], "no source given is one (artifacts and variant names hold one model)"),
        # every checkpoint holds the copy, checked before the first source is built (it came after T0's exports)
        (["bench", "partialnet_t0", "GOLDEN_T0", "--weights", "ema", "--runtime", "onnxruntime"], "--weights ema: no model copy by that name"),
        (["bench", "A/model.onnx", "--data", "digits"], "--data calibrates INT8 artifacts built from checkpoints; every source given is an artifact"),
        # an A/B's one runtime must run both sides: none here, on any machine (it was exit 3, after A was exported)
        (["bench", "--ab", "partialnet_t0", "A/model.pte", "--runtime", "ort"], "(onnxruntime: does not run executorch artifacts)"),
    ],
)
def test_bad_bench_inputs_exit_2(cli, quick_run, tmp_path, args, fragment):
    (tmp_path / "notjson.json").write_text("{not json")
    (tmp_path / "schema.json").write_text(json.dumps({"schema": "something/else", "rows": []}))
    for side in "AB":
        (tmp_path / side).mkdir()
        (tmp_path / side / "model.onnx").write_bytes(b"")
    subst = {
        "MISSING": tmp_path / "missing.json",
        "MISSING.pt": tmp_path / "missing.pt",
        "NOTJSON": tmp_path / "notjson.json",
        "WRONGSCHEMA": tmp_path / "schema.json",
        "GOOD": quick_run[0] / "r.json",
        "GOLDEN_T0": golden("t0")[0],
        **{f"{side}/model.onnx": tmp_path / side / "model.onnx" for side in "AB"},
    }
    result = cli(*[str(subst.get(a, a)) for a in args])
    assert result.code == 2 and fragment in result.err, result.err
    assert "Traceback" not in result.err and "preparing" not in result.err  # refused before any model is built


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_unavailable_exit_3(cli):
    result = cli("bench", "--device", "cuda", "--protocol", "quick", "--imgsz", "64", "--runtime", "pytorch,onnxruntime")
    assert result.code == 3 and "no runtime can run on cuda" in result.err


def test_a_precision_no_runtime_computes_is_refused_before_the_fold(cli):
    """onnxruntime has no bf16 on any machine: a usage error (exit 2; it was 3, "not possible here"), refused before
    the model is folded and exported (9 s at 64x64, more at 224)."""
    result = cli("bench", "partialnet_t0", "--precision", "bf16", "--protocol", "quick", "--imgsz", "64", "--runtime", "onnxruntime")
    assert result.code == 2 and "(onnxruntime: runs fp32, fp16 or int8, never bf16)" in result.err and "preparing" not in result.err, result.err
    result = cli("bench", "--precision", "int8", "--data", "digits", "--runtime", "pytorch,executorch", "--device", "cuda")
    said = ("no runtime asked for runs the sources given on cuda, on any machine (pytorch: runs fp32, bf16 or fp16, never int8; "
            "executorch: runs on cpu only, not cuda)")
    assert result.code == 2 and result.err.strip().endswith(said), result.err


@pytest.mark.slow
def test_ab_runs_each_runtime_and_honours_every_output(cli, tmp_path):
    out = tmp_path / "ab"
    result = cli(
        "bench", "--ab", "partialnet_t0", "fasternet_t0", "--runtime", "onnxruntime,pytorch", "--protocol", "quick", "--imgsz", "64",
        "--threads", "1", "--json", f"{out}.json", "--md", f"{out}.md", "--csv", f"{out}.csv", "--plot", f"{out}.png",
    )
    assert result.code == 0, result.err
    data = json.loads((tmp_path / "ab.json").read_text())
    assert [c["runtime"] for c in data["ab"]] == ["onnxruntime", "pytorch"]
    for cell in data["ab"]:
        low, high = cell["ratio_ci95"]
        assert cell["status"] == "ok" and low <= cell["ratio_b_over_a"] <= high
        assert cell["a"] == "partialnet_t0" and cell["b"] == "fasternet_t0"
        assert cell["block"] < 10  # the quick protocol's 10 iterations still alternate (blocks of 2)
    assert [(r["model"], r["runtime"]) for r in data["rows"]] == [
        ("partialnet_t0", "onnxruntime"), ("fasternet_t0", "onnxruntime"), ("partialnet_t0", "pytorch"), ("fasternet_t0", "pytorch"),
    ]
    assert all(len(r["samples_s"]) >= 10 for r in data["rows"])
    assert result.out.count("B/A latency ratio") == 2
    assert "fasternet_t0 (random weights)" in (tmp_path / "ab.md").read_text()
    assert len((tmp_path / "ab.csv").read_text().splitlines()) == 5
    # the Markdown and CSV of the run carry what it was for: the ratio (they held only its two plain-looking rows)
    markdown = (tmp_path / "ab.md").read_text()
    assert markdown.count("- A/B on ") == 2 and "B/A latency ratio" in markdown, markdown
    assert sum("ab side A, blocks of" in line for line in (tmp_path / "ab.csv").read_text().splitlines()) == 2
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}.json, {out}.csv, {out}.md, {out}.png" in result.out
    assert compare_loads(data)


def test_the_ab_gate_fails_a_slower_b_and_passes_a_faster_one(cli, tmp_path):
    """`--ab A B --max-slowdown F` is compare's verdict within one run, its exit code the gate's (T2 is about three
    times T0's work: no noise on a shared machine turns that around)."""
    common = ("--runtime", "pytorch", "--protocol", "quick", "--imgsz", "64", "--threads", "1", "--max-slowdown", "0.10")
    slower = cli("bench", "--ab", "partialnet_t0", "partialnet_t2", *common, "--json", tmp_path / "slower.json")
    assert slower.code == 1, slower.err
    assert "error: A/B gate (--max-slowdown 0.1, --alpha 0.01) failed on 1 runtime(s): pytorch: regression: median ratio" in slower.err
    assert "  gate: regression: median ratio" in slower.out
    assert "warning: --protocol quick is a smoke run, not for conclusions" in slower.err  # said before the run
    from partialnet.bench.results import to_markdown

    assert "  - gate: regression: median ratio" not in to_markdown(json.loads((tmp_path / "slower.json").read_text()))
    assert "- gate: regression: median ratio" in to_markdown(json.loads((tmp_path / "slower.json").read_text()))  # the verdict, uploaded
    cell = json.loads((tmp_path / "slower.json").read_text())["ab"][0]  # the verdict is written with the evidence
    assert cell["gate"]["verdict"] == "regression" and cell["gate"]["max_slowdown"] == 0.10 and cell["gate"]["alpha"] == 0.01
    faster = cli("bench", "--ab", "partialnet_t2", "partialnet_t0", *common)
    assert faster.code == 0, faster.err
    assert "  gate: improvement: median ratio" in faster.out
    # a runtime that runs the sides on no machine (TensorRT on the CPU) failed every run of the gate: refused before any work
    unmeasured = cli("bench", "--ab", "partialnet_t2", "partialnet_t0", *common[:1], "pytorch,tensorrt", *common[2:])
    assert unmeasured.code == 2 and "and tensorrt cannot run both sides on any machine (runs on cuda only, not cpu)" in unmeasured.err
    assert "A/B on" not in unmeasured.out


def test_an_ab_builds_a_checkpoint_only_for_runtimes_that_run_the_other_side(t0_onnx):
    """`--ab partialnet_t0 m.onnx --runtime openvino,executorch` lowered a .pte for A that no row would time:
    ExecuTorch does not run B, an ONNX file (its lowering was the slowest export of the run)."""
    from partialnet.bench.options import BenchOptions
    from partialnet.bench.run import build_formats

    plan = BenchOptions(runtime="openvino,executorch", ab=["partialnet_t0", str(t0_onnx)], imgsz="64", protocol="quick").plan(None)
    assert build_formats(plan) == ["openvino", "executorch"]  # a plain run of a checkpoint builds for each runtime
    assert build_formats(plan, runs=["partialnet_t0", str(t0_onnx)]) == ["openvino"]
    assert build_formats(plan, runs=["partialnet_t0", "partialnet_t1"]) == ["openvino", "executorch"]


def test_the_ab_gate_judges_rows_the_machine_disturbed_and_says_so():
    """Two separate runs under a neighbour's load get no verdict from compare; A and B alternating under it do."""
    import numpy as np

    from partialnet.bench.ab_gate import gate_ab

    rng = np.random.default_rng(0)
    busy = {"others_cores": 1.3, "cores": 2, "threads": 1, "wall_s": 10.0}
    a, b = (list(0.004 * rng.lognormal(0, 0.03, 200)) for _ in range(2))
    rows = [{"runtime": "onnxruntime", "status": "ok", "samples_s": s, "machine_load": busy, "model": m} for m, s in (("a", a), ("b", b))]
    result = {"ab": [{"runtime": "onnxruntime", "status": "ok"}], "rows": rows}
    assert gate_ab(result, 0.01, 0.10) == []
    gate = result["ab"][0]["gate"]
    assert gate["verdict"] == "ok" and gate["marks"] == ["A disturbed (" + gate["marks"][0].split("(", 1)[1], gate["marks"][1]]
    assert "judged although rows are marked: A disturbed (other processes used 1.30 of 2 cores" in gate["why"]
    rows[1]["samples_s"] = [x * 1.3 for x in b]
    (runtime, why), = gate_ab(result, 0.01, 0.10)
    assert runtime == "onnxruntime" and why.startswith("regression: median ratio 1.29")
    # with --aa, a B/A within what A against itself read in the same run is no resolved difference
    result["ab"][0]["aa"] = {"ratio": 0.99, "ci": [0.72, 1.35]}
    (runtime, why), = gate_ab(result, 0.01, 0.10)
    assert why.startswith("noisy: median ratio 1.29 lies within this run's A/A spread (A/A 0.990 (95% CI 0.720-1.350))"), why
    result["ab"][0]["aa"] = {"ratio": 1.0, "ci": [0.98, 1.02]}  # a tight control leaves the verdict as it was
    assert gate_ab(result, 0.01, 0.10)[0][1].startswith("regression: median ratio 1.29")
    rows[1]["samples_s"] = [x / 1.3 for x in b]
    result["ab"][0]["aa"] = {"ratio": 1.0, "ci": [0.72, 1.4]}  # an improvement within the spread passes as ok
    assert gate_ab(result, 0.01, 0.10) == [] and result["ab"][0]["gate"]["verdict"] == "ok"


@pytest.mark.parametrize("alpha, max_slowdown", [(None, 0.1), ("0.01", 0.1), (0.01, True), (0.01, float("inf"))])
def test_the_ab_gate_refuses_what_a_python_caller_passes_wrongly(alpha, max_slowdown):
    """From the API nothing typed the values first: None was a TypeError (exit 4), not bad input."""
    from partialnet.bench.options import BenchOptions
    from partialnet.errors import BadInput

    with pytest.raises(BadInput, match="expected a"):
        BenchOptions(ab=("partialnet_t0", "fasternet_t0"), max_slowdown=max_slowdown, alpha=alpha).check(None)


def test_a_cell_the_ab_gate_could_not_measure_fails_it():
    from partialnet.bench.ab_gate import gate_ab

    result = {"ab": [{"runtime": "openvino", "status": "skipped", "reason": "openvino is not installed"}], "rows": []}
    assert gate_ab(result, 0.01, 0.10) == [("openvino", "skipped: not measured (openvino is not installed)")]
    assert result["ab"][0]["gate"]["verdict"] == "skipped"


def test_the_ab_gate_names_the_target_a_failing_runtime_ran_on():
    from partialnet.bench.options import BenchOptions
    from partialnet.cli import _gate_ab

    def skipped():
        return {"ab": [{"runtime": "openvino", "status": "skipped", "reason": "not installed"}], "rows": []}

    options = BenchOptions(ab=("partialnet_t0", "fasternet_t0"), max_slowdown=0.1)
    assert _gate_ab(options, ["ci@box1", "ci@box2"], [skipped(), skipped()]) == [
        ("openvino on ci@box1", "skipped: not measured (not installed)"), ("openvino on ci@box2", "skipped: not measured (not installed)")]
    assert _gate_ab(options, [None], [skipped()]) == [("openvino", "skipped: not measured (not installed)")]
    assert _gate_ab(BenchOptions(ab=("partialnet_t0", "fasternet_t0")), [None], [skipped()]) == []  # no --max-slowdown: no gate


def compare_loads(data: dict) -> bool:
    """An A/B result is an ordinary bench result: compare and report read it like any other."""
    from pathlib import Path

    from partialnet.bench.results import check_result

    return check_result(data, Path("ab.json"))["schema"] == "partialnet.bench/1"


def test_bench_an_exported_artifact(cli, tmp_path, t0_onnx):
    onnx_path = t0_onnx
    out = tmp_path / "a.json"
    # --precision fp32 typed beside an artifact is what an fp32 file runs as (a CI line's explicit default): run, not refused
    result = cli("bench", onnx_path, "--runtime", "onnxruntime,pytorch", "--protocol", "quick", "--imgsz", "64", "--json", out, "--precision", "fp32")
    assert result.code == 0, result.err
    rows = json.loads(out.read_text())["rows"]
    by_runtime = {r["runtime"]: r for r in rows}
    assert by_runtime["onnxruntime"]["status"] == "ok" and by_runtime["onnxruntime"]["parity_max_abs"] < 1e-4
    assert by_runtime["pytorch"]["status"] == "skipped" and "not exported artifacts" in by_runtime["pytorch"]["reason"]
    assert by_runtime["onnxruntime"]["source_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()  # the very file timed


def test_missing_backend_names_the_extra(monkeypatch, tmp_path):
    import sys

    from partialnet.errors import Unavailable
    from partialnet.runtimes import table
    from partialnet.runtimes.openvino import OpenVinoRunner

    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail as if not installed
    with pytest.raises(Unavailable, match=r"pip install 'partialnet\[openvino\]'"):
        OpenVinoRunner(tmp_path / "m.onnx").prepare()
    monkeypatch.setattr(table.importlib.util, "find_spec", lambda name: None)
    assert table.availability("openvino", "cpu") == "not installed (pip install 'partialnet[openvino]')"


def test_only_unavailable_runtimes_exit_3(cli, monkeypatch):
    from partialnet.runtimes import table

    monkeypatch.setattr(table.importlib.util, "find_spec", lambda name: None)
    result = cli("bench", "--runtime", "openvino", "--protocol", "quick", "--imgsz", "64")
    assert result.code == 3 and "partialnet[openvino]" in result.err


@pytest.mark.slow
def test_label_lets_compare_match_two_checkpoints(cli, tmp_path, t0_state_dict):
    for name in ("base.pth", "new.pth"):
        torch.save(t0_state_dict, tmp_path / name)
        result = cli("bench", tmp_path / name, "--label", "model", "--runtime", "pytorch", "--protocol", "quick",
                     "--imgsz", "64", "--threads", "1", "--json", tmp_path / f"{name}.json")
        assert result.code == 0, result.err
    compared = cli("compare", tmp_path / "base.pth.json", tmp_path / "new.pth.json", "--json")
    assert compared.code in (0, 1) and [r["model"] for r in compared.json()["rows"]] == ["model"]
    assert cli("bench", "partialnet_t0", "fasternet_t0", "--label", "x").code == 2


@pytest.mark.slow
def test_int8_bench_builds_each_runtimes_int8_artifact_and_shows_top1(cli, tmp_path, digits_ckpt):
    pytest.importorskip("nncf", reason="OpenVINO INT8 needs NNCF (pip install 'partialnet[openvino]')")
    out = tmp_path / "int8.json"
    result = cli(
        "bench", digits_ckpt, "--precision", "int8", "--data", "digits", "--calib-size", "32", "--imgsz", "64",
        "--threads", "1", "--protocol", "quick", "--runtime", "pytorch,onnxruntime,openvino", "--json", out,
    )
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    rows = {r["runtime"]: r for r in data["rows"]}
    assert rows["pytorch"]["status"] == "skipped" and "never int8" in rows["pytorch"]["reason"]
    for runtime, fmt in (("onnxruntime", "onnx"), ("openvino", "openvino")):
        row = rows[runtime]
        assert row["status"] == "ok" and row["precision"] == "int8" and row["format"] == fmt
        assert row["parity_max_abs"] is None and row["parity_top1"] >= 0.9 and row["parity_on"] == "digits held-out (540)"
    assert data["settings"]["calibration"] == {"data": "digits", "images": 32}
    assert "top-1" in result.out


@pytest.mark.slow
def test_bench_of_a_given_int8_artifact_reads_its_agreement_from_the_manifest(cli, tmp_path, digits_int8_onnx):
    artifact, _ = digits_int8_onnx
    out = tmp_path / "r.json"
    result = cli("bench", artifact, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--json", out)
    assert result.code == 0, result.err
    row = json.loads(out.read_text())["rows"][0]
    assert row["precision"] == "int8" and row["parity_top1"] >= 0.95


def test_gpu_rows_let_their_idle_cpu_pool_sleep_unless_told_otherwise():
    """A GPU row's CPU pool is started by the model's load and then idle: spinning it (the CPU rows' default)
    would hold every other core for the whole run. An explicit --wait is kept as given, on any device."""
    from partialnet.bench.options import BenchOptions
    from partialnet.bench.threads import worker_env
    from partialnet.cli import _claims_plan

    assert BenchOptions(protocol="quick").plan(None).wait == "spin"
    assert BenchOptions(protocol="quick", device="cuda").plan(None).wait == "passive"
    assert BenchOptions(protocol="quick", device="cuda", wait="spin").plan(None).wait == "spin"
    assert BenchOptions(protocol="quick", wait="runtime").plan(None).wait == "runtime"
    cpu_plan, _ = _claims_plan("cpu", None, "t0", "quick", None, "224", 0.05, False)
    gpu_plan, _ = _claims_plan("cuda", ["pytorch"], "t0", "quick", None, "224", 0.05, False)
    assert (cpu_plan.wait, gpu_plan.wait) == ("spin", "passive")
    assert worker_env(4, gpu_plan.wait)["OMP_WAIT_POLICY"] == "PASSIVE" and worker_env(4, "spin")["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(BadInput, match="--wait 'nap'"):
        BenchOptions(wait="nap").check(None)


def test_without_runtime_a_given_artifact_brings_its_own():
    """`bench model.pte` had no runtime for it; an A/B of an .onnx and an .xml took both runtimes and failed its gate
    on the one that runs only one side: an A/B gets one runtime that runs both, where there is one."""
    from partialnet.bench.options import BenchOptions

    defaults = BenchOptions().runtimes()
    assert "executorch" not in defaults and BenchOptions().runtimes(["m.pte"]) == [*defaults, "executorch"]
    assert BenchOptions(ab=("a.onnx", "b.xml")).runtimes() == ["openvino"]
    assert BenchOptions(ab=("partialnet_t0", "m.pte")).runtimes() == ["executorch"]
    assert BenchOptions(ab=("partialnet_t0", "partialnet_t1")).runtimes() == ["onnxruntime"]
    assert BenchOptions(ab=("a.onnx", "b.pte")).runtimes() == ["onnxruntime", "executorch"]  # none runs both: refused by check
    with pytest.raises(BadInput, match="onnxruntime: does not run executorch artifacts; executorch: does not run onnx artifacts"):
        BenchOptions(ab=("a.onnx", "b.pte")).check(None)


def test_two_checkpoints_that_would_share_a_row_name_are_refused():
    """a/model.pth and b/model.pth of one variant both read `partialnet_t0:model.pth`; known once they load."""
    from partialnet.bench.run import Target, check_distinct_labels

    def target(source: str) -> Target:
        return Target("partialnet_t0:model.pth", source, "partialnet_t0", False, 0.2, 3_000_000, batches=[1])

    check_distinct_labels([target("a/model.pth")])
    with pytest.raises(BadInput, match="a/model.pth and b/model.pth would both be rows named partialnet_t0:model.pth"):
        check_distinct_labels([target("a/model.pth"), target("b/model.pth")])


def test_the_protocol_line_says_what_the_run_changed_in_it():
    from partialnet.bench.protocols import described_as_run, get_protocol

    paper = get_protocol("paper", "cpu").to_dict()
    as_published = described_as_run({"protocol": paper, "settings": {"threads": 1, "batches": [1]}})
    assert as_published == paper["description"]
    changed = described_as_run({"protocol": paper, "settings": {"threads": 2, "batches": [2]}})
    assert changed.endswith("; changed in this run: 2 threads (--threads) instead of 1, batch 2 (--batch) instead of 1")
    latency = get_protocol("latency", "cpu").to_dict()  # no threads or batch of its own: nothing to change
    assert described_as_run({"protocol": latency, "settings": {"threads": 2, "batches": [1, 32]}}) == latency["description"]
    throughput = get_protocol("throughput", "cpu").to_dict()
    streamed = described_as_run({"protocol": throughput, "settings": {"batches": [32], "streams": "auto"}})
    assert streamed.endswith("changed in this run: auto streams (--streams) instead of one synchronous request: images/s = images completed "
                             "/ wall time, p50 = one request's latency among them")


def test_the_python_api_benches_compares_and_reports_as_the_commands_do(quick_run):
    """docs/python-api.md: `api.bench` returns what --json writes, `api.compare` the gate's verdict and why it fails."""
    from partialnet import api
    from partialnet.bench.options import BenchOptions

    # imgsz=64 as python-api.md writes it, the flag's form (it was a TypeError, exit 4); PyTorch: no export to wait for
    result = api.bench(["partialnet_t0"], BenchOptions(runtime=["pytorch"], threads=1, protocol="quick", imgsz=64))
    assert [(r["runtime"], r["status"]) for r in result["rows"]] == [("pytorch", "ok")] and result["settings"]["imgsz"] == [64, 64]
    with pytest.raises(BadInput, match="--block is the A/B block size"):
        api.bench(None, BenchOptions(runtime=["onnxruntime"], block=3))
    same = api.compare(quick_run[0] / "r.json", quick_run[0] / "r.json")
    assert same["failure"] is None and same["same_input"] is True
    merged = api.report([quick_run[0] / "r.json"])
    assert merged["bench"] and {r["runtime"] for r in merged["bench"]} <= {"pytorch", "onnxruntime", "openvino"}


def test_an_artifact_exported_beside_is_taken_or_its_failure_said(tmp_path):
    """bench's second export process (ExecuTorch beside the other formats): a verified file and its manifest
    join the target; a failed verification fails only its rows; a refusal is the command's, as it would be here."""
    from partialnet.bench.run import Target, _take_beside
    from partialnet.errors import BadInput

    from partialnet.bench.matrix_beside import Beside

    class Other:  # the second process's results, without the process
        folder = tmp_path / "beside"
        files = Beside.files

        def __init__(self, rows):
            self.rows = rows

        def collect(self):
            return self.rows

    Other.folder.mkdir()
    (Other.folder / "model_b1.pte").write_bytes(b"program")
    (Other.folder / "model_b1.pte.json").write_text("{}")
    slot = tmp_path / "slot"
    slot.mkdir()
    jobs = [{"key": "executorch:1", "name": "model_b1.pte"}, {"key": "executorch:2", "name": "model_b2.pte"},
            {"key": "executorch:4", "name": "model_b4.pte"}]
    rows = {"executorch:1": {"status": "ok"}, "executorch:2": {"status": "failed", "why": "max |d| 3.1 > 1e-4", "kind": "CheckFailed"},
            "executorch:4": {"status": "failed", "why": "the second export process was killed by SIGKILL: no output"}}
    target = Target("t", "partialnet_t0", "partialnet_t0", True, None, None)
    _take_beside(target, Other(rows), zip([("executorch", 1), ("executorch", 2), ("executorch", 4)], jobs), slot)
    assert target.artifacts == {"executorch": {1: slot / "model_b1.pte"}} and (slot / "model_b1.pte.json").read_text() == "{}"
    assert target.unrunnable_formats == {("executorch", 2): "its executorch artifact failed verification: max |d| 3.1 > 1e-4",
                                         ("executorch", 4): "its executorch artifact could not be made: the second export process was killed "
                                                            "by SIGKILL: no output"}
    refused = {"executorch:1": {"status": "failed", "why": "x.pt: not a checkpoint", "kind": "BadInput"}}
    with pytest.raises(BadInput, match="not a checkpoint"):
        _take_beside(Target("t", "x.pt", None, False, None, None), Other(refused), zip([("executorch", 1)], jobs), slot)


def test_executorch_is_lowered_beside_only_where_other_formats_export_meanwhile(monkeypatch):
    from partialnet.bench import run

    monkeypatch.setattr("partialnet.runtimes.usable_cores", lambda: 2)
    every = ["onnx", "openvino", "executorch"]
    assert run.formats_beside(every, "fp32") == ["executorch"] and run.formats_beside(every, "bf16") == ["executorch"]
    assert run.formats_beside(["executorch"], "fp32") == []  # alone: a second process would only cost its start
    assert run.formats_beside(["onnx", "executorch"], "int8") == [] and run.formats_beside(["onnx", "executorch"], "fp16") == []  # gates reported, not enforced
    # matrix's cells by the same rule: the INT8 lowering (three times the fp32 one) alone where both are asked, never every cell
    from partialnet.bench.matrix_beside import sent_beside

    def beside(*cells):
        return sent_beside(list(cells), lambda c: c[0] == "executorch", slow=lambda c: c[1] == "int8")

    et32, et8, onnx32 = ("executorch", "fp32"), ("executorch", "int8"), ("onnx", "fp32")
    assert beside(onnx32, et32, et8) == [et8] and beside(et32, et8) == [et8] and beside(onnx32, et32) == [et32]
    assert beside(et32) == [] and beside(et8) == []  # matrix --formats executorch --precisions fp32 idled here while the other lowered
    monkeypatch.setattr("partialnet.runtimes.usable_cores", lambda: 1)
    assert run.formats_beside(["onnx", "executorch"], "fp32") == [] and beside(onnx32, et8) == []


def test_an_ab_side_whose_artifact_failed_verification_fails_its_cell_saying_why(tmp_path):
    """The A/B cell wrote its own reasons: a side whose export failed verification was "skipped: no artifact
    onnxruntime runs", hiding the failure a plain row of that side reports."""
    from types import SimpleNamespace

    from partialnet.bench.run import Target, _ab_cell

    plan = SimpleNamespace(where=SimpleNamespace(availability=lambda runtime, device, precision: None), device="cpu", precision="fp32",
                           streams=None, batches=[1])
    a = Target("a", "a.pt", "partialnet_t0", False, None, None, batches=[1], artifacts={"onnx": {1: tmp_path / "a.onnx"}})
    b = Target("b", "b.pt", "partialnet_t0", False, None, None, batches=[1],
               unrunnable_formats={("onnx", 1): "its onnx artifact failed verification: max |d| 3.1 > 1e-4"})
    cell, sides = _ab_cell(plan, {"a": a, "b": b}, "onnxruntime", 10, tmp_path)
    assert (cell["status"], cell["reason"], sides) == ("failed", "b.pt: its onnx artifact failed verification: max |d| 3.1 > 1e-4", {})
    given = Target("c", "c.xml", None, False, None, None, batches=[1], format="openvino", artifacts={"openvino": {1: tmp_path / "c.xml"}})
    cell, _ = _ab_cell(plan, {"a": a, "b": given}, "onnxruntime", 10, tmp_path)
    assert (cell["status"], cell["reason"]) == ("skipped", "c.xml: does not run openvino artifacts")


def test_only_the_runtime_that_runs_the_folded_model_is_sent_it(tmp_path):
    """Every row's spec named the folded model, so a target was sent its 14 MB for each ONNX Runtime row too."""
    from types import SimpleNamespace

    from partialnet.bench.protocols import get_protocol
    from partialnet.bench.run import Target, _spec

    plan = SimpleNamespace(device="cpu", threads=1, precision="fp32", imgsz=(64, 64), protocol=get_protocol("quick"), channels_last=False,
                           compile=False, cuda_graphs=False, unfolded=False, streams=None)
    target = Target("t", "partialnet_t0", "partialnet_t0", True, None, None, deploy=tmp_path / "deploy.pt", batches=[1],
                    artifacts={"onnx": {1: tmp_path / "m.onnx"}})
    assert _spec(plan, target, "pytorch", 1)["deploy"] == str(tmp_path / "deploy.pt")
    onnx = _spec(plan, target, "onnxruntime", 1)
    assert onnx["deploy"] is None and onnx["artifact"] == str(tmp_path / "m.onnx")


def test_each_targets_files_get_a_name_of_their_own():
    """ssh://root@loop and ssh://root-loop both became bench.root-loop.json, and the refusal asked for a path per
    target that one command cannot give."""
    from partialnet.bench.results import per_target_outputs

    named = per_target_outputs("b.json", "b.csv", None, None, ["ssh://root@loop", "ssh://root-loop", "ssh://pi@board:2222"])
    assert [[str(o.path) if o else None for o in outs] for outs in named.values()] == [
        ["b.root-loop.json", "b.root-loop.csv", None, None], ["b.root-loop-2.json", "b.root-loop-2.csv", None, None],
        ["b.pi-board-2222.json", "b.pi-board-2222.csv", None, None]]
    assert [str(o.path) for o in per_target_outputs("b.json", None, None, None, ["ssh://root@loop"])["ssh://root@loop"] if o] == ["b.json"]
