"""The format table: one row per export format, driving the CLI's choices, validation, docs and benches.

A row names its file suffix, the extra that installs its backend, the devices it targets, the export
options it accepts, the module that writes it and the runtime that verifies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from partialnet.errors import BadInput


@dataclass(frozen=True)
class Format:
    name: str
    aliases: tuple[str, ...]
    suffix: str
    extra: str | None  # None: the backend is a core dependency
    devices: tuple[str, ...]
    options: frozenset[str]
    exporter: str  # module under partialnet.exporters with export(model, path, options)
    runtime: str  # runner that verifies the artifact


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            name="onnx",
            aliases=("onnxruntime", "ort"),
            suffix=".onnx",
            extra=None,
            devices=("cpu", "cuda"),
            options=frozenset({"imgsz", "batch", "dynamic", "opset", "simplify", "half"}),
            exporter="onnx",
            runtime="onnxruntime",
        ),
        Format(
            name="openvino",
            aliases=("ov", "ir"),
            suffix=".xml",
            extra="openvino",
            devices=("cpu",),
            options=frozenset({"imgsz", "batch", "dynamic", "half"}),
            exporter="openvino",
            runtime="openvino",
        ),
    )
}


def get_format(name: str) -> Format:
    key = name.strip().lower()
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            return fmt
    raise BadInput(f"unknown format {name!r}; available here: {', '.join(FORMATS)}")


def format_for_path(path) -> Format:
    suffix = str(path).lower()
    for fmt in FORMATS.values():
        if suffix.endswith(fmt.suffix):
            return fmt
    raise BadInput(f"{path}: unknown artifact type (known suffixes: {', '.join(f.suffix for f in FORMATS.values())})")
