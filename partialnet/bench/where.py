"""Where a benchmark's rows run: an axis of its own, beside what is measured and with which backend.

A run asks its place a few things: can runtime R run on device D at precision P there (else why not),
run this row's spec there in its own worker process, what machine is that, and how many cores it has.
`Local` answers for this machine; `partialnet.remote.host.RemoteHost` answers for a target reached over
SSH, with the same spec and result protocol, so a row measured on a board reads like a row measured here.
"""

from __future__ import annotations

from pathlib import Path


class Local:
    label = "here"

    @staticmethod
    def availability(runtime: str, device: str, precision: str = "fp32") -> str | None:
        from partialnet.runtimes.table import availability

        return availability(runtime, device, precision)

    @staticmethod
    def run_worker(spec: dict, work: Path, threads: int, wait: str) -> dict:
        from partialnet.bench.run import run_worker

        return run_worker(spec, work, threads, wait)

    @staticmethod
    def machine() -> dict:
        from partialnet.machine import fingerprint

        return fingerprint()

    @staticmethod
    def logical_cores() -> int | None:
        """Read apart from `machine()`, whose fingerprint asks nvidia-smi: a usage check must stay instant."""
        import os

        return os.cpu_count()

    @staticmethod
    def default_threads() -> int:
        from partialnet.bench.threads import default_threads

        return default_threads()


HERE = Local()
