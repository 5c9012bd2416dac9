"""Eager-only forms of the deploy model, measured against it: the record behind issue 13's eager row.

The folded model is one graph for every door (torch.export, jit.trace, eager). PyTorch eager runs it on
its own kernels, so a form that is faster only there would need a second forward, taken only when not
tracing, with its own parity proof. This measures whether any such form is worth that: each is a
patched copy of the deploy model, checked against it (max |diff| printed), then timed beside the
unfolded and deploy models in one process, one thread, batch 1, rounds in a fresh random order,
process CPU time; a ratio is the median over rounds of the form / the same round's deploy model.

Each form returns how many sites it rewrote; one with none in a variant is left out of its table.
Forms: in-place tail (GELU and the residual add written into the tensor they read); std_mean gate
(the SRM statistics as one torch.std_mean); addcmul spatial gate; channels-last partial convs (the
3x3 convs of >= 48 channels, where oneDNN beats PyTorch's slow path); tokens (from stage 2 on, the map
kept as (B, H, W, C) and every 1x1 conv a linear layer). Rerun it when PyTorch's CPU conv routing
changes; as of torch 2.13 on one thread, none of them pays for a second forward (see the closing
note of issue 13). Not a test: run it by hand.

    python scripts/eager_forms.py [VARIANT ...] [--seconds 30] [--imgsz 224]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
import types

import torch
import torch.nn.functional as F


def in_place_tail(model) -> int:
    from partialnet.models.partialnet import MLPBlock

    def forward(self, x):
        if self.two_residuals:
            x = self.spatial_mixing(x).add_(x)
            return self.mlp(x).add_(x)
        return self.mlp(self.spatial_mixing(x)).add_(x)

    blocks = [m for m in model.modules() if isinstance(m, MLPBlock)]
    for module in blocks:
        module.forward = types.MethodType(forward, module)
        act = module.mlp[2]
        module.mlp[2] = InPlaceGelu() if isinstance(act, torch.nn.GELU) else torch.nn.ReLU(inplace=True)
    return len(blocks)


class InPlaceGelu(torch.nn.Module):
    def forward(self, x):
        return torch.ops.aten.gelu_(x)


def std_mean_gate(model) -> int:
    from partialnet.folding.deploy_modules import DeployChannelGate

    def forward(self, x):
        spread, mean = torch.std_mean(x, dim=(2, 3), correction=0, keepdim=True)
        return x * F.hardsigmoid(self.cfc1(torch.cat([mean, spread], dim=3)))

    gates = [m for m in model.modules() if isinstance(m, DeployChannelGate) and m.size is not None]
    for module in gates:
        module.forward = types.MethodType(forward, module)
    return len(gates)


def addcmul_spatial_gate(model) -> int:
    from partialnet.folding.deploy_modules import DeploySpatialGate

    def forward(self, x):
        a, b = torch.split(x, [self.rest, self.half], dim=1)
        return torch.cat([torch.addcmul(self.shift, a, F.hardsigmoid(self.conv_attn(a))), b], dim=1)

    gates = [m for m in model.modules() if isinstance(m, DeploySpatialGate)]
    for module in gates:
        module.forward = types.MethodType(forward, module)
    return len(gates)


def channels_last_partial_convs(model, min_channels: int = 48) -> int:
    class ChannelsLastConv(torch.nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv = conv
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)

        def forward(self, x):
            return self.conv(x.contiguous(memory_format=torch.channels_last)).contiguous()

    mixers = [m for m in model.modules() if getattr(m, "partial_conv3", None) is not None]
    mixers = [m for m in mixers if isinstance(m.partial_conv3, torch.nn.Conv2d) and m.partial_conv3.in_channels >= min_channels]
    for module in mixers:
        module.partial_conv3 = ChannelsLastConv(module.partial_conv3)
    return len(mixers)


def tokens_from_stage(model, first: int = 2) -> int:
    """Stages from `first` on (index into model.stages, merges included) on (B, H, W, C) tokens."""
    from partialnet.models.partialnet import PartialChannelAttention, PatchMerging

    def gate(g, t):
        mean = t.mean(dim=(1, 2), keepdim=True)
        deviation = t - mean
        spread = torch.sqrt((deviation * deviation).mean(dim=(1, 2), keepdim=True))
        stats = torch.stack([mean, spread], dim=-1).flatten(1)  # channel-major pairs, as cfc1's (1, 2) kernel
        return t * F.hardsigmoid(F.linear(stats, g.cfc1.weight.flatten(1), g.cfc1.bias))[:, None, None, :]

    def attention(a, t):
        b, h, w, c = t.shape
        n, heads, dim = h * w, a.heads, a.head_dim
        qkv = a.qkv(F.layer_norm(t, (c,), eps=a.norm_eps).reshape(b, n, c)).reshape(b, n, 3 * heads, dim)
        q, k, v = (z.reshape(b * heads, n, dim) for z in torch.split(qkv.transpose(1, 2), [heads] * 3, dim=1))
        probs = (torch.bmm(q, k.transpose(1, 2)).reshape(b, heads, n, n) + a.attn_bias).softmax(-1)
        out = torch.bmm(probs.reshape(b * heads, n, n), v).reshape(b, heads, n, dim).transpose(1, 2)
        return F.linear(out.reshape(b, h, w, c), a.proj.weight.flatten(1), a.proj.bias)

    def spatial_gate(g, t):
        a, b = torch.split(t, [g.rest, g.half], dim=-1)
        scaled = a * F.hardsigmoid(F.linear(a, g.conv_attn.weight.flatten(1))) + g.shift.flatten()
        return torch.cat([scaled, b], dim=-1)

    def block(blk, t):
        mix = blk.spatial_mixing
        t1, t2 = torch.split(t, [mix.c1, mix.c2], dim=-1)
        conv = F.conv2d(t1.permute(0, 3, 1, 2), mix.partial_conv3.weight, None, padding=1).permute(0, 2, 3, 1)
        rest = gate(mix.attn, t2) if isinstance(mix, PartialChannelAttention) else attention(mix.attn, t2)
        y = torch.cat([conv, rest], dim=-1)
        if blk.two_residuals:
            t = y = t + y
        z = F.linear(F.gelu(F.linear(y, blk.mlp[0].weight.flatten(1), blk.mlp[0].bias)),
                     blk.mlp[3].weight.flatten(1), blk.mlp[3].bias)
        return t + (spatial_gate(blk.mlp[4], z) if len(blk.mlp) > 4 else z)

    def forward(self, x):
        x = self.patch_embed(x)
        for stage in self.stages[:first]:
            x = stage(x)
        t = x.permute(0, 2, 3, 1).contiguous()
        for stage in self.stages[first:]:
            if isinstance(stage, PatchMerging):
                merged = F.conv2d(t.permute(0, 3, 1, 2), stage.reduction.weight, stage.reduction.bias, stride=2)
                t = merged.permute(0, 2, 3, 1)
            else:
                for blk in stage.blocks:
                    t = block(blk, t)
        pre = self.avgpool_pre_head[1]
        features = F.gelu(F.linear(t.mean(dim=(1, 2)), pre.weight.flatten(1), pre.bias))
        return self.head(features)

    model.forward = types.MethodType(forward, model)
    return sum(len(stage.blocks) for stage in model.stages[first:] if not isinstance(stage, PatchMerging))


FORMS = {
    "in-place tail": in_place_tail,
    "std_mean gate": std_mean_gate,
    "addcmul spatial gate": addcmul_spatial_gate,
    "channels-last partial convs": channels_last_partial_convs,
    "tokens from stage 2": tokens_from_stage,
}


def measure(variant: str, imgsz: int, seconds: float) -> None:
    from partialnet.checkpoint import resolve
    from partialnet.folding import fold

    unfolded, _ = resolve(variant)
    unfolded = unfolded.float().eval()
    deploy, _ = fold(unfolded, (imgsz, imgsz))
    models = {"unfolded": unfolded, "deploy": deploy}
    for name, patch in FORMS.items():
        candidate = copy.deepcopy(deploy)
        if patch(candidate):  # a form with no site in this variant (no PAT_sp in T0) is left out
            models[name] = candidate
    x = torch.randn(1, 3, imgsz, imgsz)
    rounds = []
    with torch.no_grad():
        reference = deploy(x)
        diffs = {name: float((model(x) - reference).abs().max()) for name, model in models.items()}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            times = {}
            for name in random.sample(list(models), len(models)):
                model = models[name]
                model(x)
                block = []
                for _ in range(5):
                    start = time.process_time()
                    model(x)
                    block.append(time.process_time() - start)
                times[name] = statistics.median(block)
            rounds.append(times)
    deploy_ms = 1e3 * statistics.median(r["deploy"] for r in rounds)
    print(f"{variant} {imgsz}x{imgsz}, {len(rounds)} rounds, deploy {deploy_ms:.2f} ms")
    print(f"  {'form':30s} {'/ unfolded':>10s} {'/ deploy':>9s}  max |diff| vs deploy")
    for name in models:
        to_unfolded = statistics.median(r[name] / r["unfolded"] for r in rounds)
        to_deploy = statistics.median(r[name] / r["deploy"] for r in rounds)
        print(f"  {name:30s} {to_unfolded:10.3f} {to_deploy:9.3f}  {diffs[name]:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["partialnet_t0", "partialnet_t1"])
    parser.add_argument("--seconds", type=float, default=30, help="timing per variant")
    parser.add_argument("--imgsz", type=int, default=224)
    args = parser.parse_args()
    from partialnet.errors import BadInput
    from partialnet.machine import cpu_info
    from partialnet.models.registry import get_variant

    try:
        for variant in args.variants:
            if get_variant(variant).family != "partialnet":
                raise BadInput(f"{variant}: the forms rewrite PartialNet's mixers; give a partialnet_* variant")
    except BadInput as exc:
        parser.exit(2, f"eager_forms.py: error: {exc}\n")
    torch.set_num_threads(1)
    cpu = cpu_info()
    print(f"Measured on {cpu['model']}, torch {torch.__version__}, 1 thread")
    for variant in args.variants:
        measure(variant, args.imgsz, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
