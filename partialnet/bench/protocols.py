"""Timing protocols as data: every number a result depends on is written into the result.

A latency protocol stops only when it has BOTH enough iterations and enough wall time, so a fast model
is not judged on a few milliseconds of samples and a slow one not on two iterations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from partialnet.errors import BadInput


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    warmup_iters: int
    warmup_seconds: float
    min_iters: int
    min_seconds: float
    max_iters: int | None
    batches: tuple[int, ...] | None = None  # the protocol's own batch sizes (None: --batch, default 1)
    threads: int | None = None  # forced thread count (None: --threads, default all cores)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batches"] = list(self.batches) if self.batches else None
        return data


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "latency",
            "warm-up >= 10 runs and >= 1 s, then >= 100 runs and >= 3 s; report the median",
            warmup_iters=10,
            warmup_seconds=1.0,
            min_iters=100,
            min_seconds=3.0,
            max_iters=100_000,
        ),
        Protocol(
            "throughput",
            "batch 32, one synchronous request at a time: warm-up >= 3 runs and >= 1 s, then >= 20 runs and >= 3 s; "
            "images/s = batch / median latency (add --streams N|auto for requests in flight, as a server runs)",
            warmup_iters=3,
            warmup_seconds=1.0,
            min_iters=20,
            min_seconds=3.0,
            max_iters=100_000,
            batches=(32,),
        ),
        Protocol(
            "paper",
            "the papers' protocol (CPU): batch 1, one thread, 10 warm-up + 200 timed forward passes",
            warmup_iters=10,
            warmup_seconds=0.0,
            min_iters=200,
            min_seconds=0.0,
            max_iters=200,
            batches=(1,),
            threads=1,
        ),
        Protocol(
            "quick",
            "CI smoke run: warm-up >= 2 runs, then >= 10 runs and >= 0.2 s (not for conclusions)",
            warmup_iters=2,
            warmup_seconds=0.0,
            min_iters=10,
            min_seconds=0.2,
            max_iters=2_000,
        ),
    )
}

# The papers time GPUs on a full eval batch with 50 warm-up passes (claims.md); CPU rules above.
PAPER_GPU = replace(
    PROTOCOLS["paper"],
    description="the papers' protocol (GPU): batch 64, 50 warm-up + 200 timed, cudnn.benchmark on",
    warmup_iters=50,
    batches=(64,),
    threads=None,
)


def get_protocol(name: str, device: str = "cpu") -> Protocol:
    if not isinstance(name, str):
        raise BadInput(f"protocol: expected a name ({', '.join(PROTOCOLS)}), got {type(name).__name__}")
    key = name.strip().lower()
    if key not in PROTOCOLS:
        raise BadInput(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    if key == "paper" and device == "cuda":
        return PAPER_GPU
    return PROTOCOLS[key]


def described_as_run(result: dict) -> str:
    """The protocol's description, and what --batch, --threads or --streams changed in it: a `paper` run on two
    threads must not read as "the papers' protocol: batch 1, one thread" under rows that say otherwise, nor a
    streams run as "one synchronous request at a time"."""
    protocol, settings = result["protocol"], result.get("settings") or {}
    changed = []
    if protocol.get("threads") and settings.get("threads") not in (None, protocol["threads"]):
        changed.append(f"{settings['threads']} threads (--threads) instead of {protocol['threads']}")
    if protocol.get("batches") and settings.get("batches") and list(settings["batches"]) != list(protocol["batches"]):
        changed.append(f"batch {','.join(map(str, settings['batches']))} (--batch) instead of {','.join(map(str, protocol['batches']))}")
    if settings.get("streams") is not None:  # no protocol times requests in flight: a streams run changes how images/s is counted
        changed.append(f"{settings['streams']} streams (--streams) instead of one synchronous request: images/s = images completed / wall time, "
                       "p50 = one request's latency among them")
    if result.get("mode") == "ab":  # the rows' own timed seconds were a fraction of the protocol's, which it seemed to claim per row
        changed.append("A and B alternate in one process (--ab): the seconds are the whole alternation's (both sides, with --aa a second copy of A, "
                       "and the untimed calls after each switch), the iterations each side's")
    return protocol["description"] + (f"; changed in this run: {', '.join(changed)}" if changed else "")


def protocol_difference(a: dict, b: dict) -> str | None:
    """How two results' protocols differ in what they time (name, iterations, seconds, batches, threads), or
    None. The description is prose: a reworded one, from another partialnet version, times nothing else."""
    fields = [k for k in dict.fromkeys([*a, *b]) if k != "description" and a.get(k) != b.get(k)]
    if not fields:
        return None
    if "name" in fields:
        return f"{a.get('name')} vs {b.get('name')}"
    return f"{a.get('name')} with " + ", ".join(f"{k} {str(a.get(k))[:20]} vs {str(b.get(k))[:20]}" for k in fields[:3])
