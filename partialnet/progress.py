"""Named stages of a command (load, fold, export, simplify, verify…) and where the wall time went.

Code deep inside an exporter says `with stage("simplify"):` without knowing who listens; the command
that wants progress and timings opens `recording(listener)` around its work. Stages nest: a parent's
share is its own time without its children's, so the shares add up to the time measured. The wall
time of the whole command counts from the process's start (interpreter and imports included), which
is what a user waiting at the prompt sees.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

_IMPORTED_AT = time.perf_counter()


class Listener(Protocol):
    def started(self, name: str, detail: str) -> None: ...

    def finished(self, name: str, seconds: float, ended: str = "ok") -> None: ...  # ended: ok, failed or stopped


class StageClock:
    """Self time per stage name (a stage entered twice adds up), in the order stages first began."""

    def __init__(self, listener: Listener | None = None):
        self.listener = listener
        self.seconds: dict[str, float] = {}
        self._stack: list[list] = []  # [name, started, seconds spent in children]
        self.within: dict[str, str] = {}  # a stage that first began inside another -> that stage (never a cycle)
        self.beside: dict[str, dict[str, float]] = {}  # stages another process ran while this one worked: overlapped, not in the shares
        self.began = time.perf_counter()

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        if self.listener:
            self.listener.started(name, detail)
        if name not in self.seconds and self._stack:  # where a stage first begins decides where it is shown
            self.within[name] = self._stack[-1][0]
        frame = [name, time.perf_counter(), 0.0]
        self._stack.append(frame)
        self.seconds.setdefault(name, 0.0)
        ended = "failed"
        try:
            yield
            ended = "ok"
        except BaseException as exc:  # a stop (Ctrl-C, SIGTERM) reads as one, an error as a failure
            from partialnet.signals import Interrupted

            ended = "stopped" if isinstance(exc, (Interrupted, KeyboardInterrupt)) else "failed"
            raise
        finally:
            self._stack.pop()
            total = time.perf_counter() - frame[1]
            self.seconds[name] += total - frame[2]
            if self._stack:
                self._stack[-1][2] += total
            if self.listener:
                self.listener.finished(name, total, ended)

    def ran_beside(self, where: str, stages: dict[str, float]) -> None:
        """Stages another process ran at the same time as this one's (`where`: which, and for what): shown
        now, and kept apart, since adding them to this process's stages would count one wall time twice."""
        for name, seconds in stages.items():
            if self.listener:
                self.listener.started(name, f"({where})")
                self.listener.finished(name, seconds)
            kept = self.beside.setdefault(where, {})
            kept[name] = kept.get(name, 0.0) + seconds

    def breakdown(self) -> dict:
        """Wall time from the process's start, and each stage's own seconds and share of it (`within`: which
        stage a nested one ran inside, so a reader can show a parent's whole time with its parts)."""
        wall = process_age()
        startup = max(0.0, wall - (time.perf_counter() - self.began)) if wall is not None else None
        wall = wall if wall is not None else time.perf_counter() - _IMPORTED_AT
        stages = {"startup": startup} if startup is not None else {}
        stages.update(self.seconds)
        stages["other"] = max(0.0, wall - sum(stages.values()))
        return {
            "wall_s": round(wall, 2),
            "stages_s": {k: round(v, 2) for k, v in stages.items()},
            "shares": {k: round(v / wall, 3) if wall > 0 else 0.0 for k, v in stages.items()},
            "within": dict(self.within),
            **({"beside_s": {w: {k: round(v, 2) for k, v in st.items()} for w, st in self.beside.items()}} if self.beside else {}),
        }


_CLOCK: contextvars.ContextVar[StageClock | None] = contextvars.ContextVar("partialnet_stage_clock", default=None)


@contextmanager
def recording(listener: Listener | None = None) -> Iterator[StageClock]:
    clock = StageClock(listener)
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextmanager
def stage(name: str, detail: str = "") -> Iterator[None]:
    """Time `name` for whoever records; a no-op when nobody does (a library caller, a test)."""
    from partialnet.signals import raise_if_pending

    raise_if_pending()  # a stage boundary is a safe point: a stop asked for during the last one is taken here
    clock = _CLOCK.get()
    if clock is None:
        yield
        return
    with clock.stage(name, detail):
        yield


def ran_beside(where: str, stages: dict[str, float]) -> None:
    """Stages another process reported (name -> its own seconds), for whoever records; see StageClock.ran_beside."""
    clock = _CLOCK.get()
    if clock is not None:
        clock.ran_beside(where, stages)


def whole_stages(stages_s: dict[str, float], within: dict[str, str]) -> dict[str, float]:
    """Each stage with the stages nested in it added back (`within` says which is nested where)."""
    children = {name: [c for c, parent in within.items() if parent == name and c in stages_s] for name in stages_s}

    def whole(name: str) -> float:  # `within` has no cycle: a stage is placed where it first began
        return stages_s[name] + sum(whole(c) for c in children[name])

    return {name: whole(name) for name in stages_s}


def current_seconds() -> dict[str, float]:
    clock = _CLOCK.get()
    return {k: round(v, 2) for k, v in clock.seconds.items()} if clock else {}


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), so interpreter start-up and imports count."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat, counted after the ")"
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError):
        return None
