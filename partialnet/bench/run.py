"""Plan and run a benchmark: targets × runtimes × batches, each row in its own subprocess.

A target is a model to measure. From a checkpoint or variant name it is folded once, then exported
and verified once per batch in each runtime's own format (ONNX for ONNX Runtime, IR for OpenVINO;
static shapes, what a deployment would ship) at the precision asked for, and its PyTorch reference
logits are saved so every row can report its parity (INT8 rows: top-1 agreement on real images).
An artifact argument is measured as given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from partialnet.bench.results import SCHEMA
from partialnet.bench.where import HERE
from partialnet.bench.measure import timed_region
from partialnet.bench.protocols import Protocol
from partialnet.bench.stats import mann_whitney_greater, ratio_of_medians, summarize
from partialnet.checkpoint import resolve
from partialnet.sources import artifact_format, is_variant_name
from partialnet.errors import BadInput, CheckFailed, Unavailable
from partialnet.exporters.formats import FORMATS, check_manifest
from partialnet.exporters.options import DEFAULT_CALIB_SIZE, ExportOptions
from partialnet.exporters.sidecar import sidecar
from partialnet.inputs import inert, sha256_of
from partialnet.folding import fold, save_deploy
from partialnet.outputs import scratch_folder
from partialnet.models.registry import VARIANTS
from partialnet.bench.stability import judgement
from partialnet.bench.threads import DEFAULT_WAIT, WAIT_NOTES, default_wait, worker_env
from partialnet.runtimes.table import RUNTIMES, never_runs_source

THROUGHPUT_NOTE = "images/s = batch / median latency of one synchronous request at a time (what one client sees)"
STREAMS_NOTE = "images/s = images completed / wall time with several requests in flight (--streams; see partialnet.bench.streams)"
INPUT_SEED = 0
WORKER_TIMEOUT_S = 1800


@dataclass
class Target:
    label: str
    source: str
    variant: str | None
    random_weights: bool
    gmacs: float | None
    params: int | None
    deploy: Path | None = None
    artifacts: dict[str, dict[int, Path]] = field(default_factory=dict)  # format -> batch -> file
    agreement: dict[tuple[str, int], dict] = field(default_factory=dict)  # INT8: top-1 agreement on real images
    references: dict[int, Path] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    note: str | None = None
    format: str | None = None  # the artifact's format when measured as given; None: built here
    precision: str | None = None  # a given artifact's own precision (fp16/int8 files run as built)
    imgsz: tuple[int, int] | None = None  # a given artifact's own input size (bench refuses an --imgsz other than it)
    unrunnable: dict[int, str] = field(default_factory=dict)  # batch asked for -> why this target cannot run it
    unrunnable_formats: dict[tuple[str, int], str] = field(default_factory=dict)  # (format, batch) -> why its export failed
    sha256: str | None = None  # of the checkpoint or artifact timed: a figure found later names the exact file
    container: str | None = None  # which copy of a checkpoint of several was timed (checkpoint.CheckpointInfo.container)
    weights: str | None = None  # that copy's --weights name (None: the file holds one)


def _input(batch: int, imgsz: tuple[int, int]) -> np.ndarray:
    """The same seeded input the worker builds (see bench.worker.make_input)."""
    return np.random.default_rng(INPUT_SEED).standard_normal((batch, 3, *imgsz), dtype=np.float32)


def _save_reference(model, batch: int, imgsz, path: Path) -> Path:
    with torch.inference_mode():
        np.save(path, model(torch.from_numpy(_input(batch, imgsz))).double().numpy())
    return path


ARTIFACT_PRECISION = {"fp32": "fp32", "bf16": "fp32", "fp16": "fp16", "int8": "int8"}  # bf16 is a runtime hint on fp32 files


def _calibration(data: str | None, imgsz, calib_size: int):
    from partialnet.calibration import calibration_images

    return calibration_images(data, imgsz, calib_size)


def prepare_model_target(
    source: str,
    batches: list[int],
    imgsz,
    workdir: Path,
    formats: Sequence[str] = (),
    precision: str = "fp32",
    data: str | None = None,
    calib_size: int = DEFAULT_CALIB_SIZE,
    weights: str | None = None,
) -> Target:
    """Fold once; export and verify one artifact per (format, batch) at the precision asked for.

    INT8 artifacts are calibrated on `data` and carry their top-1 agreement on real images; their
    gates are reported, not enforced, so a random-weight model can still be timed. `weights` (--weights)
    picks the copy of a checkpoint file holding several (a variant name has one: it is not passed on).
    """
    from partialnet.bench.matrix_beside import Beside
    from partialnet.memory import check_fits
    from partialnet.verify_options import VerifyOptions

    weights = None if is_variant_name(source) else weights
    model, info = resolve(source, weights=weights)
    check_fits(model, imgsz, 1)  # the fold's own forward passes (a row's batch runs where the row runs)
    deploy, report = fold(model, imgsz)  # its report measured the model's cost once: no second pass here
    label = info.variant if info.random_weights else f"{info.variant}:{Path(info.source).name}"
    slot = workdir / f"t{len(list(workdir.iterdir()))}"
    slot.mkdir()
    target = Target(label, info.source, info.variant, info.random_weights, round(report.gmacs_before, 4), report.params_before, batches=batches,
                    sha256=None if info.random_weights else info.sha256, container=info.container, weights=info.weights or weights)
    target.deploy = slot / "deploy.pt"
    save_deploy(target.deploy, deploy, report, {"source": info.source})
    artifact_precision = ARTIFACT_PRECISION[precision]
    calibration = _calibration(data, imgsz, calib_size) if artifact_precision == "int8" and formats else None
    for batch in batches:
        target.references[batch] = _save_reference(model, batch, imgsz, slot / f"reference_b{batch}.npy")
    cells = [(fmt, batch) for batch in batches for fmt in formats]
    options = {cell: ExportOptions(imgsz=imgsz, batch=cell[1], half=artifact_precision == "fp16", int8=artifact_precision == "int8", data=data,
                                   calib_size=calib_size) for cell in cells}
    second = formats_beside(formats, precision)
    beside = [cell for cell in cells if cell[0] in second]
    jobs = [{"key": f"{fmt}:{batch}", "format": fmt, "name": f"model_b{batch}{FORMATS[fmt].suffix}",
             "options": {k: v for k, v in vars(options[(fmt, batch)]).items() if k not in ("calibration", "given")}} for fmt, batch in beside]
    with Beside(info.source, info.variant, jobs, VerifyOptions(samples=2), weights) as other:
        for cell in (c for c in cells if c not in beside):
            options[cell].calibration = calibration
            _export_here(target, model, info, (deploy, report), cell, options[cell], slot)
        _take_beside(target, other, zip(beside, jobs), slot)
    return target


def _export_here(target: Target, model, info, folded, cell: tuple[str, int], options: ExportOptions, slot: Path) -> None:
    """One artifact exported and verified in this process; a failed verification fails only its rows (an INT8
    or fp16 one's is reported, not enforced, so a random-weight model can still be timed)."""
    from partialnet.pipeline import export_folded
    from partialnet.verify_options import VerifyOptions

    fmt, batch = cell
    out = slot / f"model_b{batch}{FORMATS[fmt].suffix}"
    try:
        result = export_folded(model, info, folded, fmt, out, options, VerifyOptions(samples=2), enforce=options.precision == "fp32")
    except CheckFailed as exc:  # this runtime computes it wrong: its rows fail, the others still run
        target.unrunnable_formats[cell] = f"its {fmt} artifact failed verification: {str(exc)[:240]}"
        return
    target.artifacts.setdefault(fmt, {})[batch] = out
    if options.int8:
        case = min(result["parity"]["cases"], key=lambda c: c["top1_agreement"])
        target.agreement[cell] = {"top1": case["top1_agreement"], "on": case["name"], "passed": result["parity"]["passed"]}


def formats_beside(formats: Sequence[str], precision: str) -> list[str]:
    """The formats exported in a second process on a core of their own while this one exports the rest, by the rule
    `matrix` and `export --format all` follow (`sent_beside`). fp32 only: there, as here, a failed verification
    refuses the artifact; an INT8 or fp16 one's is reported."""
    from partialnet.bench.matrix_beside import sent_beside

    if ARTIFACT_PRECISION[precision] != "fp32":
        return []
    return sent_beside(list(formats), lambda fmt: FORMATS[fmt].python_bound)


def _take_beside(target: Target, other, done, slot: Path) -> None:
    """The second process's artifacts (and manifests) into the target's folder, or why each cannot run."""
    import shutil

    rows = other.collect()
    for (fmt, batch), job in done:
        row = rows[job["key"]]
        if row["status"] == "ok":
            for path in other.files(job):
                shutil.copyfile(path, slot / path.name)
            target.artifacts.setdefault(fmt, {})[batch] = slot / job["name"]
            continue
        kind = {cls.__name__: cls for cls in (BadInput, Unavailable)}.get(row.get("kind", ""))
        if kind is not None:  # what this process would have refused the same way
            raise kind(row["why"])
        failed = "failed verification" if row.get("kind") == CheckFailed.__name__ else "could not be made"
        target.unrunnable_formats[(fmt, batch)] = f"its {fmt} artifact {failed}: {row['why'][:240]}"


def built_runtimes(plan: "BenchPlan") -> list[str]:
    """The runtimes that run an artifact bench builds from a checkpoint, and can run here."""
    return [r for r in plan.runtimes if RUNTIMES[r].runs == "built" and plan.where.availability(r, plan.device, plan.precision) is None]


def build_formats(plan: "BenchPlan", runs: Sequence[str] = ()) -> list[str]:
    """The artifact each available runtime runs from a checkpoint: its first listed format (IR for OpenVINO). With
    `runs` (an A/B's two sides), only for the runtimes that run every artifact among them: `--ab ckpt model.onnx
    --runtime openvino,executorch` built a .pte that no row would time."""
    given = [fmt for fmt in map(artifact_format, runs) if fmt]
    return list(dict.fromkeys(RUNTIMES[r].formats[0] for r in built_runtimes(plan) if all(fmt in RUNTIMES[r].formats for fmt in given)))


def check_distinct_labels(targets: list[Target]) -> None:
    """The same check for checkpoints, whose row names need their variant (`a/model.pth`, `b/model.pth`)."""
    seen: dict[str, str] = {}
    for target in targets:
        if target.label in seen and seen[target.label] != target.source:
            raise BadInput(f"{seen[target.label]} and {target.source} would both be rows named {target.label} (compare and report match "
                           "rows by name); copy one under another name")
        seen[target.label] = target.source


def fit_to_artifacts(plan: "BenchPlan", sources: list[str], imgsz_given: bool, batches_given: bool, pair: bool = False) -> None:
    """A given artifact's input size, and a static one's batch, were fixed when it was exported.

    Asked for another (--imgsz, --batch), it is refused here, before anything is built: it used to be run
    at its own size with the other recorded in the result. Not asked, the run takes the artifacts' own
    when every source is one, so the result's settings say what was run. The two sides of an A/B (`pair`)
    must then run the same size and batch: a ratio of unlike inputs means nothing.
    """
    from partialnet.exporters.formats import read_io
    from partialnet.limits import format_imgsz

    plan.batches_given = batches_given
    artifacts = [source for source in dict.fromkeys(sources) if artifact_format(source)]
    for source in artifacts:
        check_manifest(Path(source))  # a manifest copied beside the wrong file would vouch for it (its INT8 agreement)
    given = plan.artifact_io = {source: read_io(Path(source)) for source in artifacts}
    for source, io in given.items():
        own = tuple(io["imgsz"])
        if imgsz_given and own != tuple(plan.imgsz):
            raise BadInput(f"{Path(source).name} takes {format_imgsz(own)} inputs (fixed at export): --imgsz {format_imgsz(plan.imgsz)} "
                           "cannot apply to it; leave --imgsz out, or export one at that size")
        if batches_given and not io["dynamic"] and io["batch"] not in plan.batches:
            raise BadInput(f"{Path(source).name} has a static batch of {io['batch']}: --batch {','.join(map(str, plan.batches))} cannot "
                           "run it; leave --batch out, or export it with --dynamic, or once per batch with --batch N")
    if given and len(given) == len(dict.fromkeys(sources)):
        sizes = {tuple(io["imgsz"]) for io in given.values()}
        static = {io["batch"] for io in given.values() if not io["dynamic"]}
        all_static = all(not io["dynamic"] for io in given.values())
        if not imgsz_given:
            plan.imgsz, plan.imgsz_timed = (sizes.pop(), True) if len(sizes) == 1 else (plan.imgsz, False)
        if not batches_given and all_static:
            plan.batches, plan.batches_timed = (sorted(static), True) if len(static) == 1 else (plan.batches, False)
    if pair:
        _check_like_with_like(plan, sources, given)


def _check_like_with_like(plan: "BenchPlan", sides: list[str], given: dict) -> None:
    """The two sides of an A/B run the same input size and batch: a ratio of unlike inputs means nothing."""
    from partialnet.limits import format_imgsz

    runs = {}
    for source in sides:
        io = given.get(source)
        size = tuple(io["imgsz"]) if io else tuple(plan.imgsz)  # a model is built at the run's size and batch
        runs[source] = (size, io["batch"] if io and not io["dynamic"] else plan.batches[0])
    (a, (size_a, batch_a)), (b, (size_b, batch_b)) = list(runs.items())[0], list(runs.items())[-1]
    if (size_a, batch_a) != (size_b, batch_b):
        shown = {s: f"{Path(s).name if s in given else s} runs {format_imgsz(size)} at batch {batch}" for s, (size, batch) in runs.items()}
        raise BadInput(f"--ab compares like with like: A {shown[a]}, B {shown[b]}; export both alike (a model side is built at --imgsz "
                       "and --batch)")


def prepare_artifact_target(path: Path, batches: list[int], workdir: Path, batches_given: bool = True, io: dict | None = None) -> Target:
    """A given artifact, timed as is: at its own size, and a static one at its own batch. Of the other batches
    a run uses, those asked for (--batch) show as skipped rows saying why; the defaults, which a model beside
    it in the run may use, are not its business."""
    from partialnet.exporters.formats import format_for_path, read_io

    fmt = format_for_path(path)
    io = io or read_io(path)  # `io`: as fit_to_artifacts read it, so the size and batch checked are the ones timed
    meta = io["metadata"]
    variant = meta.get("variant") if meta.get("variant") in VARIANTS else None
    imgsz = tuple(io["imgsz"])
    gmacs = params = None
    if variant:
        from partialnet.models.table import variant_row

        row = variant_row(VARIANTS[variant], imgsz)
        gmacs, params = row["gmacs"], row["params"]
    use = batches if io["dynamic"] else [io["batch"]]
    random_weights = (meta.get("source_sha256") or "").startswith("random weights")
    copy = meta.get("source_weights")  # the copy of a checkpoint of several it was exported from, as the JSON of a checkpoint's row says
    target = Target(path.name, str(path), variant, random_weights, gmacs, params, batches=use, format=fmt.name, imgsz=tuple(imgsz),
                    sha256=sha256_of(path), weights=inert(copy)[:200] if isinstance(copy, str) and copy and not random_weights else None)
    if not io["dynamic"] and batches_given:
        fix = "export it with --dynamic, or once per batch with --batch N"
        target.unrunnable = {b: f"static batch {io['batch']} artifact cannot run batch {b} ({fix})" for b in batches if b != io["batch"]}
    target.artifacts = {fmt.name: {b: path for b in use}}
    if io["precision"] in ("fp16", "int8"):
        target.precision = io["precision"]
    note = [] if io["dynamic"] or io["batch"] in batches else [f"static batch {io['batch']} used (the artifact's own)"]
    if io["precision"] == "int8":
        agreement = _manifest_agreement(path)
        for b in use:
            if agreement:
                target.agreement[(fmt.name, b)] = agreement
        if not agreement:
            note.append("INT8 without its export manifest: no top-1 agreement figure")
    elif random_weights and variant:
        model, _ = resolve(variant)  # seeded: the very weights the artifact was exported from
        slot = workdir / f"a{len(list(workdir.iterdir()))}"
        slot.mkdir()
        target.references = {b: _save_reference(model, b, tuple(io["imgsz"]), slot / f"ref_b{b}.npy") for b in use}
    else:
        note.append("no parity: pass the checkpoint instead to have it checked")
    target.note = "; ".join(note) or None
    return target


def _manifest_agreement(path: Path) -> dict | None:
    """An INT8 artifact's top-1 agreement on real images, from the manifest its export wrote beside it."""
    from partialnet.inputs import read_beside

    manifest = read_beside(sidecar(path), "export manifest")
    if manifest is None:
        return None
    try:
        cases = manifest["parity"]["cases"]
        case = min(cases, key=lambda c: float(c["top1_agreement"]))
        passed = manifest["parity"]["passed"] is True
        return {"top1": float(case["top1_agreement"]), "on": str(case["name"])[:80], "passed": passed}
    except (BadInput, KeyError, TypeError, ValueError):
        return None


def run_worker(spec: dict, workdir: Path, threads: int, wait: str = DEFAULT_WAIT) -> dict:
    fd, name = tempfile.mkstemp(suffix=".json", dir=workdir)  # in the run's private scratch folder
    os.close(fd)  # one descriptor a row was left open
    spec_path = Path(name)
    result_path = spec_path.with_suffix(".result.json")
    spec_path.write_text(json.dumps(spec))
    from partialnet.signals import ended, raise_if_pending, stopped_with_us

    raise_if_pending()
    proc = subprocess.Popen([sys.executable, "-m", "partialnet.bench.worker", str(spec_path), str(result_path)],
                            env=worker_env(threads, wait), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with stopped_with_us(proc):
        try:
            stdout, stderr = proc.communicate(timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"status": "failed", "reason": f"worker timed out after {WORKER_TIMEOUT_S}s"}
    raise_if_pending()  # the stop request reached the worker too: stop, don't record a failed row
    if not result_path.exists():
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        return {"status": "failed", "reason": f"worker {ended(proc.returncode)}: {tail[0][:200]}"}
    return json.loads(result_path.read_text())


@dataclass
class BenchPlan:
    sources: list[str]
    runtimes: list[str]
    device: str
    batches: list[int]
    imgsz: tuple[int, int]
    threads: int
    protocol: Protocol
    precision: str = "fp32"
    data: str | None = None  # INT8 calibration source ("digits" or a folder)
    calib_size: int = DEFAULT_CALIB_SIZE
    weights: str | None = None  # --weights: the copy of each checkpoint file that is timed
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # PyTorch on CUDA: capture the forward once, replay it per call
    label: str | None = None  # row name for a single source, overriding the derived one
    unfolded: bool = False  # PyTorch rows time the training-form model instead of the folded one
    streams: int | str | None = None  # None: one synchronous request at a time; N or "auto": N in flight (bench.streams)
    wait: str | None = None  # how pool threads wait between parallel regions; None: the device's default (bench.threads)
    control: bool = False  # an A/A control beside the rows (bench --aa; claims by default): the run's own resolution
    batches_given: bool = True  # asked for (--batch): a static artifact shows a skipped row for each it cannot run
    imgsz_timed: bool = True  # False: only given artifacts of several sizes, none at imgsz (each row records its own)
    artifact_io: dict[str, dict] = field(default_factory=dict)  # each given artifact's read_io, read once by fit_to_artifacts
    batches_timed: bool = True  # False: only static artifacts of several batches (each row records its own)
    where: Any = HERE  # where rows run: this machine, or a remote target (partialnet.bench.where)

    def __post_init__(self) -> None:
        if self.wait is None:
            self.wait = default_wait(self.device)


def _spec(plan: BenchPlan, target: Target, runtime: str, batch: int) -> dict:
    return {
        "runtime": runtime,
        "device": plan.device,
        "threads": plan.threads,
        "precision": target.precision or plan.precision,
        "batch": batch,
        "imgsz": list(target.imgsz or plan.imgsz),
        "protocol": plan.protocol.to_dict(),
        "input_seed": INPUT_SEED,
        # the folded model goes only to the runtime that runs it: a target was sent its 14 MB for every ONNX Runtime row too
        "deploy": str(target.deploy) if target.deploy and RUNTIMES[runtime].runs == "deploy" else None,
        "artifact": _artifact_for(target, runtime, batch),
        "reference": str(target.references[batch]) if batch in target.references else None,
        "channels_last": plan.channels_last,
        "compile": plan.compile,
        "cuda_graphs": plan.cuda_graphs,
        # PyTorch only: time the training-form model (what the papers' scripts timed before fusing BN)
        "unfolded_source": target.source if plan.unfolded and RUNTIMES[runtime].runs == "deploy" else None,
        "streams": plan.streams,
    }


def _artifact_for(target: Target, runtime: str, batch: int) -> str | None:
    """The file this runtime times: the given artifact, or the first format it runs that was built."""
    for fmt in RUNTIMES[runtime].formats:
        if batch in target.artifacts.get(fmt, {}):
            return str(target.artifacts[fmt][batch])
    return None


def _format_for(target: Target, runtime: str, batch: int) -> str | None:
    return next((f for f in RUNTIMES[runtime].formats if batch in target.artifacts.get(f, {})), None)


def _row(plan: BenchPlan, target: Target, runtime: str, batch: int, result: dict) -> dict:
    row = {
        "model": target.label,
        "source": target.source,
        "source_sha256": target.sha256,
        "variant": target.variant,
        "random_weights": target.random_weights,
        **({"weights": target.weights} if target.weights and not target.random_weights else {}),
        **({"container": target.container} if target.container and not target.random_weights else {}),
        "gmacs": target.gmacs,
        "params": target.params,
        "runtime": runtime,
        "format": _format_for(target, runtime, batch) or ("deploy" if RUNTIMES[runtime].runs == "deploy" else None),
        "device": plan.device,
        "batch": batch,
        "imgsz": list(target.imgsz or plan.imgsz),
        "precision_requested": target.precision or plan.precision,
        "precision": result.get("precision", target.precision or plan.precision),
        "threads": result.get("threads", plan.threads),
        "status": result["status"],
        "reason": result.get("reason") or target.note,
        "mode": f"async, {plan.streams} streams" if plan.streams else "sync",
    }
    if result["status"] == "ok":
        samples = result["samples_s"]
        stats = summarize(samples)
        row.update(
            warmup=result["warmup"],
            stats=stats,
            # sync: one request at a time, so batch / median latency; async: images completed / wall time
            images_per_s=result.get("images_per_s") or batch / (stats["p50_ms"] / 1e3),
            parity_max_abs=result.get("parity_max_abs"),
            cold=result.get("cold"),
            memory=result.get("memory"),
            machine_load=result.get("machine_load"),
            **judgement(samples, result.get("machine_load")),
            samples_s=samples,
        )
        if result.get("async_run"):
            row["async_run"] = result["async_run"]
            row["mode"] = f"async, {result['async_run']['streams']} streams, {result['async_run']['requests']} requests"
    agreement = target.agreement.get((_format_for(target, runtime, batch), batch))
    if agreement and result["status"] == "ok":  # INT8: logits differ by design; what matters is the class
        row.update(parity_max_abs=None, parity_top1=agreement["top1"], parity_on=agreement["on"], parity_gate_passed=agreement["passed"])
    return row


class Failed(str):
    """A reason a row cannot run that is a failure of this machine's runtime, not a skip: the row says failed."""


def plan_rows(plan: BenchPlan, targets: list[Target]) -> list[tuple[Target, str, int, str | None]]:
    """Every (target, runtime, batch) with the reason it cannot run here, if any."""
    jobs = []
    for target in targets:
        for runtime in plan.runtimes:
            jobs.extend((target, runtime, batch, row_reason(plan, target, runtime, batch)) for batch in target.batches)
            for batch, why in target.unrunnable.items():
                jobs.append((target, runtime, batch, why))
    return jobs


def row_reason(plan: BenchPlan, target: Target, runtime: str, batch: int) -> str | None:
    """Why `runtime` cannot time `target` at `batch` here (a Failed where its artifact was made and failed), or None."""
    precision = target.precision or plan.precision
    reason = plan.where.availability(runtime, plan.device, precision) or never_runs_source(runtime, plan.device, precision, target.format)
    if reason is None and plan.streams:
        from partialnet.bench.streams import unsupported_reason

        reason = unsupported_reason(runtime, plan.device)
    failed = target.unrunnable_formats.get((RUNTIMES[runtime].formats[0], batch)) if RUNTIMES[runtime].formats else None
    return reason or (failed and Failed(failed)) or None


def check_copies(plan: BenchPlan, sources: Sequence[str]) -> None:
    """--weights applies to every checkpoint file given: each is checked to hold that copy once, with the plan,
    before any is folded (the second file's refusal had come after the first file's exports)."""
    from partialnet.checkpoint import check_copy_named

    if plan.weights is not None:
        for source in dict.fromkeys(s for s in sources if not artifact_format(s) and not is_variant_name(s)):
            check_copy_named(source, plan.weights)


def refuse_if_nothing_runs(plan: BenchPlan) -> None:
    """Exit 3 before any model is folded when no runtime asked for can run on this device here at all.

    Rows of checkpoints run at the precision asked for; a given artifact runs at its own, and fp32 is every
    runtime's precision, so a runtime unavailable at fp32 is unavailable whatever the artifacts hold.
    """
    precision = "fp32" if any(artifact_format(s) for s in plan.sources) else plan.precision
    reasons = {runtime: plan.where.availability(runtime, plan.device, precision) for runtime in plan.runtimes}
    if reasons and all(reasons.values()):
        listed = "; ".join(f"{runtime}: {why}" for runtime, why in sorted(reasons.items()))
        raise Unavailable(f"no runtime can run on {plan.device} {_place(plan.where)} ({listed})")
    check_threads_fit(plan.threads, plan.where, plan.device)


def _place(where) -> str:
    return "here" if where.label == "here" else f"on {where.label}"


def check_threads_fit(threads: int, where, device: str) -> None:
    """Exit 2 for more CPU threads than the timing machine has cores: the rows would measure time-slicing."""
    cores = where.logical_cores()
    if device == "cpu" and type(cores) is int and threads > cores:
        place = "this machine" if where.label == "here" else where.label
        raise BadInput(f"--threads {threads}: {place} has {cores} logical cores; more threads than cores time the "
                       "scheduler's time-slicing, not the model")


def run_everywhere(plans: list[BenchPlan], progress: Callable[..., None] | None = None, announce: Callable[[BenchPlan], None] | None = None) -> list[dict]:
    """The same sources on several places (targets): each model folded, exported and verified once, here,
    and timed on every place; one result per place."""
    for plan in plans:  # a target that cannot run the request is refused before any other's rows are measured
        refuse_if_nothing_runs(plan)
    with scratch_folder("partialnet-bench-") as tmp:
        prepared: dict = {}
        results = []
        for plan in plans:
            if announce:
                announce(plan)
            results.append(run(plan, progress, Path(tmp), prepared))
        return results


def run(plan: BenchPlan, progress: Callable[..., None] | None = None, workdir: Path | None = None, prepared: dict | None = None) -> dict:
    """Prepare targets, run every row in its own process, and return the self-describing result."""
    refuse_if_nothing_runs(plan)
    started = datetime.now(timezone.utc)
    with scratch_folder("partialnet-bench-") as tmp:
        work = Path(workdir or tmp)
        targets = _prepare_targets(plan, work, progress, {} if prepared is None else prepared)
        jobs = plan_rows(plan, targets)
        if all(reason for *_, reason in jobs):
            reasons = sorted({f"{r}: {reason}" for _, r, _, reason in jobs})
            raise Unavailable(f"no runtime can run on {plan.device} {_place(plan.where)} ({'; '.join(reasons)})")
        rows = []
        for i, (target, runtime, batch, reason) in enumerate(jobs):
            if reason:
                status = "failed" if isinstance(reason, Failed) else "skipped"
                rows.append(_row(plan, target, runtime, batch, {"status": status, "reason": str(reason)}))
                continue
            if progress:
                progress(f"{target.label} · {runtime} · batch {batch}", i, len(jobs))
            result = plan.where.run_worker(_spec(plan, target, runtime, batch), work, plan.threads, plan.wait)
            rows.append(_row(plan, target, runtime, batch, result))
        controls = _aa_controls(plan, jobs, rows, work, progress) if plan.control else []
    return {**_header(plan, started), "rows": rows, **({"aa": controls} if plan.control else {})}


def _prepare_targets(plan: BenchPlan, work: Path, progress, prepared: dict) -> list[Target]:
    """Each source as a Target: a given artifact as is, a model folded and exported per format (once per
    command for the same formats, batches, size and precision, whatever the number of places)."""
    targets_dir = work / "targets"
    targets_dir.mkdir(exist_ok=True)
    formats = build_formats(plan)
    targets = []
    for source in plan.sources:
        key = (source, tuple(formats), tuple(plan.batches), tuple(plan.imgsz), plan.precision, plan.data, plan.calib_size)
        if key not in prepared:
            if progress:
                beside = formats_beside(formats, plan.precision)
                doing = "fold, export, verify" + (f" ({', '.join(beside)} in a second process, beside the others)" if beside else "")
                progress(f"preparing {source}: {'read the artifact' if artifact_format(source) else doing}")
            if artifact_format(source):
                prepared[key] = prepare_artifact_target(Path(source), plan.batches, targets_dir, plan.batches_given, plan.artifact_io.get(source))
            else:
                prepared[key] = prepare_model_target(source, plan.batches, plan.imgsz, targets_dir, formats, plan.precision, plan.data,
                                                     plan.calib_size, plan.weights)
        targets.append(replace(prepared[key], label=plan.label or prepared[key].label))
        check_distinct_labels(targets)
    return targets


def _aa_controls(plan: BenchPlan, jobs: list, rows: list[dict], work: Path, progress) -> list[dict]:
    """Per runtime, its first measured row's model timed against itself in random alternating blocks: the
    A/A ratio and interval say how far apart two identical things read on this machine, in this run."""
    controls, seen = [], set()
    for (target, runtime, batch, _), row in zip(jobs, rows):
        if row["status"] != "ok" or runtime in seen:
            continue
        seen.add(runtime)
        if progress:
            progress(f"A/A control: {target.label} · {runtime} against itself")
        block = effective_block(plan.protocol, 10)
        spec = {"mode": "ab", "protocol": plan.protocol.to_dict(), "block": block, "control": True, "a": _spec(plan, target, runtime, batch)}
        result = plan.where.run_worker(spec, work, plan.threads, plan.wait)
        entry = {"runtime": runtime, "model": target.label, "batch": batch, "block": block}
        if result["status"] != "ok":
            controls.append({**entry, "status": "failed", "reason": result.get("reason")})
            continue
        controls.append({**entry, "status": "ok", **aa_control(result)})
    return controls


def aa_control(result: dict) -> dict:
    """A2/A from a worker run with `control`: the ratio, its bootstrap 95 % interval, and the machine's load."""
    ratio, low, high = ratio_of_medians(result["samples_a2_s"], result["samples_a_s"])
    return {"ratio": ratio, "ci": [low, high], "machine_load": result.get("machine_load")}


def _header(plan: BenchPlan, started: datetime) -> dict:
    """Everything a result says about how it was measured and where, before its rows."""
    return {
        "schema": SCHEMA,
        "created_utc": started.isoformat(timespec="seconds"),
        "command": sys.argv,
        "protocol": plan.protocol.to_dict(),
        "settings": {
            "device": plan.device,
            "threads": plan.threads,
            "batches": plan.batches if plan.batches_timed else None,  # None: the given artifacts' own, per row
            "imgsz": list(plan.imgsz) if plan.imgsz_timed else None,
            "precision": plan.precision,
            "calibration": {"data": plan.data if plan.data in (None, "digits") else Path(plan.data).name, "images": plan.calib_size}
            if plan.precision == "int8"
            else None,
            "channels_last": plan.channels_last,
            "compile": plan.compile,
            "cuda_graphs": plan.cuda_graphs,
            "streams": plan.streams,
            "wait": plan.wait,
        },
        "artifacts": "built here per (format, batch) from a checkpoint: "
        + (", ".join(f"{RUNTIMES[r].formats[0]} ({FORMATS[RUNTIMES[r].formats[0]].suffix}) for {r}" for r in built_runtimes(plan)) or "none")
        + "; a given artifact is timed as is, at its own size (and batch, if static)",
        "timed_region": timed_region(plan.device),
        "throughput": THROUGHPUT_NOTE if not plan.streams else STREAMS_NOTE,
        "input": f"standard normal, seed {INPUT_SEED}, allocated once before timing",
        "isolation": "one subprocess per (model, runtime, batch); thread env vars set to --threads; pool threads "
        + WAIT_NOTES[plan.wait],
        "pytorch_runs": "the training-form (unfolded) model" if plan.unfolded else "the folded deploy model (conv-BN fused, as in the papers' protocol)",
        "machine": plan.where.machine(),
    }


def effective_block(protocol: Protocol, block: int) -> int:
    """Blocks small enough for at least five alternations within the protocol's minimum iterations.

    With the quick protocol's 10 iterations, blocks of 10 would time all of A, then all of B: no
    alternation at all, and a ratio exposed to every drift in between.
    """
    return max(1, min(block, protocol.min_iters // 5 or 1))


def _prepare_side(plan: BenchPlan, source: str, work: Path, formats: list[str]) -> Target:
    batch = plan.batches[0]
    if artifact_format(source):
        return prepare_artifact_target(Path(source), [batch], work, io=plan.artifact_io.get(source))
    return prepare_model_target(source, [batch], plan.imgsz, work, formats, plan.precision, plan.data, plan.calib_size, plan.weights)


def _ab_cell(plan: BenchPlan, sides: dict[str, Target], runtime: str, block: int, work: Path) -> tuple[dict, dict[str, dict]]:
    """One runtime's A/B: both models in ONE worker, alternating blocks; (comparison, worker results per side)."""
    cell = {"runtime": runtime, "batch": plan.batches[0], "block": block, "a": sides["a"].label, "b": sides["b"].label}
    reason = plan.where.availability(runtime, plan.device, plan.precision)
    for target in sides.values():  # the reasons a plain row of that side would give, then a missing artifact's
        batch = target.batches[0]
        why = reason or row_reason(plan, target, runtime, batch) or target.unrunnable.get(batch)
        if why is None and RUNTIMES[runtime].runs != "deploy" and _artifact_for(target, runtime, batch) is None:
            why = f"no artifact {runtime} runs (it runs {' and '.join(RUNTIMES[runtime].formats)} artifacts only)"
        if why and not reason:
            reason = Failed(f"{target.source}: {why}") if isinstance(why, Failed) else f"{target.source}: {why}"
    if reason:
        return {**cell, "status": "failed" if isinstance(reason, Failed) else "skipped", "reason": str(reason)}, {}
    specs = {name: _spec(plan, target, runtime, target.batches[0]) for name, target in sides.items()}
    spec = {"mode": "ab", "protocol": plan.protocol.to_dict(), "block": block, "control": plan.control, **specs}
    result = plan.where.run_worker(spec, work, plan.threads, plan.wait)
    if result["status"] != "ok":
        return {**cell, "status": "failed", "reason": result.get("reason")}, {}
    sa, sb = result["samples_a_s"], result["samples_b_s"]
    ratio, low, high = ratio_of_medians(sb, sa)
    cell.update(
        status="ok", ratio_b_over_a=ratio, ratio_ci95=[low, high],
        p_b_slower=mann_whitney_greater(sb, sa), p_b_faster=mann_whitney_greater(sa, sb),
    )
    if "samples_a2_s" in result:
        aa = aa_control(result)
        cell["aa"] = {"ratio": aa["ratio"], "ci": aa["ci"]}
    per_side = {
        name: {"status": "ok", "samples_s": result[f"samples_{name}_s"], "precision": result[f"precision_{name}"],
               "threads": result[f"threads_{name}"], "warmup": result.get(f"warmup_{name}"), "machine_load": result.get("machine_load")}
        for name in sides
    }
    return cell, per_side


def run_ab(plan: BenchPlan, a: str, b: str, block: int = 10, progress: Callable[..., None] | None = None) -> dict:
    """Two models (or builds) on each runtime asked for, alternating iteration blocks in ONE process per runtime.

    The result is a bench result (rows A and B per runtime, loadable by compare, report, --csv/--md/--plot)
    with one `ab` entry per runtime: B/A with its bootstrap interval and rank-test p-values.
    """
    refuse_if_nothing_runs(plan)
    started = datetime.now(timezone.utc)
    block = effective_block(plan.protocol, block)
    with scratch_folder("partialnet-ab-") as tmp:
        work = Path(tmp)
        (work / "targets").mkdir()
        formats = build_formats(plan, runs=[a, b])
        sides = {}
        for name, source in (("a", a), ("b", b)):
            if progress:
                progress(f"preparing {name.upper()}: {source}")
            sides[name] = _prepare_side(plan, source, work / "targets", formats)
        check_distinct_labels(list(sides.values()))
        cells, rows = [], []
        for i, runtime in enumerate(plan.runtimes):
            if progress:
                progress(f"A/B on {runtime}: alternating blocks of {block}", i, len(plan.runtimes))
            cell, per_side = _ab_cell(plan, sides, runtime, block, work)
            cells.append(cell)
            for name, target in sides.items():
                outcome = per_side.get(name) or {"status": cell["status"], "reason": cell.get("reason")}
                # its CSV row said "sync", as a plain row's does: the side and the blocks it alternated in
                rows.append({**_row(plan, target, runtime, target.batches[0], outcome), "mode": f"ab side {name.upper()}, blocks of {block}"})
    if not any(c["status"] == "ok" for c in cells):
        reasons = "; ".join(f"{c['runtime']}: {c['reason']}" for c in cells)
        raise Unavailable(f"A/B could not run: {reasons}")
    aa = [{"runtime": c["runtime"], "model": c["a"], "batch": c["batch"], "status": "ok", **c["aa"]} for c in cells if c.get("aa")]
    return {
        **_header(plan, started),
        "mode": "ab",
        "ab": cells,
        "rows": rows,
        **({"aa": aa} if plan.control else {}),
    }
