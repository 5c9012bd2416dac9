"""A Core ML package (.mlpackage) read as a stranger's file: its tree, its ML program and its weights.

coremltools reads a package by following whatever it finds there: a weights file that is a symlink to
/dev/zero grows without end, a FIFO blocks forever, a link to /etc/passwd is read as weights. Here the
tree is checked first (directories and regular files only, bounded in number and size, the root model
named by the manifest inside the package), the program is parsed from bytes whose size was checked, and
each weight is read from its blob file with the blob's header checked against the type and shape the
program declares. What is verified is then exactly what Core ML would load.

The blob file (MIL blob storage, version 2): a 64-byte header (u32 count, u32 version, reserved), then per
tensor a 64-byte record (u32 sentinel 0xDEADBEEF, u32 data type, u64 size in bytes, u64 data offset,
reserved) that a const's `blobFileValue.offset` points at, and the data where the record says.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from partialnet.errors import BadInput
from partialnet.inputs import describe_errno, kind_of, open_regular, read_json

MAX_ENTRIES = 64  # files and folders: a package of ours holds about eight
MAX_DEPTH = 8
MAX_SPEC_BYTES = 256 << 20
MAX_BLOB_BYTES = 8 << 30
MAX_OTHER_BYTES = 64 << 20
MAX_TENSOR_ELEMENTS = 1 << 31
MODEL_PATH = "@model_path/"
BLOB_SENTINEL = 0xDEADBEEF
BLOB_VERSION = 2
HEADER = struct.Struct("<II7Q")  # count, version, reserved
RECORD = struct.Struct("<IIQQ5Q")  # sentinel, data type, size in bytes, data offset, reserved
BLOB_DTYPES = {1: np.float16, 2: np.float32, 3: np.uint8, 4: np.int8, 6: np.int16, 7: np.uint16}  # MILBlob StorageFormat codes
# MIL_pb2.DataType -> numpy, for the types a classifier's program holds
MIL_DTYPES = {
    1: np.bool_, 10: np.float16, 11: np.float32, 12: np.float64, 21: np.int8, 22: np.int16, 23: np.int32, 24: np.int64,
    31: np.uint8, 32: np.uint16, 33: np.uint32, 34: np.uint64,
}
MIL_FP16, MIL_FP32 = 10, 11
MIL_NAMES = {1: "bool", 2: "string", 10: "fp16", 11: "fp32", 12: "fp64", 13: "bf16", 21: "int8", 22: "int16", 23: "int32", 24: "int64",
             31: "uint8", 32: "uint16", 33: "uint32", 34: "uint64"}


def _proto():
    from partialnet.exporters.coreml import load_coremltools

    load_coremltools()  # the one-line 'pip install partialnet[coreml]' when it is missing, and its logs kept quiet
    from coremltools.proto import Model_pb2

    return Model_pb2


def check_tree(root: Path) -> dict[str, int]:
    """Every file of the package by its path inside it, with its size; anything but folders and regular files refused."""
    try:
        info = os.lstat(root)
    except OSError as exc:
        raise BadInput(f"{root}: {describe_errno(exc)}") from None
    if stat.S_ISLNK(info.st_mode):
        raise BadInput(f"{root}: is a symbolic link; give the package folder itself")
    if not stat.S_ISDIR(info.st_mode):
        raise BadInput(f"{root}: not a Core ML package (a directory with Manifest.json)")
    files: dict[str, int] = {}
    seen = 0

    def walk(folder: Path, depth: int) -> None:
        nonlocal seen
        if depth > MAX_DEPTH:
            raise BadInput(f"{root}: folders nested deeper than {MAX_DEPTH}; not a Core ML package")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise BadInput(f"{folder}: {describe_errno(exc)}") from None
        for entry in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                raise BadInput(f"{root}: more than {MAX_ENTRIES} entries; not a Core ML package")
            rel = PurePosixPath(Path(entry.path).relative_to(root).as_posix())
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                walk(Path(entry.path), depth + 1)
            elif stat.S_ISREG(mode):
                files[str(rel)] = entry.stat(follow_symlinks=False).st_size
            else:
                what = "a symbolic link" if stat.S_ISLNK(mode) else kind_of(mode)
                raise BadInput(f"{root}: {rel} is {what}; a package holds folders and regular files only")

    walk(root, 0)
    return files


def _inside(rel: str, where: str) -> str:
    """A relative path that stays inside the package (no absolute path, no '..'), normalised."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in rel or "\0" in rel:
        raise BadInput(f"{where}: the path {ascii(rel)} leaves the package")
    return str(path)


@dataclass
class Package:
    root: Path
    files: dict[str, int]
    spec_path: str  # inside the package
    spec: object  # coremltools.proto.Model_pb2.Model
    _blobs: dict[str, "BlobFile"] = field(default_factory=dict)

    @property
    def model_dir(self) -> str:
        return str(PurePosixPath(self.spec_path).parent)

    def blob(self, file_name: str) -> "BlobFile":
        if not file_name.startswith(MODEL_PATH):
            raise BadInput(f"{self.root}: a weight lives in {ascii(file_name)}, outside the package")
        rel = _inside(str(PurePosixPath(self.model_dir) / file_name[len(MODEL_PATH):]), str(self.root))
        if rel not in self.files:
            raise BadInput(f"{self.root}: the weights file {rel} is missing")
        if rel not in self._blobs:
            self._blobs[rel] = BlobFile(self.root / rel, self.files[rel])
        return self._blobs[rel]

    def close(self) -> None:
        for blob in self._blobs.values():
            blob.close()
        self._blobs.clear()


def open_package(root: str | Path) -> Package:
    """The package's tree checked, its manifest read, and its root model's spec parsed (weights stay on disk)."""
    root = Path(root)
    files = check_tree(root)
    for rel, size in files.items():
        limit = MAX_BLOB_BYTES if rel.endswith(".bin") else MAX_SPEC_BYTES if rel.endswith(".mlmodel") else MAX_OTHER_BYTES
        if size > limit:
            raise BadInput(f"{root}: {rel} is {size:,} bytes, more than the {limit:,}-byte limit")
    if "Manifest.json" not in files:
        raise BadInput(f"{root}: not a Core ML package (no Manifest.json)")
    manifest = read_json(root / "Manifest.json", "Core ML package manifest", 1 << 20)
    entries = manifest.get("itemInfoEntries") if isinstance(manifest, dict) else None
    root_id = manifest.get("rootModelIdentifier") if isinstance(manifest, dict) else None
    item = entries.get(root_id) if isinstance(entries, dict) and isinstance(root_id, str) else None
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise BadInput(f"{root}/Manifest.json: names no root model (itemInfoEntries[rootModelIdentifier].path)")
    spec_path = _inside(f"Data/{item['path']}", f"{root}/Manifest.json")
    if spec_path not in files:
        raise BadInput(f"{root}: the root model {spec_path} named by Manifest.json is missing")
    with open_regular(root / spec_path, "Core ML model spec", MAX_SPEC_BYTES, nofollow=True) as f:
        data = f.read(MAX_SPEC_BYTES + 1)
    model = _proto().Model()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise BadInput(f"{root}: {spec_path} is not a Core ML model spec ({str(exc)[:120]})") from None
    if model.WhichOneof("Type") != "mlProgram":
        raise BadInput(f"{root}: holds a {model.WhichOneof('Type') or 'empty'} model, expected an ML program")
    return Package(root, files, spec_path, model)


class BlobFile:
    """One weights file, opened once (a regular file, never through a link), read record by record."""

    def __init__(self, path: Path, listed_size: int):
        self.path = path
        self.file = open_regular(path, "Core ML weights file", MAX_BLOB_BYTES, min_bytes=HEADER.size, nofollow=True)
        self.size = os.fstat(self.file.fileno()).st_size
        if self.size != listed_size:
            raise BadInput(f"{path}: changed while it was read")
        count, version, *_ = HEADER.unpack(self._read(0, HEADER.size))
        if version != BLOB_VERSION:
            raise BadInput(f"{path}: blob storage version {version}, expected {BLOB_VERSION}")
        if count * RECORD.size > self.size:
            raise BadInput(f"{path}: its header declares {count:,} tensors, more than the file can hold")

    def _read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise BadInput(f"{self.path}: a record points at bytes {offset:,}-{offset + size:,}, past its end ({self.size:,})")
        self.file.seek(offset)
        data = self.file.read(size)
        if len(data) != size:
            raise BadInput(f"{self.path}: shorter than it was ({len(data)} of {size} bytes read)")
        return data

    def tensor(self, offset: int, dtype: np.dtype, shape: tuple[int, ...], name: str) -> np.ndarray:
        """The tensor whose record sits at `offset`, checked against what the program declares for `name`."""
        sentinel, code, nbytes, data_offset, *_ = RECORD.unpack(self._read(offset, RECORD.size))
        if sentinel != BLOB_SENTINEL:
            raise BadInput(f"{self.path}: no blob record at offset {offset:,} (for {name})")
        if BLOB_DTYPES.get(code) is not np.dtype(dtype).type:
            raise BadInput(f"{self.path}: {name} is stored as type {code}, the program declares {np.dtype(dtype).name}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if nbytes != count * np.dtype(dtype).itemsize:
            raise BadInput(f"{self.path}: {name} holds {nbytes:,} bytes, its shape {list(shape)} needs {count * np.dtype(dtype).itemsize:,}")
        return np.frombuffer(self._read(data_offset, nbytes), dtype=dtype).reshape(shape)

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------- the program's values


def value_type(value_type_proto) -> tuple[int, tuple[int, ...] | None]:
    """(MIL data type, static shape or None) of a ValueType that holds a tensor."""
    if value_type_proto.WhichOneof("type") != "tensorType":
        raise BadInput(f"a value of kind {value_type_proto.WhichOneof('type')}, expected a tensor")
    tensor = value_type_proto.tensorType
    dims = []
    for dim in tensor.dimensions:
        if dim.WhichOneof("dimension") != "constant":
            return tensor.dataType, None
        dims.append(int(dim.constant.size))
    if len(dims) != tensor.rank:
        raise BadInput(f"a tensor of rank {tensor.rank} lists {len(dims)} dimensions")
    if dims and int(np.prod(dims, dtype=np.int64)) > MAX_TENSOR_ELEMENTS or any(d < 0 for d in dims):
        raise BadInput(f"a tensor of shape {dims} is beyond what a classifier holds")
    return tensor.dataType, tuple(dims)


def immediate(value, dtype_code: int, shape: tuple[int, ...]):
    """A const's value written into the program itself (small tensors and scalars)."""
    tensor = value.immediateValue.tensor
    kind = tensor.WhichOneof("value")
    if dtype_code == 2:  # strings
        values = list(tensor.strings.values)
        return values[0] if not shape and len(values) == 1 else values
    if kind == "bytes":
        dtype = MIL_DTYPES.get(dtype_code)
        if dtype is None:
            raise BadInput(f"a const of type {MIL_NAMES.get(dtype_code, dtype_code)} written as bytes")
        raw = tensor.bytes.values
        array = np.frombuffer(raw, dtype=dtype).copy()
    elif kind in ("floats", "ints", "bools", "longInts", "doubles"):
        dtype = MIL_DTYPES.get(dtype_code)
        if dtype is None:
            raise BadInput(f"a const of type {MIL_NAMES.get(dtype_code, dtype_code)}")
        array = np.asarray(list(getattr(tensor, kind).values)).astype(dtype)
    else:
        raise BadInput(f"a const written as {kind}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if array.size != count:
        raise BadInput(f"a const of shape {list(shape)} holds {array.size} values")
    return array.reshape(shape)


def const_value(package: Package, op) -> object:
    """The value of one `const` op: immediate, or read from the weights file it names."""
    name = op.outputs[0].name
    if "val" not in op.attributes:
        raise BadInput(f"{package.root}: const {ascii(name)} has no value")
    value = op.attributes["val"]
    code, shape = value_type(value.type)
    if shape is None:
        raise BadInput(f"{package.root}: const {ascii(name)} has a dynamic shape")
    kind = value.WhichOneof("value")
    if kind == "immediateValue":
        return immediate(value, code, shape)
    if kind == "blobFileValue":
        dtype = MIL_DTYPES.get(code)
        if dtype is None:
            raise BadInput(f"{package.root}: const {ascii(name)} of type {MIL_NAMES.get(code, code)} in a weights file")
        return package.blob(value.blobFileValue.fileName).tensor(int(value.blobFileValue.offset), dtype, shape, name)
    raise BadInput(f"{package.root}: const {ascii(name)} holds no value")


def main_block(package: Package):
    """The operations of the program's `main` function (the block of its opset)."""
    functions = package.spec.mlProgram.functions
    if "main" not in functions:
        raise BadInput(f"{package.root}: the ML program has no main function")
    function = functions["main"]
    if function.opset not in function.block_specializations:
        raise BadInput(f"{package.root}: main has no block for its opset {ascii(function.opset)}")
    return function, function.block_specializations[function.opset]
