"""The modules a folded model is made of, where a reference module cannot simply lose its norm.

Each holds only what inference needs: biases that absorbed a norm, a constant attention bias for one
input size. They never appear in a checkpoint, only in deploy files written by `partialnet fold`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partialnet.errors import BadInput
from partialnet.models.partialnet import spatial_std


class DeployChannelGate(nn.Module):
    """SRM gate whose BatchNorm lives in `cfc1`'s weight and bias; std as explicit arithmetic."""

    def __init__(self, cfc1: nn.Conv2d):
        super().__init__()
        self.cfc1 = cfc1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        stats = torch.cat([mean, spatial_std(x, mean)], dim=3)
        return x * F.hardsigmoid(self.cfc1(stats))


class DeploySpatialGate(nn.Module):
    """PAT_sp after folding: mlp.3 already produced `norm`-scaled channels and the finished other half.

    The BatchNorm shift must stay an add after the gate multiply: it cannot move into mlp.3.
    """

    def __init__(self, rest: int, half: int, conv_attn: nn.Conv2d, shift: torch.Tensor):
        super().__init__()
        self.rest, self.half = rest, half
        self.conv_attn = conv_attn
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.rest, self.half], dim=1)
        return torch.cat([a * F.hardsigmoid(self.conv_attn(a)) + self.shift, b], dim=1)


class DeploySelfAttention(nn.Module):
    """Attention with LayerNorm affine and q scale inside `qkv`, and the position bias a constant.

    Written in the ops every runtime (XNNPACK included) takes whole: q, k and v as channel slices,
    3-D batched matmuls (a 4-D matmul brings broadcast copies XNNPACK has no kernel for), and `proj` as
    a 1×1 convolution with a static weight. The bias is valid for one feature-map size only, so a
    different input size is refused.
    """

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, heads: int, bias: torch.Tensor, size: tuple[int, int]):
        super().__init__()
        self.qkv, self.heads = qkv, heads
        self.head_dim = proj.in_features // heads
        self.proj = nn.Conv2d(proj.in_features, proj.out_features, 1, device=proj.weight.device)
        with torch.no_grad():
            self.proj.weight.copy_(proj.weight[:, :, None, None])
            self.proj.bias.copy_(proj.bias)
        self.size = tuple(size)
        self.register_buffer("attn_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (h, w) != self.size:
            raise BadInput(
                f"this deploy model was folded for a {self.size[0]}x{self.size[1]} last stage "
                f"(input {32 * self.size[0]}x{32 * self.size[1]}), got {h}x{w}; fold again with that --imgsz"
            )
        n, heads, dim = h * w, self.heads, self.head_dim
        q, k, v = torch.split(self.qkv(x.flatten(2).transpose(1, 2)), [c, c, c], dim=-1)  # each (B, N, C), heads-major
        q = q.reshape(b, n, heads, dim).transpose(1, 2).reshape(b * heads, n, dim)
        k = k.reshape(b, n, heads, dim).permute(0, 2, 3, 1).reshape(b * heads, dim, n)
        v = v.reshape(b, n, heads, dim).transpose(1, 2).reshape(b * heads, n, dim)
        scores = torch.bmm(q, k).reshape(b, heads, n, n) + self.attn_bias
        out = torch.bmm(scores.softmax(dim=-1).reshape(b * heads, n, n), v)
        # Heads back to channels with the token axis last, then proj: the same arithmetic as
        # transpose(1, 2) + Linear, but it never swaps the head and token axes. OpenVINO 2026.4's CPU plugin
        # miscomputes that swap (errors ~0.5) when heads == tokens, i.e. a 2×2 last stage (64×64 input).
        return self.proj(out.reshape(b, heads, n, dim).transpose(-2, -1).reshape(b, c, h, w))
