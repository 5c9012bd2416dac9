"""What the user asked an export to be, in one object every exporter reads, plus the rule for who takes what.

Options a format does not take are refused by name before anything loads (see `check_options`), so a
user who writes `--opset 17 --format openvino` learns at once that OpenVINO has no opset, instead of
having it silently ignored after a minute of work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from partialnet.errors import BadInput
from partialnet.limits import parse_imgsz
from partialnet.options import defaults_of, flags_of, option, settle

if TYPE_CHECKING:
    import numpy as np

DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's floor
MAX_OPSET = 26  # the newest opset exported and run through ONNX Runtime in this project's tests
DEFAULT_CALIB_SIZE = 300
MAX_WORKSPACE_GB = 1024.0

@dataclass
class ExportOptions:
    """What an export is asked to be; each field's flag and help feed `partialnet export` and `formats`."""

    imgsz: tuple[int, int] = option((224, 224), "--imgsz", "Input size (default 224): 224, or H W (also H,W); multiples of 32, >= 64.",
                                    cli_type=Optional[str], parse=parse_imgsz, show_default=False)
    batch: int = option(1, "--batch", "Static batch size.", min=1)
    dynamic: bool = option(False, "--dynamic", "Dynamic batch dimension.")
    max_batch: int | None = option(None, "--max-batch", "trt --dynamic: the profile's largest batch (default 32).", cli_type=Optional[int], min=1)
    opset: int = option(DEFAULT_OPSET, "--opset", f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default {DEFAULT_OPSET}).", cli_type=Optional[int],
                        show_default=False)
    simplify: bool = option(True, "--simplify/--no-simplify", "Run onnxsim (verified like the rest; default on).", cli_type=Optional[bool],
                            show_default=False)
    half: bool = option(False, "--half", "fp16 weights (and input where the format has typed inputs).")
    fp32: bool = option(False, "--fp32", "coreml: keep fp32 compute (Core ML's default, and ours, is fp16).")  # where a format defaults to fp16
    int8: bool = option(False, "--int8", "INT8 post-training quantization; needs --data.")
    data: str | None = option(None, "--data", "Calibration data for --int8: 'digits' or a folder of images.", cli_type=Optional[str])
    calib_size: int = option(DEFAULT_CALIB_SIZE, "--calib-size", f"Calibration images (default {DEFAULT_CALIB_SIZE}).", cli_type=Optional[int],
                             min=1, show_default=False)
    calib_method: str | None = option(None, "--calib-method", "--int8 calibration: minmax, mean-minmax, entropy, percentile or histogram, "
                                      "where the format has it (default: the format's own).", cli_type=Optional[str], show_default=False)
    int8_keep_float: str | None = option(None, "--int8-keep-float", "--int8: keep these in float: layers (module paths such as head, "
                                         "stages.0) or op kinds (conv, linear, add, mul, concat, pool), comma-separated.",
                                         cli_type=Optional[str], show_default=False)
    workspace: float | None = option(None, "--workspace", "trt: builder workspace in GB (default 4).", cli_type=Optional[float],
                                     show_default=False)  # TensorRT builder memory pool
    min_target: str | None = option(None, "--min-target", "coreml: minimum deployment target, e.g. iOS16 (default), macOS13.",
                                    cli_type=Optional[str], show_default=False)
    image_input: bool = option(False, "--image-input", "coreml: an RGB image input with /255 and mean/std inside.")
    calibration: np.ndarray | None = field(default=None, repr=False, compare=False)  # filled in by the caller (api, bench)
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)  # the flags typed (None: those off their defaults)
    # a format whose artifact is built on the machine that runs it (TensorRT): prepare it here, build it
    # there (export --target); set by partialnet.remote.engine, never typed
    built_elsewhere: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        settle(self)  # Python callers write imgsz=64 or "224,320", as the command line does

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"

    def asked(self) -> set[str]:
        """The options the user asked for: typed on the command line, or set off their defaults in Python."""
        if self.given is not None:
            return set(self.given)
        defaults = defaults_of(ExportOptions)
        return {name for name in FLAGS if getattr(self, name) != defaults[name]}

    def to_dict(self) -> dict:
        """The manifest's record of the options (the calibration array itself is summarised, not stored)."""
        values = {name: getattr(self, name) for name in FLAGS}
        values["imgsz"] = list(self.imgsz)
        values["calibration_images"] = None if self.calibration is None else int(len(self.calibration))
        return values


# The option's field name -> the flag a user types (in the order `partialnet formats` lists them).
FLAGS = {name: flag.name for name, flag in flags_of(ExportOptions).items()}


def listed_flag(name: str) -> str:
    """The flag as `partialnet formats` lists it: an on/off pair as `--[no-]simplify`, since both halves apply to a
    format that takes it and both are refused by one that does not."""
    pair = flags_of(ExportOptions)[name].flag.split("/")
    return pair[0] if len(pair) == 1 else pair[0].replace("--", "--[no-]", 1)


# Back-compatible name: the ONNX exporter's options were the first of these.
OnnxOptions = ExportOptions


def check_opset(opset: int) -> None:
    """Checked with the other options, before any checkpoint is loaded."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"--opset {opset} unsupported: expected {MIN_OPSET} to {MAX_OPSET} (torch's exporter needs >= {MIN_OPSET})")


def check_options(format_name: str, given: set[str], formats: dict, options: ExportOptions | None = None) -> None:
    """Refuse every option the format does not take, naming the formats that do."""
    taken = formats[format_name].options
    for name in sorted(given - taken, key=list(FLAGS).index):
        takers = [f.name for f in formats.values() if name in f.options]
        where = f"formats that take it: {', '.join(takers)}" if takers else "no format takes it"
        raise BadInput(f"{typed_flag(name, options)} does not apply to --format {format_name} ({where})")


def check_all_options(options: ExportOptions, formats: dict) -> ExportOptions:
    """`--format all` takes the options every format takes (size, batch); one format's option is refused, named
    as typed (`--simplify` had been named `--no-simplify`), before torch is imported."""
    from partialnet.limits import check_input_shape

    shared = set.intersection(*(set(f.options) for f in formats.values()))
    specific = [name for name in FLAGS if name in options.asked() - shared]
    if specific:
        raise BadInput(f"--format all takes only the options every format takes (size, batch); {typed_flag(specific[0], options)} is not "
                       "one of them: export the formats that take it one at a time")
    check_input_shape(options.batch, *options.imgsz, "--batch/--imgsz")
    return options


def typed_flag(name: str, options: ExportOptions | None) -> str:
    """The flag as the user typed it: `--simplify` for an on/off pair set on, `--no-simplify` set off."""
    pair = flags_of(ExportOptions)[name].flag.split("/")
    if len(pair) == 2 and options is not None and isinstance(getattr(options, name), bool):
        return pair[0] if getattr(options, name) else pair[1]
    return FLAGS[name]


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
    for name in ("calib_method", "int8_keep_float"):
        if getattr(options, name) is not None and not options.int8:
            raise BadInput(f"{FLAGS[name]} shapes an INT8 export; add --int8 or drop {FLAGS[name]}")
    if "calib_size" in options.asked() and not options.int8:
        raise BadInput("--calib-size is the number of calibration images for --int8; add --int8 or drop --calib-size")
    if options.int8_keep_float is not None:
        keep_float(options.int8_keep_float)
    if options.max_batch is not None and not options.dynamic:
        raise BadInput("--max-batch sets the largest batch of a --dynamic engine; add --dynamic")
    if options.max_batch is not None and options.max_batch < options.batch:
        raise BadInput(f"--max-batch {options.max_batch} is below --batch {options.batch} (the profile's optimum)")
    if options.workspace is not None and not (0 < options.workspace <= MAX_WORKSPACE_GB):
        raise BadInput(f"--workspace {options.workspace}: expected a size in GB above 0 and at most {MAX_WORKSPACE_GB:g}")


CALIB_METHODS = ("minmax", "mean-minmax", "entropy", "percentile", "histogram")
KEEP_FLOAT_KINDS = ("conv", "linear", "add", "mul", "concat", "pool")
LAYER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def keep_float(text: str | None) -> tuple[list[str], list[str]]:
    """(layers, op kinds) of --int8-keep-float: module paths of the deploy model, or the neutral op kinds."""
    if text is None:
        return [], []
    from partialnet.limits import list_items

    layers, kinds = [], []
    for item in list_items(text, "--int8-keep-float"):  # `conv,,head` is a slip, refused as every list option's is
        if item.lower() in KEEP_FLOAT_KINDS:
            kinds.append(item.lower())
        elif LAYER.fullmatch(item) and len(item) <= 200:
            layers.append(item)
        else:
            raise BadInput(f"--int8-keep-float {ascii(item)[1:-1][:60]!s}: expected a layer (a module path such as stages.2.blocks.0.mlp.0) "
                           f"or an op kind ({', '.join(KEEP_FLOAT_KINDS)})")
    if not layers and not kinds:
        raise BadInput(f"--int8-keep-float {text!r}: an empty list; name at least one layer or op kind")
    return list(dict.fromkeys(layers)), list(dict.fromkeys(kinds))


def check_int8_tools(fmt, options: ExportOptions) -> None:
    """A calibration method or op kind the format's quantizer does not have is refused by name."""
    if options.calib_method is not None:
        method = options.calib_method.strip().lower()
        if method not in fmt.calib_methods:
            known = "" if method in CALIB_METHODS else f" (methods: {', '.join(CALIB_METHODS)})"
            raise BadInput(f"--calib-method {ascii(options.calib_method)[1:-1][:40]}: {fmt.name} calibrates with "
                           f"{', '.join(fmt.calib_methods) or 'no choice of method'}{known}")
    kinds = keep_float(options.int8_keep_float)[1]
    missing = [k for k in kinds if k not in fmt.keep_float_kinds]
    if missing:
        raise BadInput(f"--int8-keep-float {missing[0]}: {fmt.name} keeps op kinds {', '.join(fmt.keep_float_kinds) or 'none'} in float; "
                       "name the layers instead")


def check_flags(fmt, options: ExportOptions, formats: dict) -> None:
    """Every refusal that needs neither a model nor a backend, by flag: the command line runs these before
    it imports torch, so a mistyped option costs a tenth of a second, not a second."""
    from partialnet.limits import check_input_shape

    check_options(fmt.name, options.asked(), formats, options)
    check_combination(options)
    if options.dynamic and "batch" in options.asked() and "max_batch" not in fmt.options:
        raise BadInput(f"--batch with --dynamic: a dynamic {fmt.name} artifact takes any batch at run time (--batch is the "
                       "optimum of a --dynamic TensorRT profile only); drop one")
    check_int8_tools(fmt, options)
    check_input_shape(None if options.dynamic else options.batch, *options.imgsz, "--batch/--imgsz")
    if options.max_batch is not None:
        check_input_shape(options.max_batch, *options.imgsz, "--max-batch/--imgsz")
    check_opset(options.opset)


def method_of(fmt, options: ExportOptions) -> str:
    """The calibration method an INT8 export uses: the one asked for, or the format's default (its first)."""
    return (options.calib_method or fmt.calib_methods[0]).strip().lower()


def check_layers(text: str | None, model) -> None:
    """Every layer named to keep in float must be a module of the deploy model (a typo would keep nothing)."""
    layers = keep_float(text)[0]
    names = {name for name, _ in model.named_modules() if name}
    for layer in layers:
        if not any(n == layer or n.startswith(layer + ".") for n in names):
            near = sorted({n.split(".")[0] for n in names})
            raise BadInput(f"--int8-keep-float {layer}: no such layer in the model (top-level layers: {', '.join(near)})")
