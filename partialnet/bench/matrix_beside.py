"""The cells whose export is long single-threaded Python (matrix, export --format all, bench), exported in a second process.

ExecuTorch's lowering is Python passes on one core (37 s of T0's 59 s INT8 export at 224); on two
cores the other cells' exports can run beside it (the second process pinned to a core of its own, this
one with a torch thread fewer). The second process (`python -c ENTRY FOLDER`, like the bench workers: no multiprocessing, whose helper
process warns about semaphores when partialnet leaves by os._exit) exports through `api.export` into a
private temporary folder under the same file names; the parent then copies each verified file into the
matrix's own staged outputs, so publishing (together, or not at all) stays the parent's. Timing is not
affected: every row is timed after all exports end, one process at a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from partialnet.exporters.sidecar import sidecar
from partialnet.signals import ended, forget_child, forget_temporary, remember_child, remember_temporary

SPEC, RESULT, LOG = "spec.json", "result.json", "stderr.txt"
ENTRY = "import sys; from partialnet.api import export_beside; export_beside(sys.argv[1])"


def sent_beside(items: list, bound, slow=lambda item: False) -> list:
    """Which of `items` (formats, cells) go to the second process, one rule for matrix, export --format all and bench:
    the `bound` ones (long single-threaded Python), only the `slow` among them where others are not (ExecuTorch's INT8
    lowering takes about three times its fp32 one: 75 s and 22 s for T0 at 64x64 on a 2-core EPYC, so the second
    process had run both in a row while this one had long finished), and never every item: this process would only
    wait, after the second process's own start, load and fold. None on a single usable core."""
    from partialnet.runtimes import usable_cores

    if usable_cores() < 2:
        return []
    chosen = [item for item in items if bound(item)]
    slow_ones = [item for item in chosen if slow(item)]
    if slow_ones and len(slow_ones) < len(chosen):
        chosen = slow_ones
    return chosen[1:] if len(chosen) == len(items) else chosen


def _export_cells(spec: dict, folder: Path, export) -> dict:
    """In the second process: each job exported and verified (`export`: api.export, handed down by the
    facade, which nothing inside the package imports); its row, or why it failed."""
    from partialnet.bench.matrix import cell_row, failed_row
    from partialnet.exporters.options import ExportOptions
    from partialnet.verify_options import VerifyOptions
    from partialnet.errors import PartialnetError
    from partialnet.progress import recording, whole_stages

    checks = {k: (Path(v) if k == "images" and v else v) for k, v in spec["checks"].items()}
    rows = {}
    for job in spec["jobs"]:
        started = time.perf_counter()
        options = {k: (tuple(v) if k == "imgsz" else v) for k, v in job["options"].items()}
        with recording() as clock:  # its stages, for the parent's log and time breakdown
            try:
                result = export(spec["source"], job["format"], ExportOptions(**options), output=folder / job["name"],
                                checks=VerifyOptions(**checks), variant=spec["variant"], force=True,
                                weights=spec["weights"])
                rows[job["key"]] = {**cell_row(result, started), "result": result}  # `result`: what export --format all shows
            except PartialnetError as exc:
                rows[job["key"]] = {**failed_row(exc, started), "kind": type(exc).__name__}
        rows[job["key"]]["stages_s"] = {k: round(v, 2) for k, v in whole_stages(clock.seconds, clock.within).items()
                                       if k not in clock.within}
    return rows


class Beside:
    """A second process exporting some cells while the caller exports the others; a context manager that
    always ends the process and removes its folder (also after Ctrl-C, SIGTERM or an error here)."""

    def __init__(self, source: str, variant, jobs: list[dict], checks, weights: str | None = None) -> None:
        self.jobs, self.process = jobs, None
        self.folder = Path(tempfile.mkdtemp(prefix="partialnet-matrix-"))  # mode 0700: only this user enters
        remember_temporary(self.folder, "tree")
        checks = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(checks).items()}
        self.spec = {"source": source, "variant": variant, "weights": weights, "jobs": jobs, "checks": checks}

    def __enter__(self) -> "Beside":
        if self.jobs:
            from partialnet.bench.threads import worker_env

            (self.folder / SPEC).write_text(json.dumps(self.spec))
            # its temporaries (the export's scratch, a converter's own) inside this folder: a process stopped
            # mid-export by __exit__ cannot remove them itself, and the folder goes with it
            scratch = self.folder / "tmp"
            scratch.mkdir(mode=0o700)
            env = {**worker_env(1, "passive"), "TMPDIR": str(scratch)}
            with (self.folder / LOG).open("w") as log:  # a file, not a pipe: a chatty converter cannot fill it and stall
                self.process = subprocess.Popen([sys.executable, "-c", ENTRY, str(self.folder)],
                                                stdout=subprocess.DEVNULL, stderr=log, env=env)
            remember_child(self.process, forward=False)  # a stop ends it in __exit__; a forced stop kills it
            self._split_cores()
        return self

    def _split_cores(self) -> None:
        """The second process (one thread of Python lowering) pinned to the last core; this one keeps its own
        mask with one torch thread fewer, so its exports leave that core to the lowering.

        This thread is never pinned: OpenVINO, first used while it was (a cell's verification), pinned it
        again at every later call, so the rows timed after a matrix's exports (each worker inherits this
        thread's mask) ran on one core of two, and the result recorded one usable core."""
        import os

        import torch

        cores = sorted(os.sched_getaffinity(0))
        self.torch_threads = torch.get_num_threads()
        os.sched_setaffinity(self.process.pid, set(cores[-1:]))
        torch.set_num_threads(max(1, min(self.torch_threads, len(cores) - 1)))

    def _rejoin_cores(self) -> None:
        import torch

        if getattr(self, "torch_threads", None):
            torch.set_num_threads(self.torch_threads)
            self.torch_threads = None

    def collect(self) -> dict:
        """Every job's row, waiting for the second process; a process that died leaves its cells failed, saying why."""
        from partialnet.signals import raise_if_pending

        if not self.jobs:
            return {}
        self._rejoin_cores()  # this process's own exports are done: the rest of the second one's may use both cores
        while True:
            try:
                self.process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                raise_if_pending()
        result = self.folder / RESULT
        rows = {str(k): v for k, v in json.loads(result.read_text()).items()} if result.is_file() else {}
        tail = (self.folder / LOG).read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        for job in self.jobs:
            rows.setdefault(str(job["key"]), {"status": "failed", "why": f"the second export process {ended(self.process.returncode)}: {tail[0][:200]}"})
        return rows

    def files(self, job: dict) -> tuple[Path, Path]:
        """The second process's files for one cell: its artifact, then the manifest beside it."""
        artifact = self.folder / job["name"]
        return artifact, sidecar(artifact)

    def copy_into(self, job: dict, staged: list) -> None:
        """The second process's files for one cell, into the parent's staged outputs (artifact first, manifest last)."""
        for item, path in zip(staged, self.files(job)):
            with path.open("rb") as f:
                shutil.copyfileobj(f, item.file)

    def __exit__(self, *exc) -> None:
        self._rejoin_cores()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        forget_temporary(self.folder)
        if self.process is not None:
            forget_child(self.process)


def serve(work: Path, export) -> None:
    """The second process's whole life: its jobs from SPEC, their rows into RESULT (see api.export_beside)."""
    from partialnet.signals import die_with_parent, left_to_parent

    die_with_parent()
    left_to_parent()
    found = _export_cells(json.loads((work / SPEC).read_text()), work, export)
    (work / RESULT).write_text(json.dumps(found, allow_nan=False))
