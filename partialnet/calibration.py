"""Real images for INT8: what calibrates a quantizer and what judges its result.

Random inputs say nothing about where a real activation's range lies, and nothing about whether an
INT8 model still picks the right class, so `--int8` always comes with `--data`: the digits training
split (`digits`) or a folder of images preprocessed as in the papers. INT8 is then judged on images
the calibration never saw where that is possible (the digits held-out split), on the user's own
`--images` if given, and otherwise on the calibration folder itself, named as such in the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partialnet.errors import BadInput, missing_extra
from partialnet.limits import MAX_SAMPLES, check_count

DIGITS = "digits"


def check_data(data: str | None, calib_size: int, imgsz: tuple[int, int] | None = None) -> None:
    """Before any slow work: the source exists and holds images, the count is sane, and (given the size) the
    images to calibrate on and to judge INT8 on fit in memory."""
    check_count(calib_size, "--calib-size", MAX_SAMPLES)
    if data is None:
        return
    if not data.strip():  # Path("") is the current folder: it would calibrate on whatever lies there
        raise BadInput("--data '': give 'digits' or a folder of images")
    if imgsz is not None:
        from partialnet.memory import check_images_fit

        # the calibration set held while the held-out set that judges INT8 is decoded and stacked
        check_images_fit(calib_size, imgsz, f"--data {data}", "a smaller --calib-size or --imgsz needs less", copies=3)
    if data == DIGITS:
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise missing_extra("scikit-learn (--data digits)", "digits")
        return
    from partialnet.imagefolder import probe

    if not Path(data).exists():
        raise BadInput(f"--data {data}: no such folder (give a folder of images, or 'digits')")
    probe(data, (64, 64), "--data", named_classes=False)


def calibration_images(data: str, imgsz: tuple[int, int], size: int) -> np.ndarray:
    """Up to `size` calibration images at `imgsz`, (N, 3, H, W) float32."""
    if data == DIGITS:
        from partialnet import digits

        X_train, _, _, _ = digits.split()
        return digits.preprocess(X_train[:size], imgsz)
    return folder_images(data, imgsz, size)


def stage_label(data: str, size: int) -> str:
    """What the calibration stage loads: a folder may hold fewer images than --calib-size."""
    return f"up to {size} images of the digits training split" if data == DIGITS else f"up to {size} images from {Path(data).name}/"


def describe(data: str, count: int) -> str:
    if data == DIGITS:
        return f"digits training split, first {count} images"
    return f"{count} images from {Path(data).name}/"


def judging_images(data: str | None, imgsz: tuple[int, int], size: int, calibration: np.ndarray | None = None) -> tuple[str, np.ndarray] | None:
    """Real images an INT8 artifact is compared on besides --images: held-out digits, or the calibration folder
    (`calibration`, where the export has already decoded it at `imgsz`)."""
    if data == DIGITS:
        from partialnet import digits

        images, _ = digits.held_out(imgsz)
        return f"digits held-out ({len(images)})", images
    if data:
        images = calibration if calibration is not None else folder_images(data, imgsz, size)
        return f"calibration images ({len(images)}, seen by the quantizer)", images
    return None


def folder_images(data: str, imgsz: tuple[int, int], size: int) -> np.ndarray:
    """Up to `size` images of a folder: flat, or in the ImageFolder layout (round-robin over classes, labels unused)."""
    from partialnet.imagefolder import read_folder
    from partialnet.preprocess import load_images, preprocess

    labelled = read_folder(data, limit=size, flag="--data", named_classes=False)
    if labelled is None:
        return load_images(Path(data), imgsz, limit=size)
    return np.stack([preprocess(p, imgsz) for p in labelled.files])
