"""The papers' evaluation preprocessing, so a user's own images are fed exactly as at test time.

Short side resized (bicubic) to imgsz/0.9 (248 for 224), centre crop, scaled to [0, 1], ImageNet mean/std.
Pillow decodes and resizes, as in the reference pipelines; it is imported only when images are used.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np

from partialnet.errors import BadInput, missing_extra
from partialnet.inputs import describe_errno, open_regular

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.9
MAX_IMAGE_BYTES = 64 << 20
MAX_IMAGE_PIXELS = 50_000_000  # 8K x 6K; decoded RGB that is 150 MB
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# the decoders a suffix may reach: Pillow otherwise opens whatever the bytes say, and an EPS named .png runs Ghostscript
DECODERS = {".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".png": ("PNG",), ".bmp": ("BMP",), ".webp": ("WEBP",), ".tif": ("TIFF",), ".tiff": ("TIFF",)}


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("Pillow (needed for --images)", "images") from None
    return Image


def preprocess(path: Path, imgsz: tuple[int, int]) -> np.ndarray:
    """One image as a (3, H, W) float32 array, normalised.

    The header's size is checked before any pixel is decoded: a few-KB PNG can declare a billion
    pixels (a decompression bomb), and Pillow's own guard only warns below twice its default limit.
    """
    Image = _pil()
    h, w = imgsz
    try:
        with open_regular(path, "image", max_bytes=MAX_IMAGE_BYTES) as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(f, formats=DECODERS.get(Path(path).suffix.lower(), ()))
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise BadInput(
                    f"{path}: refused: {img.width}x{img.height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel limit "
                    "(a decompression bomb, or far larger than any input needs)"
                )
            img = _resize_and_crop(_as_rgb8(img, path), h, w)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except BadInput:
        raise
    except Image.UnidentifiedImageError:
        kinds = "/".join(DECODERS.get(Path(path).suffix.lower(), ())) or "known"
        raise BadInput(f"{path}: not a {kinds} image Pillow can decode (each suffix is read by its own decoder only)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own guard, before ours could read the size
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "more pixels than Pillow's own limit"
        raise BadInput(f"{path}: refused: {size}, over the {MAX_IMAGE_PIXELS:,}-pixel limit "
                       "(a decompression bomb, or far larger than any input needs)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error, MemoryError) as exc:
        # Pillow's decoders raise all of these on malformed files.
        raise BadInput(f"{path}: cannot read image ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return array.transpose(2, 0, 1).copy()


WIDE_MODES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}  # 16-bit grey, as Pillow opens a 16-bit PNG


def _as_rgb8(img, path: Path):
    """RGB at 8 bits per channel, keeping the image's range: Pillow's convert("RGB") clips a 16-bit grey image at
    255, so a real 16-bit PNG came out nearly all white. Its top byte is kept instead, as Pillow itself reduces
    16-bit RGB. A 32-bit integer or float image has no range to scale by, so it is refused, not guessed."""
    Image = _pil()
    if img.mode in WIDE_MODES:
        wide = np.frombuffer(img.tobytes(), dtype=WIDE_MODES[img.mode]).reshape(img.height, img.width)
        return Image.fromarray((wide >> 8).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("I", "F"):
        kind = "32-bit integer" if img.mode == "I" else "floating-point"
        raise BadInput(f"{path}: a {kind} image has no fixed range to scale to [0, 1]: give 8- or 16-bit images")
    return img.convert("RGB")


STRIP_FACTOR = 16  # a resize this many times the crop's area is a thin strip's: only the part the crop keeps is resized


def _resize_and_crop(img, h: int, w: int):
    """Short side to the crop's size / CROP_RATIO, then the centre crop. A 20000x1 strip (99 bytes of PNG)
    would resize to about 5 M x 248 pixels, gigabytes, before the crop kept 224x224 of it; there Pillow
    resizes only the crop's box of the source, the same pixels up to resampling round-off."""
    Image = _pil()
    resize_to = int(min(h, w) / CROP_RATIO)
    scale = resize_to / min(img.size)
    size = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
    left, top = (size[0] - w) // 2, (size[1] - h) // 2
    if size[0] * size[1] > STRIP_FACTOR * resize_to * resize_to:
        sx, sy = size[0] / img.width, size[1] / img.height
        return img.resize((w, h), Image.BICUBIC, box=(left / sx, top / sy, (left + w) / sx, (top + h) / sy))
    return img.resize(size, Image.BICUBIC).crop((left, top, left + w, top + h))


FLAT_LIMIT = 64  # images read from a folder without class folders (an agreement check, not an accuracy)


def load_images(folder: Path, imgsz: tuple[int, int], limit: int = FLAT_LIMIT) -> np.ndarray:
    """Up to `limit` images from `folder` (sorted by name) as an (N, 3, H, W) batch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder}: {'not a directory of images' if os.path.lexists(folder) else 'no such folder'}")
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise BadInput(f"{folder}: cannot list it ({describe_errno(exc)})") from None
    files = [folder / name for name in names[:limit]]
    if not files:
        raise BadInput(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return np.stack([preprocess(p, imgsz) for p in files])
