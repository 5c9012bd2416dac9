"""Builders for hostile files: each returns a path a stranger could hand partialnet (imported by name)."""

from __future__ import annotations

import json
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def safetensors_bytes(header: object, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    """A safetensors file with any header at all (the real library refuses to write hostile ones)."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares width x height pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def bound_socket(path: Path) -> socket.socket:
    """A unix socket at `path` (kept open by the caller)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def nan_logits_onnx(path: Path, value: float = float("nan"), classes: int = 1000, imgsz: int = 64, batch: int = 1) -> Path:
    """A valid ONNX model with the artifact's interface whose logits are all `value` (NaN or Inf)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.full((3, classes), value, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["images", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weight"], ["logits"]),
        ],
        "hostile",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def onnx_declaring_input(path: Path, dims: list[int]) -> Path:
    """An ONNX model whose declared input is `dims` (e.g. absurdly large): nothing in it needs that memory."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["logits"])],
        "hostile",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def expanded_head(sd: dict[str, torch.Tensor], classes: int) -> dict[str, torch.Tensor]:
    """The head widened to `classes` with zero strides: bytes on disk, gigabytes if ever materialised."""
    sd = dict(sd)
    features = sd["head.weight"].shape[1]
    sd["head.weight"] = torch.zeros(1, 1).expand(classes, features)
    sd["head.bias"] = torch.zeros(1).expand(classes)
    return sd


def nested(depth: int, leaf: object = None) -> object:
    obj = leaf
    for _ in range(depth):
        obj = {"model": obj}
    return obj


def zip_records(path: Path) -> list[tuple[str, bytes]]:
    """A torch.save zip's records, in order, to rewrite."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(m.filename, archive.read(m)) for m in archive.infolist()]


def rewrite_zip(path: Path, records: list[tuple[str, bytes]]) -> Path:
    """Records written back as torch.save lays them out: stored, each one's bytes aligned to 64 in the file."""
    import struct
    import zipfile

    with open(path, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            pad = (-(out.tell() + 30 + len(name.encode()) + 4)) % 64
            info.extra = struct.pack("<HH", 0x4650, pad) + b"Z" * pad
            archive.writestr(info, data)
    return path
