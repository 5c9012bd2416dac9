"""What machine a number was measured on. Results from different machines are not comparable.

The fingerprint covers the hardware only (CPU model, logical cores, GPUs): a new library version on the
same machine is exactly what a regression gate must be able to compare.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from partialnet.limits import MAX_THREADS
from partialnet.runtimes import usable_cores

INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "asimd", "sve")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and value.strip():
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "flags": [f for f in INTERESTING_FLAGS if f in flags],
    }


# what a GPU that torch.cuda (or onnxruntime's CUDA provider) can drive leaves in /dev or /proc: NVIDIA's driver,
# Jetson's, WSL2's GPU paravirtualisation, AMD's ROCm (which torch.cuda drives too)
GPU_DRIVER_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu", "/dev/nvmap",
                    "/dev/dxg", "/dev/kfd")


def no_cuda_reason() -> str | None:
    """Why no runtime can see a CUDA GPU here, found without importing one (torch's import was 1.4 s of every
    remote target's probe); None where one might, for the runtime itself to say."""
    if sys.platform == "darwin":
        return "no CUDA on macOS"
    if not sys.platform.startswith("linux") or any(os.path.exists(p) for p in GPU_DRIVER_NODES):
        return None
    return "no GPU driver on this machine (no /dev/nvidiactl, /dev/nvhost-ctrl-gpu, /dev/dxg or /dev/kfd)"


def gpu_info() -> list[dict]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, driver, memory = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "driver": driver, "memory": memory})
    return gpus


CORE_PACKAGES = ("partialnet", "torch", "onnx", "numpy")


def recorded_packages() -> list[str]:
    """The core and every backend the two tables name: a new row's packages are recorded with no edit here."""
    from partialnet.exporters.formats import FORMATS
    from partialnet.runtimes.table import RUNTIMES

    rows = [*RUNTIMES.values(), *FORMATS.values()]
    return list(dict.fromkeys([*CORE_PACKAGES, *(p for row in rows for p in row.packages)]))


def package_versions() -> dict:
    versions = {}
    for name in recorded_packages():
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_id(machine: dict) -> str:
    """The hardware fingerprint of a machine record: CPU model, logical cores, GPU names. Computed from the
    record wherever one is read, so a stranger's file cannot claim another machine's id beside its own hardware."""
    cpu = machine["cpu"]
    identity = {"cpu": cpu["model"], "cores": cpu.get("logical_cores"),
                "gpus": [g.get("name") for g in machine.get("gpus") or [] if isinstance(g, dict)]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def different_hardware(a: dict, b: dict, names: tuple[str, str] = ("baseline", "candidate")) -> str | None:
    """How two machine records differ as hardware, or None: the fingerprint, and the ISA flags where both have them."""
    if a["id"] != b["id"]:
        return f"{a['cpu']['model']} vs {b['cpu']['model']}, fingerprints {a['id']} vs {b['id']}"
    flags = [set(m["cpu"]["flags"]) if isinstance(m["cpu"].get("flags"), list) else None for m in (a, b)]
    if None not in flags and flags[0] != flags[1]:
        only = [f"{', '.join(sorted(x - y))} only in the {side}" for x, y, side in ((*flags, names[0]), (*flags[::-1], names[1])) if x - y]
        return f"one CPU name, {a['cpu']['model']}, but other instruction sets: {'; '.join(only)}"
    return None


def fingerprint() -> dict:
    cpu, gpus = cpu_info(), gpu_info()
    return {
        "id": machine_id({"cpu": cpu, "gpus": gpus}),
        "cpu": cpu,
        "gpus": gpus,
        "os": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
        "versions": package_versions(),
    }


def describe(machine: dict) -> str:
    """One line naming the machine a figure belongs to: CPU, ISA, GPUs and the runtime versions."""
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    gpus = ", ".join(str(g.get("name", "?")) for g in machine.get("gpus") or [] if isinstance(g, dict)) or "no GPU"
    versions = machine.get("versions") if isinstance(machine.get("versions"), dict) else {}
    versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    target = f"{machine['target']}: " if isinstance(machine.get("target"), str) else ""
    return f"{target}{cpu.get('model', '?')} ({cpu.get('logical_cores', '?')} cores; {' '.join(map(str, cpu.get('flags') or []))}); {gpus}; {versions}"


def check_machine(machine, where: str) -> dict:
    """A machine record read from a stranger's result file, with every field the reports read of the type
    they read it as (BadInput, exit 2, otherwise: a number where a list was expected is not a crash)."""
    from partialnet.errors import BadInput

    def refuse(field: str, expected: str):
        raise BadInput(f"{where}: the result's machine {field} is not {expected}")

    if not isinstance(machine, dict):
        refuse("record", "a JSON object")
    if not isinstance(machine.get("id"), str) or not isinstance(machine.get("cpu"), dict) or not isinstance(machine["cpu"].get("model"), str):
        raise BadInput(f"{where}: the result's machine lacks its id or cpu model")
    cpu = machine["cpu"]
    if len(cpu["model"]) > 200 or len(machine["id"]) > 200:  # a CPU's name is tens of characters; it titles every table
        refuse("cpu model or id", "a name of at most 200 characters")
    if "flags" in cpu and not (isinstance(cpu["flags"], list) and all(isinstance(f, str) for f in cpu["flags"])):
        refuse("cpu.flags", "a list of strings")
    for key in ("logical_cores", "usable_cores"):
        if cpu.get(key) is not None and (type(cpu[key]) is not int or not 1 <= cpu[key] <= MAX_THREADS):
            refuse(f"cpu.{key}", f"an integer from 1 to {MAX_THREADS}")
    if isinstance(cpu.get("usable_cores"), int) and isinstance(cpu.get("logical_cores"), int) and cpu["usable_cores"] > cpu["logical_cores"]:
        refuse("cpu.usable_cores", "at most its logical_cores (a process runs on some of the machine's cores)")
    gpus = machine.get("gpus")
    if gpus is not None and not (isinstance(gpus, list) and all(isinstance(g, dict) for g in gpus)):
        refuse("gpus", "a list of objects")
    for key in ("os", "python", "hostname", "target"):
        if machine.get(key) is not None and not isinstance(machine[key], str):
            refuse(key, "a string")
    versions = machine.get("versions")
    if versions is not None and not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        refuse("versions", "an object of version strings")
    machine["id"] = machine_id(machine)  # recomputed, never read: the id says which hardware the record describes
    return machine


def check_threads_on_machine(threads, machine: dict, where: str) -> None:
    """A result's thread count held to the machine it records: 64 threads on a 2-core machine is no run partialnet
    makes (bench, claims and matrix refuse more threads than cores), and its figures would be read as one."""
    from partialnet.errors import BadInput

    logical = machine["cpu"].get("logical_cores")
    if isinstance(logical, int) and isinstance(threads, int) and threads > logical:
        raise BadInput(f"{where} {threads}, more than the {logical} logical cores of the machine the file records")


def meminfo() -> dict[str, int]:
    """/proc/meminfo's fields in bytes ({} where there is none: not Linux); read by doctor and partialnet.memory."""
    fields = {}
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f.read(1 << 16).decode("ascii", "replace").splitlines():
                key, _, value = line.partition(":")
                if value.split() and value.split()[0].isdigit():
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        return {}
    return fields
