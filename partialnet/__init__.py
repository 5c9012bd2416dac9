"""partialnet: load, fold, export, verify and benchmark PartialNet / FasterNet checkpoints.

The Python API mirrors the CLI: `create_model` and `load_checkpoint` return plain `torch.nn.Module`s
in eval mode, with the reference checkpoint's exact keys; `fold(model, imgsz)` returns the exact deploy
model and its report.
"""

from importlib.metadata import PackageNotFoundError, version

from partialnet.checkpoint import CheckpointInfo, load_checkpoint
from partialnet.errors import BadInput, CheckFailed, PartialnetError, Unavailable
from partialnet.folding import FoldReport, fold, load_deploy
from partialnet.models import VARIANTS, create_model, measure_cost

try:
    __version__ = version("partialnet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

__all__ = [
    "VARIANTS",
    "BadInput",
    "CheckFailed",
    "CheckpointInfo",
    "FoldReport",
    "PartialnetError",
    "Unavailable",
    "__version__",
    "create_model",
    "fold",
    "load_deploy",
    "load_checkpoint",
    "measure_cost",
]
