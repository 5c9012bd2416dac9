"""Opening files that strangers made: regular files only, never blocking, sizes checked before reading.

A path can name a FIFO (opening it blocks until a writer comes), a device (/dev/zero never ends), a
socket or a directory; `path.is_file()` followed by `open()` leaves a window in which the path can be
swapped for one of those. So every input is opened once, non-blocking, and judged by `fstat` on the
descriptor that is then read: what was checked is what is read.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import math
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from partialnet.errors import BadInput

KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def finite_number(value) -> bool:
    """A number from a stranger's JSON that arithmetic can use: not a bool, not NaN or Infinity, and not an integer
    beyond a float's range (`math.isfinite(10**400)` raises OverflowError: a one-line file was exit 4)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def describe_errno(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if exc.errno == errno.ENOTDIR:
        return "a parent in the path is not a directory"
    return exc.strerror or type(exc).__name__


def kind_of(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | Path, what: str = "file", max_bytes: int | None = None, min_bytes: int = 1, nofollow: bool = False) -> BinaryIO:
    """A binary file object on `path`, which must be a regular file of a sane size; BadInput otherwise.

    `what` names the file in messages ("checkpoint", "image"); `max_bytes` bounds what a caller will
    read, checked on the open descriptor before any byte is read. `nofollow` refuses a symbolic link as
    the last component (a file inside a multi-file artifact must not point elsewhere).
    """
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0) | (os.O_NOFOLLOW if nofollow else 0)
    if "\0" in str(path):  # no file has one; os.open raises ValueError, met as a bug
        raise BadInput(f"{ascii(str(path))}: a path cannot hold a NUL byte")
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO with no writer on some systems
            raise BadInput(f"{path}: not a regular file (a socket or a device with no reader)") from None
        if nofollow and exc.errno == errno.ELOOP:
            raise BadInput(f"{path}: is a symbolic link; {a_or_an(what)} must be a regular file") from None
        raise BadInput(f"{path}: {describe_errno(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{path}: is {kind_of(info.st_mode)}, expected a regular {what}")
        if info.st_size < min_bytes:
            if info.st_size == 0:
                from partialnet.mounts import pseudo_file_system

                kind = pseudo_file_system(path.parent)
                if kind:  # /proc/self/status: its size is 0 until read, and what it holds is the kernel's, not a file's
                    raise BadInput(f"{path}: is a {kind} file (the kernel's state, not a stored file), expected a regular {what}")
                raise BadInput(f"{path}: empty file")
            raise BadInput(f"{path}: only {info.st_size} bytes, too short to be {a_or_an(what)}")
        if max_bytes is not None and info.st_size > max_bytes:
            raise BadInput(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,}-byte limit for {a_or_an(what)}")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# C0/C1 controls (ESC starts a terminal sequence: colours, cursor moves, screen clears) and the bidi
# overrides that make text read backwards. A lone surrogate (JSON's "\\ud800") is no character at all: no UTF-8 terminal or file can take it.
_CONTROLS = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]")
_CONTROLS_BUT_LINES = re.compile("[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]")


def inert(text: str, keep_lines: bool = False) -> str:
    """Text shown as it is written: every control character as its escape, never acted on by a terminal
    (newlines and tabs kept with keep_lines, for our own multi-line output)."""
    return (_CONTROLS_BUT_LINES if keep_lines else _CONTROLS).sub(lambda m: ascii(m.group())[1:-1], text)


MD_SPECIAL = re.compile(r"([\\`<>\[\]|])")


def md_text(value) -> str:
    """A stranger's text as Markdown shows it, and only as text: a `|` would add table cells (shifting a forged
    figure under the p50 column), `<td>` would add HTML ones, `![x](url)` would fetch an image. Each such
    character is backslash-escaped (the backslash first, so `\\<` cannot undo it); control characters are inert."""
    return MD_SPECIAL.sub(r"\\\1", inert(str(value)))


class Markdown(str):
    """Text already written as Markdown by partialnet (a code span around a fingerprint): md_row keeps it."""


def md_row(*cells) -> str:
    """One Markdown table row, every cell as md_text but those partialnet wrote as Markdown."""
    return "| " + " | ".join(c if isinstance(c, Markdown) else md_text(c) for c in cells) + " |"


def check_regular(path: str | Path, what: str = "file", max_bytes: int | None = None, min_bytes: int = 1, nofollow: bool = False) -> int:
    """The size of `path` after the same checks as `open_regular` (for libraries that take a path)."""
    with open_regular(path, what, max_bytes, min_bytes, nofollow) as f:
        return os.fstat(f.fileno()).st_size


def sha256_of(path: str | Path) -> str:
    """A file's sha256; a directory artifact (.mlpackage) hashes each file's relative path and contents, sorted."""
    digest = hashlib.sha256()
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        for member in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            digest.update(member.relative_to(path).as_posix().encode() + b"\0")
            digest.update(sha256_of(member).encode())
        return digest.hexdigest()
    with open_regular(path, "file") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fd_path(f: BinaryIO, fallback: str | Path) -> str:
    """A path that names exactly the open file `f`, for libraries that insist on a path (torch's mmap)."""
    proc = f"/proc/self/fd/{f.fileno()}"
    return proc if os.path.exists(proc) else str(fallback)


def read_limited(path: str | Path, what: str, max_bytes: int, nofollow: bool = False) -> bytes:
    """The whole of a small regular file, refusing anything larger than `max_bytes`."""
    with open_regular(path, what, max_bytes, nofollow=nofollow) as f:
        return f.read(max_bytes + 1)


def unique_keys(pairs: list) -> dict:
    """json's object_pairs_hook: a key given twice in one object is refused, since parsers disagree on which
    one wins (Python keeps the last, others the first), and a file must mean one thing to every reader."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def read_json(path: str | Path, what: str, max_bytes: int = 16 << 20, nofollow: bool = False):
    """A small JSON file from a stranger: size-capped, strict (no NaN/Infinity), bounded nesting and digits."""
    import json

    from partialnet.errors import BadInput

    def refuse_constant(name: str):
        raise BadInput(f"{path}: holds {name}, which is not JSON")

    data = read_limited(path, what, max_bytes, nofollow)
    if len(data) > max_bytes:
        raise BadInput(f"{path}: larger than {max_bytes:,} bytes; not {a_or_an(what)}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse_constant, object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise BadInput(f"{path}: nested too deeply to be {a_or_an(what)}") from None
    except ValueError as exc:  # a key given twice, NaN, an integer of thousands of digits
        raise BadInput(f"{path}: not {a_or_an(what)} ({json_refusal(exc)})") from None


def a_or_an(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def json_refusal(exc: ValueError) -> str:
    """Why a strict JSON read refused a file, in our words: Python's own integer-size message names a
    function to call (`sys.set_int_max_str_digits`) that no user of a result file should."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text.startswith("Exceeds the limit"):
        return "it holds an integer of thousands of digits"
    return text[:120]


def read_beside(path: str | Path, what: str, max_bytes: int = 16 << 20):
    """The JSON file that belongs to an artifact (its manifest or record), or None where there is none.

    It must be a regular file itself: a symbolic link, FIFO or device in its place is refused, naming it,
    rather than followed or skipped (a skipped manifest would hide what the artifact claims to be)."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    return read_json(path, what, max_bytes, nofollow=True)
