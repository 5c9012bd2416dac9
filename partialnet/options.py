"""Typed options: one dataclass per command family, each field carrying its command-line flag.

A field's metadata (flag, help, bounds, how the typed text is parsed) is the single source for the
Typer option (`cli.takes` builds the parameters from it), the refusal messages, `partialnet formats`
and the docs, so adding an option is one field. Which formats take an export option stays in their
rows (`Format.options`); an option a format does not take is refused by its flag, never ignored.
"""

from __future__ import annotations

import functools
import numbers
import os
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Callable, Optional, Union, get_args, get_origin

from partialnet.errors import BadInput, shown
from partialnet.limits import whole_number


@dataclass(frozen=True)
class Flag:
    flag: str  # "--opset", or "--simplify/--no-simplify" for an on/off pair
    help: str
    cli_type: Any = None  # the type on the command line where it differs from the field's (None: "not given")
    min: float | None = None
    max: float | None = None
    show_default: bool | str = True
    parse: Callable[[Any], Any] | None = None  # text -> the field's value (e.g. "224,320" -> (224, 320))
    decls: tuple[str, ...] = ()  # short names ("-f")

    @property
    def name(self) -> str:
        """The flag as a refusal names it: the one that departs from the default in an on/off pair."""
        return self.flag.split("/")[-1]


def option(default, flag: str, help: str, **kw) -> Any:
    """A dataclass field with its command-line flag."""
    return field(default=default, metadata={"flag": Flag(flag, help, **kw)})


def choice(value, names: Sequence[str], flag: str, expected: str = "") -> str:
    """A choice as its name in `names`, typed in any case with blanks around it: `--device CPU` is cpu and
    `--min-target ios17` is iOS17, as format, runtime and variant names already were. Anything else is refused
    with the choices (`expected` words them where a bare list would not say what they are)."""
    if isinstance(value, str):
        key = value.strip().casefold()
        for name in names:
            if name.casefold() == key:
                return name
    listed = names[0] if len(names) == 1 else f"{names[0]} or {names[1]}" if len(names) == 2 else f"one of {', '.join(names)}"
    raise BadInput(f"{flag} {shown(value)}: expected {expected or listed}")


def choices(names: Sequence[str], flag: str, expected: str = "") -> Callable[[Any], str]:
    """A field's `parse` for a flag that takes one of `names`."""
    return functools.partial(choice, names=names, flag=flag, expected=expected)


def flags_of(cls) -> dict[str, Flag]:
    """Field name -> Flag, in declaration order, for the fields a user can type."""
    return {f.name: f.metadata["flag"] for f in fields(cls) if "flag" in f.metadata}


def defaults_of(cls) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def from_cli(cls, values: dict[str, Any], typed: set[str]):
    """An instance from parsed command-line values: None (not typed) takes the field's default; the fields
    the user typed (`typed`, at their defaults too) are recorded in `given`, so a format refuses what was asked for."""
    defaults, flags = defaults_of(cls), flags_of(cls)
    chosen = {}
    for name, value in values.items():
        parse = flags[name].parse
        chosen[name] = defaults[name] if value is None else parse(value) if parse else value
    instance = cls(**chosen)
    if "given" in {f.name for f in fields(cls)}:
        instance.given = frozenset(typed & values.keys())
    return instance


def settle(instance) -> None:
    """Each typed field of an options object as the command line would have made it, or BadInput naming its flag.

    Python callers fill these objects by hand, where nothing typed the values first: `imgsz=64` or "224,320" is
    what the flag takes, so it is parsed as the flag's text is; a wrong type (a number for a list, a string for a
    count) was a TypeError or AttributeError deep in the run (exit 4), and a count below its bound went through.
    """
    hints = _hints(type(instance))
    for name, flag in flags_of(type(instance)).items():
        value = getattr(instance, name)
        if value is None and type(None) in hints[name]:
            continue
        if flag.parse is not None:
            value = flag.parse(value)
        setattr(instance, name, _typed(value, hints[name], flag))


def _typed(value, allowed: tuple, flag: Flag):
    """`value` as one of the field's types (a str or PathLike becomes a Path; a str or sequence a list or tuple)."""
    for kind in allowed:
        origin, args = get_origin(kind), get_args(kind)
        if kind is bool and type(value) is bool:
            return value
        if kind is int and whole_number(value):  # numpy's integers too
            _within(value, flag)
            return int(value)
        if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool) and _float_sized(value):
            _within(value, flag)
            return float(value)  # NaN and infinity go on to the field's own check, which says what range it takes
        if kind is str and isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
            return os.fspath(value)  # --data and the like: a folder given as a Path is its text
        if kind is Path and isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
            if not str(value).strip():  # Path("") is the current folder
                raise BadInput(f"{flag.name} '': an empty string names no file or folder")
            return Path(value)
        if origin is list and isinstance(value, (str, list, tuple)):  # a str is the flag's comma-separated text
            items = [value] if isinstance(value, str) else list(value)
            if all(isinstance(v, args[0]) for v in items):
                return items
        if origin is tuple and isinstance(value, (list, tuple)) and len(value) == len(args) \
                and all(type(v) is t if t is int else isinstance(v, t) for v, t in zip(value, args)):
            return tuple(value)
    wanted = " or ".join(_NAMES.get(get_origin(k) or k, str(k)) for k in allowed if k is not type(None))
    raise BadInput(f"{flag.name} {shown(value)}: expected {wanted}")


def _float_sized(value) -> bool:
    try:
        float(value)
    except OverflowError:  # an integer beyond a float's range
        return False
    return True


def _within(value, flag: Flag) -> None:
    if flag.min is not None and value < flag.min or flag.max is not None and value > flag.max:
        bounds = f"at least {flag.min:g}" if flag.max is None else f"from {flag.min:g} to {flag.max:g}"
        raise BadInput(f"{flag.name} {shown(value)}: expected {bounds}")


_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string", Path: "a path",
          list: "a list of names", tuple: "a pair"}


@functools.cache
def _hints(cls) -> dict[str, tuple]:
    """Typed field name -> the types it may hold (Optional and `X | None` unpacked). Only the typed fields'
    annotations are evaluated: the others may name what their module imports for type checkers alone."""
    scope = {**vars(sys.modules[cls.__module__]), "Path": Path, "Optional": Optional}
    found = {}
    for f in fields(cls):
        if "flag" in f.metadata:
            hint = eval(f.type, scope) if isinstance(f.type, str) else f.type  # noqa: S307 (this package's own annotations)
            found[f.name] = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return found
