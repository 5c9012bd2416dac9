"""What the user asked an export to be, in one object every exporter reads, plus the rule for who takes what.

Options a format does not take are refused by name before anything loads (see `check_options`), so a
user who writes `--opset 17 --format openvino` learns at once that OpenVINO has no opset, instead of
having it silently ignored after a minute of work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from partialnet.errors import BadInput

DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's floor
MAX_OPSET = 26  # the newest opset exported and run through ONNX Runtime in this project's tests
DEFAULT_CALIB_SIZE = 300
MAX_WORKSPACE_GB = 1024.0

# The option's name in the format table -> the flag a user types.
FLAGS = {
    "imgsz": "--imgsz",
    "batch": "--batch",
    "dynamic": "--dynamic",
    "max_batch": "--max-batch",
    "opset": "--opset",
    "simplify": "--no-simplify",
    "half": "--half",
    "fp32": "--fp32",
    "int8": "--int8",
    "data": "--data",
    "calib_size": "--calib-size",
    "workspace": "--workspace",
    "min_target": "--min-target",
    "image_input": "--image-input",
}


@dataclass
class ExportOptions:
    imgsz: tuple[int, int] = (224, 224)
    batch: int = 1
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    half: bool = False
    int8: bool = False
    data: str | None = None  # calibration source: "digits" or a folder of images
    calib_size: int = DEFAULT_CALIB_SIZE
    workspace: float | None = None  # TensorRT builder memory pool, GB
    max_batch: int | None = None  # TensorRT optimisation profile's largest batch (with --dynamic)
    fp32: bool = False  # keep fp32 where a format defaults to fp16 (Core ML)
    min_target: str | None = None  # Core ML minimum deployment target, e.g. iOS16
    image_input: bool = False  # Core ML: an image input with the normalisation inside
    calibration: np.ndarray | None = field(default=None, repr=False, compare=False)  # filled in by the caller (api, bench)

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"

    def to_dict(self) -> dict:
        """The manifest's record of the options (the calibration array itself is summarised, not stored)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "calibration"}
        values["imgsz"] = list(self.imgsz)
        values["calibration_images"] = None if self.calibration is None else int(len(self.calibration))
        return values


# Back-compatible name: the ONNX exporter's options were the first of these.
OnnxOptions = ExportOptions


def check_opset(opset: int) -> None:
    """Checked with the other options, before any checkpoint is loaded."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"--opset {opset} unsupported: expected {MIN_OPSET} to {MAX_OPSET} (torch's exporter needs >= {MIN_OPSET})")


def check_options(format_name: str, given: set[str], formats: dict) -> None:
    """Refuse every option the format does not take, naming the formats that do."""
    taken = formats[format_name].options
    for name in sorted(given - taken, key=list(FLAGS).index):
        takers = [f.name for f in formats.values() if name in f.options]
        where = f"formats that take it: {', '.join(takers)}" if takers else "no format takes it"
        raise BadInput(f"{FLAGS[name]} does not apply to --format {format_name} ({where})")


def check_combination(options: ExportOptions) -> None:
    """Rules between options, independent of the format."""
    if sum((options.half, options.int8, options.fp32)) > 1:
        raise BadInput("--half, --int8 and --fp32 exclude each other: pick one precision")
    if options.int8 and not options.data:
        raise BadInput(
            "--int8 needs calibration data: --data digits (the digits training split) "
            "or --data DIR (a folder of images, preprocessed as in the papers)"
        )
    if options.data and not options.int8:
        raise BadInput("--data is calibration data for --int8; add --int8 or drop --data")
    if options.max_batch is not None and not options.dynamic:
        raise BadInput("--max-batch sets the largest batch of a --dynamic engine; add --dynamic")
    if options.max_batch is not None and options.max_batch < options.batch:
        raise BadInput(f"--max-batch {options.max_batch} is below --batch {options.batch} (the profile's optimum)")
    if options.workspace is not None and not (0 < options.workspace <= MAX_WORKSPACE_GB):
        raise BadInput(f"--workspace {options.workspace}: expected a size in GB above 0 and at most {MAX_WORKSPACE_GB:g}")
