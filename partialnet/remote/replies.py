"""What a target sends back is data from a machine partialnet does not control: parsed strictly, bounded,
reduced to the fields and shapes a local worker would have produced, or refused with what was wrong."""

from __future__ import annotations

import json
import math

from partialnet.errors import BadInput

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
        clean[key] = item[:300] if kind is str else _record(item, key) if kind is dict else item
    if clean.get("status") not in ("ok", "failed"):
        raise BadInput("the target's result has no status ok/failed")
    for key in [k for k in clean if k.startswith("samples_")]:
        samples = clean[key]
        if len(samples) > MAX_SAMPLES or not all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in samples):
            raise BadInput(f"the target's result has {key} that are not finite positive latencies")
    if clean["status"] == "ok" and not any(clean.get(k) for k in clean if k.startswith("samples_")):
        raise BadInput("the target's result has no latency samples")
    return clean


def _record(item: dict, key: str, depth: int = 0) -> dict:
    """A nested record from the target: short keys; finite numbers, None, short strings, short number lists."""
    out = {}
    for k, v in list(item.items())[:64]:
        if not isinstance(k, str) or len(k) > 40:
            raise BadInput(f"the target's result has an odd key in {key}")
        if isinstance(v, bool) or v is None:
            out[k] = v
        elif isinstance(v, (int, float)):
            if not math.isfinite(v):
                raise BadInput(f"the target's result has a non-finite {key}.{k}")
            out[k] = v
        elif isinstance(v, str):
            out[k] = v[:120]
        elif isinstance(v, list) and len(v) <= 64 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
            out[k] = v
        elif isinstance(v, list) and len(v) <= 16 and all(isinstance(x, str) for x in v):
            out[k] = [x[:300] for x in v]
        elif isinstance(v, dict) and depth < 2:
            out[k] = _record(v, f"{key}.{k}", depth + 1)
        else:
            raise BadInput(f"the target's result has {key}.{k} of an unexpected shape")
    return out



def checked_probe(value: dict, what: str) -> dict:
    """A probe's reply reduced to what a local probe holds, each field of the shape the planner reads it as
    (another build calling itself the same version must not crash a command, hours into a fleet's rows)."""
    from partialnet.machine import check_machine

    table = value.get("availability")
    if not isinstance(table, dict) or len(table) > 64:
        raise BadInput(f"{what}: the probe's reply has no availability table")
    availability = {}
    for runtime, devices in table.items():
        if not isinstance(devices, dict) or not all(isinstance(p, dict) for p in devices.values()):
            raise BadInput(f"{what}: the probe's availability of {str(runtime)[:40]!r} is not partialnet's")
        availability[str(runtime)[:40]] = {str(d)[:16]: {str(p)[:8]: (None if r is None else str(r)[:300]) for p, r in list(row.items())[:16]}
                                           for d, row in list(devices.items())[:8]}
    machine = check_machine(value.get("machine"), f"{what}: the probe")
    cpu = machine["cpu"]
    threads = value.get("default_threads")
    return {
        "partialnet": str(value.get("partialnet"))[:40],
        "availability": availability,
        "default_threads": threads if type(threads) is int and 0 < threads <= 4096 else 1,
        "machine": {
            **{k: machine[k][:200] for k in ("id", "os", "python", "hostname") if isinstance(machine.get(k), str)},
            "cpu": {"model": cpu["model"][:200], **{k: cpu[k] for k in ("logical_cores", "usable_cores") if cpu.get(k) is not None},
                    "flags": [f[:40] for f in (cpu.get("flags") or [])[:64]]},
            "gpus": [_record(g, "machine.gpus") for g in (machine.get("gpus") or [])[:16]],
            "versions": {str(k)[:40]: v[:80] for k, v in list((machine.get("versions") or {}).items())[:32]},
        },
    }


def checked_doctor(value: dict, what: str) -> dict:
    """A target's own `doctor` report, each field of the shape `doctor_lines` reads: strings cut, numbers
    finite, anything else refused (it is printed as if examined here)."""
    try:
        cpu, freq, mem = value["cpu"], value["frequency"], value["memory"]
        return {
            "cpu": {"model": _text(cpu["model"], 200), "logical_cores": _int(cpu["logical_cores"]),
                    "flags": [_text(f, 40) for f in _list(cpu["flags"], 64)]},
            "usable_cpus": [_int(c) for c in _list(value["usable_cpus"], 4096)],
            "frequency": {"governors": None if freq["governors"] is None else [_text(g, 40) for g in _list(freq["governors"], 8)],
                          "boost": _flag(freq["boost"]), "smt_active": _flag(freq["smt_active"])},
            "loadavg_1m": _number(value["loadavg_1m"]),
            "others_cores": _number(value["others_cores"]),
            "busiest": [{"pid": _int(p["pid"]), "name": _text(p["name"], 32), "cores": float(_number(p["cores"]))} for p in _list(value["busiest"], 10)],
            "memory": {"total_gb": _number(mem["total_gb"]), "available_gb": _number(mem["available_gb"])},
            "runtimes": [{"runtime": _text(r["runtime"], 40), "version": None if r["version"] is None else _text(r["version"], 40),
                          "available": bool(_flag(r["available"]))} for r in _list(value["runtimes"], 32)],
            "default_threads": _int(value["default_threads"]),
            "disturbed_limit_cores": float(_number(value["disturbed_limit_cores"])),
            "advice": [_text(t, 400) for t in _list(value["advice"], 16)],
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{what}: the target's doctor report is not partialnet's ({type(exc).__name__})") from None


def _text(value, limit: int) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value[:limit]


def _int(value) -> int:
    if type(value) is not int:
        raise TypeError("not an integer")
    return value


def _flag(value) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError("not true/false")
    return value


def _list(value, limit: int) -> list:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value[:limit]


def whole_json(text: str, what: str):
    """A command's --json output (pretty-printed over many lines), NaN/Infinity refused."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BadInput(f"{what}: the target's reply is not partialnet's JSON ({str(exc)[:80]})") from None


def parity_report(value):
    """A verify --json reply rebuilt as the report a local verify returns (each case's fields typed)."""
    from partialnet.verify import CaseResult, ParityReport, Tolerances

    try:
        tol = Tolerances(**{k: _number(value["tolerances"].get(k)) for k in ("max_abs", "min_cosine", "min_top1", "max_accuracy_drop")})
        cases = [CaseResult(name=str(c["name"])[:80], batch=int(c["batch"]), samples=int(c["samples"]),
                            **{k: float(_number(c[k])) for k in ("max_abs", "max_rel", "min_cosine", "top1_agreement")},
                            failures=[str(f)[:300] for f in c["failures"][:16]]) for c in value["cases"][:32]]
        accuracy = _record(value["accuracy"], "accuracy") if isinstance(value.get("accuracy"), dict) else None
        if accuracy is not None and not isinstance(accuracy.get("failures"), list):
            raise BadInput("accuracy without failures")
        return ParityReport(candidate=str(value["candidate"])[:200], reference=str(value["reference"])[:200],
                            precision=str(value["precision"])[:8], tolerances=tol, cases=cases, accuracy=accuracy)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"the target's verify reply is not partialnet's ({type(exc).__name__})") from None


def _number(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a finite number")
    return value
