"""Silence the converters' own chatter (progress bars, untested-version warnings, missing CUDA kernels).

Python-level output goes through `library_quiet`; C++ libraries that write to file descriptor 2 directly
(absl, oneDNN, XNNPACK in LiteRT) need `native_quiet`. Errors are still raised, so nothing a user must see
is hidden.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout

# torchao registers an Enum through torch's pytree and torch logs the deprecation via its own handler.
ALWAYS = ("torch.utils._pytree",)


@contextmanager
def library_quiet(*names: str):
    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in (*ALWAYS, *names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def native_quiet():
    """Point file descriptor 2 at /dev/null for the duration (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
