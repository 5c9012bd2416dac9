"""How an artifact is judged, as `export` and `verify` both take it: one typed options object.

Kept apart from `partialnet.verify` (which computes the comparison with numpy) so the command line can
build its options without importing numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from partialnet.errors import BadInput
from partialnet.options import choice, option, settle

DATASETS = ("digits",)


def check_dataset(dataset: str | None) -> str | None:
    """The dataset's name (any case), or None."""
    return None if dataset is None else choice(dataset, DATASETS, "--dataset", f"a known dataset: {', '.join(DATASETS)}")


@dataclass
class VerifyOptions:
    """How an artifact is judged (`export` and `verify` alike); each field's flag feeds both commands."""

    images: Path | None = option(None, "--images", "Also verify on the images in this folder (papers' preprocessing).", cli_type=Optional[Path])
    samples: int = option(8, "--samples", "Random samples per verification case.", min=1)
    atol: float | None = option(None, "--atol", "Override the max |Δ| tolerance.", cli_type=Optional[float])
    min_cosine: float | None = option(None, "--min-cosine", "Override the cosine tolerance.", cli_type=Optional[float])
    min_top1: float | None = option(None, "--min-top1", "Override the top-1 agreement tolerance (0-1).", cli_type=Optional[float])
    dataset: str | None = option(None, "--dataset", "Also judge held-out top-1 on a real dataset: digits (default for digits checkpoints).",
                                 cli_type=Optional[str], parse=check_dataset)

    def __post_init__(self) -> None:
        settle(self)
        # what --images held when first read, per size: an INT8 export judges the same images before lowering,
        # as the artifact and in its per-layer report, and a folder of photos takes seconds to decode each time.
        # Not a field: the options travel to a second process as `asdict`, and a cache is no option.
        self._read: dict = {}

    def labelled(self):
        """The --images folder as labelled images (ImageFolder layout), or None: no folder, or no class folders."""
        if self.images is None:
            return None
        if "labelled" not in self._read:
            from partialnet.imagefolder import read_folder

            self._read["labelled"] = read_folder(self.images)
        return self._read["labelled"]

    def images_at(self, imgsz: tuple[int, int]):
        """(images, labels) from --images at `imgsz`, preprocessed once per command; labels None for an
        unlabelled folder, both None without --images."""
        if self.images is None:
            return None, None
        imgsz = tuple(imgsz)
        if imgsz not in self._read:
            from partialnet.memory import check_images_fit
            from partialnet.preprocess import FLAT_LIMIT, load_images

            labelled = self.labelled()
            check_images_fit(len(labelled.files) if labelled is not None else FLAT_LIMIT, imgsz, f"--images {self.images}",
                             "a smaller --imgsz needs less")
            self._read[imgsz] = labelled.load(imgsz) if labelled is not None else (load_images(Path(self.images), imgsz), None)
        return self._read[imgsz]

    def judged_on(self, default_dataset: str | None) -> "VerifyOptions":
        """The checkpoint's own dataset (digits) judges it by default, unless the user's labelled images do."""
        from dataclasses import replace

        if self.dataset or not default_dataset or self.labelled():
            return self
        judged = replace(self, dataset=default_dataset)
        judged._read = self._read  # the same --images, already read and decoded
        return judged

    def decode_now(self, imgsz: tuple[int, int]) -> None:
        """Every --images file read and decoded before the slow work (a bad 300th file used to stop a command only
        after its export); kept for the judging, so nothing is decoded twice."""
        self.images_at(imgsz)

    @property
    def tolerances(self) -> dict:
        return {"max_abs": self.atol, "min_cosine": self.min_cosine, "min_top1": self.min_top1}

    def check(self) -> "VerifyOptions":
        """Refused before anything loads."""
        from partialnet.limits import MAX_SAMPLES, check_count, check_tolerances

        check_dataset(self.dataset)
        if self.dataset and self.labelled():
            raise BadInput(f"--images {self.images} is labelled (class folders) and --dataset {self.dataset} is another labelled set: give one")
        check_count(self.samples, "--samples", MAX_SAMPLES)
        check_tolerances(**self.tolerances)
        return self
