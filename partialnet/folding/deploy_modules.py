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


def check_size(expected: tuple[int, int], h: int, w: int, stride: int, what: str) -> None:
    """Refuse a map size a size-tied constant was not folded for (it would compute wrong logits)."""
    if (h, w) != tuple(expected):
        raise BadInput(
            f"this deploy model was folded for {expected[0] * stride}x{expected[1] * stride} inputs, got {h * stride}x{w * stride} "
            f"(its {what} is {h}x{w}, not {expected[0]}x{expected[1]}); fold again with that --imgsz"
        )


class DeployChannelGate(nn.Module):
    """SRM gate whose BatchNorm lives in `cfc1`'s weight and bias.

    With `size` set (the `gate-stats` pass), the spread is the root-mean-square deviation and the
    unbiased factor sqrt(N/(N-1)) sits in cfc1's std column: one Mul instead of Pow, Mul and a constant,
    the same value to round-off, but only for an N = h*w map, so another size is refused.
    """

    def __init__(self, cfc1: nn.Conv2d, size: tuple[int, int] | None = None, stride: int = 4):
        super().__init__()
        self.cfc1 = cfc1
        self.size = tuple(size) if size is not None else None
        self.stride = stride  # input pixels per map pixel, for the refusal message

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        if self.size is None:
            spread = spatial_std(x, mean)
        else:
            check_size(self.size, x.shape[2], x.shape[3], self.stride, "channel-gate map")
            deviation = x - mean
            spread = torch.sqrt((deviation * deviation).mean(dim=(2, 3), keepdim=True))
        return x * F.hardsigmoid(self.cfc1(torch.cat([mean, spread], dim=3)))


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

    Written in the ops every runtime (XNNPACK included) takes whole: 3-D batched matmuls (a 4-D matmul
    brings broadcast copies XNNPACK has no kernel for) and `proj` as a 1x1 convolution with a static
    weight. With `norm_eps` set (the `attention-tokens` pass) the affine-free LayerNorm runs here, on the
    tokens, instead of on a permuted copy of the map that is permuted back; q, k and v leave `qkv` with
    one transpose, and the output is formed as (PV)^T so it is already channels-by-tokens.
    The bias is valid for one feature-map size only, so a different input size is refused.
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
        self.norm_eps: float | None = None
        self.register_buffer("attn_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        check_size(self.size, h, w, 32, "last stage")
        if self.norm_eps is None:
            return self._forward_v2(x.flatten(2).transpose(1, 2), b, c, h, w)
        n, heads, dim = h * w, self.heads, self.head_dim
        # Normalised on the channels-last view of the map (ExecuTorch's lowering of a LayerNorm on the
        # transposed token matrix recurses without end), then read as (B, N, C) tokens.
        tokens = F.layer_norm(x.permute(0, 2, 3, 1), (c,), eps=self.norm_eps).reshape(b, n, c)
        qkv = self.qkv(tokens).reshape(b, n, 3 * heads, dim).transpose(1, 2)  # (B, 3*heads, N, dim)
        q, k, v = torch.split(qkv, [heads, heads, heads], dim=1)
        q, k, v = (t.reshape(b * heads, n, dim) for t in (q, k, v))
        scores = torch.bmm(q, k.transpose(1, 2)).reshape(b, heads, n, n) + self.attn_bias
        probs = scores.softmax(dim=-1).reshape(b * heads, n, n)
        # (PV)^T = V^T P^T: heads-major channels by tokens, reshaped straight into the map for proj.
        # This also avoids the (B, heads, N, dim) -> (B, N, heads, dim) swap that OpenVINO 2026.4's CPU
        # plugin miscomputes (errors ~0.5) when heads == tokens, a 2x2 last stage (64x64 input); any
        # other such miscompile is caught by the parity check every export runs.
        out = torch.bmm(v.transpose(1, 2), probs.transpose(1, 2))
        return self.proj(out.reshape(b, c, h, w))

    def _forward_v2(self, tokens: torch.Tensor, b: int, c: int, h: int, w: int) -> torch.Tensor:
        """The version-2 form (LayerNorm outside, on the map), kept for deploy files written before it."""
        n, heads, dim = h * w, self.heads, self.head_dim
        q, k, v = torch.split(self.qkv(tokens), [c, c, c], dim=-1)  # each (B, N, C), heads-major
        q = q.reshape(b, n, heads, dim).transpose(1, 2).reshape(b * heads, n, dim)
        k = k.reshape(b, n, heads, dim).permute(0, 2, 3, 1).reshape(b * heads, dim, n)
        v = v.reshape(b, n, heads, dim).transpose(1, 2).reshape(b * heads, n, dim)
        scores = torch.bmm(q, k).reshape(b, heads, n, n) + self.attn_bias
        out = torch.bmm(scores.softmax(dim=-1).reshape(b * heads, n, n), v)
        return self.proj(out.reshape(b, heads, n, dim).transpose(-2, -1).reshape(b, c, h, w))
