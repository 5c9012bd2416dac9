"""Typed options: one dataclass per command family, each field carrying its command-line flag.

A field's metadata (flag, help, bounds, how the typed text is parsed) is the single source for the
Typer option (`cli.takes` builds the parameters from it), the refusal messages, `partialnet formats`
and the docs, so adding an option is one field. Which formats take an export option stays in their
rows (`Format.options`); an option a format does not take is refused by its flag, never ignored.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable


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


def flags_of(cls) -> dict[str, Flag]:
    """Field name -> Flag, in declaration order, for the fields a user can type."""
    return {f.name: f.metadata["flag"] for f in fields(cls) if "flag" in f.metadata}


def defaults_of(cls) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def from_cli(cls, values: dict[str, Any]):
    """An instance from parsed command-line values: None (not typed) takes the field's default; the fields
    the user did type are recorded in `given`, so a format refuses only what was asked for."""
    defaults, flags = defaults_of(cls), flags_of(cls)
    chosen, given = {}, set()
    for name, value in values.items():
        if value is None:
            chosen[name] = defaults[name]
            continue
        if flags[name].cli_type is not None or value != defaults[name]:  # typed (an Optional flag), or off its default
            given.add(name)
        parse = flags[name].parse
        chosen[name] = parse(value) if parse else value
    instance = cls(**chosen)
    if "given" in {f.name for f in fields(cls)}:
        instance.given = frozenset(given)
    return instance
