"""Fold a reference-exact model into its deploy graph, exactly, and say what each pass did.

`fold(model, imgsz)` copies the model, applies the passes in order, and after each one runs a fixed
probe batch through it to record the largest logit difference from the original. The deploy model
has no BatchNorm left (sites that cannot fold are reported with their reason) and a constant attention
bias for `imgsz`.

A deploy file (`partialnet fold -o deploy.pt`) stores the architecture, the input size and the folded
state_dict, all loadable with `weights_only=True`; `load_deploy` rebuilds the module tree by folding a
fresh model of the same architecture and then loads the weights strictly.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from partialnet.checkpoint import MAX_CLASSES, read_file
from partialnet.limits import check_input_shape
from partialnet.models.registry import find_variant
from partialnet.errors import BadInput, CheckFailed
from partialnet.folding.passes import PASSES, FoldContext
from partialnet.models.flops import count_params, model_cost
from partialnet.models.partialnet import Arch, PartialNet
from partialnet.signals import raise_if_pending
from partialnet.outputs import atomic_outputs

DEPLOY_FORMAT = "partialnet-deploy"
DEPLOY_VERSION = 3  # 2: the attention's proj is a 1x1 convolution; 3: gate-stats and attention-tokens passes
READABLE_VERSIONS = (2, 3)  # an older file is rebuilt with the passes of its own version
FOLD_TOLERANCE = 1e-4  # of the largest logit (at least 1): a fold adds fp32 round-off (~1e-6 relative); anything near this is a bug
PROBE_BATCH = 2


@dataclass
class PassRecord:
    name: str
    description: str
    sites: int
    folded: list[str]
    not_folded: list[dict]
    max_abs_diff: float
    params_after: int  # counted per pass (cheap); GMACs are measured once before and once after folding


@dataclass
class FoldReport:
    imgsz: tuple[int, int]
    passes: list[PassRecord] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    gmacs_before: float = 0.0
    gmacs_after: float = 0.0
    batchnorms_before: int = 0
    batchnorms_after: int = 0

    @property
    def max_abs_diff(self) -> float:
        return max((p.max_abs_diff for p in self.passes), default=0.0)

    @property
    def not_folded(self) -> list[dict]:
        return [site for p in self.passes for site in p.not_folded]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["imgsz"] = list(self.imgsz)
        data["max_abs_diff"] = self.max_abs_diff
        return data

    def summary(self) -> str:
        folded = sum(p.sites for p in self.passes)
        return (
            f"{folded} sites folded in {len(self.passes)} passes, {len(self.not_folded)} not folded; "
            f"BatchNorms {self.batchnorms_before}->{self.batchnorms_after}; max |dlogits| {self.max_abs_diff:.2e}"
        )


def passes_of(version: int, without: frozenset[str] | set[str] = frozenset()) -> list:
    """The passes a deploy file of `version` was folded with, less those left out (an ablation)."""
    return [p for p in PASSES if p.since <= version and p.name not in without]


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def probe_input(imgsz: tuple[int, int], batch: int = PROBE_BATCH) -> torch.Tensor:
    return torch.randn(batch, 3, *imgsz, generator=torch.Generator().manual_seed(20250303))


FOLDED_MARK = "folded_for"  # an attribute on every deploy model fold returns: the input size it was folded for


def _check_fold_arguments(model, without) -> None:
    if not isinstance(model, PartialNet):  # a Python caller's slip, named, not an AttributeError from deepcopy's copy
        raise BadInput(f"fold: expected a PartialNet model (create_model or load_checkpoint), got {type(model).__name__}")
    # fold's own output (even with passes left out), or load_deploy's: a pass then met an Identity where its BatchNorm was
    if getattr(model, FOLDED_MARK, None) is not None or count_batchnorms(model) == 0:
        raise BadInput("fold: the model is already folded (fold's or load_deploy's output); "
                       "fold the training-form model (create_model or load_checkpoint)")
    unknown = set(without) - {p.name for p in PASSES}
    if unknown:
        raise BadInput(f"unknown fold pass(es) {', '.join(sorted(unknown))}; passes: {', '.join(p.name for p in PASSES)}")


def fold(
    model: PartialNet,
    imgsz: tuple[int, int] = (224, 224),
    *,
    skip: frozenset[str] | set[str] = frozenset(),
    check: bool = True,
    tolerance: float = FOLD_TOLERANCE,
    measure: bool = True,
    version: int = DEPLOY_VERSION,
    without: frozenset[str] | set[str] = frozenset(),
) -> tuple[PartialNet, FoldReport]:
    """A folded copy of `model` for inputs of `imgsz`, and the report; the original is untouched.

    With `check`, a fold whose logits differ from the original by more than `tolerance` raises
    `CheckFailed` instead of returning a wrong deploy model. `measure=False` skips the two cost passes
    (rebuilding a deploy file's module tree needs no report). `version` applies only the passes that
    deploy-file version had; `without` leaves named passes out (the ablation in scripts/deploy_speed.py).
    """
    _check_fold_arguments(model, without)
    from partialnet.limits import parse_imgsz

    imgsz = parse_imgsz(imgsz)  # the CLI's rule for Python callers too: a 63x64 fold would be measured at a size nothing runs
    deploy = copy.deepcopy(model).float().eval()
    ctx = FoldContext(imgsz=tuple(imgsz), skip=frozenset(skip))
    x = probe_input(ctx.imgsz) if check else None
    reference = _reference_logits(deploy, x) if check else None  # from the float copy before any pass: the caller's model stays as it was
    before = model_cost(model, ctx.imgsz) if measure else None
    report = FoldReport(
        imgsz=ctx.imgsz,
        params_before=before.params if before else count_params(model),
        gmacs_before=round(before.gmacs, 5) if before else 0.0,
        batchnorms_before=count_batchnorms(model),
    )
    for p in passes_of(version, without):
        raise_if_pending()
        report.passes.append(_apply(p, deploy, ctx, x, reference))
    after = model_cost(deploy, ctx.imgsz) if measure else None
    report.params_after = count_params(deploy)
    report.gmacs_after = round(after.gmacs, 5) if after else 0.0
    report.batchnorms_after = count_batchnorms(deploy)
    limit = tolerance * max(1.0, reference.abs().max().item()) if check else tolerance  # round-off grows with the logits' scale
    if check and not all(p.max_abs_diff <= limit for p in report.passes):  # NaN fails too
        worst = next(p for p in report.passes if not p.max_abs_diff <= limit)
        raise CheckFailed(
            f"folding changed the logits by {worst.max_abs_diff:.3e} (> {limit:.3g}: {tolerance:g} of the largest logit, at least "
            f"{tolerance:g}), first large after pass {worst.name!r}; this is a bug in partialnet, please report it"
        )
    setattr(deploy, FOLDED_MARK, ctx.imgsz)
    return deploy.eval(), report


def _reference_logits(model: PartialNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        reference = model.float().eval()(x)
    if not torch.isfinite(reference).all():
        raise BadInput(
            "the model's own logits are NaN or infinite on the probe input, before any folding: its weights are "
            "broken (a negative BatchNorm variance, an overflowing layer); there is nothing correct to fold"
        )
    return reference


def _apply(p, deploy: PartialNet, ctx: FoldContext, x: torch.Tensor | None, reference: torch.Tensor | None) -> PassRecord:
    """One pass on `deploy`, in place, and its record: where it folded, where not and why, and the
    largest logit change since the original (0 when not checked)."""
    with torch.no_grad():  # folded tensors must be plain leaves, never parts of an autograd graph
        outcome = p.apply(deploy, ctx)
        diff = (deploy(x) - reference).abs().max().item() if reference is not None else 0.0
    return PassRecord(
        name=p.name,
        description=p.description,
        sites=len(outcome.folded),
        folded=outcome.folded,
        not_folded=[{"site": s, "reason": r} for s, r in outcome.skipped],
        max_abs_diff=diff,
        params_after=count_params(deploy),
    )


# ---------------------------------------------------------------- deploy files


def _arch_to_dict(arch: Arch) -> dict:
    data = asdict(arch)
    data["depths"] = list(arch.depths)
    data["mixers"] = [[list(m) if isinstance(m, tuple) else m for m in stage] for stage in arch.mixers]
    return data


def _arch_from_dict(data: dict) -> Arch:
    mixers = tuple(tuple(tuple(m) if isinstance(m, list) else m for m in stage) for stage in data["mixers"])
    return Arch(**{**data, "depths": tuple(data["depths"]), "mixers": mixers})


def deploy_payload(deploy: PartialNet, report: FoldReport, source: dict) -> dict:
    """What a deploy file holds: plain containers and tensors, so `weights_only` loading reads it."""
    return {
        "format": DEPLOY_FORMAT,
        "version": DEPLOY_VERSION,
        "arch": _arch_to_dict(deploy.arch),
        "imgsz": list(report.imgsz),
        "not_folded": [s["site"] for s in report.not_folded],
        "source": source,
        "report": report.to_dict(),
        "state_dict": deploy.state_dict(),
    }


def save_deploy(path: Path, deploy: PartialNet, report: FoldReport, source: dict, force: bool = False) -> None:
    with atomic_outputs([Path(path)], force) as (staged,):
        staged.save_torch(deploy_payload(deploy, report, source))


def is_deploy_file(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == DEPLOY_FORMAT


def passes_left_out(obj: dict, path: Path, version: int) -> frozenset[str]:
    """The passes a deploy file was folded without (an ablation), from its report's pass list."""
    try:
        ran = {str(p["name"]) for p in obj["report"]["passes"]}
    except (KeyError, TypeError):
        return frozenset()  # no usable record: the version's full pass list
    known = {p.name for p in passes_of(version)}
    if not ran <= known:
        raise BadInput(f"{path}: deploy file names fold passes this partialnet does not know: {', '.join(sorted(ran - known))}")
    return frozenset(known - ran)


def rebuild_structure(arch: Arch, imgsz: tuple[int, int], skip: set[str], version: int, without: frozenset[str]) -> PartialNet:
    """The deploy module tree a file's header describes, its tensors allocated but not yet filled.

    The passes replay on real, unread CPU memory rather than on the meta device: every elementwise meta
    kernel is Python, and the first one imports torch._dynamo (0.85 s of a 0.95 s load, measured on a
    2-core Xeon), which a bench worker would pay on every row. The passes' arithmetic on these buffers
    costs 0.04-0.2 s (T0-S) and less peak memory than that import. Every decision a pass takes from a
    weight is taken from `skip` instead, so garbage in the buffers cannot change the structure.
    """
    with torch.device("meta"):
        skeleton = PartialNet(arch)
    skeleton = skeleton.to_empty(device="cpu").eval()
    ctx = FoldContext(imgsz=tuple(imgsz), skip=frozenset(skip), rebuild=True)
    with torch.no_grad():
        for p in passes_of(version, without):
            p.apply(skeleton, ctx)
    setattr(skeleton, FOLDED_MARK, ctx.imgsz)
    return skeleton


def load_deploy(path: str | Path) -> tuple[PartialNet, dict]:
    """(deploy model, the file's metadata) from a file written by `save_deploy`."""
    path = Path(path)
    obj = read_file(path)
    if not is_deploy_file(obj):
        raise BadInput(f"{path}: not a partialnet deploy file (write one with `partialnet fold`)")
    version = obj.get("version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise BadInput(f"{path}: deploy file version {version!r} unsupported (this partialnet reads {readable})")
    try:
        arch = _arch_from_dict(obj["arch"])
        imgsz = tuple(int(v) for v in obj["imgsz"])
        check_input_shape(None, *imgsz, "imgsz")
    except (KeyError, TypeError, ValueError, BadInput) as exc:
        raise BadInput(f"{path}: damaged deploy file header ({exc})") from None
    if find_variant(arch.family, arch.embed_dim, arch.depths) is None or not 1 <= arch.num_classes <= MAX_CLASSES:
        # The header sizes the allocation below: only released architectures are rebuilt from it.
        raise BadInput(f"{path}: deploy file header describes no released variant ({arch.family}, {arch.embed_dim}, {arch.depths})")
    deploy = rebuild_structure(arch, imgsz, set(obj.get("not_folded", [])), version, passes_left_out(obj, path, version))
    try:
        deploy.load_state_dict(obj["state_dict"], strict=True)
    except (RuntimeError, TypeError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:240]  # the first mismatch, not torch's heading
        raise BadInput(f"{path}: deploy weights do not match its header ({detail})") from None
    bad = [k for k, v in deploy.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise BadInput(f"{path}: deploy weights hold NaN/Inf values, first in {bad[0]}")
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return deploy.eval(), meta
