"""What a target sends back is data from a machine partialnet does not control: parsed strictly, bounded,
reduced to the fields and shapes a local worker would have produced, or refused with what was wrong."""

from __future__ import annotations

import json
import math

from partialnet.errors import BadInput
from partialnet.shapes import Flag, Integer, ListOf, Loose, MapOf, Maybe, Number, Record, Text, conform

RESULT_FIELDS = {  # what a worker reply may carry, and the type each must have
    "status": str, "reason": str, "detail": str, "samples_s": list, "warmup": dict, "precision": str, "threads": int,
    "images_per_s": float, "parity_max_abs": float, "cold": dict, "memory": dict, "machine_load": dict, "async_run": dict,
    "pid": int, "imported_torch": bool,
    **{f"{k}_{side}{t}": kind for side in ("a", "b", "a2")
       for k, t, kind in (("samples", "_s", list), ("precision", "", str), ("threads", "", int), ("warmup", "", dict))},
}
MAX_SAMPLES = 1_000_000


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number partialnet accepts")


def parse_reply(data: bytes, what: str) -> dict:
    """One JSON object on the last line, NaN/Infinity refused; anything else is the target's fault."""
    lines = data.strip().splitlines()
    if not lines:
        raise BadInput(f"{what}: the target replied nothing")
    try:
        value = json.loads(lines[-1].decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{what}: the target's reply is not partialnet's JSON ({str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise BadInput(f"{what}: the target's reply is not a JSON object")
    return value


def checked_result(value: dict) -> dict:
    """A worker's result, field by field: unknown fields dropped, wrong types refused, samples finite,
    records reduced to numbers and short words (they are printed and saved as if measured here)."""
    clean = {}
    for key, kind in RESULT_FIELDS.items():
        if key not in value or value[key] is None:
            continue
        item = value[key]
        if kind is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        if not isinstance(item, kind) or (isinstance(item, bool) and kind is not bool):
            raise BadInput(f"the target's result has {key} of type {type(item).__name__}")
        if kind is float and not math.isfinite(item):
            raise BadInput(f"the target's result has a non-finite {key}")
        clean[key] = item[:300] if kind is str else conform(item, Loose(), f"the target's result's {key}") if kind is dict else item
    if clean.get("status") not in ("ok", "failed"):
        raise BadInput("the target's result has no status ok/failed")
    for key in [k for k in clean if k.startswith("samples_")]:
        samples = clean[key]
        if len(samples) > MAX_SAMPLES or not all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in samples):
            raise BadInput(f"the target's result has {key} that are not finite positive latencies")
    if clean["status"] == "ok" and not any(clean.get(k) for k in clean if k.startswith("samples_")):
        raise BadInput("the target's result has no latency samples")
    return clean


MACHINE = Record({  # as partialnet.machine.fingerprint writes it; what the planner and the result files read
    "id": Text(200), "os": Maybe(Text(200)), "python": Maybe(Text(200)), "hostname": Maybe(Text(200)),
    "cpu": Record({"model": Text(200), "logical_cores": Maybe(Integer(1)), "usable_cores": Maybe(Integer(1)),
                   "flags": Maybe(ListOf(Text(40), 64), null_as=[])}, omit_null=True),
    "gpus": Maybe(ListOf(Loose(), 16), null_as=[]),
    "versions": Maybe(MapOf(Text(80), 32), null_as={}),
}, omit_null=True)
PROBE = Record({
    "partialnet": Text(40),
    "availability": MapOf(MapOf(MapOf(Maybe(Text(300)), 16, key_limit=8), 8, key_limit=16), 64),  # runtime -> device -> precision -> why not
    "default_threads": Integer(1, 4096),
    "machine": MACHINE,
})
DOCTOR = Record({  # as partialnet.doctor.report writes it; what doctor_lines reads
    "cpu": Record({"model": Text(200), "logical_cores": Integer(1), "flags": ListOf(Text(40), 64)}),
    "usable_cpus": ListOf(Integer(0), 4096),
    "frequency": Record({"governors": Maybe(ListOf(Text(40), 8)), "boost": Maybe(Flag()), "smt_active": Maybe(Flag())}),
    "loadavg_1m": Maybe(Number()),
    "others_cores": Maybe(Number()),
    "busiest": ListOf(Record({"pid": Integer(0), "name": Text(32), "cores": Number(real=True)}), 10),
    "memory": Record({"total_gb": Maybe(Number()), "available_gb": Maybe(Number())}),
    "runtimes": ListOf(Record({"runtime": Text(40), "version": Maybe(Text(40)), "available": Flag()}), 32),
    "default_threads": Integer(1),
    "disturbed_limit_cores": Number(real=True),
    "advice": ListOf(Text(400), 16),
})
METRIC = Maybe(Number(real=True), null_as=math.nan)  # a NaN or Inf output was written as null (its failure says which)
VERIFY = Record({
    "candidate": Text(200), "reference": Text(200), "precision": Text(8),
    "tolerances": Record({k: Maybe(Number()) for k in ("max_abs", "min_cosine", "min_top1", "max_accuracy_drop")}),
    "cases": ListOf(Record({"name": Text(80), "batch": Integer(0), "samples": Integer(0), "failures": ListOf(Text(300), 16),
                            **dict.fromkeys(("max_abs", "max_rel", "min_cosine", "top1_agreement"), METRIC)}), 32),
    "accuracy": Maybe(Loose()),
})


def checked_probe(value: dict, what: str) -> dict:
    """A probe's reply reduced to what a local probe holds, each field of the shape the planner reads it as
    (another build calling itself the same version must not crash a command, hours into a fleet's rows)."""
    return conform(value, PROBE, f"{what}: the probe's reply is not partialnet's")


def checked_doctor(value: dict, what: str) -> dict:
    """A target's own `doctor` report, each field of the shape `doctor_lines` reads (it is printed as if
    examined here)."""
    return conform(value, DOCTOR, f"{what}: the target's doctor report is not partialnet's")


def whole_json(text: str, what: str):
    """A command's --json output (pretty-printed over many lines), NaN/Infinity refused."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BadInput(f"{what}: the target's reply is not partialnet's JSON ({str(exc)[:80]})") from None


def parity_report(value):
    """A verify --json reply rebuilt as the report a local verify returns."""
    from partialnet.verify import CaseResult, ParityReport, Tolerances

    report = conform(value, VERIFY, "the target's verify reply is not partialnet's")
    accuracy = report["accuracy"]
    if accuracy is not None and not isinstance(accuracy.get("failures"), list):
        raise BadInput("the target's verify reply is not partialnet's: accuracy.failures is not a list")
    return ParityReport(candidate=report["candidate"], reference=report["reference"], precision=report["precision"],
                        tolerances=Tolerances(**report["tolerances"]), cases=[CaseResult(**c) for c in report["cases"]], accuracy=accuracy)
