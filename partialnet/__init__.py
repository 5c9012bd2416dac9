"""partialnet: load, fold, export, verify and benchmark PartialNet / FasterNet checkpoints.

The Python API mirrors the CLI: `create_model` and `load_checkpoint` return plain `torch.nn.Module`s
in eval mode, with the reference checkpoint's exact keys; `fold(model, imgsz)` returns the exact deploy
model and its report.

The names below are imported on first use: `partialnet --help`, a usage error and a benchmark worker
timing ONNX Runtime must not pay for importing torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("partialnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

_LAZY = {
    "VARIANTS": "partialnet.models.registry",
    "create_model": "partialnet.models.registry",
    "measure_cost": "partialnet.models.flops",
    "CheckpointInfo": "partialnet.checkpoint",
    "load_checkpoint": "partialnet.checkpoint",
    "FoldReport": "partialnet.folding",
    "fold": "partialnet.folding",
    "load_deploy": "partialnet.folding",
    "ExportOptions": "partialnet.exporters.options",
    "VerifyOptions": "partialnet.verify_options",
    "BadInput": "partialnet.errors",
    "CheckFailed": "partialnet.errors",
    "PartialnetError": "partialnet.errors",
    "Unavailable": "partialnet.errors",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'partialnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
