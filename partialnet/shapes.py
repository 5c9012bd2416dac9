"""A stranger's JSON held to a declared shape: a target's reply, or a result file handed to `report`. The shape
says, once, what each field must be and how far it is cut, so every such document is checked the same way
and a refusal names the field (`busiest[0].pid`, `rows[3].batch`), not only that something somewhere was off.

A shape is an object with `conform(value, path)`: it returns the value as partialnet keeps it (strings cut,
lists and maps bounded) or raises `Misshapen`. `conform(value, shape, what)` turns that into one BadInput.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from partialnet.errors import BadInput
from partialnet.inputs import finite_number


class Misshapen(ValueError):
    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path or 'the document'} {expected if expected == 'is missing' else 'is not ' + expected}")


def conform(value, shape, what: str):
    """`value` as `shape` keeps it; BadInput naming `what` and the first field that does not fit."""
    try:
        return shape.conform(value, "")
    except Misshapen as exc:
        raise BadInput(f"{what}: {exc}") from None


def _at(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)


@dataclass(frozen=True)
class Text:
    """A string cut to `limit`, or, with `cut=False`, refused beyond it: a name that identifies a row (compare
    matches rows by model, runtime and precision) must not become another's by losing its end."""

    limit: int
    cut: bool = True

    def conform(self, value, path: str) -> str:
        if not isinstance(value, str) or (not self.cut and len(value) > self.limit):
            raise Misshapen(path, "a string" if self.cut else f"a string of at most {self.limit:,} characters")
        return value[:self.limit]


@dataclass(frozen=True)
class Integer:
    low: int | None = None
    high: int | None = None

    def conform(self, value, path: str) -> int:
        if type(value) is not int or (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            bounds = (f" in {self.low}..{self.high}" if self.high is not None else f" >= {self.low}") if self.low is not None else ""
            raise Misshapen(path, f"an integer{bounds}")
        return value


@dataclass(frozen=True)
class Number:
    """A finite number, within `low`..`high` where given; `real` makes it a float (a JSON 0 for 0.0)."""

    real: bool = False
    low: float | None = None
    high: float | None = None

    def conform(self, value, path: str):
        if not finite_number(value) or (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            bounds = (f" from {self.low:g} to {self.high:g}" if self.high is not None else f" of at least {self.low:g}") if self.low is not None \
                else f" of at most {self.high:g}" if self.high is not None else ""
            raise Misshapen(path, f"a finite number{bounds}")
        return float(value) if self.real else value


@dataclass(frozen=True)
class OneOf:
    """One of a few known words (a status, a device): an unknown one would be read as some other case."""

    words: tuple[str, ...]

    def conform(self, value, path: str) -> str:
        if not isinstance(value, str) or value not in self.words:
            raise Misshapen(path, f"one of {', '.join(self.words)}")
        return value


@dataclass(frozen=True)
class Flag:
    def conform(self, value, path: str) -> bool:
        if not isinstance(value, bool):
            raise Misshapen(path, "true or false")
        return value


@dataclass(frozen=True)
class Maybe:
    """`shape`, or null (also a field that is absent); `null_as` is what null is kept as."""

    shape: object
    null_as: object = None

    def conform(self, value, path: str):
        return self.null_as if value is None else self.shape.conform(value, path)


@dataclass(frozen=True)
class ListOf:
    """A list whose items each fit `item`: cut to `limit` (a reply's extras are dropped), or, with `cut=False`,
    refused beyond it (a result file's rows are each a measurement: none is silently lost)."""

    item: object
    limit: int
    least: int = 0
    cut: bool = True

    def conform(self, value, path: str) -> list:
        too_long = not self.cut and isinstance(value, list) and len(value) > self.limit
        if not isinstance(value, list) or len(value) < self.least or too_long:
            raise Misshapen(path, self._described())
        return [self.item.conform(v, _at(path, i)) for i, v in enumerate(value[:self.limit])]

    def _described(self) -> str:
        if self.cut:
            return "a list" if not self.least else f"a list of at least {self.least}"
        if self.least == self.limit:
            return f"a list of {self.limit}"
        return f"a list of {self.least} to {self.limit:,}" if self.least else f"a list of at most {self.limit:,}"


@dataclass(frozen=True)
class MapOf:
    """An object with keys of the target's choosing (a runtime's name), each cut to `key_limit`."""

    item: object
    limit: int
    key_limit: int = 40

    def conform(self, value, path: str) -> dict:
        if not isinstance(value, dict):
            raise Misshapen(path, "an object")
        return {k[:self.key_limit]: self.item.conform(v, _at(path, k[:self.key_limit])) for k, v in list(value.items())[:self.limit]}


@dataclass(frozen=True)
class Record:
    """An object with these fields (others dropped); a field that is absent is null, which only Maybe takes.
    `omit_null` leaves a null field out, as a record written here leaves out what it does not know.
    `keep_others` keeps the fields not named, unread: a result file's fields that no reader trusts travel on."""

    fields: dict = field(hash=False)
    omit_null: bool = False
    keep_others: bool = False

    def conform(self, value, path: str) -> dict:
        if not isinstance(value, dict):
            raise Misshapen(path, "an object")
        kept = dict(value) if self.keep_others else {}  # in the file's order: a record passed on reads as it came
        for key, shape in self.fields.items():
            if key not in value and not isinstance(shape, Maybe):
                raise Misshapen(_at(path, key), "is missing")
            kept[key] = shape.conform(value.get(key), _at(path, key))
            if self.omit_null and kept[key] is None:
                del kept[key]
        return kept


@dataclass(frozen=True)
class Loose:
    """A nested record of the target's choosing (a GPU's fields): short keys, finite numbers, short strings
    and lists, at most two levels deeper."""

    depth: int = 0

    def conform(self, value, path: str) -> dict:
        if not isinstance(value, dict):
            raise Misshapen(path, "an object")
        return {self._key(k, path): self._value(v, _at(path, k)) for k, v in list(value.items())[:64]}

    @staticmethod
    def _key(key, path: str) -> str:
        if not isinstance(key, str) or len(key) > 40:
            raise Misshapen(path, "an object of short keys")
        return key

    def _value(self, value, path: str):
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return Number().conform(value, path)
        if isinstance(value, str):
            return value[:120]
        if isinstance(value, list) and len(value) <= 64 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            return [Number().conform(x, _at(path, i)) for i, x in enumerate(value)]
        if isinstance(value, list) and len(value) <= 16 and all(isinstance(x, str) for x in value):
            return [x[:300] for x in value]
        if isinstance(value, dict) and self.depth < 2:
            return Loose(self.depth + 1).conform(value, path)
        raise Misshapen(path, "a number, a string, a short list or a small object")
