"""Read a .safetensors file into tensors with nothing but `json` and `torch.frombuffer`.

The format is an 8-byte little-endian header length, a JSON table of (dtype, shape, byte range), then
raw bytes. Reading it ourselves keeps the core dependency list short and lets every malformed file
produce a one-line error naming what is wrong, instead of a Rust panic from a binding.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from partialnet.errors import BadInput

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the free-form `__metadata__` strings of a safetensors file."""
    blob = path.read_bytes()

    def corrupt(why: str) -> BadInput:
        return BadInput(f"{path}: corrupt safetensors file ({why})")

    if len(blob) < 8:
        raise corrupt(f"only {len(blob)} bytes")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > min(MAX_HEADER_BYTES, len(blob) - 8):
        raise corrupt(f"header length {header_len} exceeds the file")
    try:
        header = json.loads(blob[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    data = memoryview(blob)[8 + header_len :]
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"bad header entry for {name!r}") from None
        numel = 1
        for d in shape:
            numel *= d
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= start <= end <= len(data) or end - start != numel * itemsize:
            raise corrupt(f"tensor {name!r} byte range [{start}, {end}) does not fit shape {shape} or the file")
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(data[start:end]), dtype=dtype).reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}
