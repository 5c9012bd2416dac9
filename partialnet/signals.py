"""Stopping on SIGINT/SIGTERM/SIGHUP at safe points, so every temporary is removed and nothing half-done
is published.

The handler never raises: it records the request, passes it on to a bench worker timing a row (the row is
discarded, so there is no waiting for it), and the command raises `Interrupted` at its next checkpoint
(between stages, between bench rows, and always before publishing). Raising from a handler
lands the exception wherever the main thread happens to be: inside a C extension's import (seen: onnx's
module init segfaulted), inside a C++ library's Python callback (onnxsim aborted via std::terminate, or
swallowed it as "simplification failed"). A second signal forces the default action at once, for a user
who does not want to wait for the current step; the child processes and temporaries registered here
(workers, staged outputs, scratch folders, a target's folder) are killed and removed first, so even a
forced stop leaves nothing behind (CI runners cancel with SIGINT and then SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_state = {"pending": None}


class Interrupted(BaseException):
    """A signal asked us to stop: raised in the main thread so every `finally` removes its temporaries."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_TEMPORARIES: dict[str, str] = {}  # path -> "file", "tree" or "folder" (removed only if empty): what a forced stop removes


def remember_temporary(path, kind: str) -> None:
    """Until forgotten, a second signal removes `path` (a temporary this process made) before it dies."""
    _TEMPORARIES[os.fspath(path)] = kind


def forget_temporary(path) -> None:
    _TEMPORARIES.pop(os.fspath(path), None)


@contextmanager
def removed_if_forced(path, kind: str):
    remember_temporary(path, kind)
    try:
        yield path
    finally:
        forget_temporary(path)


def _remove_temporaries() -> None:
    from partialnet.outputs import remove_tree

    for path, kind in reversed(list(_TEMPORARIES.items())):  # the latest first: files before the folders made for them
        try:
            {"file": os.unlink, "tree": remove_tree, "folder": os.rmdir}[kind](path)
        except Exception:  # best effort, from a signal handler: whatever is left, the next path still goes
            pass


_ELSEWHERE: dict[str, list[str]] = {}  # a target's folder -> the ssh command line that removes it


def remember_remote_folder(key: str, argv: list[str]) -> None:
    """Until forgotten, a forced stop starts `argv` (ssh … rm -rf FOLDER) and leaves without waiting for it:
    the target's folder goes too, and a dead link cannot hold the forced stop up."""
    _ELSEWHERE[key] = argv


def forget_remote_folder(key: str) -> None:
    _ELSEWHERE.pop(key, None)


def _remove_remote_folders() -> None:
    import subprocess

    for argv in list(_ELSEWHERE.values()):
        try:
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except Exception:  # best effort, from a signal handler
            pass


_CHILDREN: dict = {}  # child process (subprocess.Popen) -> whether a first stop request is passed on to it


def remember_child(proc, forward: bool) -> None:
    """Until forgotten, a forced stop kills `proc` (a kill signal sent to our pid alone must not leave it running
    as an orphan); with `forward`, a first stop request is passed on to it too, as its work is discarded anyway."""
    _CHILDREN[proc] = forward


def forget_child(proc) -> None:
    _CHILDREN.pop(proc, None)


@contextmanager
def stopped_with_us(proc, forward: bool = True):
    remember_child(proc, forward)
    try:
        yield proc
    finally:
        forget_child(proc)


def _signal_children(kill: bool) -> None:
    for proc, forward in list(_CHILDREN.items()):
        try:
            if kill:
                proc.kill()
            elif forward:
                proc.send_signal(signal.SIGTERM)
        except Exception:  # already gone
            pass


def _die(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def on_signal(signum, frame) -> None:
    if _state["pending"] is not None:  # asked twice: stop now, the default way, after the children and temporaries
        _signal_children(kill=True)
        _remove_temporaries()
        _remove_remote_folders()
        _say(f"error: stopped at once by a second {signal.Signals(signum).name}; helper processes killed, temporary files removed\n")
        _die(signum)
        return
    _state["pending"] = signum
    _signal_children(kill=False)
    _say(f"{signal.Signals(signum).name}: stopping after the current step (again to force)\n")


def _say(line: str) -> None:
    try:
        lead = "\n" if sys.stderr.isatty() else ""  # off a spinner's line on a terminal; no blank line in a log
        sys.stderr.write(f"{lead}{line}")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def install() -> None:
    """SIGTERM (what CI runners send on cancel) and SIGHUP are handled like Ctrl-C: clean up, then exit."""
    _state["pending"] = None  # a new command (tests run several in one process) starts with no stop request
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)


_HELD = {"depth": 0}


def stops_cleanly(function):
    """For a Python caller of the API that left SIGTERM and SIGHUP at their defaults (which kill at once): while
    `function` runs they stop it at its next safe point as they stop a command, its temporaries and staged files
    removed, and the signal is then delivered again with the caller's default, so the process ends as it would
    have. An export stopped this way had left a hidden output-sized file beside its output and its scratch folder
    in $TMPDIR. A caller's own handlers, and the CLI's, are left alone; so is SIGINT (KeyboardInterrupt)."""
    import functools
    import threading

    @functools.wraps(function)
    def run(*args, **kwargs):
        if _HELD["depth"] or threading.current_thread() is not threading.main_thread():
            return function(*args, **kwargs)
        installed = [sig for sig in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(sig) is signal.SIG_DFL]
        for sig in installed:
            signal.signal(sig, on_signal)
        if installed:
            _state["pending"] = None
        _HELD["depth"] += 1
        try:
            return function(*args, **kwargs)
        finally:
            _HELD["depth"] -= 1
            for sig in installed:
                signal.signal(sig, signal.SIG_DFL)
            pending = _state["pending"]
            if pending in installed:  # cleaned up by now: end the way the caller's default would have
                _state["pending"] = None
                os.kill(os.getpid(), pending)

    return run


def left_to_parent() -> None:
    """In a helper process (the second export process): its parent stops and removes it, so no API call made in it
    defers a signal the way `stops_cleanly` does for a caller's own process."""
    _HELD["depth"] += 1


PARENT_VAR = "PARTIALNET_PARENT_PID"  # set by a command for the helper processes it starts (bench workers, a second export)


def die_with_parent() -> None:
    """In a helper process: end when the command that started it ends, even by SIGKILL (an OOM kill, a CI runner's
    hard stop), which no handler of the command sees. Without this a bench worker timed its row on for 20 s, and a
    second export process lowered an ExecuTorch program for 40 s into a folder nobody would remove. Linux only
    (prctl PR_SET_PDEATHSIG); elsewhere, nothing changes."""
    from partialnet import libc

    parent = os.environ.get(PARENT_VAR, "")
    prctl = libc.function("prctl")
    if prctl is None or prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
        return
    if parent.isdigit() and os.getppid() != int(parent):  # the command died before the line above: too late to be told
        os.kill(os.getpid(), signal.SIGTERM)


def ended(returncode: int) -> str:
    """How a child process ended, as a message says it: a worker SIGTERM'd by an operator "exited -15"."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited {returncode}"


def raise_if_pending() -> None:
    """A checkpoint. The request is never cleared: if a library swallows this Interrupted, the next
    checkpoint (at the latest the one before publishing) raises again."""
    if _state["pending"] is not None:
        raise Interrupted(_state["pending"])


@contextmanager
def deferred():
    """A native call that calls back into Python: honour a stop request as soon as it returns."""
    yield
    raise_if_pending()
