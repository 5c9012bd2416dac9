"""Which file system a folder is on, so an output aimed at kernel state is refused before the slow work.

Root passes every permission check on /proc and /sys, and statvfs calls them writable, yet creating a file
there fails (ENOENT, EACCES): without this, `fold -o /proc/x.pt` found out after the fold.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# kernel interfaces mounted as folders: nothing written there is a file anyone can read back
PSEUDO = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "configfs",
                    "fusectl", "mqueue", "efivarfs", "binfmt_misc", "selinuxfs", "nsfs", "rpc_pipefs"})
MOUNTINFO = Path("/proc/self/mountinfo")
_MOUNTINFO_LIMIT = 4 << 20  # a host with thousands of mounts stays far below this; more is not a mount table


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as three octal digits."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) per line of a mountinfo text, in mount order; a malformed line is skipped."""
    found = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) > dash + 1:
            found.append((_unescape(fields[4]), fields[dash + 1]))
    return found


def file_system_type(folder: str | Path, table: str | None = None) -> str | None:
    """The type of the file system holding `folder` (the last mount over its deepest mount point), or None where
    the mount table cannot be read: the check this feeds is a courtesy, and the write itself stays the proof."""
    if table is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
                table = f.read(_MOUNTINFO_LIMIT)
        except OSError:
            return None
    path = os.path.realpath(folder)
    best: tuple[int, str] | None = None
    for point, kind in mounts(table):
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), kind)
    return best[1] if best else None


def pseudo_file_system(folder: str | Path, table: str | None = None) -> str | None:
    """The pseudo file system (proc, sysfs, ...) `folder` is on, or None for one that holds files."""
    kind = file_system_type(folder, table)
    return kind if kind in PSEUDO else None
