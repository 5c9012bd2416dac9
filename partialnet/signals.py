"""Stopping on SIGINT/SIGTERM/SIGHUP without ever raising inside a C++ library's callback.

The handler raises `Interrupted` in the main thread so every `finally` removes its temporaries. Some
native libraries call back into Python (onnxsim runs ONNX Runtime through Python callbacks); an
exception raised there either aborts the process (nanobind turns it into std::terminate) or is
swallowed as "simplification failed" and the command carries on. Inside `deferred()` the handler only
records the signal, and `Interrupted` is raised as soon as the native call returns. Every signal is
also recorded, so one that a library catches and drops still stops the command before it publishes.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_state = {"deferring": 0, "pending": None}


class Interrupted(BaseException):
    """A signal asked us to stop: raised in the main thread so every `finally` removes its temporaries."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def on_signal(signum, frame) -> None:
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)  # cleanup runs once, without a second signal cutting it short
    _state["pending"] = signum  # kept even when raising: a library that swallows the exception cannot swallow this
    if _state["deferring"]:
        return
    raise Interrupted(signum)


def install() -> None:
    """SIGTERM (what CI runners send on cancel) and SIGHUP are handled like Ctrl-C: clean up, then exit."""
    _state["pending"] = None  # a new command (tests run several in one process) starts with no stop request
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)


def raise_if_pending() -> None:
    """Raise for a recorded stop request. The request is never cleared: if a library swallows this
    Interrupted too (some turn any exception from a callback into their own error and fall back),
    the next check, at the latest the one before publishing, raises again."""
    if _state["pending"] is not None and not _state["deferring"]:
        raise Interrupted(_state["pending"])


@contextmanager
def deferred():
    """Hold a stop request until the enclosed native call returns, then honour it."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    raise_if_pending()
