"""Which runtimes exist, what they run, and whether this machine can run them: one table, no guessing.

A row says everything a command needs about a runtime: the module under `partialnet.runtimes` that
holds its runner (and, where it has them, `device_reason(device)` for devices beyond the CPU and
`streams(...)` for `bench --streams`), what it runs, the extra and the importable backend behind it,
the module a bench worker imports first (timed on its own), the precisions, formats and devices it
takes, and the distributions a result's machine record lists. Adding a runtime is one module and one
row; no command names a runtime.

`availability(runtime, device)` answers with a reason when the answer is no, so a benchmark can list
what it skipped and why instead of failing or silently leaving rows out.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from partialnet.errors import BadInput, Unavailable

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    module: str  # partialnet.runtimes.<module>
    runner: str  # the runner class in that module; a worker builds it with Class.from_spec(spec)
    runs: str  # "deploy" (a folded torch model), "built" (an artifact built here from a checkpoint), "artifact" (given only)
    extra: str | None  # None: a core dependency
    precisions: tuple[str, ...]
    formats: tuple[str, ...] = ()  # artifact formats it runs; the first is what bench builds from a checkpoint
    devices: tuple[str, ...] = ("cpu", "cuda")
    default: bool = True  # in bench's default set; mobile runtimes are asked for by name (their exports are slow)
    backend: str | None = None  # the importable module probed for "installed", where it differs from the extra
    worker_import: str | None = None  # what a bench worker imports first ("module" or "module:function" to call), so load_s is the model's alone
    platform: tuple[str, str] | None = None  # (sys.platform it needs, why) where it runs on one OS only
    aliases: tuple[str, ...] = ()
    streams: bool = False  # its module has streams(): `bench --streams` keeps several requests in flight
    packages: tuple[str, ...] = ()  # distributions whose versions a result's machine record lists
    # precisions it computes from an fp32 artifact when asked at run time (no file of their own), and how a user asks
    computes: tuple[tuple[str, str], ...] = ()

    @property
    def probe(self) -> str | None:
        return self.backend or self.extra


RUNTIMES: dict[str, RuntimeSpec] = {
    r.name: r
    for r in (
        RuntimeSpec("pytorch", "torch_eager", "TorchRunner", "deploy", None, ("fp32", "bf16", "fp16"), worker_import="torch",
                    aliases=("torch", "eager")),
        RuntimeSpec("onnxruntime", "onnxruntime", "OnnxRuntimeRunner", "built", None, ("fp32", "fp16", "int8"), formats=("onnx",),
                    worker_import="onnxruntime", aliases=("ort",), streams=True, packages=("onnxruntime", "onnxruntime-gpu")),
        RuntimeSpec("openvino", "openvino", "OpenVinoRunner", "built", "openvino", ("fp32", "bf16", "fp16", "int8"), formats=("openvino", "onnx"),
                    devices=("cpu",), worker_import="openvino", aliases=("ov",), streams=True, packages=("openvino",),
                    computes=(("bf16", "with INFERENCE_PRECISION_HINT=bf16 (OpenVINO's default on bf16 CPUs)"),)),
        RuntimeSpec("executorch", "executorch", "ExecuTorchRunner", "built", "executorch", ("fp32", "int8"), formats=("executorch",),
                    devices=("cpu",), default=False, worker_import="partialnet.runtimes.executorch:load_runtime", aliases=("pte",), packages=("executorch",)),
        RuntimeSpec("litert", "litert", "LiteRTRunner", "built", "litert", ("fp32", "fp16", "int8"), formats=("litert",), devices=("cpu",),
                    default=False, backend="ai_edge_litert", worker_import="ai_edge_litert.interpreter", aliases=("tflite",),
                    packages=("ai-edge-litert",)),
        RuntimeSpec("coreml", "coreml", "CoreMLRunner", "artifact", "coreml", ("fp32", "fp16"), formats=("coreml",), devices=("cpu",),
                    backend="coremltools", worker_import="coremltools", platform=("darwin", "Core ML predicts on macOS only"),
                    packages=("coremltools",)),
        # Built here from a checkpoint like the other exported runtimes (where TensorRT and a GPU are present)
        RuntimeSpec("tensorrt", "tensorrt", "TensorRTRunner", "built", "tensorrt", ("fp32", "fp16", "int8"), formats=("trt",),
                    devices=("cuda",), worker_import="tensorrt", aliases=("trt",), packages=("tensorrt",)),
    )
}
DEPLOY_RUNTIME = next(r.name for r in RUNTIMES.values() if r.runs == "deploy")  # the reference every artifact is held to
AB_DEFAULT = "onnxruntime"  # `bench --ab` without --runtime: the runtime every install has for both sides' artifacts


def computed_precision(runtime: str, precision: str) -> str | None:
    """How a user asks `runtime` to compute `precision` from an fp32 artifact, or None where it has no such mode."""
    return dict(RUNTIMES[runtime].computes).get(precision)


def check_compute(compute: str) -> str:
    """`verify --compute`: a precision some runtime computes from an fp32 file (which one, the artifact decides), as named."""
    from partialnet.options import choice

    offered = sorted({p for spec in RUNTIMES.values() for p, _ in spec.computes})
    return choice(compute, offered, "--compute", f"{' or '.join(offered)} (a precision a runtime computes from an fp32 file)")


def get_runtime(name: str) -> RuntimeSpec:
    key = name.strip().lower()
    for spec in RUNTIMES.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise BadInput(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")


def resolve_runtimes(names: list[str] | None) -> list[str]:
    """The runtimes a --runtime list names (aliases allowed, each once), or the default set."""
    if not names:
        return [name for name, spec in RUNTIMES.items() if spec.default]
    from partialnet.limits import check_once

    return check_once([get_runtime(n).name for n in names], "--runtime", ",".join(names))


def refuse_here_without_gpu(device: str, runtimes: list[str], precision: str = "fp32") -> None:
    """Exit 3 for `--device cuda` here on a machine with no GPU driver, as soon as the options are read:
    before torch's import (1.3 s of a 1.7 s refusal) and before any file is read, since no row could run
    here whatever the files hold. Where a driver is present the runtimes answer later, as before."""
    from partialnet.machine import no_cuda_reason

    if device != "cuda" or no_cuda_reason() is None:
        return
    listed = "; ".join(f"{name}: {availability(name, device, precision)}" for name in sorted(runtimes))
    raise Unavailable(f"no runtime can run on cuda here ({listed})")


def runtime_module(name: str):
    return importlib.import_module(f"partialnet.runtimes.{RUNTIMES[name].module}")


def never_runs(name: str, device: str, precision: str = "fp32") -> str | None:
    """Why `name` runs `precision` on `device` on no machine at all (its row says so), or None: asking for it
    is a usage error (exit 2), not this machine's lack (exit 3)."""
    spec = RUNTIMES[name]
    if precision not in spec.precisions:
        *rest, last = spec.precisions
        return f"runs {', '.join(rest) + ' or ' if rest else ''}{last}, never {precision}"
    if device not in spec.devices:
        return f"runs on {' or '.join(spec.devices)} only, not {device}"
    return None


def never_runs_source(name: str, device: str, precision: str, artifact: str | None) -> str | None:
    """Why `name` runs a source on `device` on no machine at all, or None; `artifact`: the format of a given
    artifact (which runs at its own precision), None for a checkpoint or variant name (run at `precision`)."""
    spec = RUNTIMES[name]
    if artifact is None:
        if spec.runs == "artifact":
            return f"runs exported artifacts only: give one (partialnet export --format {', '.join(spec.formats)})"
        return never_runs(name, device, precision)
    if spec.runs == "deploy":
        return "runs checkpoints and variant names, not exported artifacts"
    if artifact not in spec.formats:
        return f"does not run {artifact} artifacts"
    return never_runs(name, device)


def availability(name: str, device: str, precision: str = "fp32") -> str | None:
    """None when `name` can run on `device` at `precision` here, else the reason it cannot."""
    spec = RUNTIMES[name]
    if reason := never_runs(name, device, precision):
        return reason
    if spec.extra and importlib.util.find_spec(spec.probe) is None:
        return f"not installed (pip install 'partialnet[{spec.extra}]')"
    if spec.platform and sys.platform != spec.platform[0]:
        return spec.platform[1]
    if device == "cpu":
        return None
    if device == "cuda":
        from partialnet.machine import no_cuda_reason

        if reason := no_cuda_reason():  # said before the runtime's import, which for pytorch is torch's
            return reason
    device_reason = getattr(runtime_module(name), "device_reason", None)
    return device_reason(device) if device_reason else f"{name} does not support {device}"


def runner_class(name: str):
    spec = RUNTIMES[name]
    return getattr(runtime_module(name), spec.runner)


def artifact_runner(name: str, path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
    """The runner of runtime `name` for an exported artifact; every artifact runner takes the same arguments."""
    return runner_class(name)(Path(path), threads=threads, precision=precision, device=device)


def spec_runner(spec: dict):
    """The runner a bench worker's spec asks for, built by its class from the spec alone."""
    if spec.get("runtime") not in RUNTIMES:
        raise BadInput(f"unknown runtime {spec.get('runtime')!r}")
    return runner_class(spec["runtime"]).from_spec(spec)
