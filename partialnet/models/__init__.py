"""Architectures (plain torch), the variant table and cost counting. No I/O, no CLI."""

from partialnet.models.flops import Cost, measure_cost
from partialnet.models.partialnet import Arch, PartialNet
from partialnet.models.registry import DEFAULT_VARIANT, VARIANTS, Variant, create_model, get_variant

__all__ = ["Arch", "Cost", "DEFAULT_VARIANT", "PartialNet", "VARIANTS", "Variant", "create_model", "get_variant", "measure_cost"]
