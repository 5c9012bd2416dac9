"""The papers' published speed claims as data, and the rule that turns a measured ratio into a verdict.

Every claim is a PartialNet / FasterNet ratio of one metric at one size: absolute numbers depend on the
machine, ratios measured side by side in one process carry over. A new claim is a new row here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from partialnet.errors import BadInput
from partialnet.limits import check_once, list_items

SIZES = ("t0", "t1", "t2", "s", "m", "l")

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_MEASURABLE = "not measurable here"
NOT_VERIFIED = "not verified"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURABLE, NOT_VERIFIED)

DEFAULT_TOLERANCE = 0.05
TOLERANCE_RULE = (
    "a claim of ratio R is reproduced when the whole 95% interval of the measured ratio lies on the claimed "
    "side of R widened by the tolerance (latency: high <= R*(1+tol); throughput: low >= R*(1-tol)), not "
    "reproduced when the whole interval lies beyond it, inconclusive when the interval straddles it"
)


def parse_sizes(text: str | None) -> list[str]:
    """--sizes as sizes the claims name (default t0,t1,t2), each once."""
    sizes = [s.lower() for s in list_items("t0,t1,t2" if text is None else text, "--sizes")]
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        raise BadInput(f"--sizes {text!r}: expected a comma-separated subset of {','.join(SIZES)}")
    return check_once(sizes, "--sizes", text)


def claim_runtimes() -> list[str]:
    """The runtimes a claims run tries unless told: the default set's that build their own artifact from a variant."""
    from partialnet.runtimes.table import RUNTIMES, resolve_runtimes

    return [r for r in resolve_runtimes(None) if RUNTIMES[r].runs != "artifact"]


@dataclass(frozen=True)
class Claim:
    id: str
    metric: str  # "latency", "throughput" or "accuracy"
    device: str  # "cpu" or "cuda"
    sizes: tuple[str, ...]  # the sizes it speaks about, with `published` ratios in the same order
    published: tuple[float, ...]  # PartialNet / FasterNet of the metric
    source: str
    sentence: str
    protocol: str = "paper"

    @property
    def better(self) -> str:
        """Which side of the ratio is PartialNet's win: lower latency, higher throughput or accuracy."""
        return "lower" if self.metric == "latency" else "higher"

    def published_for(self, size: str) -> float | None:
        return dict(zip(self.sizes, self.published)).get(size)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["sizes"], data["published"], data["better"] = list(self.sizes), list(self.published), self.better
        return data


# Repository figure, read off the plot (approximate), img/s on one GPU: PartialNet / FasterNet.
_FIGURE = {"t0": (11740, 10610), "t1": (7380, 7200), "t2": (4760, 4190), "s": (2420, 2250)}

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "patnet_t2_cpu_latency", "latency", "cpu", ("t2",), (0.76,),
        "PATNet abstract (arXiv 2503.03148; arXiv 2502.01303)",
        "PATNet-T2 achieves 1.3% higher accuracy than FasterNet-T2, while exhibiting 25% higher GPU throughput and 24% lower CPU latency.",
    ),
    Claim(
        "patnet_t2_gpu_throughput", "throughput", "cuda", ("t2",), (1.25,),
        "PATNet abstract (arXiv 2503.03148; arXiv 2502.01303)",
        "PATNet-T2 achieves 1.3% higher accuracy than FasterNet-T2, while exhibiting 25% higher GPU throughput and 24% lower CPU latency.",
    ),
    Claim(
        "partialnet_repo_figure_gpu_throughput", "throughput", "cuda", tuple(_FIGURE),
        tuple(round(p / f, 3) for p, f in _FIGURE.values()),
        "PartialNet reference repository, accuracy-vs-throughput figure (values read off the plot, approximate)",
        "T0 ~11,740 vs 10,610 img/s; T1 ~7,380 vs 7,200; T2 ~4,760 vs 4,190; S ~2,420 vs 2,250 (PartialNet vs FasterNet)",
    ),
    Claim(
        "patnet_t2_top1", "accuracy", "cpu", ("t2",), (round(80.2 / 78.9, 4),),
        "PATNet abstract (arXiv 2503.03148); ImageNet-1K top-1 80.2 vs 78.9",
        "PATNet-T2 achieves 1.3% higher accuracy than FasterNet-T2",
    ),
)


def get_claim(claim_id: str) -> Claim:
    return next(c for c in CLAIMS if c.id == claim_id)


def verdict(claim: Claim, published: float, ci: tuple[float, float] | None, tolerance: float = DEFAULT_TOLERANCE) -> str:
    """The verdict of one measured ratio interval against one published ratio (see TOLERANCE_RULE)."""
    if claim.metric == "accuracy":
        return NOT_VERIFIED  # needs trained weights and ImageNet; never guessed from speed
    if ci is None or not all(math.isfinite(v) for v in ci):  # NaN/Inf never decide a verdict
        return NOT_MEASURABLE
    low, high = ci
    if claim.better == "lower":
        threshold = published * (1 + tolerance)
        if high <= threshold:
            return REPRODUCED
        return NOT_REPRODUCED if low > threshold else INCONCLUSIVE
    threshold = published * (1 - tolerance)
    if low >= threshold:
        return REPRODUCED
    return NOT_REPRODUCED if high < threshold else INCONCLUSIVE
