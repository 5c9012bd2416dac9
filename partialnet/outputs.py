"""Writing artifacts so that a failure never leaves a half file and nothing is overwritten by surprise."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from partialnet.errors import BadInput


def refuse_existing(paths: Sequence[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise BadInput(f"{existing[0]} already exists; pass --force to overwrite")
    for p in paths:
        if p.is_dir():
            raise BadInput(f"{p} is a directory; give a file name with -o")


@contextmanager
def atomic_outputs(paths: Sequence[Path], force: bool = False) -> Iterator[list[Path]]:
    """Yield temporary names beside `paths`; rename them into place only if the block succeeds."""
    paths = [Path(p) for p in paths]
    refuse_existing(paths, force)
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    temps = [p.with_name(f".{p.name}.partial-{os.getpid()}") for p in paths]
    try:
        yield temps
        missing = [str(t) for t in temps if not t.exists()]
        if missing:
            raise RuntimeError(f"internal: {missing[0]} was not written")
        for temp, final in zip(temps, paths):
            os.replace(temp, final)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
