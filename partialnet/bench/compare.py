"""Is the candidate slower than the baseline? A verdict that neither cries wolf nor waves noise through.

Every matched row gets one of four outcomes, decided in this order:

**noisy** (unreliable: rerun) when any check below fires. Both ask whether the two runs can carry a
verdict at all at the requested gate `max_slowdown` (m):

1. *Unresolved.* An "ok" (or "improvement") must rule out a gate-sized slowdown. When the bootstrap
   95 % interval of the ratio of medians still reaches the gate edge (upper end >= 1 + m) AND is wider
   than the gate itself (upper / lower > 1 + m), the samples are too few for their spread to say either
   way: passing would be absence of evidence, not evidence of absence. (An interval narrower than the
   gate that merely touches its edge is a precise measurement near the gate, and rerunning would not
   change it; the point estimate decides.) A regression is not second-guessed by this check: the rank
   test and the median already agree it is slower by more than the gate. With m = 0 the gate is "any
   significant slowdown" and has no edge to reach, so this check is off.
2. *Shape.* Interference on a shared machine only ever adds time: it lifts the median and leaves the
   fast floor (the 5th percentile: the undisturbed iterations) where it was, while a slower build moves
   both. So each side's lift, median / p5, measures how far interference pushed its median, and the
   row is noisy when the two lifts differ by more than the gate:
   |log lift_c - log lift_b| > log(1 + max(m, 5 %)). Since that difference equals
   log(median ratio) - log(floor ratio), it reads: the median moved by a gate more than the floor did,
   so the machine moved, not the model. Two runs of one checkpoint on a busy 2-core VM look exactly
   like this: a 2-3x "regression" of the median (a slow mode took over half of one run), an unchanged
   floor, std/mean CoV near 1. A uniformly slower build (every sample x 1.5) has equal lifts and is
   never noisy, however dispersed. The 5 % floor on the tolerance is the shape difference two runs of
   one build show on a quiet machine; below it a difference says nothing (and --max-slowdown 0 would
   otherwise make every row noisy).

Why not a limit on each side's CoV in these checks? std/mean is dominated by a few preemption spikes that leave the
median alone: quick runs on this project's 2-core VM measure 0.5-1.0 on rows whose medians repeat within
5 %, so any limit tied to a 10 % gate calls every row noisy. A robust spread (MAD, IQR) of one run is
better but still cannot tell a dispersed run that is merely slower everywhere (every quantile moved: a
real regression) from one whose median moved alone; comparing the two runs' shapes can. Both CoVs are
reported (std/mean, as `bench` prints them) so a reader sees what the shape check saw. Apart from these
checks, a row `bench` would mark unstable or disturbed (`partialnet.bench.stability`, recomputed here from
the samples and the recorded load) gets no verdict either, however clear its samples look: its reason says
what they alone read, and a pass that `--noise ignore` gives such a row over a would-be regression is
warned about.

3. *Untestable.* With so few samples that even a candidate slower in every one of them could not reach
   p < alpha (four per side at the default alpha), the rank test can find no regression, so the row can
   pass no gate either.
4. *Unconfirmed.* The whole interval lies beyond the gate, yet the rank test does not confirm a slowdown:
   the median moved but the samples overlap too much to say so. Such a row is never "ok".

**regression** only if BOTH hold: the slowdown is statistically significant on the raw samples
(one-sided Mann-Whitney U, p < alpha) AND the median got slower by more than `max_slowdown`.
Significance alone flags 1 % shifts on quiet machines; a threshold alone flags noise on busy ones.
**improvement** is the mirror image; everything else is **ok**.

Limits: a run disturbed from its first iteration to its last has no fast floor to betray it and looks
like a slower build, and the floor itself drifts between runs on a shared VM (up to ~10 % measured here),
which no statistic of the two files can see; only a rerun or an interleaved A/B (`bench --ab`) can tell.
A file compared with itself (or two files holding the same samples) is said to be so, and every row is
trivially ok.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from partialnet.bench.protocols import protocol_difference
from partialnet.bench.results import KEY_FIELDS, row_key
from partialnet.bench.stats import mann_whitney_greater, median_ms, ratio_of_medians  # median_ms: from the raw samples, never a file's summary
from partialnet.errors import BadInput

DEFAULT_ALPHA = 0.01
DEFAULT_MAX_SLOWDOWN = 0.10
NOISE_POLICIES = ("fail", "ignore")
DEFAULT_NOISE = "fail"
MISSING_POLICIES = ("fail", "ignore")  # a baseline row the candidate did not measure: the gate never saw it
DEFAULT_MISSING = "fail"
FLOOR_PERCENTILE = 5
MIN_SHAPE_TOLERANCE = 0.05
WHY_ALL_ROWS_UP_TO = 6  # with this many rows or fewer, every row's reason is printed, not only the non-ok ones


@dataclass
class RowVerdict:
    key: tuple
    baseline_p50_ms: float
    candidate_p50_ms: float
    baseline_p5_ms: float
    candidate_p5_ms: float
    baseline_cov: float
    candidate_cov: float
    baseline_n: int
    candidate_n: int
    ratio: float
    ratio_ci95: tuple[float, float]
    floor_ratio: float
    p_slower: float
    p_faster: float
    verdict: str  # "regression" | "improvement" | "ok" | "noisy"
    why: str
    noise_reasons: list[str] = field(default_factory=list)  # "unresolved", "shape", "untestable", "unconfirmed", "marked"
    marks: list[str] = field(default_factory=list)  # why a side's row is unstable or disturbed
    samples_alone: str | None = None  # a marked row's verdict had it not been marked ("regression": passed only by --noise ignore)

    def to_dict(self) -> dict:
        out = dict(zip(KEY_FIELDS, self.key))
        out.update({k: v for k, v in asdict(self).items() if k != "key"})
        out["ratio_ci95"] = list(self.ratio_ci95)
        return out


def floor_ms(samples) -> float:
    """The 5th percentile: the run's undisturbed iterations, steadier across runs than its minimum."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), FLOOR_PERCENTILE)) * 1e3


def std_cov(samples) -> float:
    """std/mean with the definition of `stats.summarize` (the CoV `bench` prints), without its bootstrap.

    Reported so that the number a user saw in `bench` is the number `compare` shows; the verdict does
    not use it (see the module docstring).
    """
    x = np.asarray(samples, dtype=np.float64)
    mean = float(x.mean())
    return float(x.std(ddof=1) / mean) if len(x) > 1 and mean > 0 else 0.0


def gate_pct(max_slowdown: float) -> str:
    return f"{max_slowdown * 100 + 0.0:.3g}%"  # + 0.0: a gate of -0.0 reads 0%


def unresolved(low: float, high: float, max_slowdown: float) -> bool:
    """The interval reaches the gate edge and is wider than the gate: it can rule a gate-sized slowdown neither in nor out."""
    edge = 1 + max_slowdown
    return max_slowdown > 0 and high >= edge and high / low > edge


def untestable(n_baseline: int, n_candidate: int, alpha: float) -> bool:
    """Even a candidate slower in every sample could not reach p < alpha: the test can clear nothing either."""
    best = mann_whitney_greater(np.arange(n_candidate) + n_baseline, np.arange(n_baseline))
    return best >= alpha


def shape_disagrees(ratio: float, floor_ratio: float, max_slowdown: float) -> bool:
    """The median moved by a gate more (or less) than the fast floor: interference, not code, moved it.

    Deliberately no exception for a floor ratio that is itself beyond the gate: between two runs on a
    busy VM the floor drifts by about 10 % too, so "slower at the floor as well" does not rescue a 2.4x
    median.
    """
    gap = abs(math.log(ratio) - math.log(floor_ratio))
    return gap > math.log(1 + max(max_slowdown, MIN_SHAPE_TOLERANCE))


def judge(baseline, candidate, alpha: float = DEFAULT_ALPHA, max_slowdown: float = DEFAULT_MAX_SLOWDOWN, interleaved: bool = False) -> dict:
    """The verdict for one pair of raw sample sets (seconds), with the numbers behind it and a reason.

    `interleaved`: the two sets alternated in one process (bench --ab), so no interference fell on one side
    only, and a median that moves unlike the floor is the models' own shape (a quick A/B of T2 against T0 was
    called noisy by it), not a sign that the machine moved between two runs."""
    ratio, low, high = ratio_of_medians(candidate, baseline)
    stats = {
        "baseline_p50_ms": median_ms(baseline), "candidate_p50_ms": median_ms(candidate),
        "baseline_p5_ms": floor_ms(baseline), "candidate_p5_ms": floor_ms(candidate),
        "baseline_cov": std_cov(baseline), "candidate_cov": std_cov(candidate),
        "baseline_n": len(baseline), "candidate_n": len(candidate),
        "ratio": ratio, "ratio_ci95": (low, high),
        "p_slower": mann_whitney_greater(candidate, baseline), "p_faster": mann_whitney_greater(baseline, candidate),
    }
    stats["floor_ratio"] = stats["candidate_p5_ms"] / stats["baseline_p5_ms"]
    if stats["p_slower"] < alpha and ratio > 1 + max_slowdown:
        verdict = "regression"
    elif stats["p_faster"] < alpha and ratio < 1 / (1 + max_slowdown):
        verdict = "improvement"
    else:
        verdict = "ok"
    reasons = [name for name, hit in (
        ("unresolved", verdict != "regression" and unresolved(low, high, max_slowdown)),
        ("shape", not interleaved and shape_disagrees(ratio, stats["floor_ratio"], max_slowdown)),
        ("untestable", untestable(len(baseline), len(candidate), alpha)),
        ("unconfirmed", verdict != "regression" and low > 1 + max_slowdown),
    ) if hit]
    if "untestable" in reasons:  # too few samples is the whole story: their overlap or interval says nothing more
        reasons = ["untestable", *(r for r in reasons if r == "shape")]
    if reasons:
        verdict = "noisy"
    stats.update(verdict=verdict, noise_reasons=reasons)
    stats["why"] = explain(stats, alpha, max_slowdown)
    return stats


def side_marks(row: dict) -> list[str]:
    """Why one side's row cannot carry a verdict: its samples' dispersion (recomputed here, not read from the
    file) and the machine load its worker recorded."""
    from partialnet.bench.load import disturbance
    from partialnet.bench.stability import instability

    unstable, disturbed = instability(row["samples_s"]), disturbance(row.get("machine_load"))
    return [f"unstable ({unstable})"] * bool(unstable) + [f"disturbed ({disturbed})"] * bool(disturbed)


def unjudged_if_marked(v: dict, baseline_row: dict, candidate_row: dict) -> dict:
    """No verdict, however clear it looks, from a row marked unstable or disturbed: noisy, rerun."""
    marks = [f"the {side} row is {m}" for side, row in (("baseline", baseline_row), ("candidate", candidate_row)) for m in side_marks(row)]
    if marks:
        before = v["why"]
        v.update(verdict="noisy", noise_reasons=[*v["noise_reasons"], "marked"], marks=marks, samples_alone=v["verdict"])
        rest = f"; {before.removeprefix('noisy: ')}" if before.startswith("noisy") else f" (the samples alone read: {before})"
        v["why"] = f"noisy: rerun: {'; '.join(marks)}{rest}"
    return v


def explain(v: dict, alpha: float, max_slowdown: float) -> str:
    """One line a reviewer can check by hand: the ratio, its interval, the test, and what decided."""
    gate = gate_pct(max_slowdown)
    low, high = v["ratio_ci95"]
    ratio = f"median ratio {v['ratio']:.2f} (95% CI {low:.2f}-{high:.2f})"
    if v["verdict"] == "improvement":
        test = f"Mann-Whitney U one-sided p(faster)={v['p_faster']:.2g} < {alpha:g}"
        return f"improvement: {ratio}, {test}, beyond the {gate} gate"
    significant = v["p_slower"] < alpha
    test = f"Mann-Whitney U one-sided p={v['p_slower']:.2g} {'<' if significant else '>='} {alpha:g}"
    if v["verdict"] == "regression":
        return f"regression: {ratio}, {test}, above the {gate} gate"
    if v["verdict"] == "noisy":
        reasons = "; ".join(_noise_reason(v, r, max_slowdown) for r in v["noise_reasons"])
        return f"noisy: {ratio}, {test}; {reasons}; {_advice(v['noise_reasons'])}"
    if significant:
        return f"ok: {ratio}, {test} but within the {gate} gate"
    below = f", and the interval stays below the {gate} gate" if max_slowdown > 0 else ""
    return f"ok: {ratio}, {test}: no significant slowdown{below}"


def _noise_reason(v: dict, reason: str, max_slowdown: float) -> str:
    """Which side is to blame and by how much, so the user knows which run to redo."""
    covs = f"CoV baseline {v['baseline_cov']:.2f}, candidate {v['candidate_cov']:.2f}"
    if reason == "unresolved":
        gate = gate_pct(max_slowdown)
        return (f"the interval reaches past the {gate} gate ({1 + max_slowdown:.2f}) and is wider than the gate: "
                f"too few samples for their spread to rule a {gate} slowdown in or out ({covs})")
    if reason == "untestable":
        return (f"{v['baseline_n']} baseline and {v['candidate_n']} candidate samples: even a candidate slower in every "
                "sample could not make the rank test significant, so this row can neither fail nor pass the gate")
    if reason == "unconfirmed":
        return (f"the whole interval lies past the {gate_pct(max_slowdown)} gate but the rank test does not confirm a "
                f"slowdown: the two runs' samples overlap too much to judge ({covs})")
    lifts = {side: v[f"{side}_p50_ms"] / v[f"{side}_p5_ms"] for side in ("baseline", "candidate")}
    worse = max(lifts, key=lifts.get)
    other = "baseline" if worse == "candidate" else "candidate"
    return (f"5th-percentile ratio {v['floor_ratio']:.2f}: the {worse}'s median sits {lifts[worse]:.2f}x above its own "
            f"5th percentile, the {other}'s {lifts[other]:.2f}x (CoV {worse} {v[f'{worse}_cov']:.2f}, {other} "
            f"{v[f'{other}_cov']:.2f}): the machine moved, not the model")


def _advice(reasons: list[str]) -> str:
    more = " with more iterations (a longer --protocol, such as latency)" if {"unresolved", "untestable", "unconfirmed"} & set(reasons) else ""
    quieter = " on a quieter machine (or interleave the two: bench --ab)" if "shape" in reasons else ""
    return f"rerun{more}{quieter}"


def check_gate(alpha: float, max_slowdown: float, noise: str = DEFAULT_NOISE, missing: str = DEFAULT_MISSING) -> tuple[str, str]:
    """The gate's options, checked before any result file is read; the two policies as named (any case typed)."""
    from partialnet.inputs import finite_number
    from partialnet.options import choice

    if not (finite_number(alpha) and 0 < alpha < 1):  # a Python caller may pass None or a string
        raise BadInput(f"--alpha {alpha}: expected a number strictly between 0 and 1")
    if not (finite_number(max_slowdown) and 0 <= max_slowdown <= 1):  # "10" meant as 10 % would gate at 1000 %
        raise BadInput(f"--max-slowdown {max_slowdown}: expected a fraction from 0 to 1 (0.10 = 10 %)")
    return choice(noise, NOISE_POLICIES, "--noise"), choice(missing, MISSING_POLICIES, "--missing")


def _check_machines(baseline: dict, candidate: dict, allow_different_machines: bool) -> str | None:
    """Same hardware: the fingerprint (recomputed from each record by check_machine, never read) and, where both
    record them, the ISA flags, since a cloud CPU can be named "Intel(R) Xeon(R) Processor" with AMX or without."""
    from partialnet.machine import different_hardware

    differs = different_hardware(baseline["machine"], candidate["machine"])
    if differs and not allow_different_machines:
        raise BadInput(f"results come from different machines ({differs}); pass --allow-different-machines to compare anyway")
    return differs


def software_difference(baseline: dict, candidate: dict) -> list[str]:
    """What the two runs were timed with that differs beside the build: a runtime upgraded between baseline and
    candidate, or another usable core count (a CI job pinned with taskset). Said, not refused: the verdict may be
    theirs rather than the build's, which a reader of the gate must know."""
    from partialnet.inputs import inert

    def shown(text) -> str:  # a stranger's text, cut where it says so: a 5,000-digit version read as a plausible one
        text = inert(str(text))
        return text if len(text) <= 40 else text[:39] + "…"

    b_ver, c_ver = (((m.get("machine") or {}).get("versions") or {}) for m in (baseline, candidate))
    differ = [f"{shown(name)} {shown(b_ver.get(name, 'not recorded'))} vs {shown(c_ver.get(name, 'not recorded'))}"
              for name in sorted(set(b_ver) | set(c_ver)) if b_ver.get(name) != c_ver.get(name)]
    b_cores, c_cores = (((m.get("machine") or {}).get("cpu") or {}).get("usable_cores") for m in (baseline, candidate))
    if isinstance(b_cores, int) and isinstance(c_cores, int) and b_cores != c_cores:
        differ.append(f"usable cores {b_cores} vs {c_cores}")
    return differ[:8]


# what a row's samples depend on beside its key: refused when they differ, as different machines are
# precision: the one asked for; an OpenVINO fp16 IR runs (and its row says) fp32, so its key is an fp32 build's
SETTINGS_THAT_MATTER = ("device", "imgsz", "precision", "channels_last", "compile", "cuda_graphs", "streams", "wait")


def _unmatched_hint(baseline: dict, candidate: dict) -> str:
    """Why no row matched, where one part of the key tells the runs apart (a CI job that changed --threads)."""
    from partialnet.bench.results import KEY_FIELDS

    for at, field_name in enumerate(KEY_FIELDS):
        def rest(rows):
            return {tuple(v for i, v in enumerate(row_key(r)) if i != at) for r in rows}

        b_vals, c_vals = ({str(row_key(r)[at]) for r in data["rows"]} for data in (baseline, candidate))
        if b_vals.isdisjoint(c_vals) and rest(baseline["rows"]) & rest(candidate["rows"]):
            return f"; the rows differ in {field_name} only: {', '.join(sorted(b_vals))[:80]} vs {', '.join(sorted(c_vals))[:80]}"
    return ""


def _setting(settings: dict, name: str):
    """A setting as a reader of the refusal needs it: null is "off" for --streams (one synchronous request), and
    elsewhere a value the file does not record (an older or hand-made file); both had read "None"."""
    value = settings.get(name)
    if value is None:
        return "off" if name == "streams" else "not recorded"
    return value


def _check_settings(baseline: dict, candidate: dict, base_rows: dict, cand_rows: dict, allow: bool) -> None:
    """Rows matched by their key must also have been timed alike: a 128x128 candidate is not a 64x64 build
    that regressed, and an async row is no sync row. The input size is never waived; the rest is with
    --allow-different-settings (judging a setting on purpose: `bench --ab` is the better tool for that)."""
    for key in [k for k in cand_rows if k in base_rows]:
        b, c = base_rows[key], cand_rows[key]
        if b.get("imgsz") != c.get("imgsz"):
            raise BadInput(f"row {' / '.join(map(str, key))} was timed at {b.get('imgsz')} in the baseline and {c.get('imgsz')} in the "
                           "candidate; latencies at two input sizes are not one build's before and after")
    if allow:
        return
    protocols = protocol_difference(baseline["protocol"], candidate["protocol"])
    differ = [f"protocol {protocols}"] if protocols else []
    b_set, c_set = baseline.get("settings") or {}, candidate.get("settings") or {}
    differ += [f"{name} {_setting(b_set, name)} vs {_setting(c_set, name)}" for name in SETTINGS_THAT_MATTER if b_set.get(name) != c_set.get(name)]
    modes = sorted({f"{' / '.join(map(str, k))} {base_rows[k].get('mode')} vs {cand_rows[k].get('mode')}"
                    for k in cand_rows if k in base_rows and base_rows[k].get("mode") != cand_rows[k].get("mode")})
    differ += [f"mode of {m}" for m in modes[:2]]
    runs = baseline.get("mode") or "one model per row", candidate.get("mode") or "one model per row"  # "ab": alternated beside another model
    differ += [f"run {runs[0]} vs {runs[1]}"] if runs[0] != runs[1] else []
    if differ:
        raise BadInput(f"baseline and candidate were timed differently ({'; '.join(differ)}); rerun one like the other, "
                       "or pass --allow-different-settings to judge the difference itself")


def same_input_reason(baseline: dict, candidate: dict, base_rows: dict, cand_rows: dict, same_file: bool) -> str | None:
    """Why comparing these two is comparing a measurement with itself, or None when it is not."""
    if same_file:
        return "are the same file"
    if baseline == candidate:
        return "have identical content"
    same_keys = base_rows.keys() == cand_rows.keys()
    if same_keys and all(base_rows[k]["samples_s"] == cand_rows[k]["samples_s"] for k in base_rows):
        return "hold identical samples in every row"
    return None


def _trivial(key: tuple, b: list, alpha: float, max_slowdown: float) -> RowVerdict:
    """A row compared with itself: ok by construction, whatever its noise (the rank test would say p ~ 0.5)."""
    v = judge(b, b, alpha, max_slowdown)
    v.update(verdict="ok", noise_reasons=[], why="ok: identical samples on both sides (the same measurement twice)")
    return RowVerdict(key, **v)


def _rows_by_key(result: dict) -> dict[tuple, dict]:
    """Measured rows by their key (a key held twice, whatever its status, was refused when the file was read)."""
    return {row_key(row): row for row in result["rows"] if row["status"] == "ok"}


def compare_results(
    baseline: dict,
    candidate: dict,
    alpha: float = DEFAULT_ALPHA,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    allow_different_machines: bool = False,
    noise: str = DEFAULT_NOISE,
    same_file: bool = False,
    missing: str = DEFAULT_MISSING,
    allow_different_settings: bool = False,
) -> dict:
    noise, missing = check_gate(alpha, max_slowdown, noise, missing)
    machines_differ = _check_machines(baseline, candidate, allow_different_machines)
    base_rows, cand_rows = _rows_by_key(baseline), _rows_by_key(candidate)
    _check_settings(baseline, candidate, base_rows, cand_rows, allow_different_settings)
    same = same_input_reason(baseline, candidate, base_rows, cand_rows, same_file)
    verdicts = []
    for key in [k for k in cand_rows if k in base_rows]:
        b, c = base_rows[key]["samples_s"], cand_rows[key]["samples_s"]
        if same is not None or b == c:
            verdicts.append(_trivial(key, b, alpha, max_slowdown))
        else:
            verdicts.append(RowVerdict(key, **unjudged_if_marked(judge(b, c, alpha, max_slowdown), base_rows[key], cand_rows[key])))
    failed = [{"key": list(row_key(r)), "reason": str(r.get("reason") or "")[:300]}
              for r in candidate["rows"] if r["status"] == "failed" and row_key(r) in base_rows]
    gone = _not_measured_in(candidate, base_rows, cand_rows, failed)
    unmeasured = unmeasured_in_baseline(baseline, candidate)
    unmeasured_keys = [u["key"] for u in unmeasured]
    if not verdicts and not failed and not any(g["reason"].startswith("skipped") for g in gone):  # every runtime broke: say which
        _refuse_nothing_in_common(baseline, candidate, unmeasured)
    return {
        "alpha": alpha,
        "max_slowdown": max_slowdown,
        "noise": noise,
        "missing": missing,
        "same_machine": machines_differ is None,
        "machines_differ": machines_differ,  # how, where --allow-different-machines let them be compared
        "software_differs": software_difference(baseline, candidate),  # runtime versions, usable cores: said beside the verdicts
        "load_unread": _load_unread(base_rows, cand_rows, verdicts),  # sides whose judged rows cannot show a disturbance
        "same_input": same is not None,
        "same_input_reason": same,
        "rows": [v.to_dict() for v in verdicts],
        "failed_in_candidate": failed,  # measured in the baseline, failed in the candidate: the gate cannot clear it
        "only_in_baseline": gone,
        "only_in_candidate": [list(k) for k in cand_rows if k not in base_rows and list(k) not in unmeasured_keys],
        "unmeasured_in_baseline": unmeasured,  # the candidate has the row, the baseline's failed or was skipped: not judged, rerun it
        "regressions": sum(v.verdict == "regression" for v in verdicts),
        "noisy": sum(v.verdict == "noisy" for v in verdicts),
        "noisy_reading_slower": [row_label(dict(zip(KEY_FIELDS, v.key))) for v in verdicts if v.samples_alone == "regression"],
    }


def _load_unread(base_rows: dict, cand_rows: dict, verdicts: list) -> list[str]:
    """The sides ("baseline", "candidate") with a judged row that records no machine-load reading."""
    from partialnet.bench.load import has_reading

    keys = [v.key for v in verdicts]
    return [side for side, rows in (("baseline", base_rows), ("candidate", cand_rows))
            if any(not has_reading(rows[k].get("machine_load")) for k in keys)]


def _refuse_nothing_in_common(baseline: dict, candidate: dict, unmeasured: list[dict]) -> None:
    if unmeasured:
        first = unmeasured[0]
        raise BadInput(f"baseline row {' / '.join(map(str, first['key']))} {first['status']} ({first['reason']}): "
                       "there is nothing to compare the candidate's row with; rerun the baseline")
    raise BadInput("no rows in common (matched by model, runtime, precision, batch, threads)" + _unmatched_hint(baseline, candidate))


def unmeasured_in_baseline(baseline: dict, candidate: dict) -> list[dict]:
    """Rows the candidate holds (whatever their status) that the baseline failed or skipped. They were reported
    as "only in candidate", or not at all where both failed, and "no rows in common" where nothing else matched:
    the reader looked for a difference in the keys, where the baseline has to be run again."""
    statuses = {row_key(r): r["status"] for r in candidate["rows"]}
    return [{"key": list(row_key(r)), "status": r["status"], "reason": str(r.get("reason") or "no reason given")[:300], "candidate": statuses[row_key(r)]}
            for r in baseline["rows"] if r["status"] != "ok" and row_key(r) in statuses]


def _not_measured_in(candidate: dict, base_rows: dict, cand_rows: dict, failed: list[dict]) -> list[dict]:
    """Baseline rows the candidate skipped (with its reason) or left out: a runtime that stopped installing
    would otherwise take its rows out of the gate without a word."""
    skipped = {row_key(r): str(r.get("reason") or "")[:300] for r in candidate["rows"] if r["status"] == "skipped"}
    failed_keys = {tuple(f["key"]) for f in failed}
    gone = [k for k in base_rows if k not in cand_rows and k not in failed_keys]
    return [{"key": list(k), "reason": f"skipped: {skipped[k] or 'no reason given'}" if k in skipped else "absent from the candidate"}
            for k in gone]


def row_label(row: dict) -> str:
    return f"{row['model']} / {row['runtime']} / {row['precision']} / b{row['batch']} / {row['threads']}t"


def why_lines(report: dict) -> list[str]:
    """Reasons worth printing under the table: every row when there are few, else the ones that are not ok."""
    rows = report["rows"]
    shown = rows if len(rows) <= WHY_ALL_ROWS_UP_TO else [r for r in rows if r["verdict"] != "ok"]
    return [f"{row_label(r)}: {r['why']}" for r in shown]


def failure(report: dict) -> str | None:
    """The one-line reason the gate fails (exit 1), or None when it passes (exit 0).

    A regression always fails. A noisy row fails under the default `--noise fail`, with a message that
    says to rerun rather than that the code got slower; `--noise ignore` reports it and passes.
    """
    gate = f"beyond {gate_pct(report['max_slowdown'])} (p < {report['alpha']:g})"
    noisy = report["noisy"]
    failed = report.get("failed_in_candidate", [])
    if report["regressions"]:
        also = f"; also {noisy} noisy row(s) to rerun" if noisy else ""
        also += f"; also {len(failed)} row(s) failed in the candidate" if failed else ""
        gone = len(report["only_in_baseline"]) if report.get("missing", DEFAULT_MISSING) == "fail" else 0
        also += f"; also {gone} baseline row(s) not measured in the candidate" if gone else ""
        return f"{report['regressions']} latency regression(s) {gate}{also}"
    if failed:
        first = failed[0]
        return (f"{len(failed)} row(s) measured in the baseline failed in the candidate, so the gate cannot clear them: "
                f"{' / '.join(map(str, first['key']))}: {first['reason'] or 'no reason given'}")
    missing = report["only_in_baseline"] if report.get("missing", DEFAULT_MISSING) == "fail" else []
    if missing:
        first = missing[0]
        return (f"{len(missing)} row(s) measured in the baseline were not measured in the candidate, so the gate never saw them: "
                f"{' / '.join(map(str, first['key']))}: {first['reason']} (--missing ignore passes such rows)")
    judged = [r for r in report["rows"] if r["verdict"] != "noisy"]
    if not judged and report.get("unmeasured_in_baseline"):
        first = report["unmeasured_in_baseline"][0]
        return (f"no row was judged: the baseline's row {' / '.join(map(str, first['key']))} {first['status']} ({first['reason']})"
                + (f" and the {len(report['rows'])} row(s) in common were noisy" if report["rows"] else "") + "; rerun the baseline")
    if not judged and report["only_in_baseline"]:  # --missing ignore, with nothing judged beside the missing rows
        first = report["only_in_baseline"][0]
        what = (f"the candidate's {len(report['rows'])} row(s) in common were all noisy (--noise ignore) and it did not measure "
                f"the baseline's {len(report['only_in_baseline'])} other row(s)" if report["rows"]
                else f"the candidate measured none of the baseline's {len(report['only_in_baseline'])} row(s)")
        return (f"no row was judged: {what} "
                f"({' / '.join(map(str, first['key']))}: {first['reason']}); --missing ignore passes missing rows beside judged ones, "
                "not a comparison of nothing")
    if noisy and report["noise"] == "fail":
        return (f"noisy: rerun {noisy} row(s): {noise_summary(report)} (see each row's reason; bench --ab interleaves the two on a "
                "busy machine; --noise ignore reports noisy rows without failing)")
    return None


def noise_summary(report: dict) -> str:
    """Why the noisy rows got no verdict, by kind: a marked row, a row of too few samples and a row whose two runs
    disagree in shape need different reruns."""
    rows = [r for r in report["rows"] if r["verdict"] == "noisy"]
    marked = [r for r in rows if "marked" in r["noise_reasons"]]
    few = [r for r in rows if r not in marked and "untestable" in r["noise_reasons"]]
    kinds = [(len(marked), "marked unstable or disturbed (no verdict from such a row"
              + (f"; {len(report['noisy_reading_slower'])} read as a regression on their samples alone)" if report["noisy_reading_slower"] else ")")),
             (len(few), "with too few samples for the rank test"),
             (len(rows) - len(marked) - len(few), f"whose samples cannot tell a {gate_pct(report['max_slowdown'])} slowdown from noise")]
    return "; ".join(f"{n} {what}" for n, what in kinds if n)


def is_same_file(baseline, candidate) -> bool:
    """One file under two names (a symlink, a hard link, ./a vs a) is the same measurement."""
    try:
        return os.path.samefile(baseline, candidate)
    except OSError:
        return False
