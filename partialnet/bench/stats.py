"""Statistics on raw per-iteration samples: summaries, bootstrap intervals, a rank test. numpy only.

Latency samples are skewed and have outliers, so everything here is built on medians and ranks.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_ROUNDS = 2000
CONFIDENCE = 0.95
# Resamples are drawn in chunks of at most this many values (64 MB of float64), so a result file with
# a million samples per row costs the same memory as one with a thousand; only the time grows.
BOOTSTRAP_CHUNK_VALUES = 1 << 23


def bootstrap_medians(x: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> np.ndarray:
    """Medians of `rounds` resamples (with replacement) of `x`, drawn chunk by chunk with one seeded stream."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, BOOTSTRAP_CHUNK_VALUES // max(len(x), 1))
    medians = np.empty(rounds)
    for start in range(0, rounds, per_chunk):
        stop = min(rounds, start + per_chunk)
        medians[start:stop] = np.median(x[rng.integers(0, len(x), (stop - start, len(x)))], axis=1)
    return medians


def median_ms(samples) -> float:
    """The p50 every command prints (numpy's median: the mean of the two middle samples of an even count)."""
    return float(np.median(np.asarray(samples, dtype=np.float64))) * 1e3


def bootstrap_median_ci(x: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float]:
    medians = bootstrap_medians(x, rounds, seed)
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


MIN_SAMPLES_FOR = {"p90_ms": 10, "p99_ms": 100}


def summarize(samples) -> dict:
    """Summary of seconds-per-iteration samples (reported in milliseconds)."""
    x = np.asarray(samples, dtype=np.float64)
    lo, hi = bootstrap_median_ci(x)
    mean = float(x.mean())
    return {
        "n": int(len(x)),
        "mean_ms": mean * 1e3,
        "std_ms": float(x.std(ddof=1)) * 1e3 if len(x) > 1 else 0.0,
        "cov": float(x.std(ddof=1) / mean) if len(x) > 1 and mean > 0 else 0.0,
        "min_ms": float(x.min()) * 1e3,
        "p50_ms": median_ms(x),
        # a tail percentile from fewer samples than it needs is an interpolation between the two slowest (a quick
        # row's "p99" of 10 samples): null, printed "-"
        "p90_ms": float(np.percentile(x, 90)) * 1e3 if len(x) >= MIN_SAMPLES_FOR["p90_ms"] else None,
        "p99_ms": float(np.percentile(x, 99)) * 1e3 if len(x) >= MIN_SAMPLES_FOR["p99_ms"] else None,
        "max_ms": float(x.max()) * 1e3,
        "median_ci95_ms": [lo * 1e3, hi * 1e3],
    }


def ratio_of_medians(candidate, baseline, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float, float]:
    """median(candidate) / median(baseline) and its bootstrap 95 % interval (samples resampled independently)."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    ratios = bootstrap_medians(a, rounds, seed) / bootstrap_medians(b, rounds, seed + 1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.median(a) / np.median(b)), float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) and the sizes of tied groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(avg, counts)
    return ranks, counts


def mann_whitney_greater(candidate, baseline) -> float:
    """One-sided p-value that `candidate` tends to be LARGER (slower) than `baseline`.

    Normal approximation with tie and continuity corrections; accurate for the tens to thousands of
    samples a benchmark row holds.
    """
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks, ties = _ranks(np.concatenate([a, b]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie_term = float((ties**3 - ties).sum()) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma
    return 0.5 * math.erfc(z / math.sqrt(2))
