"""Read a .safetensors file into tensors with nothing but `json`, `mmap` and `torch.frombuffer`.

The format is an 8-byte little-endian header length, a JSON table of (dtype, shape, byte range), then
raw bytes. Reading it ourselves keeps the core dependency list short and lets every malformed file
produce a one-line error naming what is wrong, instead of a Rust panic from a binding.

The header is validated completely before any tensor exists, and tensors are views of a private
memory map: a file that declares a 4 GB tensor costs address space, not memory, until the loader's
shape check refuses it.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

import torch

from partialnet.errors import BadInput
from partialnet.inputs import json_refusal, unique_keys

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,  # fp8 checkpoints (quantized releases); upcast on load as .pth fp8 is
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 16 * 1024 * 1024  # a header for the largest variant with every key is ~100 KB
MAX_RANK = 8
MAX_DIM = 2**31 - 1  # an empty tensor's other dimensions still need strides torch can compute: no real weight is this wide
MAX_METADATA_ENTRIES = 10_000


def _header(f: BinaryIO, size: int, corrupt) -> dict:
    if size < 8:
        raise corrupt(f"only {size} bytes")
    (header_len,) = struct.unpack("<Q", f.read(8))
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        raise corrupt(f"header length {header_len} exceeds the file or the {MAX_HEADER_BYTES:,}-byte limit")
    raw = f.read(header_len)
    try:
        header = json.loads(raw, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} in header")), object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise corrupt(f"header is not JSON: {json_refusal(exc)}") from None
    except RecursionError:
        raise corrupt("header is nested too deeply") from None
    if not isinstance(header, dict):
        raise corrupt(f"header is a JSON {type(header).__name__}, not an object")
    return header


def _metadata(header: dict, corrupt) -> dict[str, str]:
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_ENTRIES:
        raise corrupt("__metadata__ is not an object of strings")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise corrupt("__metadata__ values must be strings")
    return metadata


def _entry(name: str, entry: object, data_len: int, corrupt, unreadable) -> tuple[torch.dtype, list[int], int, int]:
    if not isinstance(entry, dict):
        raise corrupt(f"entry {name!r} is not an object")
    dtype = DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    if dtype is None and isinstance(entry.get("dtype"), str) and re.fullmatch(r"[A-Z0-9_]{1,12}", entry["dtype"]):
        raise unreadable(f"tensor {name!r} has dtype {entry['dtype']}, which partialnet does not read (it reads {', '.join(DTYPES)})")
    if dtype is None:
        raise corrupt(f"tensor {name!r} has unknown dtype {str(entry.get('dtype'))[:20]!r}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
        raise corrupt(f"tensor {name!r} has shape {str(shape)[:60]}: expected a list of at most {MAX_RANK} non-negative integers "
                      f"up to {MAX_DIM:,}")
    if math.prod(max(d, 1) for d in shape) > MAX_DIM**2:
        raise corrupt(f"tensor {name!r} has shape {str(shape)[:60]}: its strides overflow")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        raise corrupt(f"tensor {name!r} has data_offsets {str(offsets)[:60]}: expected [start, end]")
    start, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if not 0 <= start <= end <= data_len or end - start != nbytes:
        raise corrupt(f"tensor {name!r} byte range [{start}, {end}) does not fit shape {shape} or the file")
    return dtype, shape, start, end


class SafetensorsTensors(dict):
    """A safetensors file's tensors, marked as such: its container is named by what the file is, not by its suffix
    (a torch zip named .safetensors was labelled safetensors, a safetensors file named .pt was not)."""


def read_safetensors(f: BinaryIO, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (views of a private memory map) and the `__metadata__` strings of an open safetensors file."""

    def corrupt(why: str) -> BadInput:
        return BadInput(f"{path}: corrupt safetensors file ({why})")

    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    header = _header(f, size, corrupt)
    metadata = _metadata(header, corrupt)
    data_start = 8 + struct.unpack("<Q", _peek8(f))[0]
    data_len = size - data_start
    entries = {name: _entry(name, entry, data_len, corrupt, lambda why: BadInput(f"{path}: {why}")) for name, entry in header.items()}
    spans = sorted((start, end, name) for name, (_, _, start, end) in entries.items() if end > start)
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:]):
        if start_b < end_a:
            raise corrupt(f"tensors {a!r} and {b!r} overlap")
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
    tensors: dict[str, torch.Tensor] = {}
    for name, (dtype, shape, start, end) in entries.items():
        if end == start:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            view = memoryview(mapped)[data_start + start : data_start + end]
            tensors[name] = torch.frombuffer(view, dtype=dtype).reshape(shape)
    return SafetensorsTensors(tensors), {str(k): v for k, v in metadata.items()}


def _peek8(f: BinaryIO) -> bytes:
    f.seek(0)
    return f.read(8)
