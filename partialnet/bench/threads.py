"""How many threads a runtime gets by default, and how its idle threads wait: chosen for busy machines.

The collapse this answers (docs/benchmarking.md, "Busy machines"): PyTorch with both cores of a 2-core VM
ran T0 in 8.3 ms alone and 164 ms (19.8x, CoV 0.63) beside one busy loop. GNU OpenMP's default wait spins
briefly, then sleeps on a futex; a parallel region then starts only when the sleeping thread is woken
and scheduled, and the core it sleeps on is held by the other process until its time slice ends. T0 runs
dozens of parallel regions per inference, each paying that wait.

So a bench worker's pool threads spin while they wait (OMP_WAIT_POLICY=ACTIVE; ONNX Runtime's spinning,
its own default): the same 8.5 ms alone, 17.3 ms (2.0x, the fair share of a core taken) beside the busy
loop. Sleeping instead (PASSIVE) holds up under load but costs 3.4x on the quiet machine (27.8 ms: every
region wakes an idle vCPU through the hypervisor). `--wait passive|runtime` chooses the others; the
default thread count is the cores this process may run on (its affinity mask), not the machine's count.
"""

from __future__ import annotations


import os

from partialnet.runtimes import SPIN_ENV, usable_cores
from partialnet.signals import PARENT_VAR


def default_threads() -> int:
    """The cores this process may run on: on a container or a taskset-pinned job, not os.cpu_count()."""
    return usable_cores()


DEFAULT_WAIT = "spin"
GPU_WAIT = "passive"
WAIT_NOTES = {
    "spin": "spin while they wait (OMP_WAIT_POLICY=ACTIVE; ONNX Runtime spinning)",
    "passive": "sleep while they wait (OMP_WAIT_POLICY=PASSIVE; ONNX Runtime without spinning)",
    "runtime": "wait as each runtime does by default (no wait policy set)",
}


def default_wait(device: str) -> str:
    """Spin for CPU rows (the collapse above). A GPU row's host threads only launch kernels and copy results:
    its CPU pool is started by the model's load and then idle, and spinning it would hold every other core
    for the whole run (GNU OpenMP's ACTIVE wait never sleeps), beside the thread that launches the kernels,
    the compile workers of `--compile` and the machine-load probe."""
    return GPU_WAIT if device == "cuda" else DEFAULT_WAIT


def wait_env(wait: str, env: dict[str, str]) -> dict[str, str]:
    """`env` for a worker whose pool threads spin while they wait, wait passively, or do as each runtime
    does by default (the variables unset: GNU OpenMP then spins briefly and sleeps, the pattern that
    collapses under a busy neighbour)."""
    env = {k: v for k, v in env.items() if k not in (SPIN_ENV, "KMP_BLOCKTIME")}
    if wait == "spin":
        env[SPIN_ENV] = "ACTIVE"
    elif wait == "passive":
        env.update({SPIN_ENV: "PASSIVE", "KMP_BLOCKTIME": "0"})  # KMP_BLOCKTIME: Intel's OpenMP, where a runtime ships it
    return env



def worker_env(threads: int, wait: str = DEFAULT_WAIT) -> dict:
    """A bench worker's environment: thread counts pinned, pool threads waiting as `wait` says."""
    env = wait_env(wait, dict(os.environ))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONWARNINGS"] = "ignore"
    env[PARENT_VAR] = str(os.getpid())  # the worker ends with this process (signals.die_with_parent)
    return env
