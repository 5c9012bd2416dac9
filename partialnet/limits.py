"""The sizes partialnet accepts, from the user or from a file, checked before anything is allocated.

Every number a command or an artifact declares (image size, batch, samples) sizes an allocation.
These bounds are far above any real use and far below what would exhaust a 2-core CI runner; they are
documented in the README, and a value outside them is bad input (exit 2), never an attempt.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence

from partialnet.errors import BadInput, shown

MIN_SIDE = 64  # the last stage must be at least 2x2
STRIDE = 32
MAX_SIDE = 4096
MAX_BATCH = 1024
MAX_INPUT_PIXELS = 1 << 25  # batch x H x W: 33.5 M pixels, a 400 MB float32 input
MAX_SAMPLES = 4096  # verification samples per case
MAX_THREADS = 1024


def check_input_shape(batch: int | None, h: int, w: int, what: str) -> None:
    """An input of `batch` x 3 x h x w (batch None: dynamic) is one partialnet will allocate."""
    for side in (h, w):
        if side < MIN_SIDE or side % STRIDE or side > MAX_SIDE:
            raise BadInput(
                f"{what}: image size {h}x{w} unsupported: each side must be a multiple of {STRIDE} "
                f"from {MIN_SIDE} to {MAX_SIDE}"
            )
    if batch is not None:
        check_batch(batch, what)
        if batch * h * w > MAX_INPUT_PIXELS:
            raise BadInput(f"{what}: batch {batch} at {h}x{w} is {batch * h * w:,} pixels, over the {MAX_INPUT_PIXELS:,} limit")


def check_batch(batch: int, what: str = "--batch") -> None:
    if not 1 <= batch <= MAX_BATCH:
        raise BadInput(f"{what}: batch {batch} unsupported: expected 1 to {MAX_BATCH}")


def check_fraction(value: float | None, option: str, low: float = 0.0, high: float = 1.0) -> None:
    """A finite value in [low, high] (None: not given)."""
    if value is None:
        return
    if not math.isfinite(value) or not low <= value <= high:
        raise BadInput(f"{option} {value}: expected a number from {low:g} to {high:g}")


def check_tolerances(max_abs: float | None = None, min_cosine: float | None = None, min_top1: float | None = None) -> None:
    if max_abs is not None and (not math.isfinite(max_abs) or max_abs < 0):
        raise BadInput(f"--atol {max_abs}: expected a finite number >= 0")
    check_fraction(min_cosine, "--min-cosine")
    check_fraction(min_top1, "--min-top1")


def check_count(value: int, option: str, high: int) -> None:
    if not whole_number(value) or not 1 <= value <= high:
        raise BadInput(f"{option} {shown(value)}: expected an integer from 1 to {high}")


def check_name(value, what: str, optional: bool = False) -> None:
    """A Python caller's path or name argument: a wrong type is refused naming the argument, not met as an
    AttributeError (`'NoneType' object has no attribute 'strip'`) deep inside."""
    import os

    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)):
        raise BadInput(f"{what}: expected a path or a name (a string), got {type(value).__name__}")
    if "\0" in os.fspath(value):
        raise BadInput(f"{what} {ascii(os.fspath(value))[:60]}: a path or name cannot hold a NUL byte")


def check_listed(values, what: str) -> list:
    """A Python caller's list of paths or names; one string is refused (its characters would be read as names)."""
    import os

    if isinstance(values, (str, bytes, os.PathLike)):
        raise BadInput(f"{what}: expected a list of paths or names, got one string ({shown(values)}): pass [{shown(values)}]")
    if not isinstance(values, (list, tuple)):
        raise BadInput(f"{what}: expected a list of paths or names, got {type(values).__name__}")
    for value in values:
        check_name(value, what)
    return list(values)


def list_items(text: str, flag: str) -> list[str]:
    """A comma-separated option's items, stripped; `1,,32` or `onnx,` is a slip, refused, never dropped without a word
    (an empty text gives [], for the caller's own "an empty list" message)."""
    items = [item.strip() for item in text.split(",")]
    if any(items) and not all(items):
        raise BadInput(f"{flag} {text!r}: an empty item between commas; name each one once")
    return [item for item in items if item]


def check_once(names: Sequence, flag: str, text: str) -> list:
    """A list option names each item once: `--batch 1,1` or `--formats onnx,ONNX` is a slip, refused, never
    quietly shortened (names compared after aliases are resolved)."""
    twice = list(dict.fromkeys(n for n in names if names.count(n) > 1))
    if twice:
        raise BadInput(f"{flag} {text!r}: {', '.join(map(str, twice))} given twice; name each once")
    return list(names)


def format_imgsz(size: Sequence[int]) -> str:
    """`(96, 160)` -> "96x160": how every message and title writes a size (parse_imgsz reads it back)."""
    return "x".join(map(str, size))


def whole_number(value) -> bool:
    """An integer as Python callers hold one (numpy's too), not a bool or a float."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_imgsz(values: Sequence[int] | int | str | None, default: int = 224) -> tuple[int, int]:
    """`224`, `(H, W)` or "H,W" / "HxW": multiples of 32, at least 64 (the last stage must be at least 2×2)."""
    if values is None:
        values = [default]
    if whole_number(values):
        values = [values]
    if isinstance(values, str):
        parts = re.split(r"\s*[,x]\s*|\s+", values.strip())  # "224,192", "224x192", "224 192", "224, 192"; "64," has an empty part
        if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
            raise BadInput(f"--imgsz {values[:40]!r}: expected a size such as 224 or 224,192")
        values = [int(p) for p in parts]
    if not isinstance(values, (list, tuple)) or not all(whole_number(v) and abs(v) < 10**9 for v in values):  # from Python: 224.0, ["a"], inf
        raise BadInput(f"--imgsz {shown(values)}: expected a size such as 224, (224, 192) or '224,192'")
    if len(values) not in (1, 2):
        raise BadInput(f"--imgsz takes one size or H W, got {len(values)} values")
    h, w = (int(v) for v in (list(values) * 2)[:2])
    check_input_shape(None, h, w, "--imgsz")
    return h, w
