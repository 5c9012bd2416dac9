"""What the CLI does, as plain functions returning plain data, so a Python user misses nothing.

The CLI only parses arguments and renders what these return. This is the top of the package: nothing
inside partialnet imports it (the benchmark builds artifacts through `partialnet.pipeline`).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import replace
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING


from partialnet.calibration import calibration_images, check_data, judging_images, stage_label
from partialnet.checkpoint import RANDOM_WEIGHTS_SEED, NoSuchCopy, check_copy_named, resolve
from partialnet.sources import FORMAT_ALL_HINT, default_output, fold_outputs, is_variant_name, output_file, source_path
from partialnet.errors import BadInput, CheckFailed, Unavailable, missing_extra, shown
from partialnet.exporters.formats import (
    DEFAULT_FORMAT, FORMATS, check_artifact_name, check_built_on_target, check_manifest, exporter_of, format_for_path, get_format,
)
from partialnet.exporters.options import (
    DEFAULT_CALIB_SIZE, ExportOptions, check_all_options, check_flags, check_int8_tools, check_layers,
)
from partialnet.folding import count_batchnorms, deploy_payload, fold
from partialnet.limits import check_count, check_input_shape, check_listed, check_name, format_imgsz, parse_imgsz, whole_number
from partialnet.models.flops import model_cost
from partialnet.models.table import model_table, variant_row
from partialnet.outputs import Output, atomic_outputs, check_outputs, dumps_strict, write_file
from partialnet.pipeline import (
    DYNAMIC_VERIFY_BATCH,
    artifact_outputs,
    artifact_metadata,
    check_parity,
    checked_without_runtime,
    dataset_accuracy,
    export_folded,
    export_staged,
    parity_failure,
    source_record,
    static_failure,
    static_verification,
    versions,
    check_labels_fit,
)
from partialnet.progress import ran_beside, stage
from partialnet.signals import raise_if_pending, stops_cleanly
from partialnet.verify_options import VerifyOptions, check_dataset

if TYPE_CHECKING:
    from partialnet.verify import ParityReport

__all__ = [
    "DYNAMIC_VERIFY_BATCH", "ExportOptions", "VerifyOptions", "artifact_metadata", "artifact_outputs", "check_dataset", "check_parity", "dataset_accuracy",
    "bench", "bench_plans", "compare", "default_output", "export", "export_all", "export_folded", "fold_checkpoint", "inspect",
    "model_table", "parse_imgsz", "report",
    "parity_failure", "source_record", "static_verification", "train_digits", "variant_row", "verify", "versions",
]


def inspect(source: str, variant: str | None = None, imgsz: tuple[int, int] = (224, 224), weights: str | None = None) -> dict:
    """Everything `partialnet info` shows about a checkpoint or a variant name."""
    imgsz = parse_imgsz(imgsz)
    model, info = resolve(source, variant, weights=weights)
    cost = model_cost(model, imgsz)
    row = info.to_dict()
    row.update(
        params=cost.params,
        gmacs=round(cost.gmacs, 4),
        imgsz=list(imgsz),
        batchnorm_layers=count_batchnorms(model),
    )
    return row


# ---------------------------------------------------------------- fold, export, verify


def given(value, cls, what: str):
    """A Python caller's options object (None: the defaults); another type is refused naming the argument."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise BadInput(f"{what}: expected a partialnet {cls.__name__} (or None for its defaults), got {type(value).__name__}")
    return value


def _load(source: str, variant: str | None = None, weights: str | None = None):
    with stage("load", source):
        return resolve(source, variant, weights=weights)


def _fold(model, imgsz: tuple[int, int], batch: int | None = 1, fits_checked: bool = False):
    """The deploy model; first, whether one forward at this size and batch (None: dynamic) fits in memory."""
    from partialnet.memory import check_fits

    if not fits_checked:
        check_fits(model, imgsz, batch)
    with stage("fold", format_imgsz(imgsz)):
        return fold(model, imgsz)




@stops_cleanly
def fold_checkpoint(
    source: str,
    output: str | Path | None = None,
    imgsz: tuple[int, int] = (224, 224),
    variant: str | None = None,
    report_path: str | Path | None = None,
    force: bool = False,
    weights: str | None = None,
) -> dict:
    """Fold a checkpoint (or variant) into a deploy file; returns the report and where things went.
    `weights` picks one of several model copies in the file (an EMA: `state_dict_ema`, `model_ema.`)."""
    check_name(source, "source")
    imgsz = parse_imgsz(imgsz)
    outputs = fold_outputs(source, output, report_path)
    out, report_out = (o.path for o in outputs)
    inputs = [source_path(source)]
    check_outputs(outputs, inputs, force)  # before the slow load and fold
    model, info = _load(source, variant, weights)
    deploy, report = _fold(model, imgsz)
    result = {"output": str(out), "report_path": str(report_out), **source_record(info), "report": report.to_dict()}
    with stage("write"), atomic_outputs(outputs, force, inputs) as (staged_deploy, staged_report):
        staged_deploy.save_torch(deploy_payload(deploy, report, source_record(info)))
        staged_report.write_json(result)
    return result


@stops_cleanly
def export(
    source: str,
    format: str = DEFAULT_FORMAT,
    options: ExportOptions | None = None,
    *,
    output: str | Path | None = None,
    checks: VerifyOptions | None = None,
    variant: str | None = None,
    force: bool = False,
    weights: str | None = None,
) -> dict:
    """Fold, export, verify; the artifact and its manifest appear only if verification passed.

    `options.given` (the flags typed; by default those set off their defaults) is what a format refuses
    when it does not take it. Everything is checked before the checkpoint is loaded.
    """
    check_name(source, "source")
    fmt = get_format(format)
    options = check_export_options(fmt, given(options, ExportOptions, "options"))
    checks = given(checks, VerifyOptions, "checks").check()
    out = output_file(output, source, fmt.suffix, hint=FORMAT_ALL_HINT)
    check_artifact_name(out, fmt)
    inputs = [source_path(source)]
    check_outputs(artifact_outputs(out, fmt.name, options.built_elsewhere, typed=output is not None), inputs, force)
    if checks.images:
        checks.decode_now(options.imgsz)  # fail on a bad folder before the slow work
    check_data(options.data, options.calib_size, options.imgsz)
    if options.int8:  # decoded before the load and fold: a bad 200th image, or too many of them, answers at once
        with stage("calibration data", stage_label(options.data, options.calib_size)):
            options.calibration = calibration_images(options.data, options.imgsz, options.calib_size)
    model, info = _load(source, variant, weights)
    checks = judged_on_own_data(checks, info, options.imgsz)
    check_labels_fit(checks, info)
    folded = _fold(model, options.imgsz, None if options.dynamic else options.batch)
    check_layers(options.int8_keep_float, folded[0])
    return export_folded(model, info, folded, fmt.name, out, options, checks, force=force, inputs=inputs)


@stops_cleanly
def export_on_target(source: str, format: str, options: ExportOptions | None = None, *, output: str | Path | None = None,
                     checks: VerifyOptions | None = None, variant: str | None = None, force: bool = False, where=None,
                     weights: str | None = None) -> dict:
    """An artifact tied to the machine that runs it (TensorRT), prepared here and built, verified and timed on
    the one target of `where` (remote.options.TargetOptions); see partialnet.remote.engine."""
    from partialnet.remote.engine import export_on_target as build_there

    fmt = get_format(format)
    check_built_on_target(fmt, 0 if where is None else len(where.addresses()))
    options = check_export_options(fmt, replace(options or ExportOptions(), built_elsewhere=True))
    checks = (checks or VerifyOptions()).check()
    out = output_file(output, source, fmt.suffix, hint=FORMAT_ALL_HINT)
    check_artifact_name(out, fmt)

    def prepare(local: Path) -> dict:
        return export(source, fmt.name, options, output=local, checks=checks, variant=variant, force=True, weights=weights)

    with where.hosts() as (host,):
        return {**build_there(host, source, fmt, options, out, checks, variant, force, prepare), "artifact": str(out), "target": host.label}


def check_export_options(fmt, options: ExportOptions) -> ExportOptions:
    """The options a format takes, sound together and within bounds, its backend present: all refused by
    flag before anything slow. Returns a copy with the format's own default precision applied."""
    check_flags(fmt, options, FORMATS)
    options = replace(options)
    if fmt.default_precision == "fp16" and not (options.fp32 or options.int8):
        options.half = True  # the format's own default (Core ML: fp16, what the Neural Engine runs)
    if fmt.extra and importlib.util.find_spec(fmt.backend) is None and not fmt.fallback:
        raise missing_extra(fmt.backend, fmt.extra)
    preflight = getattr(exporter_of(fmt), "preflight", None)
    if preflight:
        preflight(options)  # the format's own checks of its options, before any slow work
    return options


def _identity(variant: str | None, sha: str) -> str:
    if sha.startswith("random weights"):
        return f"{variant} with {sha}"
    return f"{variant} weights with sha256 {sha[:12]}…"


@stops_cleanly
def verify(artifact: str | Path, ref: str, checks: VerifyOptions | None = None, *, variant: str | None = None,
           compute: str | None = None, weights: str | None = None) -> "ParityReport":
    """Check an existing artifact against the checkpoint (or variant) it was exported from.

    `compute` runs an fp32 artifact at a precision its runtime computes on request (bf16: OpenVINO), as a
    deployment that asks for it would, and judges it by that precision's gates.
    """
    check_name(artifact, "artifact")
    check_name(ref, "ref")
    artifact = Path(artifact)
    checks = given(checks, VerifyOptions, "checks").check()
    fmt = format_for_path(artifact)
    exporter = exporter_of(fmt)
    check_manifest(artifact)  # before its record of a source is believed
    io = exporter.read_io(artifact)
    compute = _check_compute(artifact, fmt, io, compute)
    judging = _judging_for(artifact, io, checks)
    if checks.images:
        checks.decode_now(tuple(io["imgsz"]))  # fail on a bad folder before the load
    model, info = _load_reference(artifact, io["metadata"], ref, variant, weights)
    _check_identity(artifact, io["metadata"], ref, info, chosen=weights is not None)
    from partialnet.memory import check_fits

    # the reference runs at the artifact's own size and batch, both fixed at its export
    check_fits(model, tuple(io["imgsz"]), io["batch"], "this artifact's size and batch were fixed at export: verify it on a machine with more memory")
    checks = judged_on_own_data(checks, info, io["imgsz"])
    check_labels_fit(checks, info)
    judging = _int8_judged(artifact, io, checks, judging)
    static = None
    if not compute and checked_without_runtime(exporter, fmt):  # a computed precision is the runtime's own: only running it says anything
        with stage("verify", f"{fmt.name} checks without its runtime"):
            static = static_verification(exporter, fmt, artifact, _fold(model, tuple(io["imgsz"]), fits_checked=True)[0], io, model, checks)
    if static is not None:
        if not static["passed"]:
            raise CheckFailed(f"{artifact} {static_failure(static)}", details=static)
        if not static.get("executed"):
            raise Unavailable(f"{artifact}: {static['verdict']} ({static['why']})", details=static)
        from partialnet.verify import ParityReport

        return replace(ParityReport.from_offline(static), source=_held_to(info, io))
    if judging:
        judging = judging_images(*judging, 0)
    with stage("verify", f"{fmt.runtime}{f' computing {compute}' if compute else ''} vs PyTorch"):
        report = check_parity(artifact, model, io, checks, runtime=fmt.runtime, judging=judging, compute=compute)
    report.source = _held_to(info, io)
    if not report.passed:
        raise parity_failure(report, str(artifact))
    return report


def trained_elsewhere(info, imgsz) -> bool:
    """A checkpoint of a known dataset (digits) that records another size than `imgsz`: near chance there."""
    return bool(info.dataset and info.trained_imgsz and tuple(info.trained_imgsz) != tuple(imgsz))


def judged_on_own_data(checks: VerifyOptions, info, imgsz) -> VerifyOptions:
    """The checkpoint's own dataset judges it by default only at the size it was trained at: "11.48 % vs 11.48 %:
    ok" at another size said nothing. An explicit --dataset still judges."""
    return checks if trained_elsewhere(info, imgsz) else checks.judged_on(info.dataset)


def _held_to(info, io: dict) -> dict:
    """Which weights of --ref the artifact was held to, whether the artifact said it came from them, and the size it
    was judged at (a note where the weights were trained at another)."""
    return {**source_record(info), "identity_checked": bool(io["metadata"].get("source_sha256")), "imgsz": list(io["imgsz"])}


def _load_reference(artifact: Path, meta: dict, ref: str, variant: str | None, weights: str | None):
    """--ref's model: the copy --weights names, else the one the artifact records it was exported from. A --ref
    without that copy is loaded as it is, so the identity check says it is another checkpoint."""
    recorded = (meta.get("source_weights") or None) if source_path(ref) is not None else None  # a variant holds one model
    try:
        model, info = _load(ref, variant, weights if weights is not None else recorded)
    except NoSuchCopy:
        if weights is not None:
            raise
        model, info = _load(ref, variant)
    if info.weights is not None and weights is None and not meta.get("source_sha256"):
        raise BadInput(f"{artifact} carries no record of the weights it came from (its manifest is not beside it), and {ref} holds "
                       f"several model copies: name one with --weights (the default is {ascii(info.weights)})")
    return model, info


def check_compute(artifact: str | Path, compute: str) -> None:
    """`verify --compute` refused from the artifact alone (before it is sent to a target)."""
    from partialnet.inputs import check_regular

    artifact = Path(artifact)
    check_regular(artifact, "artifact")
    fmt = format_for_path(artifact)
    _check_compute(artifact, fmt, exporter_of(fmt).read_io(artifact), compute)


def _check_compute(artifact: Path, fmt, io: dict, compute: str | None) -> str | None:
    """--compute asks the runtime for a precision it computes from an fp32 file, returned as named (any case typed);
    refused before the load otherwise."""
    if compute is None:
        return None
    from partialnet.runtimes.table import RUNTIMES, check_compute, computed_precision

    compute = check_compute(compute)
    if computed_precision(fmt.runtime, compute) is None:
        able = ", ".join(name for name, spec in RUNTIMES.items() if compute in dict(spec.computes))
        raise BadInput(f"--compute {compute}: {fmt.runtime} does not compute {compute} from the file (runtimes that do: {able})")
    if io["precision"] != "fp32":
        raise BadInput(f"--compute {compute} runs an fp32 file at {compute}; {artifact} is {io['precision']}")
    return compute


def _check_preprocessing_metadata(artifact: Path, meta: dict, io: dict) -> None:
    """How to feed the artifact, as its metadata tells a deployment: the numbers every partialnet artifact is fed
    with, and its own graph's size. Parity runs on tensors, so a wrong mean would otherwise verify and ship."""
    import json

    from partialnet.preprocess import IMAGENET_MEAN, IMAGENET_STD

    for key, expected in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        if key not in meta:
            continue
        try:
            found = json.loads(meta[key])
            fits = isinstance(found, list) and len(found) == 3 and all(abs(float(a) - b) < 1e-6 for a, b in zip(found, expected))
        except (ValueError, TypeError):
            fits = False
        if not fits:
            raise CheckFailed(f"{artifact}: its metadata says {key} {ascii(meta[key])[1:-1][:40]}, but it was made for {key} "
                              f"{list(expected)}: a deployment that reads it would feed wrong inputs")
    size = f"{io['imgsz'][0]},{io['imgsz'][1]}"
    if "imgsz" in meta and meta["imgsz"] != size:
        raise CheckFailed(f"{artifact}: its metadata says imgsz {ascii(meta['imgsz'])[1:-1][:20]}, but its graph takes {size}")


def _judging_for(artifact: Path, io: dict, checks: VerifyOptions) -> tuple[str, tuple] | None:
    """What an artifact must be judged on, refused before the load: its own metadata must not lie about
    its precision, and an INT8 artifact needs real images (random inputs have no class to keep)."""
    meta = io["metadata"]
    claimed = meta.get("precision")
    if claimed is not None and claimed != io["precision"]:
        raise CheckFailed(f"{artifact}: its metadata says {ascii(claimed)[1:-1][:20]}, but what it holds is {io['precision']}: "
                          "it is not the artifact it claims to be")
    _check_preprocessing_metadata(artifact, meta, io)
    if io["precision"] != "int8":
        return None
    if meta.get("calibration_data") == "digits" or checks.dataset == "digits":
        check_data("digits", 1)
        return ("digits", tuple(io["imgsz"]))
    return None


def _int8_judged(artifact: Path, io: dict, checks: VerifyOptions, judging):
    """After the load (--ref's own dataset is known then): an INT8 artifact needs real images to be judged on
    (random inputs have no class to keep): held-out digits for a digits --ref, else --images."""
    if io["precision"] != "int8" or judging is not None or checks.images:
        return judging
    if checks.dataset == "digits":
        check_data("digits", 1)
        return ("digits", tuple(io["imgsz"]))
    source = io["metadata"].get("calibration_data", "unknown data").removeprefix("images:")
    raise BadInput(f"{artifact} is INT8 (calibrated on {source}): judge it on real images with --images DIR or --dataset digits")


def _check_identity(artifact: Path, meta: dict, ref: str, info, chosen: bool = False) -> None:
    exported_from = (meta.get("variant"), meta.get("source_sha256"))
    reference_is = (info.variant, info.sha256 or f"random weights (seed {RANDOM_WEIGHTS_SEED})")
    if exported_from[1] and exported_from != reference_is:
        raise BadInput(f"{artifact} was exported from {_identity(*exported_from)}, but --ref {ref} is {_identity(*reference_is)}")
    copy = meta.get("source_weights")
    if copy is not None and copy != info.weights:  # one file, two model copies: the sha256 alone cannot tell them apart
        if not chosen:  # the recorded copy was not found, so --ref's default was loaded
            raise BadInput(f"{artifact} records that it was exported from the {ascii(copy)[:60]} copy, which {ref} does not hold: "
                           f"name the copy it came from with --weights NAME (`partialnet info {ref}` lists them)")
        raise BadInput(f"{artifact} was exported from the {ascii(copy)[:60]} copy of {ref}; --weights {ascii(info.weights)[1:-1][:60]} loads another: "
                       "leave --weights out to load the one it was exported from")
    classes = meta.get("num_classes")
    if classes is not None and str(classes) != str(info.num_classes):  # parity compares logits; the label count is read from here
        raise CheckFailed(f"{artifact}: its metadata says num_classes {ascii(str(classes))[1:-1][:20]}, but the model it was "
                          f"exported from has {info.num_classes}: a deployment that reads it would map labels wrongly")


MAX_SEED = 2**63 - 1


@stops_cleanly
def train_digits(
    output: str | Path,
    variant: str = "partialnet_t0",
    epochs: int = 6,
    seed: int = 0,
    force: bool = False,
    progress=None,
    imgsz: tuple[int, int] = (64, 64),
) -> dict:
    """Train `variant` on the digits yardstick at `imgsz` (recorded in the checkpoint: accuracy is judged
    only at the size a model was trained for) and write an ordinary checkpoint every command accepts."""
    from partialnet import digits
    from partialnet.models.registry import get_variant

    name = get_variant(variant).name
    check_name(output, "output", optional=True)
    imgsz = parse_imgsz(imgsz)
    check_count(epochs, "--epochs", 200)
    if not whole_number(seed) or not 0 <= seed <= MAX_SEED:  # torch takes 64 bits: a larger one failed after the data was prepared
        raise BadInput(f"--seed {shown(seed)}: expected an integer from 0 to {MAX_SEED}")
    outputs = [Output(output_file(output, name, ".pt"), "-o", written_as="a PyTorch checkpoint")]
    check_outputs(outputs, (), force)
    check_input_shape(64, *imgsz, "--imgsz")
    model, result = digits.train(name, epochs, seed, progress, tuple(imgsz))
    payload = {"state_dict": model.state_dict(), "dataset": digits.DATASET, "digits": result.to_dict()}
    with atomic_outputs(outputs, force) as (staged,):
        staged.save_torch(payload)
    return {"output": str(outputs[0].path), **result.to_dict()}


def _all_format_options(options: ExportOptions, fmt) -> ExportOptions:
    return replace(options, half=fmt.default_precision == "fp16")


def _all_row_beside(done: dict, fmt, other, job: dict, staged: list) -> dict:
    """A format of `export --format all` exported by the second process: its files into the group, or its why."""
    row = {"format": fmt.name, "file": None, "why": None, "seconds": done.get("export_s")}
    if done["status"] != "ok":
        for item in staged:
            item.drop()
        skipped = done.get("kind") == "Unavailable"
        return {**row, "status": "skipped" if skipped else "failed", "verdict": "skipped" if skipped else "failed", "why": str(done.get("why"))[:300]}
    other.copy_into(job, staged)
    result = {**done["result"], "output": str(staged[0].output.path)}
    return {**row, "status": "verified", "verdict": "verified", **_all_row_figures(result)}


def _export_one_of_all(model, info, folded, fmt, outs, staged, options: ExportOptions, checks: VerifyOptions) -> dict:
    """One format of `export --format all`, exported into its staged files (dropped from the group if it fails)."""
    options = _all_format_options(options, fmt)
    started = time.perf_counter()
    row = {"format": fmt.name, "file": None, "why": None}
    result = None
    try:
        result = export_staged(model, info, folded, fmt.name, outs, staged, options, checks)
        unavailable = result["graph"].get("unavailable_short")
        if unavailable:  # prepared and verified here, finished elsewhere (TensorRT without a GPU)
            row.update(status="not verifiable here", verdict="exported, not verifiable here", why=unavailable)
        else:
            row.update(status="verified", verdict="verified")
    except Unavailable as exc:
        row.update(status="skipped", verdict="skipped", why=str(exc)[:300])
    except (CheckFailed, BadInput) as exc:
        row.update(status="failed", verdict="failed", why=str(exc)[:300])
    if result is None:
        for item in staged:
            item.drop()
    row["seconds"] = round(time.perf_counter() - started, 1)
    if result:
        row.update(_all_row_figures(result))
    return row


def _all_row_figures(result: dict) -> dict:
    """What the `--format all` table shows of one verified export: file, size, precision, parity, accuracy."""
    row = {}
    parity = result["parity"]
    if "checks" in parity and parity.get("executed"):  # Core ML off macOS: its program run by the reference interpreter
        row.update(verdict="verified (reference interpreter)", why=f"{parity['verdict']} ({parity.get('why')})")
    elif "checks" in parity:  # static checks only
        row.update(status="not verifiable here", verdict="exported, not verifiable here", why=f"{parity['verdict']} ({parity.get('why')})")
    row.update(file=result["output"], bytes=result["bytes"], precision=result["metadata"]["precision"])
    cases = parity.get("cases") or []
    if cases:
        row["max_abs"] = max(c["max_abs"] for c in cases)
        row["top1_agreement"] = min(c["top1_agreement"] for c in cases)
    if parity.get("accuracy"):
        row["digits_top1"] = parity["accuracy"]["artifact_top1"]
        row["reference_top1"] = parity["accuracy"]["reference_top1"]
    return row


@stops_cleanly
def export_all(  # long: the group of every format's files, two processes filling it
    source: str,
    output_dir: str | Path | None = None,
    options: ExportOptions | None = None,
    *,
    checks: VerifyOptions | None = None,
    variant: str | None = None,
    force: bool = False,
    weights: str | None = None,
) -> dict:
    """Every format this machine can produce, from one load and one fold, each verified as far as it can be
    (a format whose export is long single-threaded Python, in a second process on its own core).

    Each format is exported with its defaults at `options.imgsz` and `options.batch` (an option that
    belongs to one format is refused). Returns one status row per format in the spirit of Ultralytics'
    benchmark table; `failed` lists the formats that could be verified here and failed (the CLI exits 1).
    """
    check_name(source, "source")
    options, checks = check_all_options(given(options, ExportOptions, "options"), FORMATS), given(checks, VerifyOptions, "checks").check()
    inputs = [source_path(source)]
    begun = time.perf_counter()
    planned, rows = _plan_all(source, output_dir)
    outputs = [o for _, outs in planned for o in outs]
    check_outputs(outputs, inputs, force)  # every file of every format, before the load
    if checks.images:
        checks.decode_now(options.imgsz)
    model, info = _load(source, variant, weights)
    checks = judged_on_own_data(checks, info, options.imgsz)
    check_labels_fit(checks, info)
    folded = _fold(model, options.imgsz, None if options.dynamic else options.batch)
    # One group: what was verified is published together at the end, or nothing is (Ctrl-C, SIGTERM, a crash);
    # a format that failed or could not be made is left out of the group.
    from partialnet.bench.matrix_beside import Beside, sent_beside

    beside = sent_beside(planned, lambda planned_format: planned_format[0].python_bound)  # on their own core
    jobs = [{"key": fmt.name, "format": fmt.name, "name": outs[0].path.name,
             "options": {k: v for k, v in vars(_all_format_options(options, fmt)).items() if k not in ("calibration", "given")}} for fmt, outs in beside]
    with atomic_outputs(outputs, force, inputs) as staged, Beside(source, variant, jobs, checks, weights) as other:
        mine = {}
        for fmt, outs in planned:
            mine[fmt.name], staged = staged[: len(outs)], staged[len(outs) :]
        for fmt, outs in planned:
            if (fmt, outs) not in beside:
                rows.append(_export_one_of_all(model, info, folded, fmt, outs, mine[fmt.name], options, checks))
                raise_if_pending()
        done = _collect_beside(other) if beside else {}
        for fmt, _ in beside:  # its stages in the log and the time breakdown, apart from this process's own
            ran_beside(f"second process: {fmt.name}", done[fmt.name].get("stages_s") or {})
        rows += [_all_row_beside(done[fmt.name], fmt, other, job, mine[fmt.name]) for (fmt, _), job in zip(beside, jobs)]
    order = {name: i for i, name in enumerate(FORMATS)}
    rows.sort(key=lambda r: order[r["format"]])
    return {
        "source": source_record(info),
        "imgsz": list(options.imgsz),
        "batch": options.batch,
        "rows": rows,
        "failed": [r["format"] for r in rows if r["status"] == "failed"],
        "second_process": [fmt.name for fmt, _ in beside],  # loaded and folded again there, beside this process's work
        "seconds": round(time.perf_counter() - begun, 1),
    }


def _collect_beside(other) -> dict:
    """The second process's rows; the time spent waiting for it is a stage, so it is not left in "other"."""
    with stage("wait", "for the second process"):
        return other.collect()


def _plan_all(source: str, output_dir) -> tuple[list, list[dict]]:
    """(format, its outputs) for every format this machine can export, and a skipped row for the others."""
    from partialnet.exporters.status import format_rows

    named_as = next((f for f in FORMATS.values() if output_dir and str(output_dir).lower().endswith(f.suffix)), None)
    if named_as:  # `-o model.onnx` for every format would make a folder that reads as one ONNX file
        raise BadInput(f"-o {output_dir}: --format all writes a folder of artifacts; give it a folder name, not one ending in {named_as.suffix}")
    planned, skipped = [], []
    for status in format_rows():
        fmt = get_format(status["format"])
        if status["export"] == "no":
            skipped.append({"format": fmt.name, "status": "skipped", "verdict": "skipped", "why": status["export_reason"]})
            continue
        base = Path(output_dir) / Path(default_output(source, fmt.suffix)).name if output_dir else default_output(source, fmt.suffix)
        planned.append((fmt, artifact_outputs(base, fmt.name, typed=output_dir is not None)))
    return planned, skipped


@stops_cleanly
def matrix(
    source: str,
    *,
    formats: str | None = None,
    precisions: str | None = None,
    data: str | None = None,
    images: str | Path | None = None,
    calib_size: int | None = None,
    calib_method: str | None = None,
    int8_keep_float: str | None = None,
    budget: float = 1.0,
    imgsz: tuple[int, int] = (224, 224),
    threads: int = 1,
    protocol: str = "latency",
    output_dir: str | Path | None = None,
    variant: str | None = None,
    force: bool = False,
    progress=None,
    where=None,
    weights: str | None = None,
    extra_outputs: Sequence = (),
) -> dict:
    """Every format x precision here from one load and one fold: exported, verified, timed, and the one to ship.
    `where` (a remote.host.RemoteHost) times the rows on a target: exports and accuracy stay this machine's.
    `extra_outputs` (the CLI's --json/--md/--plot, written by the caller) are checked with the matrix's own files,
    so none of them can be, or replace, an artifact, its manifest or matrix.json."""
    imgsz, formats, precisions, protocol = _matrix_arguments(source, imgsz, formats, precisions, protocol)
    plan = _matrix_plan(source, formats, precisions, data, calib_size, budget, imgsz, threads, protocol, output_dir, where)
    plan["variant"], plan["weights"], calib_size = variant, weights, plan["calib_size"]
    _matrix_int8_tools(plan, calib_method, int8_keep_float)
    if weights is not None and not is_variant_name(source):  # bad input (exit 2) before "not possible here" (exit 3)
        check_copy_named(source, weights)
    _refuse_empty_matrix(plan["cells"])
    inputs = [source_path(source)]
    check_outputs([*plan["outputs"], *extra_outputs], inputs, force)  # every artifact and the manifest, before the load
    checks = VerifyOptions(samples=4, images=Path(images) if images else None)
    checks.decode_now(imgsz)  # every image, before the load: a bad one stops the matrix before its exports
    model, info = _load(source, variant, weights)
    folded = _fold(model, imgsz)
    check_layers(int8_keep_float, folded[0])
    data = data or ("digits" if info.dataset == "digits" else None)
    calibration = _matrix_calibration(plan, data, imgsz, calib_size)
    untrained = trained_elsewhere(info, imgsz)
    checks = judged_on_own_data(checks, info, imgsz)
    check_labels_fit(checks, info)
    exported = _matrix_exports(model, info, folded, plan, imgsz, data, calib_size, calibration, checks, force, inputs, progress)
    rows = _matrix_timings(source, plan, exported, imgsz, threads, protocol, progress, where)
    result = _matrix_result(info, plan, rows, imgsz, threads, protocol, budget, data, calib_size, checks.labelled() or checks.dataset, untrained, where)
    write_file(plan["manifest"], dumps_strict(result, indent=1), force, inputs)
    return result


def _matrix_arguments(source, imgsz, formats, precisions, protocol) -> tuple:
    """A Python caller's arguments as the command line has them: a size as an int or a pair, lists as typed, a protocol
    in any case (as bench takes it)."""
    check_name(source, "source")
    lists = (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in (formats, precisions))
    return parse_imgsz(imgsz), *lists, protocol.strip().lower() if isinstance(protocol, str) else protocol


def _refuse_cells_no_machine_makes(cells: list, asked: list[str]) -> None:
    """Cells no machine can make (`onnx bf16`, `coreml int8`) are usage (exit 2) where they are all that was asked
    for: `--precisions bf16` with only ONNX exited 0 on the fp32 cell it had added. Found before the options about
    calibration: `--formats coreml --precisions int8` had been asked for calibration data first."""
    impossible = [c for c in cells if c.precision in asked]
    if impossible and all(c.no_such_artifact for c in impossible):
        listed = "; ".join(f"{c.fmt.name} {c.precision}: {c.why}" for c in impossible)
        raise BadInput(f"no cell asked for exists on any machine ({listed})")


def _refuse_empty_matrix(cells: list) -> None:
    """`--formats trt` without a GPU exited 0 with an empty matrix: a CI job asking for it went green on nothing.
    (Cells no machine can make were refused with the plan, as usage: `_refuse_cells_no_machine_makes`.)"""
    if all(cell.why for cell in cells):
        more = f"; {len(cells) - 1} other cell(s) likewise" if len(cells) > 1 else ""
        raise Unavailable(f"no cell of this matrix can be made here ({cells[0].fmt.name} {cells[0].precision}: {cells[0].why}{more})")


def _matrix_calibration(plan: dict, data: str | None, imgsz, calib_size: int):
    """The calibration images every INT8 cell shares (loaded once), or why those cells cannot be made."""
    for cell in plan["cells"]:
        if cell.why is None and cell.precision == "int8" and data is None:
            cell.why = "INT8 needs calibration data: --data digits or --data DIR"
    if not data or not any(c.why is None and c.precision == "int8" for c in plan["cells"]):
        return None
    check_data(data, calib_size, imgsz)
    with stage("calibration data", stage_label(data, calib_size)):
        return calibration_images(data, imgsz, calib_size)


def _matrix_plan(source, formats, precisions, data, calib_size, budget, imgsz, threads, protocol, output_dir, where=None) -> dict:
    import math

    from partialnet.bench import matrix as mx
    from partialnet.bench.run import check_threads_fit
    from partialnet.bench.where import HERE
    from partialnet.limits import MAX_THREADS

    names, asked = mx.formats_asked(formats), mx.parse_list(precisions, mx.PRECISIONS, "--precisions")
    precs = mx.with_fp32(asked)
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and 0 <= budget <= 100):
        raise BadInput(f"--budget {budget}: expected points of top-1 from 0 to 100")
    check_input_shape(1, *imgsz, "--imgsz")
    check_count(threads, "--threads", MAX_THREADS)
    check_threads_fit(threads, where or HERE, "cpu")
    # batch 1 per row: throughput's batch 32 or the papers' fixed counts would be rewritten; an unknown name listed the ones refused here
    if not isinstance(protocol, str) or protocol.strip().lower() not in mx.PROTOCOLS:
        if not isinstance(protocol, str):
            raise BadInput(f"protocol: expected a name ({' or '.join(mx.PROTOCOLS)}), got {type(protocol).__name__}")
        raise BadInput(f"--protocol {protocol}: matrix times batch 1 under {' or '.join(mx.PROTOCOLS)}")
    cells = mx.plan_cells(names, precs)
    _refuse_cells_no_machine_makes(cells, asked)
    if none := _no_int8_cell(names, precs):  # as --calib-method is, and as export and bench refuse them
        for flag, value in (("--data", data), ("--calib-size", calib_size)):
            if value is not None:
                raise BadInput(f"{flag} calibrates the INT8 cells, and {none}")
    calib_size = DEFAULT_CALIB_SIZE if calib_size is None else calib_size
    check_data(data, calib_size)  # the count always; the source where one is named
    if precisions and "int8" in precs and data is None and is_variant_name(source):  # asked for, and no checkpoint to say digits
        raise BadInput("--precisions int8 needs calibration data: --data digits or --data DIR (a variant name has no dataset of its own)")
    folder = Path(output_dir) if output_dir else default_output(source, "_matrix")
    stem = default_output(source, "").name
    for cell in cells:
        if cell.why is None and not mx.computed(cell.fmt, cell.precision):  # a computed cell runs the fp32 cell's file
            cell.outputs = artifact_outputs(mx.cell_path(folder, stem, cell), cell.fmt.name)
    manifest = Output(folder / mx.MANIFEST, "matrix manifest")
    outputs = [o for c in cells if c.outputs for o in c.outputs] + [manifest]
    return {"cells": cells, "folder": folder, "manifest": manifest, "outputs": outputs, "source": source, "variant": None, "weights": None,
            "asked": asked, "calib_size": calib_size}


def _no_int8_cell(formats: list[str], precisions: list[str]) -> str | None:
    """Why a matrix has no INT8 cell on any machine, or None: `--formats coreml --calib-size 300` had reached
    "not possible here" (exit 3) off macOS, and on a Mac it would have been dropped without a word."""
    from partialnet.bench import matrix as mx

    if "int8" not in precisions:
        return "--precisions asks for none"
    if not any(mx.takes(FORMATS[name], "int8") for name in formats):
        return f"no format asked has an INT8 export ({', '.join(dict.fromkeys(formats))})"
    return None


def _matrix_int8_tools(plan: dict, calib_method: str | None, int8_keep_float: str | None) -> None:
    """--calib-method and --int8-keep-float shape every INT8 cell; a format whose quantizer lacks them is a skipped row saying so."""
    from partialnet.exporters.options import CALIB_METHODS, keep_float

    keep_float(int8_keep_float)  # malformed: exit 2 before any work
    if calib_method is not None and calib_method not in CALIB_METHODS:  # a typo, not a method some format lacks
        raise BadInput(f"--calib-method {ascii(calib_method)[1:-1][:40]}: methods are {', '.join(CALIB_METHODS)}")
    plan["int8_tools"] = {k: v for k, v in (("calib_method", calib_method), ("int8_keep_float", int8_keep_float)) if v is not None}
    none = _no_int8_cell([c.fmt.name for c in plan["cells"]], [c.precision for c in plan["cells"]])
    if plan["int8_tools"] and none:  # as export refuses them without --int8
        flag = "--calib-method" if calib_method is not None else "--int8-keep-float"
        raise BadInput(f"{flag} shapes INT8 cells, and {none}")
    for cell in plan["cells"]:
        if cell.why is None and cell.precision == "int8" and plan["int8_tools"]:
            try:
                check_int8_tools(cell.fmt, ExportOptions(int8=True, data="digits", **plan["int8_tools"]))
            except BadInput as exc:
                cell.why, cell.outputs = str(exc), None
    plan["outputs"] = [o for c in plan["cells"] if c.outputs for o in c.outputs] + [plan["manifest"]]


def _matrix_exports(model, info, folded, plan, imgsz, data, calib_size, calibration, checks, force, inputs, progress) -> dict:
    """Every producible cell exported into one group: published together at the end (what failed is left out)."""
    from partialnet.bench import matrix as mx

    from partialnet.bench.matrix_beside import Beside, sent_beside

    todo = [c for c in plan["cells"] if c.why is None and c.outputs]
    options_of = {id(c): replace(mx.cell_options(c.fmt, c.precision, imgsz, data, calib_size), **(plan["int8_tools"] if c.precision == "int8" else {}))
                  for c in todo}
    beside = sent_beside(todo, lambda c: c.fmt.python_bound, slow=lambda c: c.precision == "int8")
    jobs = [{"key": str(id(c)), "format": c.fmt.name, "name": c.outputs[0].path.name,
             "options": {k: v for k, v in vars(options_of[id(c)]).items() if k not in ("calibration", "given")}} for c in beside]
    exported = {}
    computed = [c for c in plan["cells"] if c.why is None and not c.outputs]  # they run the published fp32 files
    steps = len(todo) + len(computed)  # one count for the exports and the verifications after them
    with (atomic_outputs([o for c in todo for o in c.outputs], force, inputs) as staged,
          Beside(plan["source"], plan["variant"], jobs, checks, plan["weights"]) as other):
        mine = {}
        for cell in todo:
            mine[id(cell)], staged = staged[: len(cell.outputs)], staged[len(cell.outputs) :]
        for i, cell in enumerate(sorted((c for c in todo if c not in beside), key=lambda c: c.fmt.python_bound)):  # the long ones last
            if progress:
                progress(f"export {cell.fmt.name} {cell.precision}", i, steps)
            options = options_of[id(cell)]
            options.calibration = calibration if cell.precision == "int8" else None
            exported[(cell.fmt.name, cell.precision)] = mx.export_cell(model, info, folded, cell, mine[id(cell)], options, checks)
            raise_if_pending()
        if progress and beside:
            progress(f"export {', '.join(f'{c.fmt.name} {c.precision}' for c in beside)} (beside the others)", len(todo) - len(beside), steps)
        rows = other.collect()
        for cell, job in zip(beside, jobs):
            exported[(cell.fmt.name, cell.precision)] = _beside_row(rows[job["key"]], cell, job, other, mine[id(cell)])
    for i, cell in enumerate(computed):
        if progress:
            progress(f"verify {cell.fmt.name} {cell.precision}", len(todo) + i, steps)
        exported[(cell.fmt.name, cell.precision)] = mx.computed_row(model, exported[(cell.fmt.name, "fp32")], cell, checks)
    return exported


def export_beside(folder: str) -> None:
    """The second export process of matrix, export --format all and bench (partialnet.bench.matrix_beside): its
    cells through `export`."""
    from partialnet.bench.matrix_beside import serve

    serve(Path(folder), export)


def _beside_row(row: dict, cell, job: dict, other, staged: list) -> dict:
    """A cell exported in the second process: its files copied into the group, or dropped with why."""
    row = {k: v for k, v in row.items() if k not in ("result", "kind", "stages_s")}
    if row["status"] != "ok":
        for item in staged:
            item.drop()
        return row
    other.copy_into(job, staged)
    return {**row, "file": str(cell.outputs[0].path)}


def _matrix_timings(source, plan, exported, imgsz, threads, protocol, progress, where=None) -> list[dict]:
    """PyTorch fp32 of the checkpoint, then every exported artifact, each row timed in its own process."""
    from partialnet.bench import matrix as mx
    from partialnet.bench.protocols import get_protocol
    from partialnet.runtimes.table import DEPLOY_RUNTIME

    proto = get_protocol(protocol, "cpu")
    reference = next((e for e in exported.values() if e.get("reference_top1") is not None), {})
    rows = [{"format": DEPLOY_RUNTIME, "precision": "fp32", "runtime": DEPLOY_RUNTIME, "file": None, "bytes": None,
             "top1": reference.get("reference_top1"), "top5": reference.get("reference_top5"), "agreement": 1.0,
             "status": "ok", "why": "the reference: the folded checkpoint in PyTorch",
             **mx.timing_fields(mx.timed_row(source, DEPLOY_RUNTIME, imgsz, threads, proto, where))}]
    timed = [c for c in plan["cells"] if c.why is None and exported[(c.fmt.name, c.precision)]["status"] == "ok"]
    for cell in plan["cells"]:
        base = {"format": cell.fmt.name, "precision": cell.precision, "runtime": cell.fmt.runtime, "file": None, "bytes": None,
                "top1": None, "top5": None, "agreement": None}
        if cell.why is not None:
            rows.append({**base, "status": "skipped", "why": cell.why, **({"no_such_artifact": True} if cell.no_such_artifact else {})})
            continue
        done = exported[(cell.fmt.name, cell.precision)]
        row = {**base, **done}
        if done["status"] == "ok":
            if progress:
                progress(f"time {cell.fmt.name} {cell.precision}", timed.index(cell), len(timed))
            precision = cell.precision if mx.computed(cell.fmt, cell.precision) else "fp32"  # an exported file runs as built
            row.update(mx.timing_fields(mx.timed_row(done["file"], cell.fmt.runtime, imgsz, threads, proto, where, precision=precision)))
            if precision != "fp32" and row.get("precision_ran") not in (None, precision):  # a target without bf16 units ran fp32
                row.update(status="skipped", why=f"timed as {row['precision_ran']}, not {precision}: that CPU has no native {precision}", p50_ms=None)
        rows.append(row)
    return rows


def _matrix_result(info, plan, rows, imgsz, threads, protocol, budget, data, calib_size, judged_on, untrained, where=None) -> dict:
    from partialnet.bench import matrix as mx
    from partialnet.machine import fingerprint

    if judged_on is not None and not isinstance(judged_on, str):
        accuracy = f"your labelled images: {judged_on.name}"
    elif untrained:
        accuracy = (f"{mx.NOT_JUDGED}: the checkpoint was trained at {'x'.join(map(str, info.trained_imgsz))}; a digits model is near chance at "
                    f"another size (agreement only); train at this size: partialnet digits --imgsz {imgsz[0]}")
    else:
        accuracy = "held-out digits" if judged_on else f"{mx.NOT_JUDGED}: not a digits checkpoint and no labelled --images (agreement only)"
    mx.judge_rows(rows, budget, accuracy)  # the matrix's word on accuracy decides which rows can fit the budget
    rows.sort(key=lambda r: (r.get("p50_ms") is None, r.get("p50_ms") or 0))
    return {"schema": mx.SCHEMA, "source": source_record(info), "imgsz": list(imgsz), "batch": 1, "threads": threads, "protocol": protocol,
            "budget_points": budget, "calibration": {"data": data, "images": calib_size, **plan["int8_tools"]}, "accuracy": accuracy, "rows": rows,
            "folder": str(plan["folder"]), "machine": where.machine() if where is not None else fingerprint()}


@stops_cleanly
def bench_plans(plans: list, ab: tuple[str, str] | None = None, block: int = 10, progress=None, announce=None) -> list[dict]:
    """One bench result per plan (a place each: here, or a target): `bench`'s rows, or its A/B."""
    from partialnet.bench import run as bench_run

    if ab:
        results = []
        for plan in plans:
            if announce:
                announce(plan)
            results.append(bench_run.run_ab(plan, *ab, block, progress))
        return results
    return bench_run.run_everywhere(plans, progress, announce)


def bench(sources: list[str] | None = None, options=None, progress=None) -> dict:
    """`partialnet bench` here: every row in its own process, the result dict `--json` writes (rows with raw
    samples, protocol, settings, machine). `options` is a `partialnet.bench.options.BenchOptions`."""
    from partialnet.bench.options import BenchOptions

    options = given(options, BenchOptions, "options")
    sources = check_listed(sources, "sources") if sources is not None else None
    result = bench_plans([options.plan(sources)], options.ab, options.block, progress)[0]
    if options.max_slowdown is not None:  # the A/B gate: each cell's verdict in its "gate", as the command records it
        from partialnet.bench.ab_gate import gate_ab

        gate_ab(result, options.alpha, options.max_slowdown)
    return result


def compare(baseline: str | Path, candidate: str | Path, *, alpha: float = 0.01, max_slowdown: float = 0.10, noise: str = "fail",
            missing: str = "fail", allow_different_machines: bool = False, allow_different_settings: bool = False) -> dict:
    """`partialnet compare` on two bench result files: the verdict per row, and `failure`, the one-line
    reason the gate fails (the command exits 1), or None where it passes."""
    from partialnet.bench.compare import check_gate, compare_results, failure, is_same_file
    from partialnet.bench.results import load_result

    check_name(baseline, "baseline")
    check_name(candidate, "candidate")
    noise, missing = check_gate(alpha, max_slowdown, noise, missing)
    verdict = compare_results(load_result(baseline), load_result(candidate), alpha, max_slowdown, allow_different_machines, noise,
                              is_same_file(baseline, candidate), missing, allow_different_settings)
    return {**verdict, "failure": failure(verdict)}


def report(results: list[str | Path]) -> dict:
    """`partialnet report`: claims, bench or matrix results from several machines merged, every figure recomputed."""
    from partialnet.bench.report import merge

    return merge(check_listed(results, "results"))
