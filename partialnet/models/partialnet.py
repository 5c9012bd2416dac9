"""PartialNet and FasterNet, written to match the reference checkpoints key for key.

Both families share one macro structure (stem, four stages, three patch merges, a 1×1 conv before a
linear head); they differ only in the token mixer of each block and in stage 6's residuals. So one
`PartialNet` class builds either, driven by an `Arch` value that says, per block, which mixer it has.
The architecture is an input, not a global: a checkpoint's own layout (PAT_sp present or not, the
learned DPConv widths) decides the exact module tree, see `partialnet.checkpoint`.

Every mixer splits and concatenates; nothing is written in place, because in-place slicing turns into
ScatterND in ONNX and breaks ExecuTorch lowering. Nothing is cached on the module either: the
relative-position bias is computed from the input size inside `forward`, so tracing and
`torch.export` see a pure function of the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

N_DIV = 4
MLP_RATIO = 2
FEATURE_DIM = 1280
HEADS = 4
RPE_ALPHA, RPE_BETA, RPE_GAMMA = 20, 40, 160
RPE_BUCKETS = 2 * RPE_BETA + 1
LAYERNORM_EPS = 1e-6

# Mixer kinds, as they appear in `Arch.mixers`.
PCONV = "pconv"  # FasterNet partial 3×3 conv
PAT_CH = "pat_ch"  # partial channel attention (PartialNet stages 0, 2, 4)
PAT_SF = "pat_sf"  # partial self-attention (PartialNet stage 6)
DPCONV = "dpconv"  # dynamic partial conv checkpoint, run at its learned width

STAGE_COUNT = 4


@dataclass(frozen=True)
class Arch:
    """Everything that decides the module tree (and so the state_dict keys and shapes).

    `mixers` holds one entry per stage; each entry is a tuple with one item per block: the mixer kind,
    or for DPConv a `(width, gate_len)` pair read from the checkpoint.
    """

    family: str  # "partialnet" | "fasternet"
    embed_dim: int
    depths: tuple[int, int, int, int]
    act: str  # "gelu" | "relu"
    pat_sp: bool = False
    num_classes: int = 1000
    mixers: tuple = field(default=())

    def __post_init__(self) -> None:
        if not self.mixers:
            object.__setattr__(self, "mixers", default_mixers(self.family, self.depths))

    def stage_dims(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(STAGE_COUNT)]

    @property
    def is_dpconv(self) -> bool:
        return any(isinstance(m, tuple) for stage in self.mixers for m in stage)

    def dpconv_widths(self) -> list[list[int]]:
        """Learned widths per stage and block (empty lists for a non-DPConv model)."""
        return [[m[0] for m in stage if isinstance(m, tuple)] for stage in self.mixers]


def default_mixers(family: str, depths) -> tuple:
    if family == "fasternet":
        return tuple((PCONV,) * d for d in depths)
    if family == "partialnet":
        return tuple((PAT_SF if i == STAGE_COUNT - 1 else PAT_CH,) * d for i, d in enumerate(depths))
    raise ValueError(f"unknown family {family!r}")


def make_act(name: str) -> nn.Module:
    return {"gelu": nn.GELU(), "relu": nn.ReLU()}[name]


def split_sizes(dim: int) -> tuple[int, int]:
    c1 = dim // N_DIV
    return c1, dim - c1


class PartialConv(nn.Module):
    """FasterNet's PConv: a 3×3 conv on the first `width` channels (a quarter by default), the rest passed."""

    def __init__(self, dim: int, width: int | None = None):
        super().__init__()
        self.c1 = dim // N_DIV if width is None else width
        self.c2 = dim - self.c1
        self.partial_conv3 = nn.Conv2d(self.c1, self.c1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.c1, self.c2], dim=1)
        return torch.cat([self.partial_conv3(x1), x2], dim=1)


def spatial_std(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Unbiased std over H×W as plain arithmetic: ONNX has no std op and some converters reject it.

    A spatial mean rescaled rather than a sum: every runtime has a global-average-pool kernel (XNNPACK
    has no sum, so a sum split ExecuTorch's graph around each gate), and the two differ by round-off.
    """
    count = x.shape[2] * x.shape[3]
    return torch.sqrt(((x - mean) ** 2).mean(dim=(2, 3), keepdim=True) * (count / (count - 1)))


class GaussianChannelGate(nn.Module):
    """Channel gate from each channel's spatial mean and std, mixed densely across channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.cfc1 = nn.Conv2d(dim, dim, kernel_size=(1, 2), bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        stats = torch.cat([mean, spatial_std(x, mean)], dim=3)
        return x * F.hardsigmoid(self.bn(self.cfc1(stats)))


class PartialChannelAttention(nn.Module):
    """PAT_ch: 3×3 conv on the first quarter; the gated rest is normalised AFTER gating."""

    def __init__(self, dim: int):
        super().__init__()
        self.c1, self.c2 = split_sizes(dim)
        self.partial_conv3 = nn.Conv2d(self.c1, self.c1, 3, padding=1, bias=False)
        self.attn = GaussianChannelGate(self.c2)
        self.norm = nn.BatchNorm2d(self.c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.c1, self.c2], dim=1)
        return torch.cat([self.partial_conv3(x1), self.norm(self.attn(x2))], dim=1)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor, at each pixel."""

    def __init__(self, dim: int, affine: bool = True):
        super().__init__(dim, eps=LAYERNORM_EPS, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def rpe_buckets(height: int, width: int, device=None) -> torch.Tensor:
    """Bucket of every token pair for the Euclidean piecewise relative-position index (N×N, int64).

    Written with tensor ops on `arange` so that a traced graph recomputes it for its own input size.
    """
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    dr = (rows[:, None] - rows[None, :]).float()
    dc = (cols[:, None] - cols[None, :]).float()
    dist = torch.round(torch.sqrt(dr * dr + dc * dc))
    # Distances are never negative, so sign(d) = 1 wherever the log branch applies.
    far = torch.round(
        RPE_ALPHA
        + torch.log(dist.clamp(min=RPE_ALPHA) / RPE_ALPHA)
        / math.log(RPE_GAMMA / RPE_ALPHA)
        * (RPE_BETA - RPE_ALPHA)
    ).clamp(max=RPE_BETA)
    index = torch.where(dist <= RPE_ALPHA, dist, far)
    return index.long() + RPE_BETA


class RelativePositionBias(nn.Module):
    """Per-head lookup table of 81 buckets (iRPE, Euclidean method, bias mode, on keys)."""

    def __init__(self, heads: int):
        super().__init__()
        self.lookup_table_bias = nn.Parameter(torch.zeros(heads, RPE_BUCKETS))

    def forward(self, height: int, width: int) -> torch.Tensor:
        buckets = rpe_buckets(height, width, self.lookup_table_bias.device)
        return self.lookup_table_bias[:, buckets].unsqueeze(0)  # (1, heads, N, N)


class RelativeSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.rpe_k = RelativePositionBias(heads)

    def attention_bias(self, height: int, width: int) -> torch.Tensor:
        return self.rpe_k(height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1) + self.attention_bias(h, w)
        out = scores.softmax(dim=-1) @ v
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return out.transpose(1, 2).reshape(b, c, h, w)


class PartialSelfAttention(nn.Module):
    """PAT_sf: 3×3 conv on the first quarter; LayerNorm then self-attention on the rest."""

    def __init__(self, dim: int):
        super().__init__()
        self.c1, self.c2 = split_sizes(dim)
        self.partial_conv3 = nn.Conv2d(self.c1, self.c1, 3, padding=1, bias=False)
        self.attn = RelativeSelfAttention(self.c2)  # registered before norm, as in the reference key order
        self.norm = LayerNorm2d(self.c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.c1, self.c2], dim=1)
        return torch.cat([self.partial_conv3(x1), self.attn(self.norm(x2))], dim=1)


class PartialSpatialAttention(nn.Module):
    """PAT_sp (mlp.4). Unlike the mixers, the ATTENDED half comes first and the split is a fixed half."""

    def __init__(self, dim: int):
        super().__init__()
        self.half = dim // 2
        self.rest = dim - self.half
        # Registration order follows the reference key order: conv, conv_attn, norm, norm2.
        self.conv = nn.Conv2d(self.half, self.half, 1, bias=False)
        self.conv_attn = nn.Conv2d(self.rest, 1, 1, bias=False)
        self.norm = nn.BatchNorm2d(self.rest)
        self.norm2 = nn.BatchNorm2d(self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.rest, self.half], dim=1)
        a = self.norm(a * F.hardsigmoid(self.conv_attn(a)))
        return torch.cat([a, self.conv(self.norm2(b))], dim=1)


class DynamicPartialConv(nn.Module):
    """A DPConv layer frozen at its learned width `k`: a partial conv using `conv.weight[:k, :k]`.

    The training-time parameters (gate, Kronecker buffers) are kept only so that the checkpoint's keys
    load strictly; inference never reads them. Folding replaces this module by a plain `PartialConv`.
    """

    def __init__(self, dim: int, width: int, gate_len: int):
        super().__init__()
        if not 0 <= width <= dim:
            raise ValueError(f"DPConv width {width} outside [0, {dim}]")
        self.width = width
        self.dim = dim
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.gate = nn.Parameter(torch.zeros(gate_len))
        self.register_buffer("I", torch.eye(2))
        self.register_buffer("one", torch.ones(2, 2))
        self.register_buffer("c_div", torch.tensor(0, dtype=torch.int32))
        self.register_buffer("one_channel", torch.tensor(width, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.width
        if k == 0:
            return x
        weight = self.conv.weight[:k, :k]
        if k == self.dim:
            return F.conv2d(x, weight, padding=1)
        x1, x2 = torch.split(x, [k, self.dim - k], dim=1)
        return torch.cat([F.conv2d(x1, weight, padding=1), x2], dim=1)


def make_mixer(kind, dim: int) -> nn.Module:
    if isinstance(kind, tuple):
        return DynamicPartialConv(dim, *kind)
    return {PCONV: PartialConv, PAT_CH: PartialChannelAttention, PAT_SF: PartialSelfAttention}[kind](dim)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, mixer, act: str, pat_sp: bool, two_residuals: bool):
        super().__init__()
        self.two_residuals = two_residuals
        self.spatial_mixing = make_mixer(mixer, dim)
        hidden = dim * MLP_RATIO
        layers: list[nn.Module] = [
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            make_act(act),
            nn.Conv2d(hidden, dim, 1, bias=False),
        ]
        if pat_sp:
            layers.append(PartialSpatialAttention(dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_residuals:
            x = x + self.spatial_mixing(x)
            return x + self.mlp(x)
        return x + self.mlp(self.spatial_mixing(x))


class BasicStage(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, 2, stride=2, bias=False)
        self.norm = nn.BatchNorm2d(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 4, stride=4, bias=False)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PartialNet(nn.Module):
    """The shared network. `arch` decides the family, widths, mixers and PAT_sp."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        dims = arch.stage_dims()
        self.patch_embed = PatchEmbed(arch.embed_dim)
        stages: list[nn.Module] = []
        for i, dim in enumerate(dims):
            if i > 0:
                stages.append(PatchMerging(dims[i - 1]))
            two_residuals = arch.family == "partialnet" and i == STAGE_COUNT - 1
            stages.append(
                BasicStage(
                    [
                        MLPBlock(dim, mixer, arch.act, arch.pat_sp, two_residuals)
                        for mixer in arch.mixers[i]
                    ]
                )
            )
        self.stages = nn.Sequential(*stages)
        self.avgpool_pre_head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dims[-1], FEATURE_DIM, 1, bias=False),
            make_act(arch.act),
        )
        self.head = nn.Linear(FEATURE_DIM, arch.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.patch_embed(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool_pre_head(self.forward_features(x))
        return self.head(torch.flatten(x, 1))
