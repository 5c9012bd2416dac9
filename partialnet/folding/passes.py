"""The folding passes. Each rewrites a model in place and says which sites it folded and which it left.

All arithmetic is done in float64 and cast back once, so a fold adds no more than fp32 round-off.
No pass checks its own exactness: `partialnet.fold` runs the model after every pass and records
the difference, so one comparison serves all passes and the report shows where an error entered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from partialnet.folding.deploy_modules import DeployChannelGate, DeploySelfAttention, DeploySpatialGate
from partialnet.models.partialnet import (
    STAGE_COUNT,
    DynamicPartialConv,
    GaussianChannelGate,
    LayerNorm2d,
    MLPBlock,
    PartialChannelAttention,
    PartialConv,
    PartialNet,
    PartialSelfAttention,
    PartialSpatialAttention,
    RelativeSelfAttention,
)

MIN_MOVABLE_SCALE = 1e-12  # a BN scale this small cannot be divided out of conv_attn


@dataclass
class FoldContext:
    imgsz: tuple[int, int]
    skip: frozenset[str] = frozenset()  # sites to leave unfolded (rebuilding a deploy file that had some)
    rebuild: bool = False  # replaying a deploy file's structure on unread memory: no decision may read a weight


@dataclass
class PassOutcome:
    folded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FoldPass:
    name: str
    description: str
    apply: Callable[[PartialNet, FoldContext], PassOutcome]
    since: int = 1  # the deploy-file version that introduced it: older files are rebuilt without it


# ---------------------------------------------------------------- arithmetic


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference BatchNorm as y = scale * x + shift, in float64."""
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A conv with `conv`'s geometry holding the given float64 weight and bias (cast to float32)."""
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        out.weight.copy_(weight.to(conv.weight.dtype))
        if bias is not None:
            out.bias.copy_(bias.to(conv.weight.dtype))
    return out


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias.double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale, shift = bn_affine(bn)
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    return conv_like(conv, weight, conv_bias(conv) * scale + shift)


# ---------------------------------------------------------------- walking the model


def blocks(model: PartialNet) -> Iterator[tuple[str, MLPBlock]]:
    for s in range(STAGE_COUNT):
        for j, block in enumerate(model.stages[2 * s].blocks):
            yield f"stages.{2 * s}.blocks.{j}", block


def stage_stride(stage: int) -> int:
    """Input pixels per map pixel in stage `stage`: the stem divides by 4, each merge by 2."""
    return 4 * 2**stage


def stage_size(imgsz: tuple[int, int], stage: int) -> tuple[int, int]:
    """Map size in stage `stage` (each division flooring)."""
    return imgsz[0] // stage_stride(stage), imgsz[1] // stage_stride(stage)


def feature_size(imgsz: tuple[int, int]) -> tuple[int, int]:
    return stage_size(imgsz, STAGE_COUNT - 1)


# ---------------------------------------------------------------- the passes


def dpconv_static(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """DPConv → a plain partial conv of the learned width (identity at width 0, full conv at width C)."""
    outcome = PassOutcome()
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if not isinstance(mixer, DynamicPartialConv):
            continue
        k, dim = mixer.width, mixer.dim
        if k == 0:
            block.spatial_mixing = nn.Identity()
        elif k == dim:
            full = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
            full.weight.data.copy_(mixer.conv.weight.data)
            block.spatial_mixing = full
        else:
            static = PartialConv(dim, width=k)
            static.partial_conv3.weight.data.copy_(mixer.conv.weight.data[:k, :k])
            block.spatial_mixing = static
        outcome.folded.append(f"{site}.spatial_mixing (width {k}/{dim})")
    return outcome


def post_attention_bn(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """PAT_ch's BN after the gate → mlp.0's input columns (mlp.0 gains a bias)."""
    outcome = PassOutcome()
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if not isinstance(mixer, PartialChannelAttention) or not isinstance(mixer.norm, nn.BatchNorm2d):
            continue
        name = f"{site}.spatial_mixing.norm"
        if block.two_residuals:
            outcome.skipped.append((name, "the mixer output also feeds a residual, so the BN cannot move forward"))
            continue
        if name in ctx.skip:
            outcome.skipped.append((name, "left unfolded as recorded in the deploy file"))
            continue
        scale, shift = bn_affine(mixer.norm)
        mlp0 = block.mlp[0]
        weight = mlp0.weight.double().clone()
        c1 = mixer.c1
        bias = conv_bias(mlp0) + weight[:, c1:, 0, 0] @ shift
        weight[:, c1:] *= scale.reshape(1, -1, 1, 1)
        block.mlp[0] = conv_like(mlp0, weight, bias)
        mixer.norm = nn.Identity()
        outcome.folded.append(name)
    return outcome


def conv_bn(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """BN after a conv → the conv's weight and bias: stem, the three merges, every mlp.0/mlp.1."""
    outcome = PassOutcome()
    pairs = [("patch_embed", model.patch_embed, "proj", "norm")]
    pairs += [(f"stages.{i}", model.stages[i], "reduction", "norm") for i in (1, 3, 5)]
    for site, block in blocks(model):
        pairs.append((f"{site}.mlp", block.mlp, "0", "1"))
    for site, parent, conv_name, bn_name in pairs:
        conv, bn = parent.get_submodule(conv_name), parent.get_submodule(bn_name)
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        fused = fuse_conv_bn(conv, bn)
        if isinstance(parent, nn.Sequential):
            parent[int(conv_name)], parent[int(bn_name)] = fused, nn.Identity()
        else:
            setattr(parent, conv_name, fused)
            setattr(parent, bn_name, nn.Identity())
        outcome.folded.append(f"{site}.{conv_name}+{bn_name}")
    return outcome


def srm_gate(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """SRM's bn → cfc1 (bias added); the gate's std stays explicit sqrt(Σ(x-μ)²/(N-1))."""
    outcome = PassOutcome()
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if isinstance(mixer, PartialChannelAttention) and isinstance(mixer.attn, GaussianChannelGate):
            mixer.attn = DeployChannelGate(fuse_conv_bn(mixer.attn.cfc1, mixer.attn.bn))
            outcome.folded.append(f"{site}.spatial_mixing.attn.bn")
    return outcome


def gate_stats(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """SRM std → root-mean-square deviation, with sqrt(N/(N-1)) moved into cfc1's std column.

    sqrt(mean(d*d)) * sqrt(N/(N-1)) is the unbiased std, so the gate is unchanged to round-off; the graph
    loses the Pow and the constant Mul on every gate's statistics. N is this input size's map size.
    """
    outcome = PassOutcome()
    for s in range(STAGE_COUNT):
        size = stage_size(ctx.imgsz, s)
        count = size[0] * size[1]
        for j, block in enumerate(model.stages[2 * s].blocks):
            mixer = block.spatial_mixing
            if not isinstance(mixer, PartialChannelAttention) or not isinstance(mixer.attn, DeployChannelGate):
                continue
            name = f"stages.{2 * s}.blocks.{j}.spatial_mixing.attn"
            if count < 2:
                outcome.skipped.append((name, f"a {size[0]}x{size[1]} map has no unbiased std"))
                continue
            cfc1 = mixer.attn.cfc1
            weight = cfc1.weight.double().clone()
            weight[:, :, :, 1] *= math.sqrt(count / (count - 1))
            fused = conv_like(cfc1, weight, cfc1.bias.double() if cfc1.bias is not None else None)
            mixer.attn = DeployChannelGate(fused, size, stride=stage_stride(s))
            outcome.folded.append(f"{name} ({size[0]}x{size[1]})")
    return outcome


def pat_sp_into_mlp3(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """PAT_sp: norm2+conv → mlp.3's lower rows; norm's scale → mlp.3's upper rows (conv_attn divided by it).

    norm's shift stays an add after the gate multiply: a·hardsigmoid(w·a)·s + t cannot absorb t earlier.
    """
    outcome = PassOutcome()
    for site, block in blocks(model):
        if len(block.mlp) < 5 or not isinstance(block.mlp[4], PartialSpatialAttention):
            continue
        name = f"{site}.mlp.4"
        sp, mlp3 = block.mlp[4], block.mlp[3]
        scale, shift = bn_affine(sp.norm)
        if name in ctx.skip:
            outcome.skipped.append((name, "left unfolded as recorded in the deploy file"))
            continue
        # A rebuild takes this decision from ctx.skip, recorded when the weights were real.
        if not ctx.rebuild and scale.abs().min() < MIN_MOVABLE_SCALE:
            outcome.skipped.append((name, "norm has a zero scale, which cannot be divided out of conv_attn"))
            continue
        scale2, shift2 = bn_affine(sp.norm2)
        conv = sp.conv.weight.double()[:, :, 0, 0]
        w3, b3 = mlp3.weight.double()[:, :, 0, 0], conv_bias(mlp3)
        rest = sp.rest
        upper_w, upper_b = scale[:, None] * w3[:rest], scale * b3[:rest]
        lower_w = conv @ (scale2[:, None] * w3[rest:])
        lower_b = conv @ (scale2 * b3[rest:] + shift2)
        weight = torch.cat([upper_w, lower_w])[:, :, None, None]
        block.mlp[3] = conv_like(mlp3, weight, torch.cat([upper_b, lower_b]))
        attn_w = sp.conv_attn.weight.double() / scale.reshape(1, -1, 1, 1)
        block.mlp[4] = DeploySpatialGate(rest, sp.half, conv_like(sp.conv_attn, attn_w, None), shift.float())
        outcome.folded.append(name)
    return outcome


def layernorm_into_qkv(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """PAT_sf: LayerNorm's affine and the q scale → qkv's weight and a new qkv bias."""
    outcome = PassOutcome()
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if not isinstance(mixer, PartialSelfAttention) or mixer.norm.weight is None:
            continue
        attn: RelativeSelfAttention = mixer.attn
        gamma, beta = mixer.norm.weight.double(), mixer.norm.bias.double()
        w = attn.qkv.weight.double()
        weight, bias = w * gamma[None, :], w @ beta
        c2 = mixer.c2
        weight[:c2] *= attn.scale
        bias[:c2] *= attn.scale
        qkv = nn.Linear(c2, 3 * c2, bias=True)
        with torch.no_grad():
            qkv.weight.copy_(weight.float())
            qkv.bias.copy_(bias.float())
        attn.qkv, attn.scale = qkv, 1.0
        mixer.norm = LayerNorm2d(c2, affine=False)
        outcome.folded.append(f"{site}.spatial_mixing.norm+q_scale")
    return outcome


def rpe_constant(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """The relative-position bias for this input size → a constant (1, heads, N, N) buffer."""
    outcome = PassOutcome()
    size = feature_size(ctx.imgsz)
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if isinstance(mixer, PartialSelfAttention) and isinstance(mixer.attn, RelativeSelfAttention):
            attn = mixer.attn
            if attn.scale != 1.0:  # layernorm_into_qkv did not run on this site
                outcome.skipped.append((f"{site}.spatial_mixing.attn", "q scale not folded"))
                continue
            if ctx.rebuild:  # the file holds the bias; computing it would touch N x N temporaries a hostile header can size
                tokens = size[0] * size[1]
                bias = torch.empty(1, attn.heads, tokens, tokens)
            else:
                with torch.no_grad():
                    bias = attn.attention_bias(*size).detach().clone()
            mixer.attn = DeploySelfAttention(attn.qkv, attn.proj, attn.heads, bias, size)
            outcome.folded.append(f"{site}.spatial_mixing.attn.rpe_k ({size[0]}x{size[1]})")
    return outcome


def attention_tokens(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """PAT_sf's affine-free LayerNorm → inside the attention, on its tokens (no permute of the map and back)."""
    outcome = PassOutcome()
    for site, block in blocks(model):
        mixer = block.spatial_mixing
        if not isinstance(mixer, PartialSelfAttention) or not isinstance(mixer.attn, DeploySelfAttention):
            continue
        if not isinstance(mixer.norm, LayerNorm2d) or mixer.norm.weight is not None:
            outcome.skipped.append((f"{site}.spatial_mixing.norm", "LayerNorm affine not folded"))
            continue
        mixer.attn.norm_eps = mixer.norm.eps
        mixer.norm = nn.Identity()
        outcome.folded.append(f"{site}.spatial_mixing.norm")
    return outcome


TRAINING_ONLY = ("Dropout", "Dropout2d", "DropPath", "StochasticDepth")


def training_only(model: PartialNet, ctx: FoldContext) -> PassOutcome:
    """Dropout/DropPath → nothing (the reference-exact modules carry none; foreign trees might)."""
    outcome = PassOutcome()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__ in TRAINING_ONLY:
                setattr(module, child_name, nn.Identity())
                outcome.folded.append(f"{name}.{child_name}" if name else child_name)
    return outcome


PASSES: tuple[FoldPass, ...] = (
    FoldPass("dpconv-static", "DPConv layers as static partial convs of their learned width", dpconv_static),
    FoldPass("post-attention-bn", "PAT_ch's post-gate BN folded forward into mlp.0's input columns", post_attention_bn),
    FoldPass("conv-bn", "conv+BN: stem, merges, mlp.0+mlp.1", conv_bn),
    FoldPass("srm-gate", "SRM bn into cfc1 (bias added); std as explicit arithmetic", srm_gate),
    FoldPass("gate-stats", "SRM std as RMS deviation, the unbiased factor in cfc1 (size-tied)", gate_stats, since=3),
    FoldPass("pat-sp", "PAT_sp norm2+conv into mlp.3, norm scale into mlp.3's rows, shift kept as an add", pat_sp_into_mlp3),
    FoldPass("layernorm-qkv", "LayerNorm affine and q scale folded into qkv", layernorm_into_qkv),
    FoldPass("rpe-constant", "relative-position bias precomputed for the input size", rpe_constant),
    FoldPass("attention-tokens", "PAT_sf LayerNorm on the attention's tokens, one transpose for q/k/v", attention_tokens, since=3),
    FoldPass("training-only", "Dropout/DropPath removed", training_only),
)
