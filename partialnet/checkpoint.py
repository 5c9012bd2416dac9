"""Turn a checkpoint file found in the wild into a reference-exact model, or refuse with a reason.

The reference loaders use `strict=False`, so a wrong file "loads" and silently runs random layers.
Here every step either succeeds exactly or raises `BadInput` with one line naming the problem:
read (weights-only unpickling, or safetensors) → unwrap the container → find the model's key prefix →
translate timm's key layout → infer the architecture from tensor shapes → strict key/shape diff → load.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from partialnet.errors import BadInput
from partialnet.inputs import fd_path, open_regular, sha256_of  # noqa: F401 (sha256_of: used here, and imported from here)
from partialnet.limits import check_name
from partialnet.models.partialnet import (
    PAT_CH,
    PAT_SF,
    PCONV,
    STAGE_COUNT,
    Arch,
    PartialNet,
    default_mixers,
)
from partialnet.models.registry import MAX_CLASSES, Variant, closest_variant, find_variant, get_variant, VARIANTS
from partialnet.safetensors_file import SafetensorsTensors, read_safetensors
from partialnet.sources import (
    MIN_CHECKPOINT_BYTES, SNIFF_BYTES, is_variant_name, looks_like_path, not_a_checkpoint, sniff_checkpoint, unknown_source,
)
from partialnet.pickle_shape import Shape
from partialnet.zip_records import check_records, declared_storages

ANCHOR = "patch_embed.proj.weight"
# Wrapper keys that hold the weights, most specific first (Lightning, timm/DeiT-style, EMA copies).
CONTAINER_KEYS = ("state_dict", "model", "model_ema", "state_dict_ema", "ema", "module", "net")
# Prefixes added by wrappers; when several model copies sit in one flat dict, the first listed wins.
KNOWN_PREFIXES = ("", "module.", "model.", "model.module.", "_orig_mod.", "module._orig_mod.", "model._orig_mod.")
SHOWN = 3  # how many key names an error message lists per kind
SHOWN_COPIES = 6  # how many model copies a message names
STORAGE_SLACK = 2.0  # tensors may share a flat buffer (FSDP, apex), but not reference far more than the model
RANDOM_WEIGHTS_SEED = 0


@dataclass
class CheckpointInfo:
    """What was found in the file and how it was interpreted; printed by `partialnet info`."""

    source: str
    variant: str
    variant_inferred: bool
    container: str
    key_layout: str = "reference"
    prefix: str = ""
    ignored_keys: list[str] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    num_tensors: int = 0
    file_bytes: int | None = None
    sha256: str | None = None
    random_weights: bool = False
    family: str = ""
    embed_dim: int = 0
    depths: tuple = ()
    act: str = ""
    pat_sp: bool = False
    num_classes: int = 1000
    dpconv_widths: list[list[int]] = field(default_factory=list)
    weights: str | None = None  # the --weights name of the copy loaded, when the file holds several (None: it holds one)
    dataset: str | None = None  # the task a checkpoint says it was trained on (`partialnet digits` writes "digits")
    trained_imgsz: list[int] | None = None  # the input size it says it was trained at (`partialnet digits` records it)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KeyDiff:
    missing: list[str]
    unexpected: list[str]
    misshaped: list[tuple[str, tuple, tuple]]  # (key, checkpoint shape, model shape)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.misshaped)

    def summary(self) -> str:
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                more = f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:SHOWN])}{more}")
        if self.misshaped:
            shown = ", ".join(f"{k} {list(c)} vs model {list(m)}" for k, c, m in self.misshaped[:SHOWN])
            more = f" (+{len(self.misshaped) - SHOWN} more)" if len(self.misshaped) > SHOWN else ""
            parts.append(f"{len(self.misshaped)} mis-shaped: {shown}{more}")
        return "; ".join(parts)


class NoSuchCopy(BadInput):
    """--weights names no model copy of the file (verify, which takes the name from an artifact, then checks
    whether --ref is the artifact's checkpoint at all)."""


class KeyMismatch(BadInput):
    def __init__(self, message: str, diff: KeyDiff):
        super().__init__(message, details={"missing": diff.missing, "unexpected": diff.unexpected})
        self.diff = diff


# ---------------------------------------------------------------- reading


def size_of(path: Path) -> int:
    """Bytes of a file, or of every regular file under a directory artifact."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def _refusal_reason(exc: Exception) -> str | None:
    """What a weights-only unpickler refused, if that is why loading failed."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it needs the global {found.group(1)}, which could run code"
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return _opcode_refused(int(found.group(1)))
    return "it holds objects other than tensors"


def _opcode_refused(code: int) -> str:
    """An opcode torch's weights-only unpickler does not read, by name: a plain state_dict saved with pickle protocol 4
    (torch.save's pickle_protocol=4) is refused for its protocol's framing, not for what it holds."""
    import pickletools

    op = next((o for o in pickletools.opcodes if ord(o.code) == code), None)
    if op is None:
        return f"it uses pickle opcode {code}, which is no pickle opcode"
    if op.proto >= 4:
        return (f"it was pickled with protocol {op.proto} or later (opcode {op.name}), which torch's weights-only loading does not "
                "read; a state_dict saved with torch.save's default protocol is: from a copy you trust, re-save its state_dict: " + RESAVE_DEFAULT)
    return f"it uses pickle opcode {op.name}, outside what tensors-only loading reads"


# commands a message gives the user to run (on a file they trust), not writes of this package
KEEP_WEIGHTS = "torch.save(torch.load(path, weights_only=False)[{key!r}], 'weights.pth')"
RESAVE_DEFAULT = ("obj = torch.load(path, weights_only=False); "
                  "torch.save(obj.state_dict() if hasattr(obj, 'state_dict') else obj, 'weights.pth')")
RESAVE_COPIES = "torch.save({k: v.clone() for k, v in sd.items()}, path)"


def _entry_refused(reason: str, exc: Exception, pickled: bytes | None) -> str:
    """The refusal, naming the top-level entry that needs the class where the weights sit in another (a trainer's
    config object beside a state_dict): those weights are fine, and the way to keep them is to save them alone."""
    from partialnet.zip_records import entries_naming

    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    entries, keys = (entries_naming(pickled, found.group(1)) if found and pickled is not None else None) or ([], [])
    weights = [k for k in CONTAINER_KEYS if k in keys and k not in entries]
    if entries and weights:
        return (f"its entry {entries[0]!r} {reason.removeprefix('it ')}; partialnet loads tensors only. The weights beside it "
                f"({weights[0]!r}) are tensors: from a copy you trust, save them alone: "
                + KEEP_WEIGHTS.format(key=weights[0]))
    if reason.startswith("it was pickled with protocol"):  # its own advice: the file may be a plain state_dict
        return reason
    return f"{reason}; partialnet loads tensors only (save model.state_dict() instead)"


MAX_LEGACY_BYTES = 2 << 30  # pre-1.6 pickle checkpoints are read whole; the largest real model is ~0.4 GB
MAX_PICKLE_BYTES = 64 << 20  # the pickled structure of a state_dict (not its tensor bytes) is kilobytes
MAX_PICKLE_OPS = 2_000_000  # a state_dict of the largest variant with optimizer state needs ~50k opcodes


MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def _refuse_shape(shape: Shape, path: Path) -> None:
    problem = shape.problem()
    if problem:
        raise BadInput(f"{path}: refused: {problem}; using it could hang or crash the process")


def _count_pickle_ops(stream, path: Path, pickles: int) -> None:
    """Walk `pickles` consecutive pickles without building anything, refusing one too big to unpickle safely.

    Unpickling amplifies: a two-byte opcode can append a reference to a list, so a small file can
    build gigabytes of Python objects. Counting opcodes first bounds the work and memory of the real load.
    """
    import pickletools

    ops = 0
    try:
        for i in range(pickles):
            if i and not _more(stream):
                break  # a plain pickle, not torch's legacy sequence: torch.load judges it next
            shape = Shape()
            for op, arg, _pos in pickletools.genops(stream):
                ops += 1
                shape.feed(op, arg)
                if ops > MAX_PICKLE_OPS:
                    raise BadInput(
                        f"{path}: refused: its pickle holds over {MAX_PICKLE_OPS:,} opcodes; a state_dict needs far fewer"
                    )
                if op.name in MEMO_PUTS and type(arg) is int and not 0 <= arg <= ops:  # a pickler numbers its memo from 0
                    raise BadInput(f"{path}: refused: its pickle stores at memo slot {arg:,} after {ops:,} opcodes "
                                   "(an unpickler sizes its memo by the slot: a 10-byte file took 4 GB)")
                if ops % 4096 == 0 or op.name == "STOP":
                    _refuse_shape(shape, path)
    except BadInput:
        raise
    except Exception as exc:  # pickletools raises ValueError/struct.error/EOFError on malformed streams
        raise BadInput(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None


def _more(stream) -> bool:
    at = stream.tell()
    more = stream.read(1) != b""
    stream.seek(at)
    return more


def _inspect_zip(f, path: Path) -> bytes:
    """Refuse what torch.save never writes, before torch reads any of it."""
    try:
        archive = zipfile.ZipFile(f)
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{path}: truncated or corrupt checkpoint (zip: {_first_line(exc)})") from None
    names = [m.filename for m in members]
    twice = _named_twice(names)
    if twice is not None:  # zip readers disagree on which counts: torch's ignores case, and took an unchecked DATA.PKL
        raise BadInput(f"{path}: refused: two records named {ascii(twice)[:80]} (torch.save writes each name once)")
    if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
        raise BadInput(
            f"{path}: is a TorchScript archive (torch.jit.save); partialnet loads state_dicts: "
            "save model.state_dict() with torch.save instead"
        )
    if any(n.count("/") == 1 and n.endswith("/archive_format") for n in names) and any(n.endswith("/models/model.json") for n in names):
        raise BadInput(f"{path}: is a torch.export program (.pt2, torch.export.save); partialnet loads state_dicts: "
                       "save model.state_dict() with torch.save instead")
    pickles = [m for m in members if m.filename.lower().endswith("/data.pkl") and m.filename.count("/") == 1]
    if len(pickles) != 1:
        raise BadInput(f"{path}: a zip file, but not one written by torch.save (no data.pkl record)")
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if compressed:
        raise BadInput(f"{path}: refused: compressed zip record {compressed[0]} (torch.save stores records uncompressed)")
    record = pickles[0]
    if record.file_size > MAX_PICKLE_BYTES:
        raise BadInput(f"{path}: refused: its pickle record is {record.file_size:,} bytes; a state_dict needs far less")
    try:
        with archive.open(record) as stream:
            pickled = stream.read(MAX_PICKLE_BYTES + 1)  # read once for both walks below (torch reads it once more)
        if len(pickled) > MAX_PICKLE_BYTES:  # zipfile stops at the declared size; this holds whatever a reader does
            raise BadInput(f"{path}: refused: its pickle record is over {MAX_PICKLE_BYTES:,} bytes; a state_dict needs far less")
        _count_pickle_ops(io.BytesIO(pickled), path, pickles=1)
        declared = declared_storages(pickled, path)
        check_records(archive, record.filename.split("/")[0], declared, path)
        _check_crcs(archive, members, path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadInput(f"{path}: truncated or corrupt checkpoint (zip: {_first_line(exc)})") from None
    return pickled  # the structure, for a refusal to name the entry that needs a class


def _named_twice(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            return name
        seen.add(name.lower())
    return None


def _check_crcs(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], path: Path) -> None:
    """Every record against the CRC-32 torch.save wrote for it: torch.load never checks them, so a flipped
    bit in a weight loaded as a different model (a sign-flipped filter exported and "verified" against
    itself). Reads the file once (+0.2-0.4 s per GiB from the page cache on 2-core EPYC VMs). (A file saved with torch's `compute_crc32=False`
    holds 0 for every CRC; zipfile refuses its pickle record as corrupt before this runs.)"""
    for member in members:
        try:
            with archive.open(member) as stream:  # zipfile compares the CRC-32 as the record's last bytes are read
                while stream.read(1 << 20):
                    pass
        except zipfile.BadZipFile as exc:
            if "CRC" not in str(exc):
                raise
            raise BadInput(f"{path}: corrupt checkpoint: record {member.filename} fails its CRC-32 check "
                           "(the file was damaged after it was saved)") from None


def read_file(path: Path) -> object:
    """The unpickled (or safetensors) object, never executing code from the file.

    torch.save files are memory-mapped: tensors the model does not need (optimizer state, EMA copies,
    hostile oversized storages) are never read, and nothing is materialised before the key and shape
    checks. Legacy pickles and safetensors are bounded by size before reading.
    """
    path = Path(path)
    with open_regular(path, "checkpoint", min_bytes=MIN_CHECKPOINT_BYTES) as f:
        head = f.read(SNIFF_BYTES)
        f.seek(0)
        kind = sniff_checkpoint(path, head)
        if kind == "safetensors":
            tensors, _meta = read_safetensors(f, path)
            return tensors
        if kind == "unknown":
            raise not_a_checkpoint(path, head)
        if kind == "zip":
            pickled = _inspect_zip(f, path)
            f.seek(0)
            return _torch_load(fd_path(f, path), path, mmap=True, pickled=pickled)
        size = os.fstat(f.fileno()).st_size
        if size > MAX_LEGACY_BYTES:
            raise BadInput(f"{path}: refused: a {size:,}-byte legacy (pre-zip) pickle checkpoint; re-save it with a current torch")
        _count_pickle_ops(f, path, pickles=5)  # magic, protocol, sys info, the object, storage keys
        f.seek(0)
        return _torch_load(f, path, mmap=False)


def _inert_globals() -> list:
    """Classes beside the weights in real training checkpoints that build plain data and run nothing: timm's
    train.py saves its `args` (an argparse.Namespace: attributes set from a dict) and may save a metric as a
    NumPy scalar (a dtype from its name, a value from its bytes). Allowed by name, as torch's own list is;
    NumPy 1 pickles name the scalar's module without the underscore."""
    import argparse

    import numpy as np

    scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar  # NumPy 2's name, or 1's (numpy>=1.26 is allowed)
    numeric = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFD"]  # a dtype's class, set up from its state
    names = [(scalar, f"{module}.multiarray.scalar") for module in ("numpy.core", "numpy._core")]  # a file from either NumPy
    return [argparse.Namespace, np.dtype, *numeric, *names]


def _torch_load(target, path: Path, mmap: bool, pickled: bytes | None = None) -> object:
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_inert_globals()):
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it reads fine
            return torch.load(target, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        reason = _refusal_reason(exc)
        if reason:
            raise BadInput(f"{path}: refused: {_entry_refused(reason, exc, pickled)}") from None
        raise BadInput(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise BadInput(f"{path}: truncated or corrupt checkpoint ({_first_line(exc)})") from None
    except RecursionError:
        raise BadInput(f"{path}: refused: nested too deeply to be a checkpoint") from None
    except MemoryError:
        raise BadInput(f"{path}: refused: declares more memory than this machine has") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, UnicodeDecodeError, OSError, OverflowError) as exc:
        raise BadInput(f"{path}: corrupt checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception message: torch's run on for a paragraph."""
    text = " ".join(str(exc).split())
    sentence = re.split(r"(?<=[.:])\s", text, maxsplit=1)[0].rstrip(".:")
    return sentence[:160] or type(exc).__name__


# ---------------------------------------------------------------- unwrapping


MAX_WRAPPER_DEPTH = 4  # Lightning's dict['state_dict'] inside an EMA wrapper is as deep as real files go


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _check_keys(sd: Mapping) -> None:
    bad = next((k for k in sd if not isinstance(k, str)), None)
    if bad is not None:
        raise BadInput(f"state_dict key {bad!r} is a {type(bad).__name__}, not a string: not a torch state_dict")


def unwrap(obj: object, where: str = "", depth: int = 0, top: str | None = None,
           failed: dict[int, int] | None = None) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """Find the weights inside the known wrappers; returns them, a description of the container, and the
    top-level key they sat under (None for a bare state_dict), which names the copy among its siblings.
    `failed` (id of a dict -> the shallowest depth it held no weights at) ends a search where it already failed:
    a wrapper holding itself under every container key took 7**4 tries per look, and a stranger's file named it
    a thousand times."""
    failed = {} if failed is None else failed
    if depth >= failed.get(id(obj), depth + 1):
        raise BadInput("no model weights found (already searched)")
    try:
        return _unwrap(obj, where, depth, top, failed)
    except BadInput:
        if isinstance(obj, Mapping):
            failed[id(obj)] = min(depth, failed.get(id(obj), depth))
        raise


def _unwrap(obj: object, where: str, depth: int, top: str | None, failed: dict[int, int]) -> tuple[dict[str, torch.Tensor], str, str | None]:
    if _is_state_dict(obj):
        _check_keys(obj)
        return dict(obj), where or "state_dict", top
    if depth > MAX_WRAPPER_DEPTH:
        raise BadInput(f"no model weights found within {MAX_WRAPPER_DEPTH} levels of wrapper dicts")
    if isinstance(obj, Mapping) and obj.get("format") == "partialnet-deploy":
        raise BadInput(
            "is a folded deploy file (written by `partialnet fold`); pass the original checkpoint, "
            "or load it in Python with partialnet.load_deploy"
        )
    if isinstance(obj, Mapping):
        deeper = None  # why the wrapper inside failed: it says more than this level's keys, which name that wrapper
        for key in CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                inner = f"{where}[{key!r}]" if where else f"dict[{key!r}]"
                try:
                    return unwrap(obj[key], inner, depth + 1, key if depth == 0 else top, failed)
                except BadInput as exc:
                    deeper = deeper or (exc if "already searched" not in str(exc) else None)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if any(str(k).endswith(ANCHOR) for k in tensors):
            _check_keys(tensors)
            return tensors, (where or "dict") + " (non-tensor entries ignored)", top
        if deeper is not None:
            raise deeper
        keys = ", ".join(map(str, list(obj)[:6])) + (f", … ({len(obj) - 6} more)" if len(obj) > 6 else "")
        level = "top-level keys" if not where else f"the keys of {where}"
        raise BadInput(f"no model weights found: {level} are [{keys}]; expected a state_dict or one of {list(CONTAINER_KEYS)}")
    raise BadInput(f"holds a {type(obj).__name__}, not a state_dict or a dict of them")


def select_prefix(sd: dict[str, torch.Tensor], chosen: str | None = None) -> tuple[dict[str, torch.Tensor], str, list[str], list[str]]:
    """Strip the wrapper prefix (`module.`, Lightning's `model.`, ...), keeping only that model's keys;
    `chosen` (a --weights name) picks one of several copies by its prefix. Returns the model's keys, its
    prefix, the keys left out, and the prefixes of the other whole copies among them."""
    anchors = [k[: -len(ANCHOR)] for k in sd if k.endswith(ANCHOR)]
    if len(anchors) > MAX_COPIES:  # each key is matched against each prefix: 200,000 of them ran for hours
        raise BadInput(f"{len(anchors):,} keys end in '{ANCHOR}': more model copies than one file holds (at most {MAX_COPIES}); refused")
    if not anchors:
        first = ", ".join(list(sd)[:SHOWN])
        raise BadInput(f"not a PartialNet/FasterNet checkpoint: no '{ANCHOR}' key (first keys: {first})")
    anchors = _whole_copies(sd, anchors)
    ranked = [p for p in KNOWN_PREFIXES if p in anchors]
    if chosen in anchors:
        prefix = chosen
    elif ranked:
        prefix = ranked[0]
    elif len(anchors) == 1:
        prefix = anchors[0]
    else:
        raise BadInput(f"several models in one file (prefixes {anchors}); pick one with --weights, e.g. --weights {anchors[0]}")
    owner = {k: max((a for a in anchors if k.startswith(a)), key=len, default=None) for k in sd}  # an unprefixed copy beside 'ema.' keeps its own
    kept = {k[len(prefix) :]: v for k, v in sd.items() if owner[k] == prefix}
    ignored = [k for k in sd if owner[k] != prefix]
    return kept, prefix, ignored, [a for a in anchors if a != prefix]


MAX_COPIES = 16  # a model, its EMA, a teacher, a Lightning module's few: a file with more is no checkpoint


def _whole_copies(sd: Mapping, anchors: list[str]) -> list[str]:
    """The prefixes that hold a model, not a stray key or two: a copy owns at least half as many keys as the
    largest (a `module.` model with one unprefixed `patch_embed.proj.weight` beside it is one copy, not two,
    and the stray key is left out and listed, not loaded as a one-key model)."""
    owned = dict.fromkeys(anchors, 0)
    for k in sd:
        owner = max((a for a in anchors if k.startswith(a)), key=len, default=None)
        if owner is not None:
            owned[owner] += 1
    largest = max(owned.values())
    return [a for a in anchors if 2 * owned[a] >= largest]


def other_weight_sets(obj: object, loaded: str | None, siblings: list[str]) -> list[str]:
    """The --weights names of the model copies a file holds beside the one loaded (an EMA beside the weights,
    a teacher): named on every command, never dropped without a word. The loaded one is the first of
    CONTAINER_KEYS (or of KNOWN_PREFIXES in a flat dict): a top-level key, or a key prefix ending in '.'."""
    found, failed = [], {}
    if isinstance(obj, Mapping):
        looked = [(key, value) for key, value in obj.items() if key != loaded and isinstance(key, str) and isinstance(value, Mapping)]
        found = [key for key, value in looked[:MAX_LOOKED] if _is_copy(value, failed)]
    return found + siblings


MAX_LOOKED = 64  # top-level dicts looked into for other copies: a checkpoint holds a handful (weights, EMA, optimizer, ...)


def shown_names(names: list[str]) -> str:
    """Copy names for a message: they are a stranger's dict keys, so escaped, cut, and only the first few."""
    shown = [ascii(name) if len(name) <= 60 else ascii(name[:60]) + "…" for name in names[:SHOWN_COPIES]]
    return ", ".join(shown) + (f" (+{len(names) - SHOWN_COPIES} more)" if len(names) > SHOWN_COPIES else "")


def _is_copy(value: object, failed: dict[int, int]) -> bool:
    """A value `--weights KEY` can load: it unwraps (as a top-level value would) to a model's state_dict."""
    try:
        sd, _, _ = unwrap(value, "copy", 1, failed=failed)
    except BadInput:
        return False
    return any(k.endswith(ANCHOR) for k in sd)


def _name_of(top: str | None, prefix: str, siblings: list[str]) -> str:
    """The --weights name of a loaded copy, one name per copy: its key prefix where copies sit side by side
    by prefix (Lightning's `model.` / `model_ema.`), else its top-level key, else its prefix."""
    if siblings:
        return prefix
    return top if top is not None else prefix


TIMM_STAGE = re.compile(r"^stages\.(\d+)\.(downsample\.)?(.*)$")
TIMM_RENAMES = {"conv_head.": "avgpool_pre_head.1.", "classifier.": "head."}


def is_timm_layout(sd: Mapping[str, object]) -> bool:
    return any(k.startswith(("conv_head.", "classifier.")) or ".downsample." in k for k in sd)


def from_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's FasterNet port: stages i>0 hold `downsample` + `blocks`; the reference interleaves them."""
    out, source = {}, {}
    for original, value in sd.items():
        key = original
        for old, new in TIMM_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        match = TIMM_STAGE.match(key)
        if match:
            i, downsample, rest = int(match.group(1)), match.group(2), match.group(3)
            if downsample:
                key = f"stages.{2 * i - 1}.{rest}"
            elif i > 0:
                key = f"stages.{2 * i}.{rest}"
        if key in out:  # both layouts in one file: which tensor is the model's? never the one that happens to come last
            raise BadInput(f"{source[key]} and {original} both name {key} (timm's and the reference layout mixed); keep one layout")
        out[key], source[key] = value, original
    return out


# ---------------------------------------------------------------- architecture inference


def _integer_scalar(t: torch.Tensor, key: str) -> int:
    """A DPConv width buffer: one integer. Empty, NaN, fractional or huge values are refused by name."""
    if t.numel() != 1:
        raise BadInput(f"{key} holds {t.numel()} values (shape {list(t.shape)}); expected one integer")
    if t.is_complex() or t.dtype == torch.bool:
        raise BadInput(f"{key} has dtype {str(t.dtype).removeprefix('torch.')}; expected an integer")
    value = t.reshape(()).item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf")) or value != int(value)):
        raise BadInput(f"{key} = {value}; expected an integer")
    if abs(value) >= 2**31:  # a float64 1e300 printed as a 301-digit integer; no layer is that wide
        raise BadInput(f"{key} = {value:.3g}; expected a channel count")
    return int(value)


def _block_mixer(sd: Mapping[str, torch.Tensor], prefix: str):
    if f"{prefix}conv.weight" in sd and f"{prefix}one_channel" in sd:
        gate = sd.get(f"{prefix}gate")
        width = _integer_scalar(sd[f"{prefix}one_channel"], f"{prefix}one_channel")
        return (width, int(gate.shape[0]) if gate is not None and gate.dim() == 1 else 0)
    if f"{prefix}attn.qkv.weight" in sd:
        return PAT_SF
    if f"{prefix}attn.cfc1.weight" in sd:
        return PAT_CH
    if f"{prefix}partial_conv3.weight" in sd:
        return PCONV
    return None


def infer_arch(sd: Mapping[str, torch.Tensor], variant: Variant | None) -> tuple[Variant, Arch, bool]:
    """The architecture the tensors describe; `variant` (named by the user) overrides the guess."""
    stem = sd[ANCHOR]
    if stem.dim() != 4 or stem.shape[1] != 3:
        raise BadInput(f"{ANCHOR} has shape {list(stem.shape)}, expected [E, 3, 4, 4]")
    embed_dim = int(stem.shape[0])
    depths = []
    mixers = []
    for s in range(STAGE_COUNT):
        pattern = re.compile(rf"^stages\.{2 * s}\.blocks\.(\d+)\.")
        indices = {int(m.group(1)) for k in sd if (m := pattern.match(k))}
        depth = max(indices) + 1 if indices else 0
        depths.append(depth)
        mixers.append([_block_mixer(sd, f"stages.{2 * s}.blocks.{j}.spatial_mixing.") for j in range(depth)])
    found = [m for stage in mixers for m in stage if m is not None]
    is_dpconv = any(isinstance(m, tuple) for m in found)
    family = "partialnet" if is_dpconv or any(m in (PAT_CH, PAT_SF) for m in found) else "fasternet"
    inferred = variant is None
    if variant is None:
        variant = find_variant(family, embed_dim, depths) or closest_variant(family, embed_dim)
        if variant is None:
            raise BadInput(
                f"no known variant matches: {family}, embed_dim={embed_dim}, depths={tuple(depths)}; "
                f"known: {', '.join(VARIANTS)}"
            )
    pat_sp = any(".mlp.4." in k for k in sd)
    head = sd.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None and head.dim() == 2 else 1000
    if not 1 <= num_classes <= MAX_CLASSES:
        raise BadInput(f"head.weight has {num_classes} classes (shape {list(head.shape)}); supported: 1 to {MAX_CLASSES:,}")
    arch_mixers = default_mixers(variant.family, variant.depths)
    if is_dpconv and variant.family == "partialnet":
        arch_mixers = tuple(
            tuple(_dpconv_spec(mixers, s, j, variant) for j in range(d)) for s, d in enumerate(variant.depths)
        )
    return variant, variant.arch(num_classes, pat_sp=pat_sp, mixers=arch_mixers), inferred


def _dpconv_spec(mixers, stage: int, block: int, variant: Variant) -> tuple[int, int]:
    """This block's (width, gate length) from the checkpoint, or a placeholder the key diff will flag."""
    dim = variant.embed_dim * 2**stage
    if stage < len(mixers) and block < len(mixers[stage]) and isinstance(mixers[stage][block], tuple):
        width, gate_len = mixers[stage][block]
        if not 0 <= width <= dim:
            raise BadInput(
                f"stages.{2 * stage}.blocks.{block}.spatial_mixing.one_channel = {width}, outside [0, {dim}]"
            )
        if gate_len > dim:  # log2 C in every real file: a stranger's 2**44 was allocated as the model was built
            raise BadInput(f"stages.{2 * stage}.blocks.{block}.spatial_mixing.gate holds {gate_len:,} values; a {dim}-channel block has log2 C")
        return width, gate_len
    return dim // 4, max(dim.bit_length() - 1, 0)


# ---------------------------------------------------------------- strict loading


def key_diff(sd: Mapping[str, torch.Tensor], model: torch.nn.Module) -> KeyDiff:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [
        (k, tuple(sd[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    return KeyDiff(missing, unexpected, misshaped)


def check_tensor_kinds(sd: Mapping[str, torch.Tensor]) -> None:
    """Dense, real, materialised tensors only; anything else is refused by key before it is touched."""
    for key, value in sd.items():
        if value.is_nested:  # a legacy nested tensor's layout reads strided, and its shape raises
            raise BadInput(f"{ascii(key)} is a nested tensor; weights must be dense")
        if value.layout != torch.strided:
            raise BadInput(f"{key} is a {str(value.layout).removeprefix('torch.')} tensor; weights must be dense")
        if value.device.type == "meta":
            raise BadInput(f"{key} is a meta tensor: the file holds its shape but no data")
        if value.is_quantized:
            raise BadInput(f"{key} is a quantized tensor ({value.dtype}); partialnet loads float checkpoints")
        if value.is_complex():
            raise BadInput(f"{key} has complex dtype {str(value.dtype).removeprefix('torch.')}; weights are real")


def check_dtypes(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Floating where the model is floating (any float width: cast later), integer where it keeps integers."""
    for key, ref in expected.items():
        value = sd.get(key)
        if value is None:
            continue
        dtype = str(value.dtype).removeprefix("torch.")
        if ref.is_floating_point() and not value.is_floating_point():
            raise BadInput(f"{key} has dtype {dtype}; the model holds floating-point values there")
        if not ref.is_floating_point() and (value.is_floating_point() or value.dtype == torch.bool):
            raise BadInput(f"{key} has dtype {dtype}; the model keeps an integer there")


def check_storage(sd: Mapping[str, torch.Tensor]) -> None:
    """Tensors may share one flat buffer, but may not reference far more bytes than they hold."""
    need = sum(v.numel() * v.element_size() for v in sd.values())
    storages = {}
    for value in sd.values():
        storage = value.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    held = sum(storages.values())
    if held > STORAGE_SLACK * need + (1 << 20):
        key = max(sd, key=lambda k: sd[k].untyped_storage().nbytes() - sd[k].numel() * sd[k].element_size())
        raise BadInput(f"refused: its tensors reference {held:,} bytes of storage but hold only {need:,}: {key} is a view of "
                       f"{sd[key].untyped_storage().nbytes():,} bytes (a slice saved without .clone(), e.g. a cut-down head); "
                       f"re-save the weights as copies: {RESAVE_COPIES}")


def load_state_dict_strict(model: PartialNet, sd: dict[str, torch.Tensor], label: str) -> None:
    """Diff, type-check and load; the model may live on the meta device until the checks pass."""
    diff = key_diff(sd, model)
    if diff:
        raise KeyMismatch(f"checkpoint does not match {label}: {diff.summary()}", diff)
    expected = model.state_dict()
    check_dtypes(sd, expected)
    check_storage(sd)
    sd = dict(sd)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros((), dtype=value.dtype)  # a training counter some exporters drop; never used
    if any(p.device.type == "meta" for p in model.parameters()):
        return
    model.load_state_dict(sd, strict=True)
    # After the cast to the model's float32: a float64 1e300 is Inf now, and must be refused as such.
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadInput(f"checkpoint has NaN/Inf values (after the cast to float32) in {len(bad)} tensors, first: {bad[0]}")


def describe(arch: Arch) -> str:
    return f"{arch.family}, embed_dim={arch.embed_dim}, depths={'-'.join(map(str, arch.depths))}"


def _trained_imgsz(obj) -> list[int] | None:
    """The training size a `partialnet digits` checkpoint records, if it holds two sane integers (else None)."""
    record = obj.get("digits") if isinstance(obj, Mapping) else None
    size = record.get("imgsz") if isinstance(record, Mapping) else None
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(type(v) is int and 32 <= v <= 4096 for v in size):
        return list(size)
    return None


def _choose_weights(obj: object, weights: str | None):
    """The state_dict of the copy to load: the first of CONTAINER_KEYS / KNOWN_PREFIXES, or the one `weights`
    names. Returns it with its container, prefix, the keys left out, the other copies' names, and the copy's
    one --weights name (None when the file holds one copy: there is nothing to tell apart)."""
    if weights == "":
        raise BadInput("--weights '': name a model copy (a top-level key such as state_dict_ema, or a key prefix such as model_ema.)")
    sd, container, top = unwrap(obj)
    sd, prefix, ignored, siblings = select_prefix(sd, weights)
    if weights is not None and weights != prefix:  # not a key prefix: a top-level key
        if not (isinstance(obj, Mapping) and weights in obj and _is_copy(obj[weights], {})):
            others = other_weight_sets(obj, top, siblings)
            names = [n for n in [_name_of(top, prefix, siblings), *others] if n or others]
            raise NoSuchCopy(f"--weights {ascii(weights)[1:-1][:80]}: no model copy by that name; the file holds "
                             f"{shown_names(names) or 'one copy, unnamed'}")
        sd, container, top = unwrap(obj[weights], f"dict[{weights!r}]", 1, weights)
        sd, prefix, ignored, siblings = select_prefix(sd)
    others = other_weight_sets(obj, top, siblings)
    return sd, container, prefix, ignored, others, _name_of(top, prefix, siblings) if others else None


def mismatch_hint(sd: Mapping[str, torch.Tensor], named: Variant | None, diff: KeyDiff) -> str:
    """What a key diff most likely means, where it has one reading: a file without a classifier head, a head
    stored transposed (its class count was read from the wrong side), or a --variant that is not the file's."""
    shapes = {key: (found, wanted) for key, found, wanted in diff.misshaped}
    if set(diff.missing) == {"head.weight", "head.bias"} and not diff.unexpected and not diff.misshaped:
        return "; the file holds no classifier head (a features-only model, as timm saves with num_classes=0): partialnet loads classifiers"
    if "head.weight" in shapes and len(shapes["head.weight"][0]) == 2 and shapes["head.weight"][0][1] != shapes["head.weight"][1][1]:
        (rows, cols), features = shapes["head.weight"][0], shapes["head.weight"][1][1]
        turned = f" (stored transposed? [{cols}, {rows}] is {cols} classes)" if rows == features else ""
        return f"; the head takes {features} features, so head.weight is [classes, {features}], not [{rows}, {cols}]{turned}"
    if named is not None:
        try:
            found, arch, _ = infer_arch(sd, None)
            with torch.device("meta"):
                fits = found.name != named.name and not key_diff(sd, PartialNet(arch))
        except (BadInput, RuntimeError, ValueError):
            fits = False
        if fits:
            return f"; its keys and shapes are {found.name}'s: name that variant, or leave --variant out"
    return ""


def check_copy_named(path: str | Path, weights: str) -> None:
    """The copy `weights` names is in the file (NoSuchCopy naming those that are, if not): checked for every
    checkpoint of a run before any is folded, so a later file's refusal does not come after the earlier exports."""
    path = Path(path)
    try:
        _choose_weights(read_file(path), weights)
    except BadInput as exc:
        raise (exc if str(exc).startswith(str(path)) else type(exc)(f"{path}: {exc}", exc.details)) from None


def load_checkpoint(path: str | Path, variant: str | None = None, weights: str | None = None) -> tuple[PartialNet, CheckpointInfo]:
    """Load any PartialNet/FasterNet checkpoint strictly and safely; returns (eval model, info).

    `variant` names the expected variant; without it the variant is inferred from tensor shapes.
    `weights` picks one of several model copies in the file (`state_dict_ema`, `model_ema.`).
    Raises `BadInput` (exit code 2 in the CLI) on anything it cannot load exactly.
    """
    check_name(path, "load_checkpoint: path")
    check_name(weights, "load_checkpoint: weights", optional=True)
    path = Path(path)
    named = get_variant(variant) if variant else None
    try:
        obj = read_file(path)
        dataset = obj.get("dataset") if isinstance(obj, Mapping) and isinstance(obj.get("dataset"), str) else None
        trained_imgsz = _trained_imgsz(obj)
        sd, container, prefix, ignored, others, chosen = _choose_weights(obj, weights)
        layout = "reference"
        if is_timm_layout(sd):
            sd, layout = from_timm(sd), "timm"
        check_tensor_kinds(sd)
        found, arch, inferred = infer_arch(sd, named)
        label = f"{found.name} ({describe(arch)})"
        with torch.device("meta"):  # keys, shapes and dtypes are judged before any weight is allocated
            load_state_dict_strict(PartialNet(arch), sd, label)
        model = PartialNet(arch)
        load_state_dict_strict(model, sd, label)
    except KeyMismatch as exc:
        raise KeyMismatch(f"{path}: {exc}{mismatch_hint(sd, named, exc.diff)}", exc.diff) from None
    except BadInput as exc:  # the same kind of error (NoSuchCopy stays one), named by its file
        raise (exc if str(exc).startswith(str(path)) else type(exc)(f"{path}: {exc}", exc.details)) from None
    info = CheckpointInfo(
        weights=chosen,
        source=str(path),
        variant=found.name,
        variant_inferred=inferred,
        container=container + (" (safetensors)" if isinstance(obj, SafetensorsTensors) else "")
        + (f"; also holds {shown_names(others)}, not loaded" if others else ""),
        key_layout=layout,
        prefix=prefix,
        ignored_keys=ignored,
        dtypes=sorted({str(v.dtype).removeprefix("torch.") for v in sd.values() if v.is_floating_point()}),
        num_tensors=len(sd),
        file_bytes=path.stat().st_size,
        sha256=sha256_of(path),
        dataset=dataset[:40] if dataset else None,
        trained_imgsz=trained_imgsz,
        **_arch_fields(arch),
    )
    return model.eval(), info


def _arch_fields(arch: Arch) -> dict:
    return dict(
        family=arch.family,
        embed_dim=arch.embed_dim,
        depths=tuple(arch.depths),
        act=arch.act,
        pat_sp=arch.pat_sp,
        num_classes=arch.num_classes,
        dpconv_widths=arch.dpconv_widths() if arch.is_dpconv else [],
    )


def resolve(source: str, variant: str | None = None, num_classes: int = 1000, weights: str | None = None) -> tuple[PartialNet, CheckpointInfo]:
    """A CLI argument that is either a checkpoint path or a variant name (random weights, said so)."""
    check_name(source, "source")
    check_name(weights, "weights", optional=True)
    source = os.fspath(source)
    if not source.strip():  # Path("") is "." and read as "is a directory"
        raise BadInput("the checkpoint is an empty string: give a checkpoint file or a variant name (partialnet models)")
    key = source.strip().lower().replace("-", "_")
    if is_variant_name(source):
        if weights is not None:
            raise BadInput(f"--weights picks one of the model copies in a checkpoint file; {source!r} is a variant name (random weights)")
        if variant and get_variant(variant).name != key:
            raise BadInput(f"{source!r} is a variant name; --variant {variant} contradicts it")
        found = VARIANTS[key]
        arch = found.arch(num_classes)
        with torch.random.fork_rng():
            # Seeded so that an artifact exported from a bare variant name can be re-verified against it.
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = PartialNet(arch).eval()
        info = CheckpointInfo(
            source=found.name,
            variant=found.name,
            variant_inferred=False,
            container="none (random weights)",
            random_weights=True,
            **_arch_fields(arch),
        )
        return model, info
    if looks_like_path(source):
        return load_checkpoint(source, variant, weights)
    raise unknown_source(source)
