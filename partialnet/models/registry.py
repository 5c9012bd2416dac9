"""The variant table: one row per released configuration, with the numbers its authors published.

The published params/GFLOPs are kept as data with their source so that `partialnet models` can show
them BESIDE what this project measures, never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from partialnet.errors import BadInput

if TYPE_CHECKING:  # the table itself is plain data: reading it must not import torch
    from partialnet.models.partialnet import Arch, PartialNet

PARTIALNET_SOURCE = "PartialNet reference code (params), fvcore MACs at 224x224; top-1 read off the repo figure"
FASTERNET_SOURCE = "FasterNet README (CVPR 2023)"


@dataclass(frozen=True)
class Variant:
    name: str
    family: str
    embed_dim: int
    depths: tuple[int, int, int, int]
    act: str
    pat_sp: bool
    published_params: int
    published_gmacs: float
    published_top1: float | None
    source: str

    def arch(self, num_classes: int = 1000, **overrides) -> Arch:
        from partialnet.models.partialnet import Arch

        fields = dict(
            family=self.family,
            embed_dim=self.embed_dim,
            depths=self.depths,
            act=self.act,
            pat_sp=self.pat_sp,
            num_classes=num_classes,
        )
        fields.update(overrides)
        return Arch(**fields)


def _pn(name, e, depths, act, pat_sp, params, gmacs, top1):
    return Variant(f"partialnet_{name}", "partialnet", e, depths, act, pat_sp, params, gmacs, top1, PARTIALNET_SOURCE)


def _fn(name, e, depths, act, params, gmacs, top1):
    return Variant(f"fasternet_{name}", "fasternet", e, depths, act, False, params, gmacs, top1, FASTERNET_SOURCE)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        _pn("t0", 32, (1, 2, 8, 2), "gelu", False, 3_486_160, 0.235, 73.9),
        _pn("t1", 48, (1, 2, 8, 2), "gelu", True, 6_144_552, 0.546, 78.1),
        _pn("t2", 64, (2, 2, 6, 4), "relu", False, 12_269_816, 1.039, 80.2),
        _pn("s", 96, (2, 2, 9, 4), "relu", False, 28_013_304, 2.716, 82.1),
        _pn("m", 128, (2, 3, 16, 4), "relu", False, 59_179_000, 6.693, None),
        _pn("l", 160, (2, 3, 20, 4), "relu", False, 100_641_336, 11.909, None),
        _fn("t0", 40, (1, 2, 8, 2), "gelu", 3_905_500, 0.34, 71.9),
        _fn("t1", 64, (1, 2, 8, 2), "gelu", 7_595_368, 0.85, 76.2),
        _fn("t2", 96, (1, 2, 8, 2), "relu", 14_982_888, 1.91, 78.9),
        _fn("s", 128, (1, 2, 13, 2), "relu", 31_181_032, 4.56, 81.3),
        _fn("m", 144, (3, 4, 18, 3), "relu", 53_521_464, 8.74, 83.0),
        _fn("l", 192, (3, 4, 18, 3), "relu", 93_465_192, 15.52, 83.5),
    )
}

DEFAULT_VARIANT = "partialnet_t0"
MAX_CLASSES = 32_768  # ImageNet-22k (21,841 classes) fits; a larger head is a hostile shape, not a model


def get_variant(name: str) -> Variant:
    if not isinstance(name, str):
        raise BadInput(f"variant: expected a name such as {DEFAULT_VARIANT!r}, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in VARIANTS:
        raise BadInput(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[key]


def find_variant(family: str, embed_dim: int, depths) -> Variant | None:
    """The released variant with exactly this family, width and depths, if any."""
    for v in VARIANTS.values():
        if v.family == family and v.embed_dim == embed_dim and v.depths == tuple(depths):
            return v
    return None


def closest_variant(family: str, embed_dim: int) -> Variant | None:
    """Same family and stem width: the best guess when depths do not match (e.g. missing blocks)."""
    for v in VARIANTS.values():
        if v.family == family and v.embed_dim == embed_dim:
            return v
    return None


def create_model(name: str = DEFAULT_VARIANT, num_classes: int = 1000, pretrained: bool = False) -> PartialNet:
    """Build a variant with random weights, in eval mode (this is a deployment tool).

    There is no download: weights come from a file through `load_checkpoint`.
    """
    if pretrained:
        raise BadInput("no weights are downloaded; load a checkpoint file with load_checkpoint(path)")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 1 <= num_classes <= MAX_CLASSES:
        raise BadInput(f"num_classes: expected an integer from 1 to {MAX_CLASSES:,}, got {str(num_classes)[:40]}")
    from partialnet.models.partialnet import PartialNet

    return PartialNet(get_variant(name).arch(num_classes)).eval()
