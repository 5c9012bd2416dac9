"""TensorRT engines from the deploy ONNX, or, where TensorRT or a GPU is missing, everything but the engine.

The precision lives in the ONNX itself (an fp16 graph, or INT8 as QDQ with symmetric activations),
because TensorRT 11 builds only strongly typed networks and rejects the old precision flags. TensorRT
10 is driven the way it expects: the fp32 graph with the FP16 flag, or the QDQ graph with the INT8 flag.

Without TensorRT and a CUDA GPU (this machine, CI), the export still does all it can: it writes the
TensorRT-ready ONNX (verified in ONNX Runtime like any ONNX), a `build_engine.sh` beside it with the
exact trtexec command and a polygraphy check of the built engine against ONNX Runtime, and exits 3.
It never writes an engine it did not build.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from dataclasses import replace
from pathlib import Path

from torch import nn

from partialnet.errors import BadInput, Unavailable, missing_extra
from partialnet.exporters import onnx as onnx_exporter
from partialnet.exporters.options import ExportOptions
from partialnet.exporters.sidecar import sidecar  # noqa: F401  (remote.engine reads the engine manifest beside it through the exporter)
from partialnet.inputs import check_regular, read_beside
from partialnet.limits import check_input_shape
from partialnet.outputs import Output

DEFAULT_WORKSPACE_GB = 4.0
DEFAULT_MAX_BATCH = 32
MAX_ENGINE_BYTES = 4 << 30
# What polygraphy accepts between the built engine and ONNX Runtime on the same graph. fp32 allows
# for TF32, which TensorRT uses for fp32 convolutions on Ampere and newer unless told otherwise.
POLYGRAPHY_TOLERANCES = {"fp32": "--atol 1e-2 --rtol 1e-2", "fp16": "--atol 5e-2 --rtol 5e-2", "int8": "--atol 0.5 --rtol 0.2 --check-error-stat median"}


PREPARES = "writes the TensorRT-ready ONNX and build_engine.sh"  # what an export does where no engine can be built


def unavailable_reason() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are both present."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (pip install 'partialnet[tensorrt]' on a machine with an NVIDIA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def file_word(name: str | Path) -> str:
    """A file name as one shell word that no command reads as an option: quoted, and ./ before a leading '-'."""
    name = str(name)
    return shlex.quote(f"./{name}" if name.startswith("-") else name)


def file_arg(name: str | Path) -> str:
    """A file name as one argv element that no command reads as an option (for shlex.join)."""
    name = str(name)
    return f"./{name}" if name.startswith("-") else name


def ready_onnx_path(out: Path) -> Path:
    """`model.engine` -> `model.trt.onnx`: the graph an engine is built from, never mistaken for a plain export."""
    return out.with_name(out.name[: -len(".engine")] + ".trt.onnx")


def script_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(".engine")] + ".build_engine.sh")


def timing_cache_path(out: Path) -> Path:
    return out.with_name(out.name[: -len(".engine")] + ".timing.cache")


def artifact_paths(out: Path, built_elsewhere: bool = False) -> list[Output]:
    if unavailable_reason() is None and not built_elsewhere:
        return [Output(out, "-o"), Output(timing_cache_path(out), "timing cache")]
    return [Output(ready_onnx_path(out), "-o (TensorRT-ready ONNX)"), Output(script_path(out), "build script", executable=True)]


def load_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise missing_extra("tensorrt", "tensorrt") from None
    return tensorrt


def trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def ready_options(options: ExportOptions, major: int | None) -> ExportOptions:
    """The ONNX options for a TensorRT build: fp16 cast into the graph unless TensorRT 10 flags do it."""
    if options.half and major == 10:
        return replace(options, half=False)
    return options


def shape_flags(options: ExportOptions, name: str = onnx_exporter.INPUT_NAME) -> list[str]:
    h, w = options.imgsz
    if not options.dynamic:
        return []
    top = options.max_batch or max(DEFAULT_MAX_BATCH, options.batch)
    return [f"--minShapes={name}:1x3x{h}x{w}", f"--optShapes={name}:{options.batch}x3x{h}x{w}", f"--maxShapes={name}:{top}x3x{h}x{w}"]


def trtexec_command(onnx_name: str, engine_name: str, cache_name: str, options: ExportOptions) -> list[str]:
    workspace_mb = int((options.workspace or DEFAULT_WORKSPACE_GB) * 1024)
    return [
        "trtexec",
        f"--onnx={file_arg(onnx_name)}",
        f"--saveEngine={file_arg(engine_name)}",
        *shape_flags(options),
        f"--memPoolSize=workspace:{workspace_mb}M",
        f"--timingCacheFile={file_arg(cache_name)}",
        "--skipInference",
    ]


def polygraphy_commands(onnx_name: str, engine_name: str, options: ExportOptions) -> list[list[str]]:
    h, w = options.imgsz
    shape = f"{onnx_exporter.INPUT_NAME}:[{options.batch},3,{h},{w}]"
    stem = engine_name.rsplit(".", 1)[0]
    inputs, outputs = file_arg(f"{stem}.polygraphy-inputs.json"), file_arg(f"{stem}.onnxrt-outputs.json")
    onnx_name, engine_name = file_arg(onnx_name), file_arg(engine_name)
    return [
        ["polygraphy", "run", onnx_name, "--onnxrt", "--input-shapes", shape, "--save-inputs", inputs, "--save-outputs", outputs],
        ["polygraphy", "run", engine_name, "--model-type", "engine", "--trt", "--load-inputs", inputs, "--load-outputs", outputs,
         *POLYGRAPHY_TOLERANCES[options.precision].split()],
    ]


def build_script(out: Path, options: ExportOptions, metadata: dict[str, str]) -> str:
    """A bash script that builds the engine beside itself and checks it against ONNX Runtime.

    Every name in it, comments included, is one quoted shell word; a name with a control character is
    refused (a newline would end a comment line and start a command)."""
    from partialnet.outputs import check_name

    onnx_name, engine_name, cache_name = ready_onnx_path(out).name, out.name, timing_cache_path(out).name
    for name in (onnx_name, engine_name, cache_name, str(metadata.get("partialnet_version", "")), str(metadata.get("variant", ""))):
        check_name(name, "a name in the build script")
    build = trtexec_command(onnx_name, engine_name, cache_name, options)
    checks = polygraphy_commands(onnx_name, engine_name, options)
    q = shlex.join
    lines = [
        "#!/usr/bin/env bash",
        f"# Written by partialnet {shlex.quote(metadata.get('partialnet_version', ''))} for {shlex.quote(metadata.get('variant', ''))} "
        f"({options.precision}, batch {'dynamic' if options.dynamic else options.batch}, {options.imgsz[0]}x{options.imgsz[1]}).",
        f"# Builds {file_word(engine_name)} from {file_word(onnx_name)} (the precision is in the graph: strongly typed), then checks the",
        "# engine against ONNX Runtime on the same inputs. Run it on the machine that will run the engine:",
        "# an engine is tied to its GPU and TensorRT version.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "command -v trtexec >/dev/null || { echo 'trtexec not found: install TensorRT and put its bin/ on PATH' >&2; exit 3; }",
        "# TensorRT 10 needs --stronglyTyped to keep the graph's precision; TensorRT 11 always does and dropped the flag.",
        "version=$(trtexec --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n1 | tr -dc '0-9' || true)",
        "typed=()",
        'if [ -n "$version" ] && [ "$version" -lt 110000 ]; then typed=(--stronglyTyped); fi',
        f'{q(build)} "${{typed[@]}}"',
        *_manifest_lines(engine_name, options, metadata),
        "if command -v polygraphy >/dev/null; then",
        *(f"  {q(cmd)}" for cmd in checks),
        "else",
        "  echo 'polygraphy not found (pip install polygraphy): engine built but not checked' >&2",
        "fi",
        "",
    ]
    return "\n".join(lines)


def _manifest_lines(engine_name: str, options: ExportOptions, metadata: dict[str, str]) -> list[str]:
    """The build script's step that writes the engine's manifest: the record embedded as a Python literal (no name
    becomes code), completed on the GPU machine with its TensorRT version, GPU and compute capability."""
    record = repr(json.dumps(script_record(options, metadata), sort_keys=True))
    return [
        "# The manifest partialnet verify and bench read beside the engine: what it was built for (this machine's TensorRT and GPU).",
        f"if ! python3 - {file_word(engine_name + '.json')} <<'PY'",
        "import json, sys",
        f"record = json.loads({record})",
        "try:",
        "    import tensorrt, torch",
        "except ImportError as exc:",
        "    sys.exit(str(exc))",
        "if not torch.cuda.is_available():",
        "    sys.exit('torch sees no CUDA GPU')",
        "cc = torch.cuda.get_device_capability(0)",
        "record['built_for'].update(tensorrt=tensorrt.__version__, gpu=torch.cuda.get_device_name(0), compute_capability=f'{cc[0]}.{cc[1]}')",
        "with open(sys.argv[1], 'w') as f:",
        "    json.dump(record, f, indent=1)",
        "print('wrote ' + sys.argv[1] + ': partialnet verify and bench read it beside the engine')",
        "PY",
        "then",
        "  echo 'no manifest written beside the engine (it needs the tensorrt and torch Python packages, and a GPU torch sees):"
        " partialnet verify and bench refuse an engine without one' >&2",
        "fi",
    ]


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    """Build and save the engine (verified by the TensorRT runner), or prepare it for another machine."""
    reason = "built on the target" if options.built_elsewhere else unavailable_reason()
    first = staged[0].output.path
    out = first.with_name(first.name.removesuffix(".trt.onnx") + ".engine") if reason else first
    if reason is not None:
        proto, stats = onnx_exporter.build(model, ready_options(options, None), {**metadata, "target": "tensorrt"}, workdir, for_tensorrt=True)
        staged[0].write_bytes(proto.SerializeToString())
        staged[1].write_text(build_script(out, options, metadata))
        script = script_path(out)
        stats.update(
            verify_format="onnx",
            engine="not built",
            build_command=shlex.join(trtexec_command(ready_onnx_path(out).name, out.name, timing_cache_path(out).name, options)),
            check_commands=[shlex.join(c) for c in polygraphy_commands(ready_onnx_path(out).name, out.name, options)],
            unavailable=(
                f"no TensorRT engine built: {reason}. Wrote the TensorRT-ready ONNX {ready_onnx_path(out)} (verified in ONNX Runtime) "
                f"and {script}; on the GPU machine run: bash {file_word(script)}"
            ),
            unavailable_short=f"no engine built here ({reason.split(' (')[0]}); its ONNX is verified in ONNX Runtime; "
            f"finish with bash {file_word(script)}",
        )
        return stats
    return _build_engine(model, staged, options, metadata, workdir, out)


def _build_engine(model, staged, options: ExportOptions, metadata: dict[str, str], workdir: Path, out: Path) -> dict:

    trt = load_tensorrt()
    major = trt_major(trt)
    proto, stats = onnx_exporter.build(model, ready_options(options, major), {**metadata, "target": "tensorrt"}, workdir, for_tensorrt=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(proto.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"TensorRT's ONNX parser rejected the graph: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int((options.workspace or DEFAULT_WORKSPACE_GB) * (1 << 30)))
    if major == 10:  # weakly typed: the precision comes from flags
        if options.half:
            config.set_flag(trt.BuilderFlag.FP16)
        if options.int8:
            config.set_flag(trt.BuilderFlag.INT8)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    h, w = options.imgsz
    if options.dynamic:
        profile = builder.create_optimization_profile()
        top = options.max_batch or max(DEFAULT_MAX_BATCH, options.batch)
        profile.set_shape(onnx_exporter.INPUT_NAME, (1, 3, h, w), (options.batch, 3, h, w), (top, 3, h, w))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BadInput("TensorRT could not build an engine from the graph (see its log above)")
    engine_bytes = bytes(serialized)
    engine_path = workdir / "model.engine"
    engine_path.write_bytes(engine_bytes)
    staged[0].write_bytes(engine_bytes)
    staged[1].write_bytes(bytes(config.get_timing_cache().serialize()))
    built_for = engine_record(options, machine_record())
    (workdir / "model.engine.json").write_text(json.dumps({"metadata": {**metadata, "precision": options.precision}, "built_for": built_for}))
    stats.update(verify_path=str(engine_path), engine_bytes=len(engine_bytes), built_for=built_for)
    return stats


def machine_record() -> dict:
    """What an engine built here is tied to: the TensorRT version, the GPU and its compute capability."""
    import torch

    trt = load_tensorrt()
    if not torch.cuda.is_available():
        raise Unavailable("a TensorRT engine needs a CUDA GPU; none is visible here")
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}


def engine_record(options: ExportOptions, machine: dict) -> dict:
    """The manifest's `built_for`: the machine's record and how the engine was asked to be built."""
    h, w = options.imgsz
    major = int(str(machine.get("tensorrt", "0")).split(".")[0] or 0)
    return {**{k: machine.get(k) for k in ("tensorrt", "gpu", "compute_capability")},
            "precision": options.precision,
            "typing": "weak (builder flags)" if major == 10 else "strong (precision in the ONNX)",
            "input_shape": "dynamic" if options.dynamic else [options.batch, 3, h, w],
            "profile": shape_flags(options) or None}


def script_record(options: ExportOptions, metadata: dict[str, str]) -> dict:
    """The engine manifest the build script writes, less what only the GPU machine knows (its TensorRT version,
    GPU and compute capability, which the script fills in): without one, verify and bench refused the engine it
    built. Strongly typed whatever the version: the script gives TensorRT 10 --stronglyTyped."""
    return {"metadata": {**metadata, "precision": options.precision, "built_by": "the build script partialnet wrote"},
            "built_for": {**engine_record(options, {"tensorrt": "11"}), "tensorrt": None}}


def prepared_files(out: Path) -> list[Path]:
    """What an export with built_elsewhere leaves to build from: the TensorRT-ready ONNX and its script."""
    return [ready_onnx_path(out), script_path(out)]


def read_io(path: Path) -> dict:
    """Shapes, precision and build record of an engine, from the manifest beside it (engines are opaque)."""
    path = Path(path)
    check_regular(path, "TensorRT engine", max_bytes=MAX_ENGINE_BYTES)
    record_path = sidecar(path)
    record = read_beside(record_path, "engine manifest")
    if record is None:
        raise BadInput(f"{path}: no {record_path.name} beside it; partialnet runs engines it built (with the record of what they were built for)")
    if not isinstance(record, dict):
        raise BadInput(f"{record_path}: not a partialnet engine manifest")
    graph = record.get("graph")
    built_for = record.get("built_for") or (graph.get("built_for") if isinstance(graph, dict) else None)
    metadata = record.get("metadata") or {}
    if not isinstance(built_for, dict) or not isinstance(metadata, dict):
        raise BadInput(f"{record_path}: not a partialnet engine manifest (no built_for record)")
    shape = built_for.get("input_shape")
    try:
        h, w = (int(v) for v in str(metadata.get("imgsz", "224,224")).split(","))
    except ValueError:
        raise BadInput(f"{record_path}: imgsz {ascii(str(metadata.get('imgsz')))[:40]} is not H,W") from None
    dynamic = shape == "dynamic"
    if not dynamic and not (isinstance(shape, list) and len(shape) == 4 and all(type(d) is int and 0 < d <= 1 << 16 for d in shape)):
        raise BadInput(f"{record_path}: built_for.input_shape {ascii(shape)[:60]} is neither 'dynamic' nor four positive integers")
    check_input_shape(None if dynamic else shape[0], h, w, f"{record_path}: imgsz")
    precision = built_for.get("precision", "fp32")
    if precision not in ("fp32", "fp16", "int8"):
        raise BadInput(f"{record_path}: built_for.precision {ascii(precision)[:40]} is not fp32, fp16 or int8")
    return {
        "batch": None if dynamic else int(shape[0]),
        "dynamic": dynamic,
        "imgsz": (h, w),
        "precision": precision,
        "metadata": {str(k)[:200]: str(v)[:2000] for k, v in list(metadata.items())[:256]},
        "built_for": built_for,
    }


def check_built_for(built_for: dict) -> None:
    """Refuse, with the reason, an engine built for another TensorRT or GPU: it would fail or mislead."""
    import torch

    trt = load_tensorrt()
    if not torch.cuda.is_available():
        raise Unavailable("a TensorRT engine needs a CUDA GPU; none is visible here")
    here = {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0), "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    for key, value in here.items():
        if built_for.get(key) != value:
            raise Unavailable(f"engine built for {key} {built_for.get(key)}, this machine has {value}: rebuild it here (partialnet export --format trt)")
