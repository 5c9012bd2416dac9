"""The `partialnet` command's first lines, before typer, rich and the CLI are imported (a fifth of a second).

A Ctrl-C in that time met Python's default handler: a KeyboardInterrupt traceback through the import machinery
(a SIGTERM killed the process without a word). And a command started with its output closed (`>&-`, a daemon's
spawn) had `sys.stdout` None: a traceback at the CLI's first `isatty()`, or the next file opened taking
descriptor 1 and the tables printed into it.
"""

from __future__ import annotations

import os
import signal
import sys


def _stopped_while_starting(signum, frame) -> None:
    try:
        os.write(2, f"error: stopped by {signal.Signals(signum).name} while starting; nothing was done\n".encode())
    except OSError:
        pass
    os._exit(128 + signum)  # nothing made yet: nothing to clean up, and no exception to land inside an import


def _standard_streams() -> None:
    """Descriptors 0-2 open (on /dev/null where closed), and Python's streams on them."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one, or it is moved there
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))
    _whole_writes()


def _whole_writes() -> None:
    """PYTHONUNBUFFERED (set in many CI images) leaves each output stream a text layer straight over the raw file,
    and that layer drops what a short write leaves over: `compare --json > gate.json` on a full disk was cut at the
    disk's end with exit 0 and no word. A buffered layer writes the rest or raises (exit 3, said); flushed at each
    line and after each table, the output stays as live as unbuffered."""
    import io

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        raw = getattr(stream, "buffer", None)
        if not (isinstance(stream, io.TextIOWrapper) and isinstance(raw, io.RawIOBase)):
            continue  # already buffered (the default), or a test's capture
        # the old layer stays referenced by sys.__stdout__/__stderr__, so it never closes the descriptor under the new one
        setattr(sys, name, io.TextIOWrapper(io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors,
                                            line_buffering=True, write_through=True))


def stop_while_starting() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup` asked for SIGHUP to be ignored: it stays so
            signal.signal(sig, _stopped_while_starting)


def main() -> None:
    stop_while_starting()
    _standard_streams()
    from partialnet.cli import entry  # installs the command's own handlers before any work

    entry()
