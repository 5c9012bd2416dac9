"""C library calls Python does not wrap (renameat2, prctl): the library is opened once, for every caller.

Linux only in effect: elsewhere (or where the call is missing) `function` answers None and the caller keeps
its portable path.
"""

from __future__ import annotations

import ctypes

_opened: list = []  # [the CDLL, or None where it cannot be opened], filled on first use


def function(name: str):
    if not _opened:
        try:
            _opened.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _opened.append(None)
    return getattr(_opened[0], name, None) if _opened[0] is not None else None


def last_errno() -> int:
    return ctypes.get_errno()
