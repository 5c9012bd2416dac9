"""`partialnet doctor`: is this machine fit to benchmark on right now, and what to change if not.

One screen: the CPU and its ISA, cores, SMT, governor and boost where readable, the load and the
busiest other processes (sampled for half a second), memory, each runtime's version and the threads
partialnet gives it by default, then concrete advice. Reads /proc and /sys only; writes nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SAMPLE_SECONDS = 0.5
BUSY_PROCESS_CORES = 0.1  # a process above this share of a core during the sample is listed


def _read(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("ascii", "replace").strip()
    except OSError:
        return None


def frequency_policy() -> dict:
    """Governor, boost and SMT where the kernel exposes them (a VM often exposes none: None)."""
    governors = sorted({g for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor") if (g := _read(str(p)))})
    boost = _read("/sys/devices/system/cpu/cpufreq/boost")
    no_turbo = _read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    boost_on = {"1": True, "0": False}.get(boost) if boost is not None else ({"0": True, "1": False}.get(no_turbo) if no_turbo else None)
    smt = _read("/sys/devices/system/cpu/smt/active")
    return {"governors": governors or None, "boost": boost_on, "smt_active": {"1": True, "0": False}.get(smt) if smt else None}


def _process_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, utime + stime ticks) for every readable process."""
    ticks = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        stat = _read(f"/proc/{entry.name}/stat", 2048)
        if not stat or ")" not in stat:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        try:
            ticks[int(entry.name)] = (name[:32], int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            continue
    return ticks


def busiest_processes(seconds: float = SAMPLE_SECONDS, top: int = 5) -> tuple[list[dict], float | None]:
    """The other processes using the CPU now (cores each, over `seconds`) and the total cores they took."""
    from partialnet.bench.load import clock_tick

    before, started = _process_ticks(), time.perf_counter()
    time.sleep(seconds)
    after, wall = _process_ticks(), time.perf_counter() - started
    if not after:
        return [], None
    tick, me = clock_tick(), os.getpid()
    rows = []
    for pid, (name, used) in after.items():
        if pid == me or pid not in before:
            continue
        cores = (used - before[pid][1]) / tick / wall
        if cores > 0:
            rows.append({"pid": pid, "name": name, "cores": round(cores, 2)})
    rows.sort(key=lambda r: -r["cores"])
    return [r for r in rows if r["cores"] >= BUSY_PROCESS_CORES][:top], round(sum(r["cores"] for r in rows), 2)


def memory() -> dict:
    from partialnet.machine import meminfo

    info = {k: round(v / 2**30, 1) for k, v in meminfo().items() if k in ("MemTotal", "MemAvailable")}
    return {"total_gb": info.get("MemTotal"), "available_gb": info.get("MemAvailable")}


def runtimes() -> list[dict]:
    from partialnet.machine import package_versions
    from partialnet.runtimes.table import RUNTIMES, availability

    versions = package_versions()
    rows = []
    for name, row in RUNTIMES.items():
        cpu = "cpu" if "cpu" in row.devices else row.devices[0]
        version = next((versions[p] for p in (*row.packages, row.worker_import) if p in versions), None)
        rows.append({"runtime": name, "version": version, "available": availability(name, cpu) is None, "why_not": availability(name, cpu)})
    return rows


def examine() -> dict:
    from partialnet.bench.load import DISTURBED_CORES, loadavg, usable_cpus
    from partialnet.bench.threads import default_threads
    from partialnet.machine import cpu_info

    cpu = cpu_info()
    busy, others = busiest_processes()
    report = {
        "cpu": cpu, "usable_cpus": usable_cpus(), "frequency": frequency_policy(), "loadavg_1m": loadavg(),
        "others_cores": others, "busiest": busy, "memory": memory(), "runtimes": runtimes(),
        "default_threads": default_threads(), "disturbed_limit_cores": DISTURBED_CORES,
    }
    report["advice"] = advice(report)
    return report


def advice(report: dict) -> list[str]:
    """Concrete steps, most important first; empty when nothing stands in the way."""
    tips = []
    others, limit = report.get("others_cores"), report["disturbed_limit_cores"]
    if others is not None and others > limit:
        names = ", ".join(f"{p['name']} (pid {p['pid']}, {p['cores']:.2f} cores)" for p in report["busiest"]) or "several small ones"
        tips.append(f"other processes use {others:.2f} cores now ({names}): stop them before timing, or every row on all cores will be marked disturbed")
        free = len(report["usable_cpus"]) - round(others)
        if free >= 1:
            tips.append(f"if they must run, time with --threads {free} (the cores they leave free): a row then loses ~5 % instead of half, "
                        "and is marked disturbed only if they reach into its cores")
    cores = len(report["usable_cpus"])
    if report.get("loadavg_1m") is not None and report["loadavg_1m"] > 0.5 * cores:
        tips.append(f"the 1-minute load average is {report['loadavg_1m']:.2f} on {cores} cores: wait for it to fall below {0.5 * cores:.1f}")
    governors = report["frequency"]["governors"]
    if governors and governors != ["performance"]:
        tips.append(f"CPU governor {', '.join(governors)}: `cpupower frequency-set -g performance` keeps the clock from moving under a run")
    if report["frequency"]["smt_active"]:
        tips.append("SMT is on: two threads on sibling hardware threads share one core; --threads up to the physical cores")
    if cores < (report["cpu"]["logical_cores"] or cores):
        tips.append(f"this process may run on {cores} of {report['cpu']['logical_cores']} logical cores (affinity): threads default to {cores}")
    tips.append("for the papers' CPU protocol use --threads 1 (partialnet bench --protocol paper does); compare runs only at the same --threads")
    tips.append("gate CI with interleaved runs (bench --ab) or `compare` on two runs of one job; add --aa to see the run's own resolution")
    return tips


def target_report(host) -> dict:
    """What a --target answered when asked (its partialnet matched this one's, or it was refused earlier
    with the install line): its machine, each runtime's availability on its CPU there, and `now`: the
    doctor report sampled there (load, busiest processes, governor, memory, advice)."""
    from partialnet.runtimes.table import RUNTIMES

    rows = []
    for name, row in RUNTIMES.items():
        device = "cpu" if "cpu" in row.devices else row.devices[0]
        why = host.availability(name, device)
        rows.append({"runtime": name, "available": why is None, "why_not": why})
    return {"target": host.label, "partialnet": host.info.get("partialnet"), "machine": host.machine(), "runtimes": rows,
            "default_threads": host.default_threads(), "now": host.examine()}
