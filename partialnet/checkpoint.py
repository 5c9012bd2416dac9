"""Turn a checkpoint file found in the wild into a reference-exact model, or refuse with a reason.

The reference loaders use `strict=False`, so a wrong file "loads" and silently runs random layers.
Here every step either succeeds exactly or raises `BadInput` with one line naming the problem:
read (weights-only unpickling, or safetensors) → unwrap the container → find the model's key prefix →
translate timm's key layout → infer the architecture from tensor shapes → strict key/shape diff → load.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from partialnet.errors import BadInput
from partialnet.models.partialnet import (
    DPCONV,
    PAT_CH,
    PAT_SF,
    PCONV,
    STAGE_COUNT,
    Arch,
    PartialNet,
    default_mixers,
)
from partialnet.models.registry import Variant, closest_variant, find_variant, get_variant, VARIANTS
from partialnet.safetensors_file import read_safetensors

ANCHOR = "patch_embed.proj.weight"
# Wrapper keys that hold the weights, most specific first (Lightning, timm/DeiT-style, EMA copies).
CONTAINER_KEYS = ("state_dict", "model", "model_ema", "state_dict_ema", "ema", "module", "net")
# Prefixes added by wrappers; when several model copies sit in one flat dict, the first listed wins.
KNOWN_PREFIXES = ("", "module.", "model.", "model.module.", "_orig_mod.", "module._orig_mod.", "model._orig_mod.")
SHOWN = 3  # how many key names an error message lists per kind
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


class KeyMismatch(BadInput):
    def __init__(self, message: str, diff: KeyDiff):
        super().__init__(message, details={"missing": diff.missing, "unexpected": diff.unexpected})
        self.diff = diff


# ---------------------------------------------------------------- reading


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_path(path: Path) -> None:
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    if path.is_dir():
        raise BadInput(f"{path}: is a directory, expected a checkpoint file")
    if not path.is_file():
        raise BadInput(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise BadInput(f"{path}: empty file")


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
        return f"it uses pickle opcode {found.group(1)}, outside what tensors-only loading reads"
    return "it holds objects other than tensors"


ZIP_MAGIC = b"PK"
PICKLE_PROTO = 0x80


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' (zip or legacy pickle) or 'unknown', from the first bytes."""
    with path.open("rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{" and head[:2] != ZIP_MAGIC):
        return "safetensors"
    if head[:2] == ZIP_MAGIC or head[:1] == bytes([PICKLE_PROTO]):
        return "torch"
    return "unknown"


def read_file(path: Path) -> object:
    """The unpickled (or safetensors) object, never executing code from the file."""
    _check_path(path)
    kind = _sniff(path)
    if kind == "safetensors":
        tensors, _meta = read_safetensors(path)
        return tensors
    if kind == "unknown":
        raise BadInput(f"{path}: not a checkpoint (neither a PyTorch zip/pickle nor a safetensors file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it reads fine
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _refusal_reason(exc)
        if reason:
            raise BadInput(
                f"{path}: refused: {reason}; partialnet loads tensors only (save model.state_dict() instead)"
            ) from None
        raise BadInput(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise BadInput(f"{path}: truncated or corrupt checkpoint ({_first_line(exc)})") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{path}: corrupt checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception message: torch's run on for a paragraph."""
    text = " ".join(str(exc).split())
    sentence = re.split(r"(?<=[.:])\s", text, maxsplit=1)[0].rstrip(".:")
    return sentence[:160] or type(exc).__name__


# ---------------------------------------------------------------- unwrapping


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: object, where: str = "") -> tuple[dict[str, torch.Tensor], str]:
    """Find the weights inside the known wrappers; returns them and a description of the container."""
    if _is_state_dict(obj):
        return dict(obj), where or "state_dict"
    if isinstance(obj, Mapping) and obj.get("format") == "partialnet-deploy":
        raise BadInput(
            "is a folded deploy file (written by `partialnet fold`); pass the original checkpoint, "
            "or load it in Python with partialnet.load_deploy"
        )
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                inner = f"{where}[{key!r}]" if where else f"dict[{key!r}]"
                try:
                    return unwrap(obj[key], inner)
                except BadInput:
                    continue
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if any(str(k).endswith(ANCHOR) for k in tensors):
            return tensors, (where or "dict") + " (non-tensor entries ignored)"
        keys = ", ".join(map(str, list(obj)[:6]))
        raise BadInput(f"no model weights found: top-level keys are [{keys}]; expected a state_dict or one of {list(CONTAINER_KEYS)}")
    raise BadInput(f"holds a {type(obj).__name__}, not a state_dict or a dict of them")


def select_prefix(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Strip the wrapper prefix (`module.`, Lightning's `model.`, ...), keeping only that model's keys."""
    anchors = [k[: -len(ANCHOR)] for k in sd if k.endswith(ANCHOR)]
    if not anchors:
        first = ", ".join(list(sd)[:SHOWN])
        raise BadInput(f"not a PartialNet/FasterNet checkpoint: no '{ANCHOR}' key (first keys: {first})")
    ranked = [p for p in KNOWN_PREFIXES if p in anchors]
    if ranked:
        prefix = ranked[0]
    elif len(anchors) == 1:
        prefix = anchors[0]
    else:
        raise BadInput(f"several models in one file (prefixes {anchors}); extract one state_dict first")
    kept = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    ignored = [k for k in sd if not k.startswith(prefix)]
    return kept, prefix, ignored


TIMM_STAGE = re.compile(r"^stages\.(\d+)\.(downsample\.)?(.*)$")
TIMM_RENAMES = {"conv_head.": "avgpool_pre_head.1.", "classifier.": "head."}


def is_timm_layout(sd: Mapping[str, object]) -> bool:
    return any(k.startswith(("conv_head.", "classifier.")) or ".downsample." in k for k in sd)


def from_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's FasterNet port: stages i>0 hold `downsample` + `blocks`; the reference interleaves them."""
    out = {}
    for key, value in sd.items():
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
        out[key] = value
    return out


# ---------------------------------------------------------------- architecture inference


def _block_mixer(sd: Mapping[str, torch.Tensor], prefix: str):
    if f"{prefix}conv.weight" in sd and f"{prefix}one_channel" in sd:
        gate = sd.get(f"{prefix}gate")
        width = int(sd[f"{prefix}one_channel"].reshape(-1)[0])
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


def load_state_dict_strict(model: PartialNet, sd: dict[str, torch.Tensor], label: str) -> None:
    diff = key_diff(sd, model)
    if diff:
        raise KeyMismatch(f"checkpoint does not match {label}: {diff.summary()}", diff)
    sd = dict(sd)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = value  # a training counter some exporters drop; it never affects inference
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadInput(f"checkpoint has NaN/Inf values in {len(bad)} tensors, first: {bad[0]}")
    model.load_state_dict(sd, strict=True)


def describe(arch: Arch) -> str:
    return f"{arch.family}, embed_dim={arch.embed_dim}, depths={'-'.join(map(str, arch.depths))}"


def load_checkpoint(path: str | Path, variant: str | None = None) -> tuple[PartialNet, CheckpointInfo]:
    """Load any PartialNet/FasterNet checkpoint strictly and safely; returns (eval model, info).

    `variant` names the expected variant; without it the variant is inferred from tensor shapes.
    Raises `BadInput` (exit code 2 in the CLI) on anything it cannot load exactly.
    """
    path = Path(path)
    named = get_variant(variant) if variant else None
    try:
        obj = read_file(path)
        sd, container = unwrap(obj)
        sd, prefix, ignored = select_prefix(sd)
        layout = "reference"
        if is_timm_layout(sd):
            sd, layout = from_timm(sd), "timm"
        found, arch, inferred = infer_arch(sd, named)
        model = PartialNet(arch)
        load_state_dict_strict(model, sd, f"{found.name} ({describe(arch)})")
    except KeyMismatch as exc:
        raise KeyMismatch(f"{path}: {exc}", exc.diff) from None
    except BadInput as exc:
        if str(exc).startswith(str(path)):
            raise
        raise BadInput(f"{path}: {exc}") from None
    info = CheckpointInfo(
        source=str(path),
        variant=found.name,
        variant_inferred=inferred,
        container=container + (" (safetensors)" if path.suffix == ".safetensors" else ""),
        key_layout=layout,
        prefix=prefix,
        ignored_keys=ignored,
        dtypes=sorted({str(v.dtype).removeprefix("torch.") for v in sd.values() if v.is_floating_point()}),
        num_tensors=len(sd),
        file_bytes=path.stat().st_size,
        sha256=sha256_of(path),
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


def looks_like_path(source: str) -> bool:
    return "/" in source or "\\" in source or Path(source).suffix != "" or Path(source).exists()


def resolve(source: str, variant: str | None = None, num_classes: int = 1000) -> tuple[PartialNet, CheckpointInfo]:
    """A CLI argument that is either a checkpoint path or a variant name (random weights, said so)."""
    key = source.strip().lower().replace("-", "_")
    if key in VARIANTS and not Path(source).exists():
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
        return load_checkpoint(source, variant)
    raise BadInput(f"{source!r} is neither a file nor a known variant; known: {', '.join(VARIANTS)}")
