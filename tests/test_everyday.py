"""Daily-use behaviour: a light CLI, stage progress and honest wall times, bench's cold-start columns,
static-batch rows, the async multi-stream mode. Speed is never asserted here (scripts/startup_time.py
measures it); what is asserted is what gets imported, printed and recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "onnxsim", "numpy.linalg")


def _imports_after(code: str) -> dict:
    probe = f"import sys\n{code}\nprint({{m: m in sys.modules for m in {HEAVY!r}}})"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return eval(out.stdout.strip().splitlines()[-1])  # a dict literal printed by our own probe


def test_the_cli_module_imports_no_framework():
    loaded = _imports_after("import partialnet.cli")
    assert not loaded["torch"] and not loaded["onnx"] and not loaded["onnxruntime"] and not loaded["openvino"], loaded


def test_help_and_usage_errors_answer_without_torch():
    code = (
        "import partialnet.cli as c\n"
        "for argv in (['partialnet', '--help'], ['partialnet', 'export', 'x', '--formt', 'onnx'], ['partialnet', 'bench', '--device', 'tpu']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        c.run()\n"
        "    except SystemExit as e:\n"
        "        print('exit', e.code, file=sys.stderr)\n"
    )
    loaded = _imports_after(code)
    assert not loaded["torch"] and not loaded["onnxruntime"], loaded


def test_the_variant_table_is_plain_data():
    loaded = _imports_after("from partialnet.models.registry import VARIANTS\nimport partialnet.runtimes.table, partialnet.bench.protocols")
    assert not loaded["torch"], loaded


def test_stage_clock_shares_add_up_and_nest():
    from partialnet import progress

    seen = []

    class Listener:
        def started(self, name, detail):
            seen.append(("start", name))

        def finished(self, name, seconds, ok=True):
            seen.append(("end", name))

    with progress.recording(Listener()) as clock:
        with progress.stage("export", "onnx"):
            time.sleep(0.02)
            with progress.stage("simplify"):
                time.sleep(0.03)
        with progress.stage("verify"):
            time.sleep(0.01)
    assert seen == [("start", "export"), ("start", "simplify"), ("end", "simplify"), ("end", "export"), ("start", "verify"), ("end", "verify")]
    assert clock.seconds["simplify"] >= 0.03 and 0.02 <= clock.seconds["export"] < 0.03 + 0.02  # self time: the child is not counted twice
    timing = clock.breakdown()
    assert timing["wall_s"] >= sum(clock.seconds.values()) - 0.01
    assert abs(sum(timing["shares"].values()) - 1) < 0.02
    assert set(timing["stages_s"]) >= {"export", "simplify", "verify", "other"}
    assert timing["within"] == {"simplify": "export"}


def test_the_timing_line_shows_a_stage_whole_with_its_nested_parts():
    """`export 0.5 s` beside `torch.onnx.export 3.5 s` read as if the export took half a second: a parent is
    shown with its whole time, the stages nested in it inside its brackets, and the shares still add up."""
    from partialnet.cli import timing_line

    timing = {"wall_s": 10.0, "stages_s": {"startup": 0.5, "export": 0.5, "torch.onnx.export": 3.5, "simplify": 0.2, "verify": 5.0, "other": 0.3},
              "within": {"torch.onnx.export": "export", "simplify": "export"}}
    assert timing_line(timing) == ("10.0 s wall (from process start): startup 0.5 s 5 %, export 4.2 s 42 % (torch.onnx.export 3.5 s, "
                                   "simplify 0.2 s), verify 5.0 s 50 %, other 0.3 s 3 %")
    from partialnet import progress

    with progress.recording() as clock:  # where a stage first began decides: no cycle, no top-level time folded away
        with progress.stage("verify"):
            pass
        with progress.stage("export"):
            with progress.stage("verify"):
                pass
            with progress.stage("simplify"):
                with progress.stage("export"):
                    pass
    assert clock.breakdown()["within"] == {"simplify": "export"}
    flat = {"wall_s": 2.0, "stages_s": {"fold": 1.0, "write": 0.01}}  # nothing nested; a stage under 0.05 s is left out
    assert timing_line(flat) == "2.0 s wall (from process start): fold 1.0 s 50 %"
    beside = {**flat, "beside_s": {"second process: executorch": {"load": 0.2, "export": 30.04, "verify": 0.01}}}
    assert timing_line(beside) == ("2.0 s wall (from process start): fold 1.0 s 50 %; "
                                   "meanwhile, in a second process: executorch: load 0.2 s, export 30.0 s")  # overlapped: not in the shares
    with progress.recording() as clock:
        progress.ran_beside("second process: executorch", {"export": 3.0})
        progress.ran_beside("second process: executorch", {"export": 1.0})
    assert clock.breakdown()["beside_s"] == {"second process: executorch": {"export": 4.0}} and "export" not in clock.seconds


def test_stage_is_silent_when_nobody_records():
    from partialnet import progress

    with progress.stage("load"):
        pass
    assert progress.current_seconds() == {}


@pytest.mark.slow
def test_fold_and_export_show_stages_and_the_wall_time(cli, tmp_path, t0_onnx_export):
    folded = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", tmp_path / "t0.deploy.pt")
    assert folded.code == 0, folded.err
    assert "RANDOM weights" in folded.out
    for stage in ("load partialnet_t0", "fold 64x64", "write"):
        assert f"- {stage}: " in folded.err  # one plain line per stage when stderr is not a terminal
    assert "s wall (from process start):" in folded.out and "fold" in folded.out.split("wall")[-1]
    report = json.loads((tmp_path / "t0.deploy.pt.fold.json").read_text())
    assert report["random_weights"] is True
    assert all("gmacs_after" not in p for p in report["report"]["passes"])  # measured once before and once after
    assert 0 < report["report"]["gmacs_after"] < report["report"]["gmacs_before"]

    exported = t0_onnx_export[1]  # `export partialnet_t0 --imgsz 64`, the session's
    lines = exported.err.splitlines()
    for stage in ("load", "fold", "torch.onnx.export", "simplify", "export onnx", "verify onnxruntime vs PyTorch"):
        assert any(line.lstrip("- ").startswith(stage) for line in lines), (stage, lines)
    assert "\n\n" not in exported.err and not exported.err.startswith("\n")  # clean CI logs
    tail = exported.out.split("s wall (from process start):")[-1]
    for stage in ("verify", "simplify"):
        assert stage in tail


@pytest.mark.slow
def test_worker_for_onnxruntime_does_not_import_torch(tmp_path, t0_onnx):
    """A row timing ONNX Runtime pays for ONNX Runtime only: no torch in its process."""
    from partialnet.bench.protocols import get_protocol

    onnx = t0_onnx
    spec = {
        "runtime": "onnxruntime", "device": "cpu", "threads": 1, "precision": "fp32", "batch": 1, "imgsz": [64, 64],
        "protocol": get_protocol("quick").to_dict(), "input_seed": 0, "artifact": str(onnx), "reference": None,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, "-m", "partialnet.bench.worker", tmp_path / "spec.json", tmp_path / "out.json"], check=True, timeout=300)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["status"] == "ok", result
    assert result["imported_torch"] is False
    assert result["cold"]["load_s"] > 0 and result["cold"]["first_infer_s"] > 0
    memory = result["memory"]
    assert 0 < memory["baseline_rss_mb"] < memory["peak_rss_mb"] < 2048  # VmHWM of this process, not the parent's


@pytest.mark.slow
def test_static_batch_artifact_says_which_rows_it_skipped(cli, tmp_path, t0_onnx):
    onnx = t0_onnx
    result = cli("bench", onnx, "--runtime", "onnxruntime", "--batch", "1,2", "--protocol", "quick", "--threads", "1", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert [r["batch"] for r in ok] == [1] and [r["batch"] for r in skipped] == [2]
    assert "static batch 1 artifact cannot run batch 2" in skipped[0]["reason"]
    assert "static batch 1 artifact cannot run batch 2" in result.out
    assert ok[0]["random_weights"] is True and "was exported from RANDOM weights (a variant name, no checkpoint)" in result.out  # its manifest says so


@pytest.mark.slow
def test_a_given_artifact_is_timed_at_its_own_size_and_batch_and_others_are_refused(cli, tmp_path, t0_onnx):
    """Its size and a static batch were fixed at export: asked for another, bench refuses up front (it used to
    time the artifact's own and record the one asked for); not asked, the result says what was timed."""
    b3 = tmp_path / "b3.onnx"
    assert cli("export", "partialnet_t0", "--imgsz", "96", "160", "--batch", "3", "--samples", "1", "-o", b3).code == 0
    result = cli("bench", b3, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["imgsz"] == [96, 160] and data["settings"]["batches"] == [3]
    assert [(r["batch"], r["status"], r["imgsz"]) for r in data["rows"]] == [(3, "ok", [96, 160])]  # no skipped batch-1 row
    assert "quick protocol · 96x160 ·" in result.out and f"preparing {b3}: read the artifact" in result.err
    assert "onnx (.onnx) for onnxruntime" in data["artifacts"]
    refusals = {
        ("--imgsz", "192", "64"): "b3.onnx takes 96x160 inputs (fixed at export): --imgsz 192x64 cannot apply to it",
        ("--batch", "1"): "b3.onnx has a static batch of 3: --batch 1 cannot run it",
    }
    for args, message in refusals.items():
        refused = cli("bench", b3, "--runtime", "onnxruntime", "--protocol", "quick", *args)
        assert refused.code == 2 and message in refused.err and "Traceback" not in refused.err, refused.err
    far = cli("bench", b3, "--imgsz", "192", "64", "--target", "ssh://nohost.invalid", "--protocol", "quick")
    assert far.code == 2 and "cannot apply to it" in far.err  # refused here, before any target is reached
    unlike = cli("bench", "--ab", "partialnet_t0", b3, "--runtime", "onnxruntime", "--protocol", "quick")
    assert unlike.code == 2 and "--ab compares like with like: A partialnet_t0 runs 224x224 at batch 1, B b3.onnx runs 96x160 at batch 3" in unlike.err
    unlike = cli("bench", "--ab", t0_onnx, b3, "--runtime", "onnxruntime", "--protocol", "quick")  # the session's 64x64 T0
    assert unlike.code == 2 and "A t0.onnx runs 64x64 at batch 1, B b3.onnx runs 96x160 at batch 3" in unlike.err
    both = cli("bench", b3, t0_onnx, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--json", tmp_path / "both.json")
    assert both.code == 0, both.err
    data = json.loads((tmp_path / "both.json").read_text())
    assert data["settings"]["imgsz"] is None  # no size of the run's own: each row says what it timed
    assert sorted((r["imgsz"], r["batch"]) for r in data["rows"]) == [([64, 64], 1), ([96, 160], 3)]
    assert "quick protocol · 96x160, 64x64 ·" in both.out


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_streams_warm_up_follows_the_protocols_seconds_too(runtime, digits_onnx):
    """It was the warm-up iterations alone (ONNX Runtime's split among the streams): the latency protocol's
    second of warm-up never ran before a streams row."""
    import importlib
    from dataclasses import replace

    import numpy as np

    from partialnet.bench.protocols import PROTOCOLS
    from partialnet.bench.streams import finished_rule, warmed_rule
    from partialnet.runtimes.table import RUNTIMES

    if runtime == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO streams need pip install 'partialnet[openvino]'")
    protocol = replace(PROTOCOLS["quick"], warmup_seconds=0.3)
    module = importlib.import_module(f"partialnet.runtimes.{RUNTIMES[runtime].module}")
    x = np.zeros((1, 3, 64, 64), np.float32)
    measured = module.streams(str(digits_onnx), x, 2, 2, "fp32", warmed_rule(protocol), finished_rule(protocol))
    assert measured["warmup"]["seconds"] >= 0.3 and measured["warmup"]["iters"] >= protocol.warmup_iters
    assert measured["completed"] >= protocol.min_iters and len(measured["samples_s"]) >= protocol.min_iters


@pytest.mark.slow
def test_streams_mode_keeps_requests_in_flight(cli, tmp_path):
    result = cli(
        "bench", "--streams", "2", "--runtime", "onnxruntime,pytorch", "--protocol", "quick", "--imgsz", "64", "--batch", "2",
        "--json", tmp_path / "s.json",
    )
    assert result.code == 0, result.err
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["settings"]["streams"] == 2 and "in flight" in data["throughput"]
    rows = {r["runtime"]: r for r in data["rows"]}
    ort = rows["onnxruntime"]
    assert ort["status"] == "ok" and ort["async_run"]["streams"] == 2 and ort["async_run"]["completed"] >= 10
    assert ort["images_per_s"] == pytest.approx(2 * ort["async_run"]["completed"] / ort["async_run"]["seconds"], rel=0.01)
    assert ort["warmup"]["iters"] >= 2 and ort["warmup"]["seconds"] >= 0  # what the warm-up did, not what it was asked
    assert rows["pytorch"]["status"] == "skipped" and "no multi-stream mode" in rows["pytorch"]["reason"]
    assert "2 streams (async)" in result.out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["bench", "--streams", "0"], "--streams"),
        (["bench", "--streams", "many"], "--streams"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--streams", "2"], "one or the other"),
        (["bench", "partialnet_t1", "--ab", "partialnet_t0", "fasternet_t0"], "give no other sources"),
        (["bench", "--max-slowdown", "0.1"], "--max-slowdown gates an A/B run (--ab A B); to gate two separate runs, use partialnet compare"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--alpha", "0.05"], "--alpha is the A/B gate's significance level"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--max-slowdown", "10"], "expected a fraction from 0 to 1"),
        (["bench", "--ab", "partialnet_t0", "fasternet_t0", "--max-slowdown", "0.1", "--alpha", "nan"], "strictly between 0 and 1"),
    ],
)
def test_bad_streams_and_ab_usage_exit_2(cli, args, fragment):
    result = cli(*args)
    assert result.code == 2 and fragment in result.err, result.err


def test_a_stream_whose_session_fails_ends_the_run_with_its_error():
    """A session failing in its thread used to end the thread quietly, and the wait for the protocol's count never ended."""
    from partialnet.runtimes.onnxruntime import _drive

    class Broken:
        def run(self, outputs, feed):
            raise RuntimeError("the session failed")

    class Fine:
        def run(self, outputs, feed):
            time.sleep(0.001)

    with pytest.raises(RuntimeError, match="the session failed"):
        _drive([Fine(), Broken()], {}, lambda done, started: False)  # never finished by count: only the failure ends it
