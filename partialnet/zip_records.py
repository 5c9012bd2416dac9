"""What a torch.save zip's pickle says its storage records hold, held against the records themselves.

torch.load with mmap=True slices each storage out of the mapped file at its record's offset, for as many bytes as
the pickle declares, and never compares that with the record's size: a record cut to 16 bytes loaded its tensor
from the zip headers and records after it (a different model from what plain torch.load gives, which refuses the
file), and a record nothing refers to (16 GiB, sparse on disk) was read in full for its CRC. The pickle is read
here without running any of it: every class it names becomes an inert stand-in, so no constructor, reducer or
import from the file executes, and only the storage references (`persistent_load`) are kept.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
import zipfile
from pathlib import Path

from partialnet.errors import BadInput

STORAGE_CLASS = re.compile(r"^[A-Za-z0-9_]{1,40}Storage$")


class _Inert(dict):
    """What every class a pickle names becomes: takes any arguments, items and state (an OrderedDict is filled by
    SETITEMS, a list by APPENDS), keeps them in no meaningful way, runs nothing."""

    __hash__ = object.__hash__  # a key of another dict, or a set's member

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def append(self, item) -> None:
        pass

    def extend(self, items) -> None:
        pass


MAX_NBYTES = 1 << 62  # beyond any file; also keeps a stranger's 10**4000 out of messages


class _StorageReader(pickle.Unpickler):
    """`declared`: storage key -> bytes, or None for a reference this reader cannot size (then refused: torch would
    load it, unchecked)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.declared: dict[str, int | None] = {}
        self.stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        named = f"{str(module)[:60]}.{str(name)[:60]}"  # cut before joining: a 30 MB name was copied per use
        if named not in self.stand_ins:  # one class per name: two million GLOBALs made two million classes (4.7 GB)
            self.stand_ins[named] = type("Inert", (_Inert,), {"named": named})
        return self.stand_ins[named]

    def persistent_load(self, pid):
        sized = _sized(pid)
        key = pid[2] if sized is not None else f"reference {len(self.declared)}"
        self.declared.setdefault(key, sized)  # torch keeps the first reference to a key too
        return _Inert()


def _sized(pid) -> int | None:
    """The bytes a storage reference declares, where it is one torch.save writes: ('storage', a torch storage class,
    str key, location, int numel). None for anything else, which torch may still load (a b"storage" tag built by
    _codecs.encode, a bool numel, a bytes key, a class that is no torch storage), so that it is refused, not let through."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and type(pid[0]) is str and pid[0] == "storage") \
            or type(pid[2]) is not str or type(pid[4]) is not int or not 0 <= pid[4] <= MAX_NBYTES:
        return None
    size = _element_size(getattr(pid[1], "named", None))
    return None if size is None else min(pid[4] * size, MAX_NBYTES + 1)


def _element_size(named: str | None) -> int | None:
    """Bytes per element of a storage class a torch.save file names (`torch.FloatStorage`; `torch.cuda.*` and
    `torch.storage.UntypedStorage` in older files), None if not one of torch's."""
    import torch

    if not named or named.count(".") > 2 or not named.startswith(("torch.", "torch.cuda.", "torch.storage.")):
        return None
    name = named.rsplit(".", 1)[1]
    if name == "UntypedStorage":
        return 1
    cls = getattr(torch, name, None) if STORAGE_CLASS.match(name) and named.startswith(("torch.cuda.", "torch.")) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.storage.TypedStorage)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated: its dtype is all that is read
        return torch.empty((), dtype=cls.dtype).element_size()


def declared_storages(pickle_bytes: bytes, path: Path) -> dict[str, int | None]:
    """Storage key -> the bytes the pickle declares for it (None where the class is not one torch saves)."""
    reader = _StorageReader(io.BytesIO(pickle_bytes))
    try:
        reader.load()
    except RecursionError:
        raise BadInput(f"{path}: refused: nested too deeply to be a checkpoint") from None
    except Exception as exc:  # a malformed stream: torch.load would refuse it too, in its own words
        raise BadInput(f"{path}: truncated or corrupt checkpoint (pickle: {type(exc).__name__})") from None
    return reader.declared


MAX_WALK = 200_000  # objects visited looking for a class: a state_dict with optimizer state is a few thousand


def entries_naming(pickle_bytes: bytes, named: str) -> tuple[list[str], list[str]] | None:
    """(the top-level keys whose values use the class `named` (module.qualname), every top-level key), read with
    inert stand-ins (nothing runs); None where the pickle is no dict, cannot be read, or is too large to walk."""
    reader = _StorageReader(io.BytesIO(pickle_bytes))
    try:
        top = reader.load()
    except Exception:  # RecursionError included: then nothing is named, and the refusal stays as torch worded it
        return None
    if not isinstance(top, dict):
        return None
    budget = [MAX_WALK]
    try:
        return [str(key)[:60] for key, value in top.items() if _uses(value, named, budget, set())], [str(key)[:60] for key in top]
    except _TooLarge:
        return None


class _TooLarge(Exception):
    pass


def _uses(value, named: str, budget: list[int], seen: set[int]) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooLarge
        if getattr(type(item), "named", None) == named:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return False


def check_records(archive: zipfile.ZipFile, top: str, declared: dict[str, int | None], path: Path) -> None:
    """Each storage record exactly as large as the pickle says, none missing, none that nothing uses."""
    records = {m.filename[len(top) + 6:]: m for m in archive.infolist() if m.filename.startswith(f"{top}/data/")}
    for key, nbytes in declared.items():
        if nbytes is None:  # fail closed: torch would load it without a size to hold its record to
            raise BadInput(f"{path}: refused: a storage reference torch.save does not write ({key}); its size cannot be checked")
        if nbytes > MAX_NBYTES:
            raise BadInput(f"{path}: corrupt checkpoint: storage {ascii(key)[:60]} declares more than 2**62 bytes")
        record = records.get(key)
        if record is None:
            raise BadInput(f"{path}: truncated or corrupt checkpoint (storage record {ascii(key)[:60]} is missing)")
        if nbytes is not None and record.file_size != nbytes:
            raise BadInput(f"{path}: corrupt checkpoint: record {ascii(record.filename)[:80]} holds {record.file_size:,} bytes, "
                           f"its tensor declares {nbytes:,} (a damaged or altered file: torch would take the tensor's bytes from elsewhere in it)")
    unused = [name for name in records if name not in declared]
    if unused:
        raise BadInput(f"{path}: refused: storage record {ascii(records[unused[0]].filename)[:80]} is used by no tensor "
                       f"({len(unused)} such); torch.save writes none")
