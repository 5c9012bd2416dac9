"""Compare any runner against a reference runner and decide, with stated tolerances, if they agree.

fp32 artifacts must match to round-off (max |Δ| bounded). fp16 artifacts cannot, so they are judged
by the direction of the logits (cosine) and by whether they pick the same class (top-1 agreement).
INT8 artifacts are judged on real images only (random inputs have no class to keep): top-1 agreement
with PyTorch, and held-out accuracy where a labelled dataset is given.
Every report also gives the tightest tolerance each metric would have passed, so a user can see how
much room there was, not just a verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
import numpy as np

from partialnet.errors import BadInput
from partialnet.rounding import apart
from partialnet.runtimes import Runner


@dataclass(frozen=True)
class Tolerances:
    max_abs: float | None = None  # largest allowed |candidate - reference| over all logits
    min_cosine: float | None = None  # smallest allowed per-sample cosine similarity
    min_top1: float | None = None  # smallest allowed fraction of samples with the same argmax
    max_accuracy_drop: float | None = None  # largest allowed drop of held-out top-1 vs PyTorch, in points

    def merged(self, **overrides) -> "Tolerances":
        values = asdict(self)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return Tolerances(**values)


DEFAULT_TOLERANCES = {
    "fp32": Tolerances(max_abs=1e-4, min_cosine=0.99999, max_accuracy_drop=0.5),
    "fp16": Tolerances(min_cosine=0.999, min_top1=0.9, max_accuracy_drop=0.5),
    # an fp32 artifact computed in bf16 (3 fewer mantissa bits than fp16): T0 at 224 keeps cosine >= 0.9989 on digits
    "bf16": Tolerances(min_cosine=0.995, min_top1=0.9, max_accuracy_drop=0.5),
    # INT8 cannot match logits closely; it is judged on real images only: same class, and accuracy kept.
    "int8": Tolerances(min_top1=0.95, max_accuracy_drop=1.5),
}


@dataclass
class CaseResult:
    name: str
    batch: int
    samples: int
    max_abs: float
    max_rel: float
    min_cosine: float
    top1_agreement: float
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class ParityReport:
    candidate: str
    reference: str
    precision: str
    tolerances: Tolerances
    cases: list[CaseResult] = field(default_factory=list)
    accuracy: dict | None = None  # held-out top-1 of both on a real dataset (see partialnet.digits)
    offline: dict | None = None  # where the runtime is absent: the exporter's checks that ran instead (Core ML off macOS)
    source: dict | None = None  # the reference's source record: which checkpoint, and which of its copies
    computed: str | None = None  # what the runtime says it computed (an fp16 OpenVINO IR on a CPU without fp16 units: fp32)
    default_differs: str | None = None  # what the runtime computes when loaded without the pinning this check used (OpenVINO's bf16)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases) and not (self.accuracy and self.accuracy["failures"])

    def tightest_passing(self) -> dict:
        """The strictest tolerance each metric would still have passed, over all cases."""
        return {
            "max_abs": max(c.max_abs for c in self.cases),
            "min_cosine": min(c.min_cosine for c in self.cases),
            "min_top1": min(c.top1_agreement for c in self.cases),
        }

    def failures(self) -> list[str]:
        found = [f"{c.name}: {f}" for c in self.cases for f in c.failures]
        return found + (self.accuracy["failures"] if self.accuracy else [])

    def to_dict(self) -> dict:
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "precision": self.precision,
            "passed": self.passed,
            "tolerances": asdict(self.tolerances),
            "tightest_passing": self.tightest_passing() if self.cases else None,
            "cases": [{**asdict(c), "passed": c.passed} for c in self.cases],
            "accuracy": self.accuracy,
            **({"offline": {k: v for k, v in self.offline.items() if k in ("verdict", "checks", "why", "interpreter_seconds")}}
               if self.offline else {}),
            **({"source": self.source} if self.source else {}),
            **({"computed": self.computed} if self.computed else {}),
            **({"default_differs": self.default_differs} if self.default_differs else {}),
        }

    @classmethod
    def from_offline(cls, report: dict) -> "ParityReport":
        """The parity part of an offline verification (an exporter's interpreter run), with its checks attached."""
        cases = [CaseResult(**{k: v for k, v in c.items() if k != "passed"}) for c in report["cases"]]
        return cls(report["candidate"], report["reference"], report["precision"], Tolerances(**report["tolerances"]), cases,
                   offline=report, accuracy=report.get("accuracy"))


def non_finite(out: np.ndarray, ref: np.ndarray) -> list[str]:
    """NaN or Inf on either side fails every gate: comparisons with NaN are false, so they would pass."""
    problems = []
    for side, values in (("the artifact", out), ("the PyTorch reference", ref)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        if bad:
            kinds = "NaN" if np.isnan(values).any() else "Inf"
            kinds = "NaN and Inf" if kinds == "NaN" and np.isinf(values).any() else kinds
            problems.append(f"{side} output has {bad} non-finite values ({kinds})")
    return problems


def metrics(out: np.ndarray, ref: np.ndarray) -> dict:
    out, ref = out.astype(np.float64), ref.astype(np.float64)
    diff = np.abs(out - ref)
    scale = max(float(np.abs(ref).max()), 1e-12)
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    cosine = np.sum(out * ref, axis=1) / np.maximum(norms, 1e-30)
    return {
        "max_abs": float(diff.max()),
        "max_rel": float(diff.max() / scale),
        "min_cosine": float(cosine.min()),
        "top1_agreement": float(np.mean(out.argmax(axis=1) == ref.argmax(axis=1))),
    }


def judge(values: dict, tol: Tolerances, problems: list[str] = ()) -> list[str]:
    if problems:
        return list(problems)
    failures = [f"{name} is {values[name]}" for name in values if not np.isfinite(values[name])]
    if tol.max_abs is not None and values["max_abs"] > tol.max_abs:
        # --atol 0 asks for bit-exact; a ratio just above 1 keeps the digits that tell it from 1 ("by 1.001x", never "by 1x")
        by = f" (by {apart(values['max_abs'] / tol.max_abs, 1.0)[0]}x)" if tol.max_abs > 0 else ""
        failures.append("max |Δ| {} > {}".format(*apart(values["max_abs"], tol.max_abs)) + by)
    if tol.min_cosine is not None and values["min_cosine"] < tol.min_cosine:
        failures.append("cosine {} < {}".format(*apart(values["min_cosine"], tol.min_cosine))
                        + f" (short by {tol.min_cosine - values['min_cosine']:.2e})")
    if tol.min_top1 is not None and values["top1_agreement"] < tol.min_top1:
        failures.append("top-1 agreement {} < {}".format(*apart(values["top1_agreement"], tol.min_top1, "%")))
    return failures


def compare(
    candidate: Runner,
    reference: Runner,
    cases: Iterable[tuple[str, list[np.ndarray]]],
    tolerances: Tolerances,
    precision: str,
) -> ParityReport:
    """Run every batch of every case through both runners (already prepared) and judge the metrics."""
    report = ParityReport(candidate.name, reference.name, precision, tolerances)
    for name, batches in cases:
        real = getattr(batches, "real", None)
        outs = np.concatenate([_run_artifact(candidate, b) for b in batches])[:real]
        refs = np.concatenate([_after_stop_check(reference.infer, b) for b in batches])[:real]
        if outs.shape != refs.shape:
            raise BadInput(
                f"{candidate.name} returns logits of shape {list(outs.shape)} but the reference gives {list(refs.shape)}: "
                "was it exported from this checkpoint?"
            )
        problems = non_finite(outs, refs)
        with np.errstate(all="ignore"):
            values = metrics(outs, refs)
        report.cases.append(
            CaseResult(name=name, batch=len(batches[0]), samples=len(outs), **values, failures=judge(values, tolerances, problems))
        )
    return report


def _after_stop_check(infer, batch: np.ndarray) -> np.ndarray:
    """One batch, after a stop check: `--samples 4096` on a big model is minutes of batches."""
    from partialnet.signals import raise_if_pending

    raise_if_pending()
    return infer(batch)


def _run_artifact(runner: Runner, batch: np.ndarray) -> np.ndarray:
    """The artifact's answer to one batch. An artifact that loads but fails in its runtime (a graph that contradicts
    its own declared shapes, an op the runtime cannot run) fails the check, with the runtime's first line."""
    from partialnet.errors import CheckFailed, PartialnetError
    from partialnet.signals import Interrupted

    try:
        return _after_stop_check(runner.infer, batch)
    except (PartialnetError, Interrupted, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # each runtime raises its own types (ONNX Runtime's Fail, OpenVINO's RuntimeError, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckFailed(f"the artifact does not run in {runner.name} on a batch of {len(batch)}: {first}") from None


def judge_accuracy(dataset: str, samples: int, artifact_top1: float, reference_top1: float, tol: Tolerances) -> dict:
    """Held-out top-1 of the artifact beside PyTorch's; a drop beyond the precision's gate fails (NaN-proof)."""
    delta = round((artifact_top1 - reference_top1) * 100, 6) + 0.0  # + 0.0: never print "-0.00"
    drop = -delta
    failures = []
    limit = tol.max_accuracy_drop
    if limit is not None and not drop <= limit:
        failures.append(
            f"{dataset} top-1 {artifact_top1:.2%} vs PyTorch {reference_top1:.2%}: dropped {drop:.2f} points > {limit:g}"
        )
    return {
        "dataset": dataset,
        "samples": samples,
        "artifact_top1": artifact_top1,
        "reference_top1": reference_top1,
        "delta_points": delta,
        "max_drop_points": limit,
        "failures": failures,
    }


def random_batches(batch: int, samples: int, imgsz: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Standard-normal inputs: what normalised images look like to the network, sample by sample."""
    rng = np.random.default_rng(seed)
    count = max(1, -(-samples // batch))
    return [rng.standard_normal((batch, 3, *imgsz), dtype=np.float32) for _ in range(count)]


class Batches(list):
    """Input batches whose first `real` samples are the caller's; the rest only pad a static batch."""

    real: int | None = None


def image_batches(images: np.ndarray, batch: int) -> Batches:
    """Images in batches of `batch`, the last padded by repeating the first image (static-batch artifacts);
    the padding is left out of the comparison (it used to count as samples and weigh the first image twice)."""
    out = Batches()
    out.real = len(images)
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(images[:1], batch - len(chunk), axis=0)])
        out.append(chunk)
    return out
