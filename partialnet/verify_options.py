"""How an artifact is judged, as `export` and `verify` both take it: one typed options object.

Kept apart from `partialnet.verify` (which computes the comparison with numpy) so the command line can
build its options without importing numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from partialnet.errors import BadInput
from partialnet.options import option

DATASETS = ("digits",)


def check_dataset(dataset: str | None) -> str | None:
    if dataset is not None and dataset not in DATASETS:
        raise BadInput(f"--dataset {dataset!r}: known datasets are {', '.join(DATASETS)}")
    return dataset


@dataclass
class VerifyOptions:
    """How an artifact is judged (`export` and `verify` alike); each field's flag feeds both commands."""

    images: Path | None = option(None, "--images", "Also verify on the images in this folder (papers' preprocessing).", cli_type=Optional[Path])
    samples: int = option(8, "--samples", "Random samples per verification case.", min=1)
    atol: float | None = option(None, "--atol", "Override the max |Δ| tolerance.", cli_type=Optional[float])
    min_cosine: float | None = option(None, "--min-cosine", "Override the cosine tolerance.", cli_type=Optional[float])
    min_top1: float | None = option(None, "--min-top1", "Override the top-1 agreement tolerance (0-1).", cli_type=Optional[float])
    dataset: str | None = option(None, "--dataset", "Also judge held-out top-1 on a real dataset: digits (default for digits checkpoints).",
                                 cli_type=Optional[str])

    def labelled(self):
        """The --images folder as labelled images (ImageFolder layout), or None: no folder, or no class folders."""
        if self.images is None:
            return None
        from partialnet.imagefolder import read_folder

        return read_folder(self.images)

    def judged_on(self, default_dataset: str | None) -> "VerifyOptions":
        """The checkpoint's own dataset (digits) judges it by default, unless the user's labelled images do."""
        from dataclasses import replace

        if self.dataset or not default_dataset or self.labelled():
            return self
        return replace(self, dataset=default_dataset)

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
