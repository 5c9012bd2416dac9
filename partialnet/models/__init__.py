"""Architectures (plain torch), the variant table and cost counting. No I/O, no CLI.

The variant table (`registry`) is plain data; torch is imported when a model is built or measured.
"""

from importlib import import_module

_LAZY = {
    "Cost": "flops", "measure_cost": "flops", "Arch": "partialnet", "PartialNet": "partialnet",
    "DEFAULT_VARIANT": "registry", "VARIANTS": "registry", "Variant": "registry", "create_model": "registry", "get_variant": "registry",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"partialnet.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'partialnet.models' has no attribute {name!r}")
