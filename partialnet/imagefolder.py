"""Labelled images in the ImageFolder layout: accuracy on the user's own data, not only agreement.

`DIR/<class>/<image>`: a class folder is named by its integer class index (`0`, `7`, `281`) or by its
ImageNet-1K WNID (`n01440764`), which maps to an index through the standard class order (the 1000 WNIDs
sorted, as every ImageNet-1K checkpoint was trained with; the list ships in `partialnet/data`). A folder
of images with no class folders is unlabelled: it is verified by agreement only, as before.

The folder is read as hostile input: class folders must be real directories (a link to one is refused), each
image a regular file (it may be a link to one, as in a flat folder: a subset of ImageNet is often a farm of
links; a link to anything else is refused by name when opened, never skipped), a bounded number of images
taken round-robin over the classes (with more classes than the cap, one image each from classes spread over
the range, and the name says so), and a class that does not fit the model's head is refused by name before
any image is decoded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from partialnet.errors import BadInput
from partialnet.inputs import describe_errno

MAX_LABELLED = 500  # images judged per run (round-robin over classes): 600 MB of float32 at 224
WNID = re.compile(r"n[0-9]{8}")
INDEX = re.compile(r"0|[1-9][0-9]{0,5}")  # ASCII digits, no leading zero: `7/` and `007/` would be one class read twice


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The ImageNet-1K class order: index i is the i-th WNID in sorted order."""
    text = (Path(__file__).parent / "data" / "imagenet_wnids.txt").read_text()
    return tuple(text.split())


@dataclass(frozen=True)
class LabelledFolder:
    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    naming: str  # "index" or "wnid"
    folders: tuple[tuple[str, int], ...]  # every class folder and its class index, empty or not
    flag: str = "--images"  # the option that named it, for messages

    @property
    def name(self) -> str:
        judged = len(set(self.labels))
        classes = f"{len(self.folders)} classes" if judged == len(self.folders) else f"{judged} of {len(self.folders)} classes"
        return f"{self.root.name}/ ({len(self.files)} labelled images, {classes})"

    def check_head(self, num_classes: int) -> None:
        """Every class must be one the model can predict, or its accuracy would be silently wrong."""
        if self.naming == "wnid" and num_classes != len(imagenet_wnids()):
            raise BadInput(f"{self.flag} {self.root}: class folders are ImageNet WNIDs, but the model has {num_classes} classes, not "
                           f"{len(imagenet_wnids())} (name the folders by class index 0..{num_classes - 1})")
        for folder, index in self.folders:
            if index >= num_classes:
                raise BadInput(f"{self.flag} {self.root}: class folder {ascii(folder)[1:-1]} is class {index}, but the model has only "
                               f"{num_classes} classes (0..{num_classes - 1})")

    def load(self, imgsz: tuple[int, int]):
        """(images (N, 3, H, W) float32, labels (N,) int64), preprocessed as in the papers."""
        import numpy as np

        from partialnet.preprocess import preprocess

        return np.stack([preprocess(p, imgsz) for p in self.files]), np.asarray(self.labels, dtype=np.int64)


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise BadInput(f"{folder}: cannot list it ({describe_errno(exc)})") from None


def class_index(name: str, root: Path, flag: str) -> tuple[str, int]:
    if WNID.fullmatch(name):
        wnids = imagenet_wnids()
        position = _position(wnids, name)
        if position is None:
            raise BadInput(f"{flag} {root}: class folder {name} looks like a WNID but is not one of the ImageNet-1K classes")
        return "wnid", position
    if INDEX.fullmatch(name):
        return "index", int(name)
    raise BadInput(f"{flag} {root}: class folder {ascii(name)[1:-1]} is neither a class index (0, 1, ...; no leading zeros) "
                   "nor an ImageNet WNID (n01440764)")


def _position(wnids: tuple[str, ...], name: str) -> int | None:
    import bisect

    at = bisect.bisect_left(wnids, name)
    return at if at < len(wnids) and wnids[at] == name else None


def read_folder(folder: str | Path, limit: int = MAX_LABELLED, flag: str = "--images", named_classes: bool = True) -> LabelledFolder | None:
    """The labelled images under `folder`, or None where it has no class folders (an unlabelled folder).
    Without `named_classes` (calibration: labels unused) a class folder may have any name."""
    from partialnet.preprocess import IMAGE_SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise BadInput(f"{flag} {root}: {'not a directory of images' if os.path.lexists(root) else 'no such folder'}")
    subdirs = [e for e in _entries(root) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    linked = [e.name for e in _entries(root) if e.is_symlink() and _leads_to_folder(e)]
    if linked:
        raise BadInput(f"{flag} {root}: {ascii(linked[0])[1:-1]} is a symbolic link to a folder, or one that cannot be followed "
                       "(a loop): refused, give real folders")
    if not subdirs:
        return None
    loose = [e.name for e in _entries(root) if not e.is_dir(follow_symlinks=False) and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise BadInput(f"{flag} {root}: holds class folders and loose images ({ascii(loose[0])[1:-1]}, ...): the images would be "
                       "left out; put them in their class folder, or give a folder of one layout")
    per_class, namings, folders = [], set(), []
    for position, entry in enumerate(subdirs):
        naming, index = class_index(entry.name, root, flag) if named_classes else ("unused", position)
        namings.add(naming)
        inside = _entries(Path(entry.path))
        nested = [e.name for e in inside if not e.name.startswith(".") and (e.is_dir(follow_symlinks=False) or (e.is_symlink() and _leads_to_folder(e)))]
        if nested:  # its images would be left out, as loose ones beside class folders would
            raise BadInput(f"{flag} {root}: class folder {ascii(entry.name)[1:-1]} holds a folder ({ascii(nested[0])[1:-1]}): images are read "
                           "from the class folders themselves, one level deep; move them up")
        images = [Path(entry.path) / e.name for e in inside if Path(e.name).suffix.lower() in IMAGE_SUFFIXES and not e.is_dir(follow_symlinks=False)]
        per_class.append((index, images))
        folders.append((entry.name, index))
    if len(namings) > 1:
        raise BadInput(f"{flag} {root}: class folders mix class indices and WNIDs; name them all one way")
    if not any(images for _, images in per_class):
        raise BadInput(f"{flag} {root}: its class folders hold no images")
    files, labels = _round_robin(per_class, limit)
    return LabelledFolder(root, tuple(files), tuple(labels), namings.pop(), tuple(folders), flag)


def _leads_to_folder(entry: os.DirEntry) -> bool:
    """A link to a folder, or one that cannot be followed at all (a loop: ELOOP), which no image is either."""
    try:
        return entry.is_dir()
    except OSError:
        return True


def _round_robin(per_class: list[tuple[int, list[Path]]], limit: int) -> tuple[list[Path], list[int]]:
    """Up to `limit` images taken one per class in turn, so a cap drops no class while there are fewer classes
    than images; with more (ImageNet's 1000 over a cap of 500) one image each from classes spread evenly over
    the whole range, not the first ones by name (the folder's name then says how many classes were judged)."""
    per_class = [(index, images) for index, images in per_class if images]
    if len(per_class) > limit:
        per_class = [per_class[i * len(per_class) // limit] for i in range(limit)]
    files, labels, depth = [], [], 0
    while len(files) < limit and any(depth < len(images) for _, images in per_class):
        for index, images in per_class:
            if depth < len(images) and len(files) < limit:
                files.append(images[depth])
                labels.append(index)
        depth += 1
    return files, labels


def probe(folder: str | Path, imgsz: tuple[int, int], flag: str = "--images", named_classes: bool = True) -> LabelledFolder | None:
    """Before slow work: the folder reads, and its first image decodes (labelled or not)."""
    from partialnet.preprocess import load_images, preprocess

    labelled = read_folder(folder, flag=flag, named_classes=named_classes)
    if labelled is None:
        load_images(Path(folder), imgsz, limit=1)
    else:
        preprocess(labelled.files[0], imgsz)
    return labelled
