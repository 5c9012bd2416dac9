"""Backends load when a command first needs them: a missing one is a one-line exit 3 naming the extra.

The core install is torch + ONNX Runtime; everything else is an extra. Importing a backend at module
level would make `partialnet --help` pay for it and turn a missing extra into an ImportError traceback.
"""

from __future__ import annotations

import importlib

from partialnet.errors import missing_extra


def require(module: str, extra: str, label: str | None = None):
    """`module`, imported now; Unavailable naming `pip install 'partialnet[extra]'` where it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(label or module, extra) from None
