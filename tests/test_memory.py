"""One forward's memory, known before the work: a size the limits allow but this machine cannot hold is
exit 3 up front, not minutes of work ended by the kernel's OOM killer (partialnet.memory)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from partialnet import create_model, memory

GIB = 1 << 30


@pytest.fixture(scope="module")
def t0():
    return create_model("partialnet_t0").eval()


def test_the_trace_adds_up_what_one_forward_holds_at_once(t0):
    at_1024, at_2048 = memory.forward_peak_bytes(t0, (1024, 1024), 1), memory.forward_peak_bytes(t0, (2048, 2048), 1)
    assert 0.6 * GIB < at_2048 < 1.3 * GIB  # a real forward here: 0.93 GiB over the process's resident set before it
    assert at_2048 > 8 * at_1024  # four times the pixels, over eight times the memory: attention is quadratic in tokens
    assert memory.forward_peak_bytes(t0, (1024, 1024), 2) > 1.5 * at_1024  # batch 2: 1.64x here (some tensors do not grow with it)


def test_small_runs_are_not_traced_and_a_dynamic_batch_counts_as_its_verification_batch(t0, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    traced = []
    monkeypatch.setattr(memory, "forward_peak_bytes", lambda model, imgsz, batch: traced.append(batch) or 0)
    memory.check_fits(t0, (512, 512), 3)  # under a million pixels: no trace, whatever the machine has
    memory.check_fits(t0, (512, 512), None)  # dynamic: verified at batch 4, a million pixels
    assert traced == [4]
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # a system that says nothing: nothing refused
    memory.check_fits(t0, (4096, 4096), 1)


def test_a_cgroups_room_counts_its_reclaimable_cache_and_its_swap(tmp_path):
    """memory.current holds the page cache: a container that has just read big files is near its limit and
    still has room (counting it as used refused runs that fit)."""
    (tmp_path / "self").write_text("0::/job\n")
    group = tmp_path / "job"
    group.mkdir()
    for name, value in (("memory.max", 8 * GIB), ("memory.current", 7 * GIB), ("memory.swap.max", GIB), ("memory.swap.current", 0)):
        (group / name).write_text(f"{value}\n")
    (group / "memory.stat").write_text(f"anon 1\nfile 5\ninactive_file {3 * GIB}\n")
    assert memory._cgroup_room(str(tmp_path / "self"), str(tmp_path)) == (8 - 7 + 3 + 1) * GIB
    (group / "memory.max").write_text("max\n")
    assert memory._cgroup_room(str(tmp_path / "self"), str(tmp_path)) is None  # no limit of its own: meminfo bounds it
    (tmp_path / "self").write_text("12:memory:/job\n")  # cgroup v1: not read
    assert memory._cgroup_room(str(tmp_path / "self"), str(tmp_path)) is None


def test_a_size_this_machine_cannot_hold_is_refused_before_the_fold(tmp_path):
    """A real limit: `ulimit -v` of 8 GiB; T0 at 4096x4096 holds about 13 GiB at once in one forward."""
    out = tmp_path / "x.pt"
    command = f"ulimit -v {8 << 20}; exec {shlex.quote(sys.executable)} -m partialnet fold partialnet_t0 --imgsz 4096 -o {shlex.quote(str(out))}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: one forward of the model at 4096x4096, batch 1, needs at least 1") and "GiB free" in line, line
    assert line.endswith(": a smaller --imgsz needs less") and "fold 4096x4096" not in done.stderr  # fold has no --batch
    assert not list(tmp_path.iterdir())
