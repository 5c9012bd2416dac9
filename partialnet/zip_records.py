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


class _StorageReader(pickle.Unpickler):
    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.declared: dict[str, int | None] = {}

    def find_class(self, module: str, name: str):
        return type("Inert", (_Inert,), {"named": f"{module}.{name}"[:120]})

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[2], str):
            kind, key, numel = getattr(pid[1], "named", None), pid[2], pid[4]
            size = _element_size(kind)
            nbytes = numel * size if size is not None and type(numel) is int and numel >= 0 else None
            self.declared.setdefault(key, nbytes)  # torch keeps the first reference to a key too
        return _Inert()


def _element_size(named: str | None) -> int | None:
    """Bytes per element of a storage class torch.save names (`torch.FloatStorage`), None if not one of torch's."""
    import torch

    if not named or not named.startswith("torch.") or not STORAGE_CLASS.match(named[6:]):
        return None
    if named == "torch.UntypedStorage":
        return 1
    cls = getattr(torch, named[6:], None)
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


def check_records(archive: zipfile.ZipFile, top: str, declared: dict[str, int | None], path: Path) -> None:
    """Each storage record exactly as large as the pickle says, none missing, none that nothing uses."""
    records = {m.filename[len(top) + 6:]: m for m in archive.infolist() if m.filename.startswith(f"{top}/data/")}
    for key, nbytes in declared.items():
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
