"""The format table: one row per export format, driving the CLI's choices, validation, docs and benches.

A row names its file suffix, the extra that installs its backend, the devices it targets, the export
options it accepts, the module that writes it and the runtime that verifies it.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from partialnet.errors import BadInput
from partialnet.exporters.sidecar import sidecar
from partialnet.inputs import a_or_an, inert


@dataclass(frozen=True)
class Format:
    name: str
    aliases: tuple[str, ...]
    suffix: str
    extra: str | None  # None: the backend is a core dependency
    devices: tuple[str, ...]
    options: frozenset[str]
    exporter: str  # module under partialnet.exporters with export(model, staged, options, metadata, workdir)
    runtime: str  # runner that verifies the artifact
    description: str = ""
    module: str | None = None  # the importable backend, when its name differs from the extra's
    fallback: bool = False  # without its backend, the exporter still prepares what it can and exits 3
    requires: str = ""  # hardware or platform the format's own builder needs beyond the package
    default_precision: str = "fp32"  # what an export is without --half/--int8/--fp32
    packages: tuple[str, ...] = ()  # distributions of its exporter that a result's machine record lists
    calib_methods: tuple[str, ...] = ()  # --calib-method choices of its INT8 quantizer, its default first
    keep_float_kinds: tuple[str, ...] = ()  # op kinds --int8-keep-float can keep in float (layers: any INT8 format)
    # built on the machine that runs it (export --target): the builder command there, and where it lives
    # when it is not on PATH
    build_tool: tuple[str, tuple[str, ...]] | None = None
    python_bound: bool = False  # its export is long single-threaded Python (lowering passes): `matrix` runs it on the other core
    companions: tuple[str, ...] = ()  # files the artifact runs from beside it, by suffix (an IR's .bin: its weights)
    artifact_kind: str = "file"  # "dir": the artifact is a folder (.mlpackage)
    # what its fp16 and INT8 artifacts take and return, where not float32: the manifest says how to feed the file
    half_io: bool = False  # an fp16 artifact's input and output are float16
    int8_io: bool = False  # an INT8 artifact's input and output are int8, quantized with the tensors' scale and zero point

    @property
    def backend(self) -> str | None:
        return self.module or self.extra


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            name="onnx",
            aliases=("onnxruntime", "ort"),
            suffix=".onnx",
            extra=None,
            devices=("cpu", "cuda"),
            options=frozenset({"imgsz", "batch", "dynamic", "opset", "simplify", "half", "int8", "data", "calib_size", "calib_method", "int8_keep_float"}),
            exporter="onnx",
            half_io=True,
            calib_methods=("minmax", "entropy", "percentile"),
            keep_float_kinds=("conv", "linear", "add", "mul", "concat", "pool"),
            runtime="onnxruntime",
            description="ONNX (simplified; INT8 as static QDQ from ONNX Runtime's quantizer)",
        ),
        Format(
            name="openvino",
            aliases=("ov", "ir"),
            suffix=".xml",
            extra="openvino",
            devices=("cpu",),
            options=frozenset({"imgsz", "batch", "dynamic", "half", "int8", "data", "calib_size", "calib_method", "int8_keep_float"}),
            exporter="openvino",
            companions=(".bin",),
            calib_methods=("mean-minmax", "minmax", "percentile", "histogram"),
            keep_float_kinds=("conv", "linear", "add", "mul", "concat", "pool"),
            runtime="openvino",
            description="OpenVINO IR .xml + .bin (fp16-compressed weights with --half, NNCF INT8 with --int8)",
        ),
        Format(
            name="trt",
            aliases=("tensorrt", "engine"),
            suffix=".engine",
            extra="tensorrt",
            devices=("cuda",),
            options=frozenset(
                {"imgsz", "batch", "dynamic", "max_batch", "opset", "simplify", "half", "int8", "data", "calib_size", "calib_method", "int8_keep_float",
                 "workspace"}
            ),
            exporter="tensorrt",
            half_io=True,  # the TensorRT-ready fp16 ONNX, and the strongly typed engine built from it
            calib_methods=("minmax", "entropy", "percentile"),
            keep_float_kinds=("conv", "linear", "add", "mul", "concat", "pool"),
            runtime="tensorrt",
            description="TensorRT engine built from the deploy ONNX (fp16 cast or INT8 QDQ in the ONNX itself)",
            fallback=True,
            requires="an NVIDIA GPU with CUDA",
            build_tool=("trtexec", ("/usr/src/tensorrt/bin", "/usr/local/tensorrt/bin", "/opt/tensorrt/bin")),  # JetPack, tarball installs
        ),
        Format(
            name="coreml",
            aliases=("mlpackage",),
            suffix=".mlpackage",
            extra="coreml",
            module="coremltools",
            devices=("apple",),
            options=frozenset({"imgsz", "batch", "half", "fp32", "min_target", "image_input"}),
            exporter="coreml",
            artifact_kind="dir",
            runtime="coreml",
            description="Core ML ML program (.mlpackage directory); fp16 compute by default, --fp32 to keep fp32",
            default_precision="fp16",
        ),
        Format(
            name="executorch",
            aliases=("pte",),
            suffix=".pte",
            extra="executorch",
            devices=("cpu",),
            options=frozenset({"imgsz", "batch", "int8", "data", "calib_size", "calib_method", "int8_keep_float"}),
            exporter="executorch",
            calib_methods=("histogram", "minmax"),
            keep_float_kinds=("conv", "linear"),
            python_bound=True,
            runtime="executorch",
            description="ExecuTorch program lowered to XNNPACK (fixed batch; INT8 with the XNNPACK quantizer)",
        ),
        Format(
            name="litert",
            aliases=("tflite",),
            suffix=".tflite",
            extra="litert",
            module="litert_torch",
            packages=("litert-torch",),
            devices=("cpu",),
            options=frozenset({"imgsz", "batch", "half", "int8", "data", "calib_size", "calib_method", "int8_keep_float"}),
            exporter="litert",
            int8_io=True,
            calib_methods=("histogram", "minmax"),
            keep_float_kinds=("conv", "linear"),
            runtime="litert",
            description="LiteRT .tflite from litert-torch (fp16 weights with --half, full-integer INT8 with --int8), "
            "run by the LiteRT interpreter with XNNPACK",
        ),
    )
}


DEFAULT_FORMAT = "onnx"  # `export` without --format: the core install writes and verifies it everywhere


def get_format(name: str) -> Format:
    if not isinstance(name, str):
        raise BadInput(f"format: expected a name ({', '.join(FORMATS)}), got {type(name).__name__}")
    key = name.strip().lower()
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            return fmt
    raise BadInput(f"unknown format {name!r}; known: {', '.join(FORMATS)}")


def check_artifact_name(out: Path, fmt: Format) -> None:
    """The output path names a file of this format: its suffix, and not a folder that already exists."""
    if Path(out).is_dir() and not fmt.suffix.endswith(".mlpackage"):
        raise BadInput(f"{out} is a directory; give a file name ending in {fmt.suffix} (or --format all to write every format into a folder)")
    if not Path(out).name.endswith(fmt.suffix):
        raise BadInput(f"{out}: {a_or_an(fmt.name)} artifact must end in {fmt.suffix}")


def published(fmt: Format, out: Path, typed: bool = True) -> list | None:
    """What an export publishes, together or not at all: the artifact, its companions, the manifest (last).
    None for a format that prepares other files where its builder is missing (TensorRT: its exporter names them).
    Without `typed` (no -o given) messages say the path is the default one, not an -o the user never passed.
    Torch-free: `export` refuses an output that exists before torch is imported."""
    from partialnet.outputs import Output

    if fmt.fallback:
        return None
    option = "-o" if typed else "the default output (no -o given):"
    out = Path(out)
    return [Output(out, option, kind=fmt.artifact_kind), *(Output(out.with_suffix(s), f"{option} ({s})") for s in fmt.companions),
            Output(sidecar(out), "manifest")]


def format_for_path(path) -> Format:
    suffix = str(path).lower()
    for fmt in FORMATS.values():
        if suffix.endswith(fmt.suffix):
            return fmt
    raise BadInput(f"{path}: unknown artifact type (known suffixes: {', '.join(f.suffix for f in FORMATS.values())})")


def check_manifest(path) -> dict | None:
    """The export manifest beside an artifact (None where there is none), refused when it is another artifact's:
    the sha256 it records is not the file's. It says where the artifact came from (the identity check against --ref) and
    how it fared (an INT8 file's agreement): a manifest copied beside the wrong file would vouch for it."""
    from partialnet.errors import CheckFailed
    from partialnet.inputs import read_beside, sha256_of

    path = Path(path)
    manifest_path = sidecar(path)
    manifest = read_beside(manifest_path, "export manifest")
    if manifest is None:
        return None
    if not isinstance(manifest, dict):
        raise BadInput(f"{manifest_path}: not an export manifest (a JSON object, as export writes)")
    recorded = {path: manifest["sha256"]} if "sha256" in manifest else {}
    recorded.update({path.with_suffix(suffix): digest for suffix, digest in _companion_hashes(manifest, manifest_path).items()})
    for file, digest in recorded.items():
        if not file.exists():
            raise CheckFailed(f"{manifest_path}: records {file.name} beside {path.name}, but there is none: the artifact is not whole")
        if digest != sha256_of(file):
            raise CheckFailed(f"{manifest_path}: records sha256 {str(digest)[:16]}…, but {file.name} hashes to another: "
                              "the manifest of another artifact, or the artifact changed after export")
    return manifest


def _companion_hashes(manifest: dict, manifest_path: Path) -> dict[str, str]:
    """The sha256 of each file the artifact runs from beside it, by suffix (`companion_sha256`, absent from
    manifests before it), so an IR's .bin, its weights, is vouched for as its .xml is."""
    hashes = manifest.get("companion_sha256", {})
    if not isinstance(hashes, dict) or len(hashes) > MAX_COMPANIONS:
        raise BadInput(f"{manifest_path}: companion_sha256 is not a map of at most {MAX_COMPANIONS} suffixes to sha256 digests")
    for suffix, digest in hashes.items():
        if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
            raise BadInput(f"{manifest_path}: companion_sha256 names {inert(suffix)!r}, not a file suffix such as '.bin'")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BadInput(f"{manifest_path}: companion_sha256 of {suffix!r} is not a sha256 digest")
    return hashes


MAX_COMPANIONS = 8


def exporter_of(fmt: Format):
    """The format's module: `export`, `read_io`, and the optional hooks listed in `partialnet.exporters.contract`."""
    return importlib.import_module(f"partialnet.exporters.{fmt.exporter}")


def read_io(path, **known) -> dict:
    """An artifact's inputs, outputs, precision and metadata, read by its own format's reader (by suffix)."""
    return exporter_of(format_for_path(path)).read_io(Path(path), **known)


def check_built_on_target(fmt: Format, targets: int) -> None:
    """What export --target takes: one target, and a format that must be built on its own machine. Said before
    torch is imported (the refusal had come after a second and a half of imports, and their timing line)."""
    from partialnet.errors import BadInput

    if targets != 1:
        raise BadInput("export --target builds on one target; give one ssh://HOST")
    if fmt.build_tool is None:
        built = ", ".join(f.name for f in FORMATS.values() if f.build_tool)
        raise BadInput(f"export --target builds what must be built on its own machine ({built}); {fmt.name} artifacts are portable: "
                       "export here, then `bench --target` / `verify --target`")
