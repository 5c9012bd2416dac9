"""What else the machine did while a row was timed: the worker's own CPU time against everyone's.

A benchmark on a shared 2-core VM measures the neighbours as much as the model. Each row therefore
records, over its timed loop, the CPU time the worker got, the CPU time the rest of the system used on
the same cores (from /proc/stat, only the cores this process may run on), the time the hypervisor
stole, and the load average; a row where other work took a material share is marked disturbed, with
those figures, instead of being published as the model's speed.

Linux only (/proc); elsewhere the readings are None and no row is marked on their account.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from partialnet.errors import BadInput
from partialnet.inputs import finite_number
from partialnet.limits import MAX_THREADS
from partialnet.shapes import Integer, ListOf, Maybe, Number, Record

# Average cores taken by other processes (plus time stolen by the hypervisor) during a row above which
# the row is disturbed. Measured on a 2-core Xeon VM: quiet rows read 0.00-0.01 cores (latency protocol;
# up to 0.10 on 0.2 s quick rows, where one 10 ms jiffy is 0.05 cores); beside one busy loop, 0.47-1.06
# (docs/benchmarking.md, "Busy machines: disturbed and unstable rows").
DISTURBED_CORES = 0.2
MIN_OTHERS_S = 0.03  # 3 jiffies at CLK_TCK 100: a short row's reading below this is the counter's resolution


def clock_tick() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def read_cpu_jiffies(cpus: list[int]) -> tuple[int, int] | None:
    """(busy, stolen) jiffies summed over `cpus` from /proc/stat; None where unreadable.

    busy = user + nice + system + irq + softirq (guest time is inside user); stolen = steal.
    """
    wanted = {f"cpu{c}" for c in cpus}
    busy = steal = 0
    try:
        with open("/proc/stat", "rb") as f:
            text = f.read(1 << 20).decode("ascii", "replace")
    except OSError:
        return None
    found = 0
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in wanted and len(parts) >= 9:
            try:
                user, nice, system, _idle, _iowait, irq, softirq, stolen = (int(p) for p in parts[1:9])
            except ValueError:
                return None
            busy += user + nice + system + irq + softirq
            steal += stolen
            found += 1
    return (busy, steal) if found == len(wanted) else None


def loadavg() -> float | None:
    try:
        with open("/proc/loadavg", "rb") as f:
            return float(f.read(256).split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class LoadProbe:
    """Start before the timed loop, `finish()` after it: the machine_load record of the row."""

    cpus: list[int]
    wall0: float
    own0: float
    jiffies0: tuple[int, int] | None
    load0: float | None

    @classmethod
    def start(cls) -> "LoadProbe":
        cpus = usable_cpus()
        return cls(cpus, time.perf_counter(), time.process_time(), read_cpu_jiffies(cpus), loadavg())

    def finish(self) -> dict:
        wall = time.perf_counter() - self.wall0
        own = time.process_time() - self.own0
        jiffies1 = read_cpu_jiffies(self.cpus)
        record = {"cores": len(self.cpus), "wall_s": round(wall, 4), "own_cpu_s": round(own, 4),
                  "others_cpu_s": None, "others_cores": None, "steal_cores": None,
                  "loadavg_1m": [self.load0, loadavg()]}
        if self.jiffies0 is not None and jiffies1 is not None and wall > 0:
            tick = clock_tick()
            busy = (jiffies1[0] - self.jiffies0[0]) / tick
            stolen = (jiffies1[1] - self.jiffies0[1]) / tick
            others = max(0.0, busy - own)  # the jiffy counters tick at 1/CLK_TCK: small rows read coarse
            record.update(others_cpu_s=round(others, 3), others_cores=round(others / wall, 3), steal_cores=round(stolen / wall, 3))
        return record


# A machine_load record as a stranger's result file may hold one: each reading a finite number in its range or absent.
# `others_cores` of 1e400, "1.9" or -1.9 had read as "no reading", and so as a quiet machine: a disturbed row passed
# compare's gate. (Maybe: where a row has no record at all, as an older file's rows do.)
MACHINE_LOAD = Maybe(Record({
    "cores": Maybe(Integer(1, MAX_THREADS)), "threads": Maybe(Integer(1, MAX_THREADS)), "wall_s": Maybe(Number(low=0)),
    "own_cpu_s": Maybe(Number(low=0)), "others_cpu_s": Maybe(Number(low=0)), "others_cores": Maybe(Number(low=0, high=MAX_THREADS)),
    "steal_cores": Maybe(Number(low=0, high=MAX_THREADS)), "loadavg_1m": Maybe(ListOf(Maybe(Number(low=0)), 2, cut=False)),
}, omit_null=True, keep_others=True))


def check_load(load: dict, machine: dict, where: str) -> None:
    """Readings that fit their types but not the machine the file records: 1,024 cores on a 2-core machine leave
    1,023 "free" for any neighbour, and a zero-second loop is below every threshold; both had read as quiet."""
    logical = (machine.get("cpu") or {}).get("logical_cores") if isinstance(machine.get("cpu"), dict) else None
    cores, threads, others, wall = (load.get(k) for k in ("cores", "threads", "others_cores", "wall_s"))
    if isinstance(logical, int) and cores is not None and cores > logical:
        raise BadInput(f"{where}.cores {cores}: more than the {logical} logical cores of the machine the file records")
    if cores is not None and threads is not None and threads > cores:
        raise BadInput(f"{where}.threads {threads}: more than the {cores} cores the row could run on")
    if cores is not None and others is not None and others > cores:
        raise BadInput(f"{where}.others_cores {others:g}: more than the {cores} cores it was read on")
    if wall is not None and wall <= 0:
        raise BadInput(f"{where}.wall_s {wall:g}: a timed loop takes some time")


def _number(value) -> float | None:
    """A finite non-negative number from a record that may come from a stranger's file, else None."""
    if not finite_number(value) or value < 0:
        return None
    return float(value)


def others_cores(record) -> float | None:
    """The cores other processes took while the row ran, or None where the record has no reading: its
    `others_cores`, or, where that was left out, its two parts (`others_cpu_s` / `wall_s`)."""
    if not isinstance(record, dict):
        return None
    others, wall_s, others_s = _number(record.get("others_cores")), _number(record.get("wall_s")), _number(record.get("others_cpu_s"))
    return others if others is not None else (others_s / wall_s if wall_s and others_s is not None else None)


def has_reading(record) -> bool:
    """Whether a row's record says how much other work ran beside it: without one (an older file, a machine without
    /proc, a record of `{}`) a disturbed row cannot be told from a quiet one, and a reader of a verdict must know."""
    return others_cores(record) is not None


def disturbance(record) -> str | None:
    """Why a row's machine_load says it was disturbed, or None (also for a record without readings)."""
    if not isinstance(record, dict):
        return None
    others, stolen = others_cores(record), _number(record.get("steal_cores")) or 0.0
    cores, threads = _number(record.get("cores")), _number(record.get("threads"))
    # cores the row left free are others' to use: a 1-thread row beside a busy loop on the other core stayed within
    # 1.06x in every runtime (docs/benchmarking.md), and the docs advise exactly that setup on a shared machine
    spare = max(0.0, cores - threads) if cores and threads else 0.0
    if others is None or others + stolen <= DISTURBED_CORES + spare:
        return None
    wall = _number(record.get("wall_s"))
    if wall is not None and (others + stolen) * wall < MIN_OTHERS_S:
        return None
    load = record.get("loadavg_1m")
    load = _number(load[-1]) if isinstance(load, list) and load else None
    of = f"{cores:g}" if cores else "?"
    limit = f"{DISTURBED_CORES:g}" + (f" + {spare:g} core(s) the row left free" if spare else "")
    return (f"other processes used {others:.2f} of {of} cores" + (f" + {stolen:.2f} stolen by the hypervisor" if stolen >= 0.005 else "")
            + f" while it ran (limit {limit}" + (f"; load average {load:.2f})" if load is not None else ")"))
