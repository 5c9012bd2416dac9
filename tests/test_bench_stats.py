"""The regression gate's statistics on synthetic samples: no false alarms, no missed 30 % slowdowns."""

import math

import numpy as np
import pytest

from partialnet.bench.compare import judge
from partialnet.bench.stats import bootstrap_median_ci, mann_whitney_greater, ratio_of_medians, summarize

N = 120  # about what the latency protocol collects for a small model


def realistic(rng: np.random.Generator, median_ms: float, n: int = N) -> np.ndarray:
    """Latency-like samples: log-normal jitter (~6 % CoV) plus 3 % outliers at 1.5-3x from preemption."""
    x = median_ms / 1e3 * rng.lognormal(0.0, 0.06, n)
    spikes = rng.random(n) < 0.03
    x[spikes] *= rng.uniform(1.5, 3.0, spikes.sum())
    return x


def test_identical_distributions_never_flagged_over_200_seeds():
    verdicts = [judge(realistic(np.random.default_rng(2 * s), 5.0), realistic(np.random.default_rng(2 * s + 1), 5.0))["verdict"] for s in range(200)]
    assert verdicts.count("regression") == 0


def test_thirty_percent_slowdown_always_flagged():
    for seed in range(100):
        rng = np.random.default_rng(seed)
        assert judge(realistic(rng, 5.0), realistic(rng, 6.5))["verdict"] == "regression", seed


def test_three_percent_slowdown_not_flagged():
    for seed in range(100):
        rng = np.random.default_rng(seed)
        assert judge(realistic(rng, 5.0), realistic(rng, 5.15))["verdict"] != "regression", seed


def test_thirty_percent_speedup_is_an_improvement():
    rng = np.random.default_rng(0)
    assert judge(realistic(rng, 5.0), realistic(rng, 3.5))["verdict"] == "improvement"


def test_mann_whitney_matches_the_textbook_value():
    # U = 9 of 9 pairs; normal approximation with continuity correction: z = 4 / sqrt(63/12).
    expected = 0.5 * math.erfc((4 / math.sqrt(63 / 12)) / math.sqrt(2))
    assert mann_whitney_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(expected, rel=1e-12)
    assert mann_whitney_greater([1, 2, 3], [4, 5, 6]) > 0.9


def test_rank_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(7)
    p = np.array([mann_whitney_greater(rng.normal(size=80), rng.normal(size=80)) for _ in range(400)])
    assert 0.02 < np.mean(p < 0.05) < 0.09


def test_ties_are_handled():
    assert mann_whitney_greater([1, 1, 1, 1], [1, 1, 1, 1]) == 1.0  # no evidence at all
    tied = mann_whitney_greater([2, 2, 3, 3, 3], [1, 1, 2, 2, 2])
    assert 0 < tied < 0.05


def test_summary_and_intervals():
    rng = np.random.default_rng(1)
    x = realistic(rng, 5.0, 400)
    s = summarize(x)
    assert s["n"] == 400 and s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    lo, hi = s["median_ci95_ms"]
    assert lo <= s["p50_ms"] <= hi and hi - lo < 0.05 * s["p50_ms"]
    ratio, rlo, rhi = ratio_of_medians(x * 1.2, x)
    assert ratio == pytest.approx(1.2) and rlo < 1.2 < rhi
    assert bootstrap_median_ci(np.full(10, 0.002)) == (0.002, 0.002)
