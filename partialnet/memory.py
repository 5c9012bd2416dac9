"""Whether one forward pass fits in this machine's memory, known before the work that would need it.

PartialNet's spatial attention grows with the square of its token count: one forward of T0 needs about
0.9 GiB at 2048x2048 and 13 GiB at 4096x4096, sizes the limits allow. Where the kernel overcommits, the
allocator never refuses such a run and the OOM killer ends it without a word, after minutes of work. So
the model's forward is first traced with fake tensors (shapes, no storage: a third of a second for T0),
adding up the bytes the tensors its ops return hold at once, and a run that cannot fit is not possible
here (exit 3) before it starts. That is a lower bound, never a guess above the truth: kernels' own
workspaces are not seen. T0 at 2048: 0.87 GiB traced, 0.91-0.93 GiB measured as a real forward's peak
resident set; at 1536, where the attention matters less, 0.29 GiB traced and 0.53 GiB measured. So only
runs that cannot fit are refused, not every run that will not.
"""

from __future__ import annotations

import os
import weakref

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from partialnet.errors import Unavailable

SMALL_PIXELS = 1 << 20  # batch x H x W below this (a 1024x1024 image): every variant's forward is under 1 GiB, no trace
GIB = 1 << 30


def forward_peak_bytes(model, imgsz: tuple[int, int], batch: int) -> int:
    """The most bytes `model`'s intermediate tensors hold at one time during one inference forward."""
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as fake:
        images = fake.from_tensor(torch.empty(batch, 3, *imgsz))
        with _LiveBytes() as live:
            model(images)
    return live.peak


class _LiveBytes(TorchDispatchMode):
    """Counts each new tensor an op makes (not the views it returns) until Python frees it."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        for i, tensor in enumerate(tree_flatten(out)[0]):
            if not isinstance(tensor, torch.Tensor) or (i < len(returns) and returns[i].alias_info is not None):
                continue
            nbytes = tensor.numel() * tensor.element_size()
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._freed, nbytes)
        return out


def available_bytes() -> int | None:
    """What this process could still allocate: free memory and swap, within its cgroup's limit and its address
    space limit (`ulimit -v`). None where the system says nothing (not Linux)."""
    free = _meminfo()
    limits = [x for x in (free, _cgroup_room(), _address_space_room()) if x is not None]
    return min(limits) if limits else None


def _meminfo() -> int | None:
    from partialnet.machine import meminfo

    fields = meminfo()
    return fields["MemAvailable"] + fields.get("SwapFree", 0) if "MemAvailable" in fields else None


def _cgroup_room(membership: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """cgroup v2, this process's own group: memory.max less what it uses that cannot be reclaimed (memory.current
    holds the page cache: its inactive file pages are given back under pressure), plus the swap it may still use."""
    try:
        with open(membership, "rb") as f:
            path = next((line.split(b"::", 1)[1].strip().decode() for line in f.read(1 << 16).splitlines() if line.startswith(b"0::")), None)
        if path is None:
            return None
        folder = os.path.join(root, path.lstrip("/"))
        limit = _read_number(os.path.join(folder, "memory.max"))
        if limit is None:
            return None
        current = _read_number(os.path.join(folder, "memory.current")) or 0
        with open(os.path.join(folder, "memory.stat"), "rb") as f:
            stat = dict(line.split(b" ", 1) for line in f.read(1 << 16).splitlines() if b" " in line)
        reclaimable = int(stat.get(b"inactive_file", b"0").strip() or 0)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    swap_limit, swap_used = _read_number(os.path.join(folder, "memory.swap.max")), _read_number(os.path.join(folder, "memory.swap.current"))
    swap = max(swap_limit - (swap_used or 0), 0) if swap_limit is not None else 0  # "max": the system's free swap bounds it (meminfo)
    return max(limit - current + reclaimable, 0) + swap


def _read_number(path: str) -> int | None:
    """A cgroup file's number; None where it is absent, unreadable or "max"."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _address_space_room() -> int | None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", "rb") as f:
            size = int(f.read(256).split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
    return max(soft - size, 0)


IMAGE_COPIES = 2  # decoded one by one, then stacked into one array: both are held at the stack


def check_images_fit(count: int, imgsz: tuple[int, int], what: str, remedy: str, copies: int = IMAGE_COPIES) -> None:
    """Unavailable (exit 3) where `count` images decoded at `imgsz` (float32, as the checks read them), `copies` of
    each held at once, need more memory than this machine has: 300 calibration images at 2048x2048 are 15 GB each
    copy, and ran out of memory only after the fold."""
    need = copies * count * 3 * imgsz[0] * imgsz[1] * 4
    if need < 256 << 20:
        return
    room = available_bytes()
    if room is not None and need > room:
        raise Unavailable(f"{what}: {count} images at {imgsz[0]}x{imgsz[1]} need about {need / GIB:.1f} GiB as float32 and this machine has "
                          f"{room / GIB:.1f} GiB free (memory and swap, within its cgroup and ulimit -v): {remedy}")


def check_fits(model, imgsz: tuple[int, int], batch: int | None, remedy: str = "") -> None:
    """Unavailable (exit 3) where one forward of `model` at this size and batch needs more than this machine has.
    The remedy names --batch only where one above 1 was asked for: `fold` has no --batch, and a batch of 1 or a
    dynamic one (verified at a fixed batch) has none to lower."""
    from partialnet.pipeline import DYNAMIC_VERIFY_BATCH

    remedy = remedy or f"a smaller --imgsz{' or --batch' if batch and batch > 1 else ''} needs less"
    batch = batch or DYNAMIC_VERIFY_BATCH  # a dynamic batch is verified at this batch
    if batch * imgsz[0] * imgsz[1] < SMALL_PIXELS:
        return
    room = available_bytes()
    if room is None:
        return
    try:
        need = forward_peak_bytes(model, imgsz, batch)
    except Exception:  # an op fake tensors cannot follow: no estimate, and a working run is never refused for it
        return
    if need > room:
        raise Unavailable(
            f"one forward of the model at {imgsz[0]}x{imgsz[1]}, batch {batch}, needs at least {need / GIB:.1f} GiB and this machine has "
            f"{room / GIB:.1f} GiB free (memory and swap, within its cgroup and ulimit -v): {remedy}"
        )
