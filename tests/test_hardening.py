"""The hardening suite: one test per class of hostile or careless input, each trying several cases.

Every case must end in a one-line error with the documented exit code (2 bad input, 3 not possible
here, 1 a check failed), never a traceback or exit 4, must not block, must stay within a bounded
amount of memory, and must never write through a symlink, onto an input, or leave a temporary behind.
"""

from __future__ import annotations

import errno
import json
import re
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import hostile
from helpers import golden, interruptible_popen, never_loaded_checkpoint, to_dpconv

PYTHON_CLI = [sys.executable, "-m", "partialnet"]


def run_cli(*args, timeout: float = 120) -> tuple[int, str, str]:
    """The real command in its own process: (exit code, stdout, stderr); a hang fails the test."""
    return run_cli_via(PYTHON_CLI, *args, timeout=timeout)


# Linux keeps a process's peak RSS across exec, so a child forked from this (large) test process would
# report the test's own peak. A tiny launcher in between starts from a small image: its children's
# peak, read with getrusage(RUSAGE_CHILDREN), is the command's own.
RSS_LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(f'peak-rss-kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); sys.exit(code)"
)


def run_cli_rss(*args, timeout: float = 120) -> tuple[int, str, str, float]:
    """Like run_cli, plus the command's peak resident memory in MB."""
    code, out, err = run_cli_via([sys.executable, "-c", RSS_LAUNCHER, *PYTHON_CLI], *args, timeout=timeout)
    lines = err.strip().splitlines()
    rss_kb = int(lines[-1].split()[-1])
    return code, out, "\n".join(lines[:-1]) + "\n", rss_kb / 1024


def run_cli_via(prefix: list[str], *args, timeout: float) -> tuple[int, str, str]:
    try:
        proc = subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"partialnet {' '.join(map(str, args))} blocked for {timeout}s")
    return proc.returncode, proc.stdout, proc.stderr


PROGRESS_LINE = re.compile(r"^\s*- .+: \d+\.\d\d s( \((stopped|failed)\))?$|^\[\d+/\d+\] ")  # finished stages and bench steps, on stderr


def assert_refused(code: int, err: str, fragment: str, expected: int = 2) -> None:
    """Exactly one error line, the last one; only progress lines (stages that did finish) may precede it."""
    lines = [line for line in err.strip().splitlines() if not PROGRESS_LINE.match(line)]
    assert code == expected, f"exit {code}, expected {expected}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert err.strip().splitlines()[-1] == lines[0], err
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ---------------------------------------------------------------- writes that can be redirected


def test_symlink_planted_at_the_temporary_name_is_never_followed(tmp_path, monkeypatch):
    """Even if an attacker guessed the temp name, O_EXCL creation skips it instead of writing through it."""
    from partialnet import outputs

    victim = tmp_path / "victim.txt"
    victim.write_text("owner's data")
    out = tmp_path / "result.json"
    names = iter(["planted", "fresh"] + [f"n{i}" for i in range(100)])
    monkeypatch.setattr(outputs.tempfile, "_get_candidate_names", lambda: names)
    (tmp_path / f".{out.name}.planted.partial").symlink_to(victim)
    outputs.write_json(out, {"ok": True})
    assert victim.read_text() == "owner's data"
    assert json.loads(out.read_text()) == {"ok": True}
    assert not out.is_symlink()


def test_symlink_at_the_final_name_is_replaced_with_force_never_written_through(tmp_path, cli):
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"owner's data")
    out = tmp_path / "t0.deploy.pt"
    out.symlink_to(victim)
    refused = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", out)
    assert_refused(refused.code, refused.err, "already exists")
    done = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", out, "--force")
    assert done.code == 0, done.err
    assert victim.read_bytes() == b"owner's data"
    assert out.is_file() and not out.is_symlink()


def test_a_fifo_or_a_device_at_the_output_is_never_replaced_even_with_force(tmp_path, cli):
    """As root in a CI container `-o /dev/null --force` would otherwise swap /dev/null for a file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "null-link.md"
    link.symlink_to("/dev/null")
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"schema": "x"}))
    for target, what in ((fifo, "is a FIFO, not a file"), (link, "is a character device (behind a link), not a file")):
        for force in ((), ("--force",)):
            refused = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", target, *force)
            assert_refused(refused.code, refused.err, what)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.readlink(link) == "/dev/null"


def test_a_failed_command_takes_back_the_folders_it_made(tmp_path):
    from partialnet.outputs import atomic_outputs

    with pytest.raises(RuntimeError):
        with atomic_outputs([tmp_path / "new" / "deep" / "a.json", tmp_path / "new" / "b.json"]) as staged:
            staged[0].write_text("{}")
            raise RuntimeError("the command failed after staging")
    assert list(tmp_path.iterdir()) == []
    with atomic_outputs([tmp_path / "kept" / "deep" / "a.json"]) as (one,):
        one.write_text("{}")
    assert (tmp_path / "kept" / "deep" / "a.json").read_text() == "{}"


def test_concurrent_writers_exactly_one_wins(tmp_path):
    """Two writers staged at once (both passed the existence check): the second publish says 'exists'."""
    from partialnet.errors import BadInput
    from partialnet.outputs import atomic_outputs

    out = tmp_path / "shared.json"
    with pytest.raises(BadInput, match="already exists"):
        with atomic_outputs([out]) as (first,):
            with atomic_outputs([out]) as (second,):
                second.write_text("second")
            first.write_text("first")
    assert out.read_text() == "second"
    assert leftovers(tmp_path) == []


def test_a_forced_group_that_fails_puts_back_what_it_replaced(tmp_path):
    """With --force the first output replaced the user's old file; a later output failing then took the new one
    back too, and the old file was gone although the message said "nothing was written"."""
    from partialnet.errors import BadInput
    from partialnet.outputs import Output, atomic_outputs

    old, blocked = tmp_path / "a.json", tmp_path / "b.json"
    old.write_text("the user's previous result")
    package = tmp_path / "m.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Data" / "old.bin").write_text("the previous package")
    for outputs in ([old, blocked], [Output(package, kind="dir"), old, blocked]):
        with pytest.raises(BadInput):
            with atomic_outputs(outputs, force=True) as staged:
                for item in staged:
                    if item.output.kind == "dir":
                        (item.path / "Data").mkdir(parents=True)
                        (item.path / "Data" / "new.bin").write_text("new")
                    else:
                        item.write_text("new")
                blocked.mkdir()  # made by another process while this one ran: b.json cannot be published
        blocked.rmdir()
        assert old.read_text() == "the user's previous result"
        assert (package / "Data" / "old.bin").read_text() == "the previous package" and not (package / "Data" / "new.bin").exists()
        assert leftovers(tmp_path) == []


def test_a_package_whose_manifest_cannot_be_published_is_taken_back(tmp_path):
    from partialnet.errors import BadInput
    from partialnet.outputs import Output, atomic_outputs

    package, manifest = tmp_path / "m.mlpackage", tmp_path / "m.mlpackage.json"
    with pytest.raises(BadInput, match="already exists"):
        with atomic_outputs([Output(package, kind="dir"), manifest]) as (tree, sidecar):
            tree.path.mkdir()
            (tree.path / "model.bin").write_text("x")
            sidecar.write_text("{}")
            manifest.write_text("another process's")
    assert not package.exists() and manifest.read_text() == "another process's" and leftovers(tmp_path) == []


def test_another_users_file_in_a_sticky_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    from partialnet import outputs
    from partialnet.errors import BadInput

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "x.json").write_text("someone else's")
    monkeypatch.setattr(outputs.os, "geteuid", lambda: 4242)  # neither the file's owner nor the folder's
    with pytest.raises(BadInput, match="belongs to another user in a shared \\(sticky\\) folder"):
        outputs.check_outputs([shared / "x.json"], (), force=True)


def test_another_users_link_in_a_shared_folder_is_not_followed(tmp_path, monkeypatch):
    """fs.protected_symlinks is off on many CI hosts: a link planted in a sticky world-writable folder by someone
    else would take our output wherever it points."""
    from partialnet import outputs
    from partialnet.errors import BadInput

    shared, elsewhere = tmp_path / "shared", tmp_path / "victim"
    shared.mkdir()
    elsewhere.mkdir()
    shared.chmod(0o1777)
    link = shared / "run42"
    link.symlink_to(elsewhere)
    real_lstat = os.lstat

    def planted_by_4343(path, *args, **kwargs):  # the link as user 4343 would have made it
        found = real_lstat(path, *args, **kwargs)
        return os.stat_result((*found[:4], 4343, *found[5:])) if Path(path) == link else found

    outputs.check_outputs([link / "result.json"])  # our own link is followed, as the kernel would
    monkeypatch.setattr(outputs.os, "lstat", planted_by_4343)
    monkeypatch.setattr(outputs.os, "geteuid", lambda: 4242)  # neither the link's owner nor the folder's
    with pytest.raises(BadInput, match="run42 is another user's link in a shared folder"):
        outputs.check_outputs([link / "result.json"])


def test_a_folder_planted_after_the_check_is_refused(tmp_path, monkeypatch):
    from partialnet import outputs
    from partialnet.errors import BadInput

    elsewhere = tmp_path / "victim"
    elsewhere.mkdir()
    real_check = outputs.check_outputs

    def check_then_plant(*args, **kwargs):
        checked = real_check(*args, **kwargs)
        (tmp_path / "run42").symlink_to(elsewhere)  # another user's link where our missing folder was to go
        return checked

    monkeypatch.setattr(outputs, "check_outputs", check_then_plant)
    with pytest.raises(BadInput, match="run42 appeared while this command ran and is a link"):
        outputs.write_file(tmp_path / "run42" / "result.json", "ours", force=True)
    assert list(elsewhere.iterdir()) == []


def test_the_folders_missing_at_the_check_are_forgotten_with_their_group(tmp_path):
    """A long-lived process (the Python API) kept every path's first check: a later command to the same path was
    judged against folders that had been missing hours before."""
    from partialnet import outputs

    out = tmp_path / "run7" / "result.json"
    outputs.check_outputs([out])
    assert outputs._RECORD.get().missing_at_check[out.absolute()] == (tmp_path / "run7",)
    outputs.write_file(out, "{}")
    assert out.absolute() not in outputs._RECORD.get().missing_at_check and out.read_text() == "{}"


def test_a_name_of_multibyte_characters_within_the_limit_is_written(tmp_path):
    """The temporary name kept 80 characters of the output's: 240 bytes of CJK plus the rest passed NAME_MAX."""
    from partialnet.outputs import write_file

    out = tmp_path / ("模" * 80 + ".json")
    write_file(out, "{}")
    assert out.read_text() == "{}" and leftovers(tmp_path) == []


def test_an_output_may_not_be_a_file_the_command_reads_or_writes_itself(tmp_path, cli, digits_onnx):
    """matrix's --json could be its own matrix.json (refused only after the whole run) or, with --force, an
    artifact's manifest; bench's --json could replace the manifest of the artifact it reads."""
    folder = tmp_path / "m"
    own = cli("matrix", "partialnet_t0", "--imgsz", "64", "--formats", "onnx", "-o", folder, "--json", folder / "matrix.json")
    assert_refused(own.code, own.err, "are the same file")
    manifest = folder / "partialnet_t0_onnx_fp32.onnx.json"
    theirs = cli("matrix", "partialnet_t0", "--imgsz", "64", "--formats", "onnx", "-o", folder, "--json", manifest, "--force")
    assert_refused(theirs.code, theirs.err, "are the same file")
    read = cli("bench", digits_onnx, "--runtime", "onnxruntime", "--json", f"{digits_onnx}.json", "--force")
    assert_refused(read.code, read.err, "is the input")


def test_default_outputs_cut_only_checkpoint_suffixes(tmp_path):
    from partialnet.api import default_output

    names = {n: default_output(str(tmp_path / n), ".onnx").name for n in ("epoch.10.pt", "epoch.20.pt", "model.pth.tar", "model.deploy.pt")}
    assert names == {"epoch.10.pt": "epoch.10.onnx", "epoch.20.pt": "epoch.20.onnx", "model.pth.tar": "model.onnx", "model.deploy.pt": "model.onnx"}


def test_a_stop_after_a_group_was_published_names_what_was_kept(tmp_path):
    from partialnet import cli as cli_module, outputs

    with outputs.command_record():
        assert cli_module.stopped_line("stopped by SIGTERM") == "error: stopped by SIGTERM; temporary files removed, nothing published"
        with outputs.scratch_folder("partialnet-test-") as scratch:  # a bench row's deploy model: no output of the command
            outputs.write_file(scratch / "deploy.pt", "x")
            assert cli_module.stopped_line("stopped by SIGTERM").endswith("nothing published")
        outputs.write_file(tmp_path / "a.onnx", "x")
        outputs.write_file(tmp_path / "a.onnx.json", "{}")
        assert cli_module.stopped_line("stopped by SIGTERM").endswith(
            f"published before the stop, and kept: {tmp_path / 'a.onnx'} and 1 more (a rerun replaces them with --force)")
    with outputs.command_record():  # the next command starts with nothing published
        assert cli_module.stopped_line("stopped by SIGTERM").endswith("nothing published")


@pytest.mark.slow
def test_concurrent_cli_exports_to_one_path(tmp_path):
    """Two real processes, same output: one succeeds, the other exits 2 naming the path; no partial file left."""
    out = tmp_path / "same.deploy.pt"
    args = [*PYTHON_CLI, "fold", "partialnet_t0", "--imgsz", "64", "-o", str(out)]
    # one thread each: two 2-thread pools on 2 cores spin on each other (4 s became 18 s under load); the race is the point
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(p.communicate(timeout=300)[1], p.returncode)[::-1] for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "already exists" in loser and "Traceback" not in loser
    assert leftovers(tmp_path) == [] and out.is_file()


def test_every_write_goes_through_the_output_module():
    """No module but partialnet.outputs opens files for writing; writers write into what it staged."""
    import re

    root = Path(__file__).resolve().parents[1] / "partialnet"
    writes = re.compile(r"write_text\(|write_bytes\(|\bopen\(.*['\"][wax]|torch\.save\(|onnx\.save|savefig\(|np\.save\(|json\.dump\(")
    through_outputs = ("staged", "savefig(target")
    private_scratch = {  # inside a TemporaryDirectory (mode 0700) that only this process can enter
        "bench/run.py": ("spec_path.write_text(", "np.save(path"),
        "bench/worker.py": ("result_path.write_text(",),
        "bench/matrix_beside.py": ("(self.folder / SPEC).write_text(", "(work / RESULT).write_text(", "(self.folder / LOG).open("),  # mkdtemp
        # the quantizer's input and the node -> layer map for the INT8 report, in the export's scratch dir
        "exporters/onnx.py": ("fp32_path.write_bytes(", "(workdir / LAYERS_FILE).write_text("),
        # and the build script's text: the lines that write the engine's manifest on the GPU machine, not here
        "exporters/tensorrt.py": ("engine_path.write_bytes(", '(workdir / "model.engine.json").write_text(',
                                  "\"with open(sys.argv[1], 'w') as f:\",", '"    json.dump(record, f, indent=1)",'),
        "exporters/sidecar.py": ("scratch.write_bytes(", "sidecar(scratch).write_text("),  # .pte/.tflite copies, called with workdir
        # on a target: the row's spec, inside the folder `mktemp -d` made there for this command (mode 0700)
        "remote/agent.py": ('(work / "spec.json").write_bytes(',),
        # the engine's manifest beside the engine fetched into export --target's private scratch folder
        "remote/engine.py": ("exporter.sidecar(local).write_text(",),
        # commands a refusal gives the user to run on a file they trust: text, not writes
        "checkpoint.py": ('KEEP_WEIGHTS = "torch.save(', 'RESAVE_COPIES = "torch.save(', '"torch.save(obj.state_dict() if hasattr'),
    }
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "outputs.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not writes.search(line) or any(t in line for t in through_outputs + private_scratch.get(rel, ())):
                continue
            offenders.append(f"{rel}:{lineno}: {line.strip()}")
    assert offenders == []


# ---------------------------------------------------------------- outputs never clobber inputs or each other


def test_outputs_never_clobber_inputs_or_each_other(tmp_path, cli):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(golden("t0")[0].read_bytes())
    before = ckpt.read_bytes()
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    (tmp_path / "a_dir").mkdir()
    cases = [
        (["bench", ckpt, "--json", ckpt, "--force"], "is the input"),
        (["bench", ckpt, "--md", ckpt], "is the input"),
        (["bench", "partialnet_t0", "--json", existing], "already exists"),
        (["bench", "partialnet_t0", "--json", tmp_path / "r.json", "--csv", tmp_path / "r.json"], "are the same file"),
        (["bench", "partialnet_t0", "--plot", tmp_path / "a_dir", "--force"], "is a directory; give a file name"),
        (["fold", ckpt, "-o", ckpt, "--force"], "is the input"),
        (["fold", ckpt, "-o", tmp_path / "a.pt", "--report", tmp_path / "a.pt"], "are the same file"),
        (["fold", ckpt, "-o", tmp_path / "a_dir"], "is a directory"),
        (["export", ckpt, "-o", tmp_path / "link.onnx", "--force"], "is the input"),  # a symlink to the input is the input
    ]
    (tmp_path / "link.onnx").symlink_to(ckpt)
    for args, fragment in cases:
        result = cli(*args)
        assert_refused(result.code, result.err, fragment)
    assert ckpt.read_bytes() == before
    assert existing.read_text() == "{}"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["export", "CKPT", "--opset", "99"], "--opset 99"),
        (["export", "CKPT", "--opset", "5"], "--opset 5"),
        (["export", "CKPT", "--imgsz", "100000"], "image size 100000x100000"),
        (["export", "CKPT", "--imgsz", "0"], "image size 0x0"),
        (["export", "CKPT", "--imgsz", "9" * 5000], "expected a size"),
        (["export", "CKPT", "--batch", "100000000"], "batch 100000000"),
        (["export", "CKPT", "--format", "nope"], "unknown format"),
        (["export", "CKPT", "--atol", "nan"], "--atol nan"),
        (["export", "CKPT", "--min-cosine", "2"], "--min-cosine 2"),
        (["export", "CKPT", "-o", "FILE/sub/x.onnx"], "not a directory"),
        (["export", "CKPT", "-o", "out.txt"], "must end in .onnx"),
        (["fold", "CKPT", "-o", "FILE/x.pt"], "not a directory"),
        (["bench", "CKPT", "--device", "tpu"], "--device 'tpu'"),
        (["bench", "CKPT", "--runtime", "nope"], "unknown runtime"),
        (["bench", "CKPT", "--precision", "int3"], "--precision"),
        (["bench", "CKPT", "--batch", "0"], "--batch"),
        (["bench", "CKPT", "--protocol", "fast"], "protocol"),
        (["verify", "ART", "--ref", "CKPT", "--min-top1", "nan"], "--min-top1 nan"),
        (["compare", "A", "B", "--alpha", "0"], "--alpha 0"),
        (["compare", "A", "B", "--alpha", "nan"], "--alpha nan"),
        (["compare", "A", "B", "--max-slowdown", "nan"], "--max-slowdown nan"),
        (["compare", "A", "B", "--max-slowdown", "-1"], "--max-slowdown -1"),
        # control characters in an output name: a newline ends a script's comment, ESC rewrites the terminal
        (["export", "CKPT", "-o", "a\nrm -rf x\n.onnx"], "control characters (\\n)"),
        (["export", "CKPT", "-f", "trt", "-o", "a\rb.engine"], "control characters (\\r)"),
        (["fold", "CKPT", "-o", "x\x1b[2J.pt"], "control characters (\\x1b)"),
        (["bench", "CKPT", "--json", "r\x9b31m.json"], "control characters (\\x9b)"),
        (["export", "CKPT", "-f", "coreml", "-o", "m\x07.mlpackage"], "control characters (\\x07)"),
        # a folder where a file is named: pathlib reads `x.pt/` as x.pt, and `.` has no name (fold's report name was exit 4)
        (["fold", "CKPT", "-o", ""], "-o '' names a folder, not a file"),
        (["fold", "CKPT", "-o", "."], "-o '.' names a folder"),
        (["fold", "CKPT", "-o", "/"], "-o '/' names a folder"),
        (["fold", "CKPT", "-o", "x.pt/"], "-o 'x.pt/' names a folder"),
        (["fold", "CKPT", "-o", "out/."], "-o 'out/.' names a folder"),  # pathlib reads it as the file `out`
        (["fold", "CKPT", "--report", "r/"], "--report 'r/' names a folder"),
        (["export", "CKPT", "-o", "q.onnx/"], "-o 'q.onnx/' names a folder"),
        (["digits", "-o", "./"], "-o './' names a folder"),
        (["export", "CKPT", "--int8", "--data", ""], "--int8 needs calibration data"),  # never the current folder
        # result files too: typed as paths, `x.json/` was read as the file x.json (claims timed its rows, then wrote it)
        (["bench", "CKPT", "--json", "r.json/"], "'r.json/' names a folder, not a file"),
        (["bench", "CKPT", "--csv", "r.csv/"], "'r.csv/' names a folder"),
        (["claims", "--protocol", "quick", "--json", "c.json/"], "'c.json/' names a folder"),
        (["claims", "--md", "c.md/."], "'c.md/.' names a folder"),
        (["matrix", "CKPT", "--plot", "m.png/"], "'m.png/' names a folder"),
        (["report", "FILE", "-o", "r.md/"], "'r.md/' names a folder"),
        (["report", "FILE", "--json", "r.json/"], "'r.json/' names a folder"),
        (["digits", "-o", "d.pt", "--seed", str(2**64)], "--seed 18446744073709551616: expected an integer from 0 to"),  # was exit 4 after the data
        (["digits", "-o", "d.pt", "--seed", "-1"], "--seed -1: expected an integer from 0"),
        (["export", "CKPT", "--imgsz", "64,"], "--imgsz '64,': expected a size"),  # an empty part was dropped silently
        (["export", "CKPT", "--imgsz", "64,,64"], "--imgsz '64,,64': expected a size"),
    ],
)
def test_bad_options_are_refused_before_any_checkpoint_is_loaded(args, fragment, tmp_path, cli, monkeypatch):
    from partialnet import checkpoint, folding

    def must_not_load(*a, **k):
        raise AssertionError("a checkpoint was loaded before the options were checked")

    # both holders of the reader: folding imported for the first time under the patch kept the stand-in for
    # the rest of the run (a deploy-file test after this one alone failed)
    monkeypatch.setattr(checkpoint, "read_file", must_not_load)
    monkeypatch.setattr(folding, "read_file", must_not_load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("a regular file")
    ckpt = never_loaded_checkpoint(tmp_path / "model.pth")
    names = {"CKPT": ckpt, "ART": tmp_path / "a.onnx", "FILE/sub/x.onnx": tmp_path / "FILE/sub/x.onnx", "FILE/x.pt": tmp_path / "FILE" / "x.pt"}
    result = cli(*[names.get(a, a) for a in args])
    assert result.code == 2, result.err
    assert fragment in result.err and "Traceback" not in result.err and len(result.err.strip().splitlines()) <= 2


# ---------------------------------------------------------------- numbers: NaN, infinities, dtypes


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_artifact_outputs_fail_verification(value, tmp_path, cli):
    artifact = hostile.nan_logits_onnx(tmp_path / "bad.onnx", value)
    result = cli("verify", artifact, "--ref", "partialnet_t0", "--samples", "2")
    assert result.code == 1, result.err
    assert "non-finite" in result.err and "Traceback" not in result.err
    assert "tightest that would pass: none (the outputs are not all finite numbers)" in result.out + result.err  # was "max |Δ| ≤ nan"


def test_a_bench_of_an_artifact_with_non_finite_outputs_fails_its_row(tmp_path, cli):
    """bench measures a given artifact as given, but not a broken one: its row fails (exit 1), no NaN parity shown as ok."""
    artifact = hostile.nan_logits_onnx(tmp_path / "bad.onnx", float("nan"))
    result = cli("bench", artifact, "--runtime", "onnxruntime", "--protocol", "quick", "--json", tmp_path / "r.json")
    assert result.code == 1 and "1 row(s) failed" in result.err, result.err
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert row["status"] == "failed" and "1000 non-finite value(s)" in row["reason"] and "stats" not in row


def test_artifact_with_other_logits_shape_is_named(tmp_path, cli):
    artifact = hostile.nan_logits_onnx(tmp_path / "ten.onnx", 0.0, classes=10)
    result = cli("verify", artifact, "--ref", "partialnet_t0", "--samples", "2")
    assert_refused(result.code, result.err, "logits of shape [2, 10] but the reference gives [2, 1000]")


def test_hostile_deploy_headers_are_refused_before_allocating(tmp_path):
    from partialnet import BadInput, load_deploy
    from partialnet.folding import DEPLOY_FORMAT, DEPLOY_VERSION

    arch = {"family": "partialnet", "embed_dim": 1_000_000, "depths": [1, 2, 8, 2], "act": "gelu", "pat_sp": False,
            "num_classes": 1000, "mixers": []}
    for name, header in (("wide", arch), ("classes", {**arch, "embed_dim": 32, "num_classes": 10**9})):
        torch.save({"format": DEPLOY_FORMAT, "version": DEPLOY_VERSION, "arch": header, "imgsz": [64, 64], "state_dict": {}},
                   tmp_path / f"{name}.pt")
        with pytest.raises(BadInput, match="no released variant"):
            load_deploy(tmp_path / f"{name}.pt")


def test_a_deploy_header_sized_for_a_huge_input_costs_no_memory_before_its_weights_are_checked(tmp_path):
    """A 20 MB T1 deploy file re-headed to 4096x4096: its attention bias would be 4 x 16384^2 floats. The rebuild
    allocates that buffer unread (the file must hold it) instead of computing it; the weights' check refuses the file."""
    from partialnet import load_checkpoint
    from partialnet.folding import fold, save_deploy

    model, _ = load_checkpoint(golden("t1")[0])
    path = tmp_path / "t1.deploy.pt"
    save_deploy(path, *fold(model, (64, 64)), {})
    obj = torch.load(path, weights_only=True)
    obj["imgsz"] = [4096, 4096]
    torch.save(obj, path)
    code = ("import sys; from partialnet import BadInput; from partialnet.folding import load_deploy\n"
            "try:\n    load_deploy(sys.argv[1])\nexcept BadInput as exc:\n    print(exc)\n"
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    message, peak_kb = done.stdout.strip().splitlines()
    assert "deploy weights do not match its header (size mismatch for" in message and "attn_bias" in message, message
    assert int(peak_kb) < 1_000_000, f"{int(peak_kb) >> 10} MB resident"  # 320 MB measured; computing the bias took GBs


def test_non_finite_values_never_reach_json(tmp_path):
    from partialnet.outputs import dumps_strict, write_json
    from partialnet.verify import Tolerances, judge, metrics, non_finite

    text = dumps_strict({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("-inf"), "d": np.int64(3)})
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data["a"] is None and data["b"] == [1.0, None] and data["c"] is None and data["d"] == 3
    assert [n["field"] for n in data["non_finite"]] == ["$.a", "$.b[1]", "$.c"]
    write_json(tmp_path / "r.json", {"x": float("nan")})
    assert json.loads((tmp_path / "r.json").read_text())["x"] is None
    out, ref = np.full((2, 10), np.nan), np.zeros((2, 10))
    with np.errstate(all="ignore"):
        failures = judge(metrics(out, ref), Tolerances(max_abs=float("inf")), non_finite(out, ref))
    assert failures and "non-finite" in failures[0]


def test_a_zero_tolerance_asks_for_bit_exact_outputs():
    """`--atol 0` is a legal tolerance (bit-exact): a difference fails the check, never divides by the tolerance (exit 4)."""
    from partialnet.verify import Tolerances, judge, metrics

    out, ref = np.ones((2, 10)), np.ones((2, 10))
    assert judge(metrics(out, ref), Tolerances(max_abs=0.0)) == []
    out[1, 3] += 1e-7
    assert judge(metrics(out, ref), Tolerances(max_abs=0.0)) == ["max |Δ| 1e-07 > 0.0"]
    assert judge(metrics(out * 1e40, ref), Tolerances(max_abs=1e-4))[0].endswith("(by 1e+44x)")


def test_printed_figures_tell_the_verdict_the_real_ones_do():
    """Rounded to nearest, a failing cosine printed as "1.00000000 < 1" and the tightest max |Δ| that would pass
    (1.4715e-07 shown as 1.47e-07) failed when passed back: bounds round toward passing, failures print apart."""
    from partialnet.rounding import apart, at_least, at_most
    from partialnet.verify import Tolerances, judge

    assert at_least(1.4715e-07) == "1.48e-07" and at_least(1.47e-07) == "1.47e-07" and at_least(9.996e-05) == "1.00e-04"
    assert at_most(0.9999999999994644) == "0.99999999" and at_most(1.0) == "1.00000000"
    for value in (1.4715e-07, 3.3333e-05, 0.12345, 9.9999e-3):
        assert float(at_least(value)) >= value and float(at_most(value)) <= value
    values = {"max_abs": 1.4715e-07, "max_rel": 0.0, "min_cosine": 0.9999999999994644, "top1_agreement": 0.9995}
    assert judge(values, Tolerances(max_abs=1.47e-07, min_cosine=1.0, min_top1=1.0)) == [
        "max |Δ| 1.471e-07 > 1.47e-07 (by 1.001x)", "cosine 0.999999999999 < 1.0 (short by 5.36e-13)", "top-1 agreement 99.95% < 100%"]
    assert apart(0.5, 0.9, "%") == ("50.0%", "90%") and apart(-0.877, 0.99999) == ("-0.877", "0.99999")  # the bound as given


def test_weights_are_checked_after_the_cast_and_by_dtype(tmp_path, cli, t0_state_dict):
    cases = {
        "overflow": ("stages.0.blocks.0.mlp.0.weight", lambda t: torch.full(t.shape, 1e300, dtype=torch.float64), "NaN/Inf values (after the cast"),
        "nan": ("head.bias", lambda t: torch.full(t.shape, float("nan")), "NaN/Inf"),
        "complex": ("head.bias", lambda t: torch.zeros(t.shape, dtype=torch.complex64), "complex dtype"),
        "integer": ("head.weight", lambda t: torch.zeros(t.shape, dtype=torch.int32), "head.weight has dtype int32"),
        "bool": ("head.bias", lambda t: torch.zeros(t.shape, dtype=torch.bool), "head.bias has dtype bool"),
        "float_counter": ("patch_embed.norm.num_batches_tracked", lambda t: torch.tensor(1.5), "keeps an integer"),
    }
    for name, (key, make, fragment) in cases.items():
        sd = dict(t0_state_dict)
        sd[key] = make(sd[key])
        path = tmp_path / f"{name}.pth"
        torch.save(sd, path)
        result = cli("info", path)
        assert_refused(result.code, result.err, fragment)
    fine = dict(t0_state_dict)
    fine = {k: (v.double() if v.is_floating_point() else v) for k, v in fine.items()}
    torch.save(fine, tmp_path / "float64.pth")
    assert cli("info", tmp_path / "float64.pth").code == 0


# ---------------------------------------------------------------- sizes: bounded memory and time


LARGEST_REAL_MODEL_MB = 1200  # the largest variant's load + fold peak is under this; hostile files must stay near it


@pytest.mark.slow
def test_expanded_stride_and_sparse_giants_stay_within_memory(tmp_path, t0_state_dict):
    """A 10 GB head stored with zero strides, and a 4 GB sparse safetensors tensor, refused in bounded memory."""
    expanded = tmp_path / "expanded.pth"
    torch.save(hostile.expanded_head(t0_state_dict, 2_000_000), expanded)
    assert expanded.stat().st_size < 50 << 20
    code, _, err, rss = run_cli_rss("info", expanded)
    assert_refused(code, err, "2000000 classes")
    assert rss < LARGEST_REAL_MODEL_MB, f"peak RSS {rss:.0f} MB"

    sparse = tmp_path / "sparse.safetensors"
    size = 4 << 30
    header = {"patch_embed.proj.weight": {"dtype": "F32", "shape": [size // 4 // 48, 3, 4, 4], "data_offsets": [0, size // 4 // 48 * 48 * 4]}}
    blob = hostile.safetensors_bytes(header)
    with sparse.open("wb") as f:
        f.write(blob)
        f.truncate(len(blob) + header["patch_embed.proj.weight"]["data_offsets"][1])
    code, _, err, rss = run_cli_rss("info", sparse)
    assert code == 2 and "Traceback" not in err, err
    assert rss < LARGEST_REAL_MODEL_MB, f"peak RSS {rss:.0f} MB"


@pytest.mark.slow
def test_compare_bootstrap_memory_is_bounded(monkeypatch):
    """Resamples are drawn chunk by chunk: memory follows the chunk, not the row's length. Shown with a chunk
    32x smaller than the real one and a row 10x shorter than the sample cap, so it costs seconds, not twenty."""
    from partialnet.bench import stats

    monkeypatch.setattr(stats, "BOOTSTRAP_CHUNK_VALUES", stats.BOOTSTRAP_CHUNK_VALUES >> 5)
    samples = np.random.default_rng(0).lognormal(-5, 0.1, 20_000)
    tracemalloc.start()
    try:
        low, high = stats.bootstrap_median_ci(samples)
        stats.ratio_of_medians(samples, samples * 1.01)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert low < np.median(samples) < high
    unchunked = 2000 * len(samples) * 16
    assert peak < 24 << 20, f"bootstrap peaked at {peak / 2**20:.0f} MB (unchunked: {unchunked / 2**20:.0f} MB)"


def test_a_runner_reads_the_precision_from_the_graph_not_its_metadata(digits_onnx, tmp_path):
    """An fp32 ONNX whose metadata says int8 was timed and published as an int8 row, and compare matches rows by precision."""
    import onnx

    from partialnet.runtimes.onnxruntime import OnnxRuntimeRunner

    proto = onnx.load(str(digits_onnx))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "precision": "int8"})
    lying = tmp_path / "lying.onnx"
    onnx.save(proto, str(lying))
    with OnnxRuntimeRunner(lying, threads=1) as runner:
        assert runner.precision == "fp32"


@pytest.mark.parametrize("key, value, fragment", [
    ("mean", "[0, 0, 0]", "its metadata says mean [0, 0, 0], but it was made for mean [0.485, 0.456, 0.406]"),
    ("std", "not json", "its metadata says std not json"),
    ("imgsz", "224,224", "its metadata says imgsz 224,224, but its graph takes 64,64"),
    ("num_classes", "1000", "its metadata says num_classes 1000, but the model it was exported from has 10"),
])
def test_verify_fails_an_artifact_whose_metadata_would_feed_it_wrongly(digits_onnx, digits_ckpt, tmp_path, cli, key, value, fragment):
    """Parity runs on tensors: a wrong mean in the metadata a deployment reads verified, and shipped."""
    import onnx

    proto = onnx.load(str(digits_onnx))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, key: value})
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    result = cli("verify", edited, "--ref", digits_ckpt)
    assert_refused(result.code, result.err, fragment, expected=1)


def test_an_artifact_that_loads_but_fails_in_its_runtime_fails_the_check(t0_onnx, tmp_path, cli):
    """A batch dimension declared free over a graph fixed to batch 1: ONNX Runtime's own error was exit 4."""
    import onnx

    proto = onnx.load(str(t0_onnx))
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(proto, str(tmp_path / "free.onnx"))
    result = cli("verify", tmp_path / "free.onnx", "--ref", "partialnet_t0", "--samples", "2")
    assert_refused(result.code, result.err, "the artifact does not run in onnxruntime on a batch of 4: [ONNXRuntimeError]", expected=1)


def test_an_artifact_recording_a_copy_its_ref_lacks_says_so(t0_onnx, tmp_path, cli):
    """The user gave no --weights: "--weights model loads another: leave --weights out" told them to do what they did."""
    import onnx

    proto = onnx.load(str(t0_onnx))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "source_weights": "ghost_ema"})
    onnx.save(proto, str(tmp_path / "ghost.onnx"))
    result = cli("verify", tmp_path / "ghost.onnx", "--ref", "partialnet_t0", "--samples", "2")
    assert_refused(result.code, result.err, "records that it was exported from the 'ghost_ema' copy, which partialnet_t0 does not hold: "
                                            "name the copy it came from with --weights NAME")


def test_running_out_of_room_is_not_possible_here_not_a_bug(tmp_path, cli, monkeypatch):
    """Memory for a size the limits allow but this machine cannot hold, or a full disk under standard output."""
    import subprocess
    import sys

    from partialnet import api

    def too_big(model, imgsz):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(api, "_fold", too_big)
    result = cli("fold", "partialnet_t0", "-o", tmp_path / "x.pt")
    assert_refused(result.code, result.err, "out of memory (an allocation of 8,589,934,592 bytes): this machine cannot hold the model", expected=3)
    assert result.err.rstrip().endswith("; a smaller --imgsz needs less")  # fold has no --batch to lower
    assert not list(tmp_path.iterdir())
    from partialnet.cli import exhausted_line

    # the remedy names the flags the command has
    for argv, remedy in ((["export", "m.pth"], "a smaller --imgsz or --batch needs less"), (["digits", "-o", "d.pt"], "a smaller --imgsz needs less"),
                         (["verify", "m.onnx"], "run it on a machine with more memory")):
        assert exhausted_line(MemoryError(), argv).endswith(f"and batch; {remedy}"), argv

    # a petabyte asked for is a wrong shape (a bug: exit 4), and a library's prose about memory is no allocator's refusal
    assert exhausted_line(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1125899906842624 bytes.")) is None
    assert exhausted_line(RuntimeError("the cache ran out of memory slots")) is None
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "partialnet", "formats"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 3 and "(writing the command's output or its working files)" in done.stderr and "internal error" not in done.stderr, done.stderr


def test_a_stop_is_taken_at_the_next_stage_and_a_failed_stage_reads_failed():
    """A stage boundary is a safe point (hardening.md): a stop asked for during one stage is taken before the next
    begins, not after it. A stage that ended in an error reads (failed), not (stopped)."""
    from partialnet import progress, signals
    from partialnet.errors import BadInput
    from partialnet.signals import Interrupted

    ended = []

    class Listener:
        def started(self, name, detail):
            pass

        def finished(self, name, seconds, how="ok"):
            ended.append((name, how))

    with progress.recording(Listener()):
        with pytest.raises(BadInput), progress.stage("load"):
            raise BadInput("no")
        signals._state["pending"] = signal.SIGTERM
        try:
            with pytest.raises(Interrupted), progress.stage("fold"):
                raise AssertionError("the stage began after the stop was asked for")
        finally:
            signals._state["pending"] = None
    assert ended == [("load", "failed")]


def test_a_newline_in_a_file_name_does_not_break_the_info_title(tmp_path, cli, t0_state_dict):
    torch.save(t0_state_dict, tmp_path / "a\nerror: forged.pt")
    result = cli("info", tmp_path / "a\nerror: forged.pt")
    assert result.code == 0, result.err
    assert "a\\nerror: forged.pt" in result.out and not any(line.startswith("error: forged") for line in result.out.splitlines())


def test_a_wrapper_too_deep_says_so_and_keys_are_counted(tmp_path, cli, t0_state_dict):
    nested = t0_state_dict
    for _ in range(30):
        nested = {"model": nested}
    torch.save(nested, tmp_path / "deep.pt")
    torch.save({f"k{i}": 1 for i in range(9)}, tmp_path / "many.pt")
    deep, many = cli("info", tmp_path / "deep.pt"), cli("info", tmp_path / "many.pt")
    assert_refused(deep.code, deep.err, "no model weights found within 4 levels of wrapper dicts")  # was: "top-level keys are [model]"
    assert_refused(many.code, many.err, "top-level keys are [k0, k1, k2, k3, k4, k5, … (3 more)]")


def test_declared_sizes_beyond_the_limits_are_refused(tmp_path, cli):
    huge = hostile.onnx_declaring_input(tmp_path / "huge.onnx", [100000, 3, 100000, 100000])
    result = cli("verify", huge, "--ref", "partialnet_t0")
    assert_refused(result.code, result.err, "declared input")
    negative = hostile.onnx_declaring_input(tmp_path / "neg.onnx", [1, 3, -64, 64])
    result = cli("verify", negative, "--ref", "partialnet_t0")
    assert_refused(result.code, result.err, "is not (batch, 3, H, W)")
    images = tmp_path / "images"
    images.mkdir()
    (images / "bomb.png").write_bytes(hostile.png_declaring(100_000, 100_000))
    result = cli("export", "partialnet_t0", "--imgsz", "64", "--images", images, "-o", tmp_path / "x.onnx")
    assert_refused(result.code, result.err, "bomb.png: refused: 10,000,000,000 pixels, over the 50,000,000-pixel limit (a decompression bomb")


@pytest.mark.parametrize("size", [(20_000, 1), (1, 30_000)], ids=["wide", "tall"])
def test_a_thin_strip_is_resized_only_where_the_crop_keeps_it(tmp_path, size):
    """A 99-byte PNG of 20000x1 pixels passes the pixel limit, but resizing its short side to 256 made a
    5 M x 256 image (5.1 GB resident, measured) before the crop kept 224x224 of it."""
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(tmp_path / "strip.png")
    # VmHWM: this program's own peak (ru_maxrss would count the pages of the pytest process it was forked from)
    probe = ("import re; from partialnet.preprocess import preprocess; "
             f"a = preprocess({str(tmp_path / 'strip.png')!r}, (224, 224)); "
             "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
             "print(a.shape, float(a[0].mean()), hwm // 1024)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shape, red, peak_mb = done.stdout.rsplit(" ", 2)
    assert shape == "(3, 224, 224)" and float(red) > 1.0  # the strip's own red, normalised, fills the crop
    assert int(peak_mb) < 300, f"peak resident {peak_mb} MB"


@pytest.mark.slow
def test_non_regular_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    sock = hostile.bound_socket(tmp_path / "sock.pth")
    (tmp_path / "zero.pth").symlink_to("/dev/zero")
    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "a.png")
    try:
        for path, fragment in ((fifo, "FIFO"), (tmp_path / "sock.pth", "socket"), (tmp_path / "zero.pth", "character device"),
                               (tmp_path, "directory")):
            code, _, err = run_cli("info", path, timeout=60)
            assert_refused(code, err, fragment)
        code, _, err = run_cli("export", "partialnet_t0", "--imgsz", "64", "--images", images, "-o", tmp_path / "x.onnx", timeout=60)
        assert_refused(code, err, "FIFO")
    finally:
        sock.close()


# ---------------------------------------------------------------- signals


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_export_removes_temporaries(sig, code, tmp_path):
    out = tmp_path / "x.onnx"
    proc = interruptible_popen([*PYTHON_CLI, "export", "partialnet_t0", "--imgsz", "64", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not leftovers(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leftovers(tmp_path), "the export never staged its output"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.strip().splitlines() if not PROGRESS_LINE.match(line)]
    assert "nothing published" in lines[-1], err
    assert lines[:-1] == [f"{signal.Signals(sig).name}: stopping after the current step (again to force)"], err  # no traceback
    assert "" not in err.strip().splitlines(), err  # no blank lines in a log
    assert list(tmp_path.iterdir()) == []


def test_sigterm_to_a_python_caller_of_the_api_removes_what_it_staged_and_ends_it(tmp_path):
    """A script calling api.export, stopped by SIGTERM (a cancelled CI job, a service shut down): Python's default
    killed it at once, leaving the staged output-sized file beside the output and the scratch folder in $TMPDIR.
    Now the export stops at its next safe point, removes both, and the process still ends by SIGTERM."""
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    scratch.mkdir()
    script = ("from partialnet import api, ExportOptions\n"
              f"api.export('partialnet_t0', 'onnx', ExportOptions(imgsz=(64, 64)), output={str(out / 'm.onnx')!r})\n"
              "print('returned')\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 240
    while not leftovers(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leftovers(out), "the export never staged its output"
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM and "returned" not in stdout, (proc.returncode, err)  # ended as SIGTERM ends it
    assert "SIGTERM: stopping after the current step (again to force)" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == [] and not [p.name for p in scratch.iterdir() if p.name.startswith("partialnet-")]


def test_a_swallowed_stop_request_still_stops_before_publishing(tmp_path):
    """A library that turns our Interrupted into its own error and carries on must not let the command publish."""
    from partialnet import signals
    from partialnet.outputs import Output, atomic_outputs

    signals._state["pending"] = None
    try:
        with pytest.raises(signals.Interrupted):
            with atomic_outputs([Output(tmp_path / "x.txt", "-o")], False) as (staged,):
                staged.write_text("x")
                try:
                    with signals.deferred():
                        signals._state["pending"] = signal.SIGINT  # what the handler records inside a native call
                except signals.Interrupted:
                    pass  # swallowed, as a library's callback wrapper might
        assert list(tmp_path.iterdir()) == []
    finally:
        signals._state["pending"] = None


# ---------------------------------------------------------------- exit codes and messages


def _torchscript(path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, but its files are still out there
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


def _hostile_checkpoints(tmp: Path, sd: dict) -> dict[str, tuple[Path, str]]:
    """name -> (file, fragment of the one-line error). Each would once have ended in exit 4 or a wrong message."""
    cases: dict[str, tuple[Path, str]] = {}

    def save(name, obj, fragment):
        torch.save(obj, tmp / name)
        cases[name] = (tmp / name, fragment)

    def raw(name, data: bytes, fragment):
        (tmp / name).write_bytes(data)
        cases[name] = (tmp / name, fragment)

    raw("two_bytes.pth", b"\x80\x02", "too short to be a checkpoint")
    _torchscript(tmp / "scripted.pt")
    cases["scripted.pt"] = (tmp / "scripted.pt", "TorchScript archive")
    torch.export.save(torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),)), tmp / "program.pth")  # a .pt2 by another name
    cases["program.pth"] = (tmp / "program.pth", "is a torch.export program (.pt2, torch.export.save)")
    save("int_keys.pth", {**{i: v for i, v in enumerate(sd.values())}, "patch_embed.proj.weight": sd["patch_embed.proj.weight"]}, "not a string")
    save("zero_classes.pth", {**sd, "head.weight": torch.zeros(0, 1280), "head.bias": torch.zeros(0)}, "0 classes")
    save("sparse.pth", {**sd, "head.bias": torch.zeros(1000).to_sparse()}, "sparse")
    save("meta.pth", {**sd, "head.bias": torch.empty(1000, device="meta")}, "meta tensor")
    save("deep_wrappers.pth", hostile.nested(50, sd), "no model weights found")
    dp = to_dpconv(sd, {})
    key = "stages.0.blocks.0.spatial_mixing.one_channel"
    save("dpconv_empty.pth", {**dp, key: torch.zeros(0, dtype=torch.int32)}, "holds 0 values")
    save("dpconv_nan.pth", {**dp, key: torch.tensor(float("nan"))}, "expected an integer")
    save("dpconv_huge.pth", {**dp, key: torch.tensor(10**6, dtype=torch.int32)}, "outside [0, 32]")
    with (tmp / "ops.pth").open("wb") as f:  # a legacy-format pickle that would build 3 M objects
        f.write(b"\x80\x02]q\x00(" + b"K\x01" * 3_000_000 + b"e.")
    cases["ops.pth"] = (tmp / "ops.pth", "opcodes")
    st = {
        "negative_shape.safetensors": ({"a": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}, b"\0" * 16, "non-negative"),
        "string_shape.safetensors": ({"a": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, b"\0" * 16, "shape"),
        # empty, yet too wide for torch's strides (once a 12-line C++ backtrace, exit 4)
        "empty_but_huge.safetensors": ({"a": {"dtype": "F32", "shape": [0, 2**64], "data_offsets": [0, 0]}}, b"", "up to 2,147,483,647"),
        "strides_overflow.safetensors": ({"a": {"dtype": "F32", "shape": [0, 2**30, 2**30, 2**30], "data_offsets": [0, 0]}}, b"",
                                         "strides overflow"),
        "list_metadata.safetensors": ({"__metadata__": ["x"], "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, "__metadata__"),
        "int_metadata.safetensors": ({"__metadata__": {"k": 1}, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, "__metadata__"),
        "overlap.safetensors": (
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
            b"\0" * 24, "overlap"),
        "bad_dtype.safetensors": ({"a": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, "has dtype Q4, which partialnet does not read"),
        "odd_dtype.safetensors": ({"a": {"dtype": "f32 ", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16, "unknown dtype"),
        "header_list.safetensors": (["a"], b"\0" * 64, "not an object"),
    }
    for name, (header, data, fragment) in st.items():
        raw(name, hostile.safetensors_bytes(header, data), fragment)
    raw("deep.safetensors", hostile.safetensors_bytes(None, b"\0" * 16, raw_header=b"[" * 100_000 + b"]" * 100_000), "nested too deeply")
    raw("nan_header.safetensors", hostile.safetensors_bytes(None, b"", raw_header=b'{"a": NaN}' + b" " * 40), "not JSON")
    twice = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'
    raw("key_twice.safetensors", hostile.safetensors_bytes(None, b"\0" * 8, raw_header=twice), "'a' appears twice")
    raw("bit_flipped.pth", _one_bit_flipped(tmp / "unflipped.pth", sd), "fails its CRC-32 check")  # torch.load never checks
    return cases


def _one_bit_flipped(scratch: Path, sd: dict) -> bytes:
    """A good torch.save file with the sign bit of one weight flipped: it loads as another model unless checked."""
    import struct
    import zipfile

    torch.save(sd, scratch)
    data = bytearray(scratch.read_bytes())
    member = next(m for m in zipfile.ZipFile(scratch).infolist() if m.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26:member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len + 3] ^= 0x80
    return bytes(data)


def test_hostile_checkpoints_exit_2_with_a_true_one_line_message(tmp_path, cli, t0_state_dict):
    marker = tmp_path / "PWNED"
    cases = _hostile_checkpoints(tmp_path, t0_state_dict)
    for name, (path, fragment) in cases.items():
        result = cli("info", path)
        assert result.code == 2, f"{name}: exit {result.code}: {result.err}"
        assert_refused(result.code, result.err, fragment)
    assert not marker.exists()


def test_hostile_compare_files_exit_2(tmp_path, cli):
    from partialnet.bench.run import SCHEMA

    row = {"model": "m", "runtime": "onnxruntime", "precision": "fp32", "batch": 1, "threads": 1, "status": "ok", "samples_s": [0.01] * 100}
    good = {"schema": SCHEMA, "machine": {"id": "x", "cpu": {"model": "cpu"}}, "protocol": {"name": "latency"}, "rows": [row]}
    variants = {
        "list": ([good], "not a partialnet bench result"),
        "rows_not_list": ({**good, "rows": {"a": 1}}, "rows is not a list of at most 10,000"),
        "row_not_object": ({**good, "rows": [3]}, "rows[0] is not an object"),
        "batch_string": ({**good, "rows": [{**row, "batch": "1"}]}, "rows[0].batch is not an integer in 1..1024"),
        "threads_zero": ({**good, "rows": [{**row, "threads": 0}]}, "rows[0].threads is not an integer in 1..1024"),
        "status_unknown": ({**good, "rows": [{**row, "status": "crashed"}]}, "rows[0].status is not one of ok, failed, skipped"),
        "settings_list": ({**good, "settings": [1]}, "settings is not an object"),  # was exit 4 in compare
        "samples_string": ({**good, "rows": [{**row, "samples_s": "fast"}]}, "rows[0].samples_s is not a list of 1 to 200,000"),
        "samples_negative": ({**good, "rows": [{**row, "samples_s": [0.01, -1.0]}]}, "timings, each a finite number of seconds"),
        "samples_zero": ({**good, "rows": [{**row, "samples_s": [0.0] * 5}]}, "timings, each a finite number of seconds"),
        "samples_text": ({**good, "rows": [{**row, "samples_s": ["a"]}]}, "timings, each a finite number of seconds"),
        "machine_not_dict": ({**good, "machine": "mine"}, "machine is not an object"),
        # what the reports read of a machine, of another type (once a crash: exit 4)
        "gpus_number": ({**good, "machine": {**good["machine"], "gpus": 5}}, "machine gpus is not a list of objects"),
        "flags_number": ({**good, "machine": {"id": "x", "cpu": {"model": "cpu", "flags": 5}}}, "cpu.flags is not a list of strings"),
        "cores_text": ({**good, "machine": {"id": "x", "cpu": {"model": "cpu", "logical_cores": "2"}}}, "cpu.logical_cores is not an integer"),
        "versions_list": ({**good, "machine": {**good["machine"], "versions": ["torch"]}}, "versions is not an object"),
        "protocol_nameless": ({**good, "protocol": {}}, "protocol.name is missing"),
        "ok_without_samples": ({**good, "rows": [{k: v for k, v in row.items() if k != "samples_s"}]}, "rows[0] is ok and holds no raw samples"),
        "gmacs_text": ({**good, "rows": [{**row, "gmacs": "many"}]}, "rows[0].gmacs is not a finite number"),  # the report's table prints it
        "gmacs_negative": ({**good, "rows": [{**row, "gmacs": -1}]}, "rows[0].gmacs is not a finite number of at least 0"),
        "model_too_long": ({**good, "rows": [{**row, "model": "m" * 1001}]}, "rows[0].model is not a string of at most 1,000 characters"),
        "imgsz_three": ({**good, "rows": [{**row, "imgsz": [64, 64, 3]}]}, "rows[0].imgsz is not a list of 2"),
        "reason_object": ({**good, "rows": [{**row, "status": "failed", "reason": {"a": 1}}]}, "rows[0].reason is not a string"),
        "failed_with_samples": ({**good, "rows": [{**row, "status": "failed"}]}, "rows[0] is failed and holds raw samples"),
        # held to the names this version writes: "ONNXRuntime" was a row of its own in compare, "tpu" a device
        "runtime_case": ({**good, "rows": [{**row, "runtime": "ONNXRuntime"}]}, "rows[0].runtime is not one of pytorch, onnxruntime"),
        "device_unknown": ({**good, "rows": [{**row, "device": "tpu"}]}, "rows[0].device is not one of cpu, cuda"),
        "format_unknown": ({**good, "rows": [{**row, "format": 5}]}, "rows[0].format is not one of onnx"),
    }
    base = tmp_path / "base.json"
    base.write_text(json.dumps(good))
    for name, (data, fragment) in variants.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        result = cli("compare", base, path)
        assert_refused(result.code, result.err, fragment)
        result = cli("report", base, path)
        assert_refused(result.code, result.err, "not a partialnet bench, claims or matrix result" if name == "list" else fragment)
    (tmp_path / "nan.json").write_text(json.dumps(good).replace("0.01", "NaN", 1))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "twice.json").write_text(json.dumps(good).replace('{"schema": ', '{"schema": "other", "schema": ', 1))
    for name, fragment in (("nan.json", "holds NaN"), ("deep.json", "nested too deeply"), ("twice.json", "'schema' appears twice")):
        result = cli("compare", base, tmp_path / name)
        assert_refused(result.code, result.err, fragment)
    assert cli("compare", base, base).code == 0


def test_raw_samples_are_capped_per_file_and_per_report(tmp_path, cli, monkeypatch):
    """compare bootstraps every row (about 20 s of CPU per 200,000 samples): the caps bound a stranger's file."""
    from partialnet.bench import report, results
    from partialnet.bench.run import SCHEMA

    monkeypatch.setattr(results, "MAX_SAMPLES_PER_FILE", 100)
    monkeypatch.setattr(report, "MAX_REPORT_SAMPLES", 150)
    row = {"model": "m", "runtime": "onnxruntime", "precision": "fp32", "batch": 1, "threads": 1, "status": "ok", "samples_s": [0.01] * 60}
    files = []
    for k, (rows, machine) in enumerate(((1, "a"), (2, "b"), (1, "c"), (1, "d"))):  # each its own measurement (samples)
        data = {"schema": SCHEMA, "machine": {"id": machine, "cpu": {"model": "cpu"}}, "protocol": {"name": "quick"},  # 10 a row at least
                "rows": [{**row, "runtime": ("onnxruntime", "openvino")[i], "samples_s": [0.01 + k * 1e-4] * 60} for i in range(rows)]}
        files.append(tmp_path / f"{machine}.json")
        files[-1].write_text(json.dumps(data))
    result = cli("compare", files[0], files[1], "--allow-different-machines")
    assert_refused(result.code, result.err, "holds 120 raw samples, over the 100 limit for one result file")
    result = cli("report", files[0], files[2], files[3])
    assert_refused(result.code, result.err, "hold over 150 raw samples together")
    assert cli("report", files[0], files[2]).code == 0


def test_write_failures_are_one_line_and_leave_nothing(tmp_path, cli, monkeypatch):
    from partialnet import outputs

    for err_no, code, fragment in ((errno.ENOSPC, 3, "no space left"), (errno.EROFS, 2, "read-only file system")):
        def fail(self, data, err_no=err_no):
            raise OSError(err_no, os.strerror(err_no))

        monkeypatch.setattr(outputs.Staged, "write_bytes", fail)
        result = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", tmp_path / "d.pt")
        assert_refused(result.code, result.err, fragment, expected=code)
        assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_no_staged_file_and_no_made_folder(tmp_path):
    """A real short write, not a mocked one: the file-size limit fails small JSON writes at their buffered flush, as
    a full disk does. The clean-up's close() flushed again, raised again, and left the staged files and the folders
    made for them behind, with a message naming no file."""
    from partialnet.bench.run import SCHEMA

    row = {"model": "m", "runtime": "onnxruntime", "precision": "fp32", "batch": 1, "threads": 1, "status": "ok", "samples_s": [0.01] * 200}
    (tmp_path / "r.json").write_text(json.dumps({"schema": SCHEMA, "machine": {"id": "x", "cpu": {"model": "cpu"}},
                                                 "protocol": {"name": "latency"}, "rows": [{**row, "model": f"m{i}"} for i in range(20)]}))

    # set in the child itself: a preexec_fn forks a multithreaded test process (JAX is loaded by then)
    small_files = ("import resource, signal, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)); "
                   "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "  # a write past the limit fails (EFBIG) instead of killing the process
                   "sys.argv = ['partialnet', *sys.argv[1:]]; from partialnet.console_script import main; main()")
    done = subprocess.run([sys.executable, "-c", small_files, "report", "r.json", "-o", "new/r.md", "--json", "new/deeper/r.json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert_refused(done.returncode, done.stderr, "r.json: cannot write (File too large); nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no staged file, no folder made for them


def test_standard_output_cut_short_is_said_even_unbuffered(tmp_path):
    """PYTHONUNBUFFERED=1 (many CI images) made stdout a text layer over the raw file, which drops what a short write
    leaves over: `formats --json > out.json` past the file-size limit (as on a full disk) was cut, exit 0, no word."""
    launcher = ("import resource, signal, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)); signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "sys.argv = ['partialnet', *sys.argv[1:]]; from partialnet.console_script import main; main()")
    for unbuffered in ("1", ""):
        with open(tmp_path / "out.json", "wb") as stdout:
            done = subprocess.run([sys.executable, "-c", launcher, "formats", "--json"], stdout=stdout, stderr=subprocess.PIPE, text=True,
                                  timeout=120, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
        assert_refused(done.returncode, done.stderr, "File too large (writing the command's output", expected=3)


def test_an_output_on_kernel_state_is_refused_before_the_work(cli):
    """Root passes every permission check on /proc, and statvfs calls it writable: only its file system says no."""
    result = cli("fold", "partialnet_t0", "--imgsz", "64", "-o", "/proc/partialnet_x.pt")
    assert_refused(result.code, result.err, "/proc is on proc, a kernel interface that holds no files")
    assert "fold:" not in result.out + result.err  # refused before the load and the fold


def test_the_mount_table_is_read_as_the_kernel_writes_it():
    from partialnet.mounts import file_system_type, pseudo_file_system

    table = ("22 27 0:21 / /proc rw,relatime - proc proc rw\n"
             "27 1 8:1 / / rw shared:1 - ext4 /dev/vda rw\n"
             "30 27 0:30 / /mnt/my\\040disk rw master:2 shared:3 - xfs /dev/vdb rw\n"  # a space in a mount point, escaped
             "31 30 0:31 / /mnt/my\\040disk/sys rw - sysfs sysfs rw\n"
             "garbage line\n")
    assert pseudo_file_system("/proc/1/x", table) == "proc" and pseudo_file_system("/procx", table) is None
    assert file_system_type("/mnt/my disk/a", table) == "xfs" and pseudo_file_system("/mnt/my disk/sys/k", table) == "sysfs"
    assert file_system_type("/home", table) == "ext4" and file_system_type("/x", "") is None


def test_usage_errors_are_one_line_and_a_hint(cli):
    bare = cli()
    assert bare.code == 0 and "Usage" in bare.out and bare.err == ""
    for args, fragment, hint in ((["expotr"], "Did you mean 'export'", "partialnet --help"),
                                 (["export", "--forse", "x"], "did you mean --force", "partialnet export --help"),
                                 (["info"], "Missing argument", "partialnet info --help"),
                                 (["export", "x", "--batch", "abc"], "valid integer", "partialnet export --help"),
                                 (["bench", "--ab", "partialnet_t0"], "requires 2 arguments", "partialnet bench --help"),  # click gives no context
                                 (["export", "x", "--format"], "requires an argument", "partialnet export --help")):
        result = cli(*args)
        lines = result.err.strip().splitlines()
        assert result.code == 2 and len(lines) == 2 and lines[0].startswith("error: ") and lines[1] == f"hint: {hint}", result.err
        assert fragment in lines[0], lines


@pytest.mark.parametrize("value", ["", "0", "1", "false", "yes"])
def test_debug_variable_never_changes_exit_codes(value, cli, monkeypatch):
    from partialnet.cli import debug_enabled

    monkeypatch.setenv("PARTIALNET_DEBUG", value)
    assert debug_enabled() == (value in ("1", "yes"))
    assert cli("info", "partialnet_t0", "--json").code == 0
    bad = cli("info", "nope.pth")
    assert bad.code == 2 and "no such file" in bad.err


def test_library_warnings_become_one_line(cli, monkeypatch):
    import warnings

    from partialnet.models import table

    def noisy(imgsz):
        warnings.warn("something deprecated\nwith a second line", UserWarning)
        return []

    monkeypatch.setattr(table, "model_table", noisy)
    result = cli("models", "--json")
    assert result.code == 0
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines == ["warning: something deprecated with a second line (UserWarning)"]


@pytest.mark.slow
def test_a_real_export_prints_no_raw_warnings(tmp_path):
    code, out, err = run_cli("export", "partialnet_t0", "--imgsz", "64", "-o", tmp_path / "x.onnx", "--samples", "2")
    assert code == 0, err
    assert [line for line in err.strip().splitlines() if not PROGRESS_LINE.match(line)] == [], err  # stages only
    assert "Warning" not in out


@pytest.mark.parametrize("manifest", ['{"metadata": [1, 2]}', '[]', '{"metadata": {"precision": 16}}'])
def test_a_strangers_sidecar_manifest_never_crashes_read_io(manifest, tmp_path):
    """.pte/.tflite metadata comes from the JSON beside the file: an object, read as strings; a manifest without one
    is refused, never read as no manifest (the artifact was then verified as a plain fp32 file)."""
    from partialnet.errors import BadInput
    from partialnet.exporters.sidecar import read_metadata, sidecar

    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    sidecar(artifact).write_text(manifest)
    if '"metadata": {' not in manifest:
        with pytest.raises(BadInput, match='m.tflite.json: not an export manifest'):
            read_metadata(artifact)
        return
    metadata, precision = read_metadata(artifact)
    assert metadata == {"precision": "16"} and precision == "16"


# ---------------------------------------------------------------- the new formats' artifacts (multi-file, folders)


@pytest.mark.slow
def test_sigterm_during_format_all_publishes_nothing_and_leaves_nothing(tmp_path):
    """`export --format all` publishes its formats together at the end: a stop after some were made leaves none,
    in the output folder or in the temporary directory (where the second export process, stopped mid-export,
    once left its scratch folder)."""
    out, scratch = tmp_path / "all", tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([*PYTHON_CLI, "export", "partialnet_t0", "--format", "all", "--imgsz", "64", "-o", str(out), "--samples", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 300
    # every format is staged at once; wait until the first format's files were written and verified
    while proc.poll() is None and time.monotonic() < deadline:
        staged = [p for p in out.glob(".*.partial")] if out.is_dir() else []
        if any(p.name.endswith(".onnx.json.partial") or ".onnx.json." in p.name for p in staged) and any(
                p.stat().st_size > 0 for p in staged if ".onnx.json." in p.name):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the export finished before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "nothing published" in err.strip().splitlines()[-1], err
    assert not out.exists() or list(out.iterdir()) == []
    # what stays is the libraries' own lasting state, made on import: torch's cache folder, ONNX Runtime's session id
    assert [p.name for p in scratch.iterdir() if not (p.name.startswith("torchinductor_") or p.name == ".ses")] == []


def test_a_forced_stop_removes_the_staged_outputs_and_scratch_first(tmp_path, monkeypatch):
    """The second signal kills the process at once (SIG_DFL), so no `finally` runs: the handler removes first."""
    from partialnet import outputs, signals

    killed = []
    monkeypatch.setattr(signals, "_die", killed.append)
    monkeypatch.setitem(signals._state, "pending", None)
    worker = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    with pytest.raises(signals.Interrupted):
        with outputs.scratch_folder("partialnet-test-") as work, outputs.atomic_outputs([tmp_path / "out" / "a.json"]) as (staged,), \
                signals.stopped_with_us(worker):
            (work / "inner").mkdir()
            (work / "inner" / "x.bin").write_bytes(b"scratch")
            staged.write_text("{}")
            time.sleep(0.5)  # the worker ignores SIGTERM from here on
            signals.on_signal(signal.SIGTERM, None)  # asked once: stop at the next checkpoint, nothing removed yet
            assert work.exists() and staged.path.exists() and killed == [] and worker.poll() is None
            signals.on_signal(signal.SIGTERM, None)  # asked twice: the worker killed, files removed, then the default action
            assert worker.wait(10) == -signal.SIGKILL
            assert killed == [signal.SIGTERM] and not work.exists() and not staged.path.exists()
    assert signals._TEMPORARIES == {} and signals._CHILDREN == {} and not (tmp_path / "out").exists()


def test_two_sigterms_mid_export_leave_nothing_behind(tmp_path):
    """CI runners cancel with SIGINT then SIGTERM: however the stop ends, nothing stays in the output folder or TMPDIR."""
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([*PYTHON_CLI, "export", "partialnet_t0", "--imgsz", "64", "-o", str(out / "s.onnx"), "--samples", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (list(out.glob(".*.partial")) and list(scratch.glob("partialnet-*"))):
        time.sleep(0.02)
    assert proc.poll() is None, "the export finished before it could be stopped"
    while proc.poll() is None and time.monotonic() < deadline:  # again and again: one of them lands as the forced stop
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (-signal.SIGTERM, 143), err
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] in ("error: stopped by SIGTERM; temporary files removed, nothing published",
                                             "error: stopped at once by a second SIGTERM; helper processes killed, temporary files removed"), err
    assert not out.exists()
    assert [p.name for p in scratch.iterdir() if not (p.name.startswith("torchinductor_") or p.name == ".ses")] == []


def _workers_running(spec_folder: Path) -> list[int]:
    """Bench workers (by the spec file they were started with) still alive, orphans included."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(spec_folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signals_sent", [1, 2], ids=["stop", "forced-stop"])
def test_a_stop_mid_row_ends_the_bench_worker_too(tmp_path, signals_sent):
    """The worker timing a row gets the stop request (its row is discarded): no waiting for the row to end, and
    a forced stop, which kills the parent at once, leaves no orphan still timing on the machine."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([*PYTHON_CLI, "bench", "partialnet_t0", "--imgsz", "64", "--runtime", "pytorch", "--protocol", "latency"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not _workers_running(scratch):
        time.sleep(0.05)
    assert proc.poll() is None and _workers_running(scratch), "no worker was seen running"
    time.sleep(0.5)
    asked = time.monotonic()
    for _ in range(signals_sent):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - asked
    assert proc.returncode in ((143,) if signals_sent == 1 else (143, -signal.SIGTERM)), err  # the first may already have ended it
    assert stopped_after < 3.0  # the row alone runs >= 1 s of warm-up and >= 3 s of timing
    time.sleep(0.5)
    assert _workers_running(scratch) == []
    assert [p.name for p in scratch.iterdir() if not (p.name.startswith("torchinductor_") or p.name == ".ses")] == []


OPENVINO_RUNNERS_THEN_A_STOP = """
import gc, os, signal, sys
from partialnet import signals
from partialnet.runtimes.openvino import OpenVinoRunner
runners = {p: OpenVinoRunner(sys.argv[1], threads=1, precision=p) for p in ("fp32", "bf16", "fp16")}
for runner in runners.values():
    runner.prepare()
del runner, runners  # dropped in the order they were made, as a bench A/B's two sides are
gc.collect()
signals.install()
os.kill(os.getpid(), signal.SIGINT)
try:
    signals.raise_if_pending()
except signals.Interrupted as stop:
    print("stopped by", stop.signum)
"""


def test_a_stop_after_openvino_runners_were_dropped_is_a_clean_stop(t0_onnx):
    """OpenVINO's CPU plugin (one per Core) swaps in an alternate signal stack of its own and unmaps it when
    destroyed: runners that each held a Core, dropped in the order they were made, left the main thread on an
    unmapped stack, and the next Ctrl-C killed the process with SIGSEGV (exit 139) instead of stopping it."""
    pytest.importorskip("openvino", reason="OpenVINO runners need pip install 'partialnet[openvino]'")
    done = subprocess.run([sys.executable, "-c", OPENVINO_RUNNERS_THEN_A_STOP, str(t0_onnx)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == f"stopped by {int(signal.SIGINT)}"


@pytest.mark.slow
def test_force_over_a_deep_package_folder_replaces_it_and_leaves_nothing(tmp_path, cli):
    pytest.importorskip("coremltools")
    out = tmp_path / "m.mlpackage"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # os.makedirs recurses: build it one level at a time
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    result = cli("export", "partialnet_t0", "-f", "coreml", "--imgsz", "64", "-o", out, "--samples", "2", "--force")
    assert result.code == 0, result.err
    assert (out / "Manifest.json").is_file() and not (out / "d").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage", "m.mlpackage.json"]


@pytest.mark.slow
def test_a_published_package_follows_the_umask_like_its_manifest(tmp_path, cli):
    pytest.importorskip("coremltools")
    previous = os.umask(0o022)
    try:
        result = cli("export", "partialnet_t0", "-f", "coreml", "--imgsz", "64", "-o", tmp_path / "m.mlpackage", "--samples", "2")
    finally:
        os.umask(previous)
    assert result.code == 0, result.err
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    assert modes["m.mlpackage.json"] == 0o644
    assert {m for name, m in modes.items() if (tmp_path / name).is_dir()} == {0o755}
    assert {m for name, m in modes.items() if (tmp_path / name).is_file()} == {0o644}


def test_result_files_are_printed_inert(tmp_path, cli):
    """A stranger's result whose CPU name and row label hold escape sequences, newlines and a lone surrogate (valid
    JSON, no character: printing it raised UnicodeEncodeError, exit 4): shown, never acted on."""
    base = {
        "schema": "partialnet.bench/1", "protocol": {"name": "quick"}, "settings": {"device": "cpu"},
        "machine": {"id": "m1", "cpu": {"model": "EVIL\x1b[2J\x1b[31mCPU\nerror: forged", "logical_cores": 2, "flags": []}, "gpus": []},
        "rows": [{"model": "t0\x1b]0;owned\x07\ud800\nerror: forged row", "runtime": "pytorch", "precision": "fp32", "batch": 1, "threads": 1,
                  "status": "ok", "samples_s": [0.01, 0.011, 0.012] * 10}],
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(base))
    for command in (["report", path], ["compare", path, path]):
        result = cli(*command)
        shown = result.out + result.err
        assert "\x1b" not in shown and "\x07" not in shown, command
        assert not any(line.startswith("error: forged") for line in shown.splitlines()), command
        assert "\\x1b" in shown and "\\ud800" in shown and result.code != 4, command
    base["machine"]["cpu"]["model"] = "X" * 100_000  # printed whole, it was one 100,033-character line titling the table
    path.write_text(json.dumps(base))
    result = cli("report", path)
    assert result.code == 2 and "machine cpu model or id is not a name of at most 200 characters" in result.err, result.err


def test_compare_refuses_a_row_measured_twice(tmp_path, cli):
    row = {"model": "t0", "runtime": "pytorch", "precision": "fp32", "batch": 1, "threads": 1, "status": "ok"}
    machine = {"id": "m1", "cpu": {"model": "cpu", "logical_cores": 2, "flags": []}, "gpus": []}
    head = {"schema": "partialnet.bench/1", "protocol": {"name": "quick"}, "settings": {"device": "cpu"}, "machine": machine}
    base = {**head, "rows": [{**row, "samples_s": [0.010] * 30}]}
    cand = {**head, "rows": [{**row, "samples_s": [0.030] * 30}, {**row, "samples_s": [0.010] * 30}]}
    (tmp_path / "b.json").write_text(json.dumps(base))
    (tmp_path / "c.json").write_text(json.dumps(cand))
    result = cli("compare", tmp_path / "b.json", tmp_path / "c.json")
    assert result.code == 2 and "c.json: rows 0 and 1 are both t0 / pytorch / fp32 / 1 / 1; a result measures each row once" in result.err
    cand["rows"][1] = {**row, "status": "failed", "reason": "crashed"}  # an ok row beside a failed one of the same key: which is it?
    (tmp_path / "c.json").write_text(json.dumps(cand))
    assert "rows 0 and 1 are both" in cli("compare", tmp_path / "b.json", tmp_path / "c.json").err


@pytest.mark.parametrize("samples", [[1e-300] * 20, [5e-324] * 20, [1e300] * 20])
def test_extreme_finite_samples_are_refused_not_divided(samples, tmp_path, cli):
    row = {"model": "t0", "runtime": "pytorch", "precision": "fp32", "batch": 1, "threads": 1, "status": "ok", "samples_s": samples}
    data = {"schema": "partialnet.bench/1", "protocol": {"name": "quick"}, "settings": {"device": "cpu"},
            "machine": {"id": "m1", "cpu": {"model": "cpu", "logical_cores": 2, "flags": []}, "gpus": []}, "rows": [row]}
    (tmp_path / "r.json").write_text(json.dumps(data))
    for command in (["report", tmp_path / "r.json"], ["compare", tmp_path / "r.json", tmp_path / "r.json"]):
        result = cli(*command)
        said = "samples_s is not a list of 1 to 200,000 timings, each a finite number of seconds from 1e-09"
        assert result.code == 2 and said in result.err, (command, result.err)


def test_giant_integers_in_result_files_are_bad_input(tmp_path, cli):
    (tmp_path / "r.json").write_text('{"schema": "partialnet.bench/1", "rows": [], "n": ' + "9" * 5000 + "}")
    for command in (["report", tmp_path / "r.json"], ["compare", tmp_path / "r.json", tmp_path / "r.json"]):
        result = cli(*command)
        assert result.code == 2 and "Traceback" not in result.err, (command, result.err)


@pytest.mark.parametrize("manifest, fragment", [
    ({"metadata": {"imgsz": "sixty,four"}, "built_for": {"input_shape": [1, 3, 64, 64]}}, "is not H,W"),
    ({"metadata": {"imgsz": "64,64"}, "built_for": {"input_shape": "1x3x64x64"}}, "neither 'dynamic' nor four"),
    ({"metadata": {"imgsz": "64,64"}, "built_for": {"input_shape": [1, 3, None, 64]}}, "neither 'dynamic' nor four"),
    ({"metadata": {"imgsz": "64,64"}, "built_for": {"input_shape": [1, 3, 64, 64], "precision": ["fp32"]}}, "is not fp32, fp16 or int8"),
    ({"metadata": {}, "graph": ["not", "a", "map"]}, "no built_for record"),
])
def test_a_strangers_engine_manifest_is_bad_input(manifest, fragment, tmp_path, cli):
    (tmp_path / "m.engine").write_bytes(b"\0" * 4096)
    (tmp_path / "m.engine.json").write_text(json.dumps(manifest))
    result = cli("verify", tmp_path / "m.engine", "--ref", "partialnet_t0")
    assert result.code == 2 and fragment in result.err and "Traceback" not in result.err, result.err
    # bench reads the same record, after its options: an engine on --device cpu (the default) runs on no machine
    result = cli("bench", tmp_path / "m.engine", "--protocol", "quick")
    assert result.code == 2 and "(tensorrt: runs on cuda only, not cpu)" in result.err, result.err


def _publish_one_group(tag: str, folder: str, rounds: int, barrier, mixed) -> None:
    import time

    from partialnet import outputs

    publish = outputs._publish_replace

    def slow_publish(staged):  # widens the window between a group's two files, where the other group got in
        publish(staged)
        time.sleep(0.01)

    outputs._publish_replace = slow_publish
    for i in range(rounds):
        barrier.wait()
        with outputs.atomic_outputs([f"{folder}/m.onnx", f"{folder}/m.onnx.json"], force=True) as (artifact, manifest):
            artifact.write_bytes(f"{tag}{i}".encode())
            manifest.write_bytes(f"{tag}{i}".encode())
        barrier.wait()
        if tag == "A" and Path(f"{folder}/m.onnx").read_text() != Path(f"{folder}/m.onnx.json").read_text():
            mixed.value += 1
        barrier.wait()


def test_two_forced_groups_into_one_folder_never_mix(tmp_path):
    """Two `--force` runs publishing at once interleaved file by file: one run's artifact beside the other's
    manifest, both exit 0 (a helper saw it in 79 of 2,000 rounds). Each group's publication is one step now."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # not fork: this process may hold torch's threads
    barrier, mixed = context.Barrier(2), context.Value("i", 0)
    procs = [context.Process(target=_publish_one_group, args=(tag, str(tmp_path), 20, barrier, mixed)) for tag in "AB"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0] and mixed.value == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_a_helper_process_ends_when_its_command_is_killed(tmp_path):
    """SIGKILL of the command (the OOM killer, a CI runner's hard stop) left its bench worker timing on for 20 s and
    its second export process lowering for 40 s, re-parented to init."""
    import signal

    child = "from partialnet.signals import die_with_parent; die_with_parent(); import time; time.sleep(120)"
    parent = ("import os, subprocess, sys; from partialnet.bench.threads import worker_env; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}], env=worker_env(1)); print(p.pid, flush=True); p.wait()")
    command = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    helper = int(command.stdout.readline())
    time.sleep(1.0)  # the helper past die_with_parent
    command.send_signal(signal.SIGKILL)
    command.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{helper}").exists() and "Z" not in Path(f"/proc/{helper}/stat").read_text().split()[2]:
        time.sleep(0.1)
    assert not Path(f"/proc/{helper}").exists() or Path(f"/proc/{helper}/stat").read_text().split()[2] == "Z"


def test_one_folder_named_two_ways_is_locked_once(tmp_path):
    """`--report d/../d/x.json` beside `-o d/x.pt`: two locks on one folder from one process wait on each other (60 s)."""
    from partialnet.outputs import atomic_outputs

    started = time.monotonic()
    (tmp_path / "d").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "d")
    with atomic_outputs([tmp_path / "d" / "a.json", tmp_path / "d" / ".." / "d" / "b.json", tmp_path / "alias" / "c.json"]) as staged:
        for s in staged:
            s.write_bytes(b"{}")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.json", "b.json", "c.json"] and time.monotonic() - started < 10


def test_python_callers_get_bad_input_naming_the_argument(tmp_path, monkeypatch):
    """An adversarial pass: the API's documented errors were TypeError/AttributeError tracebacks for a wrong type,
    a single string where a list belongs was read character by character, and num_classes=10**12 tried to allocate."""
    import partialnet
    from partialnet import api
    from partialnet.errors import BadInput

    monkeypatch.chdir(tmp_path)
    cases = [
        (lambda: partialnet.load_checkpoint(None), "load_checkpoint: path: expected a path or a name (a string), got NoneType"),
        (lambda: partialnet.load_checkpoint("model.pt\0"), "cannot hold a NUL byte"),
        (lambda: partialnet.create_model(None), "variant: expected a name such as 'partialnet_t0', got NoneType"),
        (lambda: partialnet.create_model("partialnet_t0", num_classes=10**12), "num_classes: expected an integer from 1 to 32,768"),
        (lambda: partialnet.create_model("partialnet_t0", num_classes="10"), "num_classes: expected an integer"),
        (lambda: partialnet.fold(None), "fold: expected a PartialNet model"),
        (lambda: partialnet.fold(partialnet.fold(partialnet.create_model("partialnet_t0"), (64, 64))[0], (64, 64)),  # was an AttributeError
         "fold: the model is already folded (fold's or load_deploy's output)"),
        (lambda: partialnet.fold(partialnet.fold(partialnet.create_model("partialnet_t0"), (64, 64), without={"conv-bn"})[0], (64, 64)),
         "fold: the model is already folded"),  # BatchNorms left, Identities where others were: the same AttributeError
        (lambda: api.inspect(None), "source: expected a path or a name"),
        (lambda: api.export("partialnet_t0", None), "format: expected a name"),
        (lambda: api.export("partialnet_t0", "onnx", output=5), "-o: expected a path or a name (a string), got int"),
        (lambda: api.export("partialnet_t0", "onnx", "fp16"), "options: expected a partialnet ExportOptions"),
        (lambda: api.verify(5, "partialnet_t0"), "artifact: expected a path or a name"),
        (lambda: api.report("m.json"), "results: expected a list of paths or names, got one string ('m.json'): pass ['m.json']"),
        (lambda: api.bench("d.pt"), "sources: expected a list of paths or names, got one string"),
        (lambda: api.bench(["partialnet_t0"], "quick"), "options: expected a partialnet BenchOptions"),
        (lambda: api.matrix("partialnet_t0", threads="2"), "--threads '2': expected an integer from 1 to"),
        (lambda: api.matrix("partialnet_t0", protocol=None), "protocol: expected a name (latency or quick), got NoneType"),
        (lambda: api.train_digits("d.pt", epochs="x"), "--epochs 'x': expected an integer"),
        (lambda: api.compare(None, "c.json"), "baseline: expected a path or a name"),
    ]
    for call, said in cases:
        with pytest.raises(BadInput, match=re.escape(said)):
            call()
    assert api.inspect("partialnet_t0", imgsz=64)["imgsz"] == [64, 64]  # an int size, as the CLI takes one
    assert not list(tmp_path.iterdir())
