"""How many operators one eager forward dispatches, per model: why eager PyTorch on a fast GPU times the host.

Eager PyTorch launches at least one GPU kernel per non-view operator, each paid on the host first. When
a GPU finishes a kernel faster than the host launches the next (small models, fp16, an H200), a
PartialNet/FasterNet throughput ratio measures how many operators each model dispatches, not what the
GPU computes. This counts them on this CPU (the count does not depend on the device), through a
TorchDispatchMode over one forward of the deploy model each command times (folded), and of the
training form with --unfolded. Views (reshape, permute, split, …) are counted apart: they launch nothing.
Not a test and not a benchmark: run it by hand.

    python scripts/op_counts.py [VARIANT ...] [--imgsz 224] [--unfolded]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from partialnet.checkpoint import resolve  # noqa: E402
from partialnet.folding import fold  # noqa: E402

VIEWS = {"view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "unsqueeze", "squeeze", "split",
         "split_with_sizes", "unbind", "slice", "select", "alias", "as_strided", "detach"}
DEFAULT = ("partialnet_t0", "fasternet_t0", "partialnet_t1", "fasternet_t1", "partialnet_t2", "fasternet_t2", "partialnet_s", "fasternet_s")


class Dispatched(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count(model: torch.nn.Module, imgsz: int) -> Counter[str]:
    x = torch.randn(1, 3, imgsz, imgsz)
    with torch.no_grad():
        model(x)  # anything computed once and cached is not part of the steady forward
        with Dispatched() as seen:
            model(x)
    return seen.ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=list(DEFAULT))
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--unfolded", action="store_true", help="also count the training form (BatchNorm unfused)")
    args = parser.parse_args()
    from partialnet.models.registry import VARIANTS

    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    print(f"{'model':<16} {'form':<9} {'launching ops':>13} {'views':>6}  most frequent")
    for name in args.variants:
        model, _ = resolve(name)
        forms = [("deploy", fold(model.eval(), (args.imgsz, args.imgsz), measure=False)[0])] + ([("training", model.eval())] if args.unfolded else [])
        for form, module in forms:
            ops = count(module, args.imgsz)
            launching = Counter({k: v for k, v in ops.items() if k not in VIEWS})
            top = ", ".join(f"{k} {v}" for k, v in launching.most_common(5))
            print(f"{name:<16} {form:<9} {sum(launching.values()):>13} {sum(ops.values()) - sum(launching.values()):>6}  {top}")


if __name__ == "__main__":
    main()
