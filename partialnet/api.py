"""What the CLI does, as plain functions returning plain data, so a Python user misses nothing.

The CLI only parses arguments and renders what these return.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partialnet.checkpoint import RANDOM_WEIGHTS_SEED, CheckpointInfo, resolve, sha256_of, size_of, source_path
from partialnet.calibration import calibration_images, check_data, judging_images
from partialnet.errors import BadInput, CheckFailed, Unavailable, missing_extra
from partialnet.exporters.formats import FORMATS, format_for_path, get_format
from partialnet.exporters.options import DEFAULT_CALIB_SIZE, DEFAULT_OPSET, ExportOptions, check_combination, check_opset, check_options
from partialnet.folding import FoldReport, count_batchnorms, deploy_payload, fold
from partialnet.limits import MAX_SAMPLES, check_count, check_input_shape, check_tolerances
from partialnet.models.flops import measure_cost
from partialnet.models.partialnet import PartialNet
from partialnet.models.registry import VARIANTS, Variant
from partialnet.outputs import Output, atomic_outputs, check_outputs
from partialnet.preprocess import CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD, load_images
from partialnet.runtimes.torch_eager import TorchRunner
from partialnet.signals import raise_if_pending
from partialnet.verify import DEFAULT_TOLERANCES, ParityReport, compare, image_batches, judge_accuracy, random_batches

def parse_imgsz(values: Sequence[int] | int | str | None, default: int = 224) -> tuple[int, int]:
    """`224`, `(H, W)` or "H,W" / "HxW": multiples of 32, at least 64 (the last stage must be at least 2×2)."""
    if values is None:
        values = [default]
    if isinstance(values, int):
        values = [values]
    if isinstance(values, str):
        parts = [p for p in values.replace("x", ",").replace(" ", ",").split(",") if p]
        if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
            raise BadInput(f"--imgsz {values[:40]!r}: expected a size such as 224 or 224,192")
        values = [int(p) for p in parts]
    values = list(values)
    if len(values) not in (1, 2):
        raise BadInput(f"--imgsz takes one size or H W, got {len(values)} values")
    h, w = (int(v) for v in (values * 2)[:2])
    check_input_shape(None, h, w, "--imgsz")
    return h, w


def variant_row(variant: Variant, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """One measured row of `partialnet models`, beside the published numbers."""
    with torch.device("meta"):
        model = PartialNet(variant.arch())
    cost = measure_cost(model, imgsz)
    at_224 = imgsz == (224, 224)
    return {
        "name": variant.name,
        "family": variant.family,
        "embed_dim": variant.embed_dim,
        "depths": list(variant.depths),
        "act": variant.act,
        "pat_sp": variant.pat_sp,
        "imgsz": list(imgsz),
        "params": cost.params,
        "gmacs": round(cost.gmacs, 4),
        "published_params": variant.published_params,
        "published_gmacs": variant.published_gmacs,
        "params_match": cost.params == variant.published_params,
        "gmacs_rel_diff": round(cost.gmacs / variant.published_gmacs - 1, 5) if at_224 else None,
        "published_top1": variant.published_top1,
        "source": variant.source,
    }


def model_table(imgsz: tuple[int, int] = (224, 224)) -> list[dict]:
    return [variant_row(v, imgsz) for v in VARIANTS.values()]


def inspect(source: str, variant: str | None = None, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """Everything `partialnet info` shows about a checkpoint or a variant name."""
    model, info = resolve(source, variant)
    cost = measure_cost(model, imgsz)
    row = info.to_dict()
    row.update(
        params=cost.params,
        gmacs=round(cost.gmacs, 4),
        imgsz=list(imgsz),
        batchnorm_layers=count_batchnorms(model),
    )
    return row


# ---------------------------------------------------------------- fold, export, verify

DYNAMIC_VERIFY_BATCH = 4


def default_output(source: str, suffix: str) -> Path:
    """Beside the checkpoint (`model.pth` → `model.onnx`), or `./<variant><suffix>` for a bare variant.

    Computed from the argument alone, so outputs are checked before the checkpoint is loaded.
    """
    path = source_path(source)
    if path is None:
        return Path.cwd() / f"{source.strip().lower().replace('-', '_')}{suffix}"
    return path.with_name(path.name.split(".")[0] + suffix)


def source_record(info: CheckpointInfo) -> dict:
    return {
        "source": info.source,
        "variant": info.variant,
        "sha256": info.sha256,
        "random_weights": info.random_weights,
        "random_weights_seed": RANDOM_WEIGHTS_SEED if info.random_weights else None,
    }


def fold_checkpoint(
    source: str,
    output: str | Path | None = None,
    imgsz: tuple[int, int] = (224, 224),
    variant: str | None = None,
    report_path: str | Path | None = None,
    force: bool = False,
) -> dict:
    """Fold a checkpoint (or variant) into a deploy file; returns the report and where things went."""
    out = Path(output) if output else default_output(source, ".deploy.pt")
    report_out = Path(report_path) if report_path else out.with_name(out.name + ".fold.json")
    outputs = [Output(out, "-o"), Output(report_out, "--report")]
    inputs = [source_path(source)]
    check_outputs(outputs, inputs, force)  # before the slow load and fold
    model, info = resolve(source, variant)
    deploy, report = fold(model, imgsz)
    result = {"output": str(out), "report_path": str(report_out), **source_record(info), "report": report.to_dict()}
    with atomic_outputs(outputs, force, inputs) as (staged_deploy, staged_report):
        torch.save(deploy_payload(deploy, report, source_record(info)), staged_deploy.file)
        staged_report.write_json(result)
    return result


def artifact_metadata(info: CheckpointInfo, report: FoldReport, options: ExportOptions, precision: str) -> dict[str, str]:
    """What travels inside the artifact, so a deployed file says what it is and how to feed it."""
    from partialnet import __version__

    return {
        "producer": "partialnet",
        "partialnet_version": __version__,
        "variant": info.variant,
        "source": Path(info.source).name,
        "source_sha256": info.sha256 or f"random weights (seed {RANDOM_WEIGHTS_SEED})",
        "imgsz": f"{options.imgsz[0]},{options.imgsz[1]}",
        "layout": "NCHW",
        "batch": "dynamic" if options.dynamic else str(options.batch),
        "precision": precision,
        "input": "images: float RGB, normalised",
        "mean": json.dumps(IMAGENET_MEAN),
        "std": json.dumps(IMAGENET_STD),
        "preprocess": f"bicubic resize short side to {int(min(options.imgsz) / CROP_RATIO)}, centre crop, /255, mean/std",
        "num_classes": str(info.num_classes),
        "fold": report.summary(),
        **(_calibration_metadata(options) if options.int8 else {}),
    }


def _calibration_metadata(options: ExportOptions) -> dict[str, str]:
    """Which data calibrated an INT8 artifact, so `verify` knows what it can be judged on (no paths kept)."""
    from partialnet.calibration import DIGITS, describe

    data = DIGITS if options.data == DIGITS else f"images:{Path(options.data).name}"
    return {"calibration_data": data, "calibration": describe(options.data, len(options.calibration))}


def _parity_cases(io: dict, samples: int, images: np.ndarray | None, judging=None) -> list[tuple[str, list[np.ndarray]]]:
    imgsz = tuple(io["imgsz"])
    batch = io["batch"] or DYNAMIC_VERIFY_BATCH
    if io["precision"] == "int8":  # judged on real images only
        cases = [(f"images ({len(images)})", image_batches(images, batch))] if images is not None else []
        if judging is not None:
            cases.append((judging[0], image_batches(judging[1], batch)))
        if not cases:
            raise BadInput("an INT8 artifact is judged on real images: give --images DIR or --dataset digits")
        return cases
    if io["dynamic"]:
        cases = [
            ("random, batch 1", random_batches(1, max(1, samples // 2), imgsz, seed=1)),
            (f"random, batch {DYNAMIC_VERIFY_BATCH}", random_batches(DYNAMIC_VERIFY_BATCH, samples, imgsz, seed=2)),
        ]
    else:
        cases = [(f"random, batch {io['batch']}", random_batches(io["batch"], samples, imgsz, seed=1))]
    if images is not None:
        batch = io["batch"] or min(len(images), DYNAMIC_VERIFY_BATCH)
        cases.append((f"images ({len(images)})", image_batches(images, batch)))
    return cases


def check_parity(
    artifact: Path,
    reference: nn.Module,
    io: dict,
    images_dir: str | Path | None = None,
    samples: int = 8,
    tolerances: dict | None = None,
    threads: int | None = None,
    dataset: str | None = None,
    runtime: str = "onnxruntime",
    judging: tuple[str, np.ndarray] | None = None,
) -> ParityReport:
    """Run `artifact` in its runtime and compare it with the unfolded PyTorch model (and on `dataset`)."""
    if io["precision"] not in DEFAULT_TOLERANCES:
        raise BadInput(f"{artifact}: input precision {io['precision']} is not fp32 or fp16")
    images = load_images(Path(images_dir), tuple(io["imgsz"])) if images_dir else None
    tol = DEFAULT_TOLERANCES[io["precision"]].merged(**(tolerances or {}))
    runner = artifact_runner(runtime, artifact, threads)
    reference_runner = TorchRunner(reference)
    runner.prepare()
    reference_runner.prepare()
    try:
        report = compare(runner, reference_runner, _parity_cases(io, samples, images, judging), tol, io["precision"])
        if dataset:
            report.accuracy = dataset_accuracy(dataset, runner, reference_runner, io, tol)
        return report
    finally:
        runner.close()
        reference_runner.close()


def artifact_runner(runtime: str, artifact: Path, threads: int | None = None):
    """The runner that verifies an artifact: its format's runtime, fp32 pinned where a runtime could drift."""
    from partialnet.runtimes.table import RUNTIMES, artifact_runner as build

    return build(runtime, artifact, threads, precision="fp32", device=RUNTIMES[runtime].devices[0])


DATASETS = ("digits",)


def check_dataset(dataset: str | None) -> str | None:
    if dataset is not None and dataset not in DATASETS:
        raise BadInput(f"--dataset {dataset!r}: known datasets are {', '.join(DATASETS)}")
    return dataset


def dataset_accuracy(dataset: str, runner, reference_runner, io: dict, tol) -> dict:
    """Held-out top-1 of the artifact and of the PyTorch model on the documented digits split."""
    from partialnet import digits

    images, labels = digits.held_out(tuple(io["imgsz"]))
    reference_top1 = digits.top1(reference_runner.infer, images, labels, None)
    artifact_top1 = digits.top1(runner.infer, images, labels, io["batch"])
    return judge_accuracy(dataset, len(labels), artifact_top1, reference_top1, tol)


def _check_dataset_model(dataset: str | None, info: CheckpointInfo) -> None:
    from partialnet import digits

    if dataset == "digits" and info.num_classes != digits.NUM_CLASSES:
        raise BadInput(f"--dataset digits needs a 10-class model (train one with `partialnet digits`); {info.source} has {info.num_classes} classes")


def parity_failure(report: ParityReport, what: str) -> CheckFailed:
    return CheckFailed(f"{what} does not match PyTorch: {'; '.join(report.failures())}", details=report.to_dict())


def export(
    source: str,
    format: str = "onnx",
    output: str | Path | None = None,
    imgsz: tuple[int, int] = (224, 224),
    batch: int = 1,
    dynamic: bool = False,
    opset: int | None = None,
    simplify: bool | None = None,
    half: bool = False,
    force: bool = False,
    variant: str | None = None,
    images_dir: str | Path | None = None,
    samples: int = 8,
    tolerances: dict | None = None,
    dataset: str | None = None,
    int8: bool = False,
    data: str | None = None,
    calib_size: int | None = None,
    workspace: float | None = None,
    max_batch: int | None = None,
    fp32: bool = False,
    min_target: str | None = None,
    image_input: bool = False,
) -> dict:
    """Fold, export, verify; the artifact and its manifest appear only if verification passed.

    Options left at None were not given: a format refuses only what the user actually asked for.
    """
    fmt = get_format(format)
    given = {
        name
        for name, value in dict(
            dynamic=dynamic, opset=opset, simplify=simplify, half=half, int8=int8, data=data,
            calib_size=calib_size, workspace=workspace, max_batch=max_batch, fp32=fp32, min_target=min_target,
            image_input=image_input,
        ).items()
        if value not in (None, False)
    } | ({"simplify"} if simplify is not None else set())
    check_options(fmt.name, given, FORMATS)
    options = ExportOptions(
        imgsz=imgsz, batch=batch, dynamic=dynamic, half=half, int8=int8, data=data,
        opset=DEFAULT_OPSET if opset is None else opset, simplify=True if simplify is None else simplify,
        calib_size=DEFAULT_CALIB_SIZE if calib_size is None else calib_size, workspace=workspace, max_batch=max_batch,
        fp32=fp32, min_target=min_target, image_input=image_input,
    )
    check_combination(options)
    if fmt.default_precision == "fp16" and not (fp32 or int8):
        options.half = True  # the format's own default (Core ML: fp16, what the Neural Engine runs)
    if min_target is not None:
        importlib.import_module(f"partialnet.exporters.{fmt.exporter}").check_target(min_target)
    check_dataset(dataset)
    check_input_shape(None if dynamic else batch, *imgsz, "--batch/--imgsz")
    if max_batch is not None:
        check_input_shape(max_batch, *imgsz, "--max-batch/--imgsz")
    check_opset(options.opset)
    check_count(samples, "--samples", MAX_SAMPLES)
    check_tolerances(**(tolerances or {}))
    if fmt.extra and importlib.util.find_spec(fmt.module or fmt.extra) is None and not fmt.fallback:
        raise missing_extra(fmt.module or fmt.extra, fmt.extra)  # before any slow work
    if options.int8 and fmt.name == "openvino" and importlib.util.find_spec("nncf") is None:
        raise missing_extra("nncf (OpenVINO INT8)", "openvino")
    out = Path(output) if output else default_output(source, fmt.suffix)
    if not out.name.endswith(fmt.suffix):
        raise BadInput(f"{out}: a {fmt.name} artifact must end in {fmt.suffix}")
    inputs = [source_path(source)]
    check_outputs(artifact_outputs(out, fmt.name), inputs, force)
    if images_dir:
        load_images(Path(images_dir), imgsz, limit=1)  # fail on a bad folder before the slow work
    check_data(options.data, options.calib_size)
    model, info = resolve(source, variant)
    dataset = dataset or info.dataset
    _check_dataset_model(dataset, info)
    if options.int8:
        options.calibration = calibration_images(options.data, imgsz, options.calib_size)
    return export_folded(model, info, fold(model, imgsz), fmt.name, out, options, images_dir, samples, tolerances, force, inputs, dataset)


def artifact_outputs(out: Path, format: str = "onnx") -> list[Output]:
    """What an export publishes, together or not at all: the artifact, its companions, the manifest.

    An exporter may name other files (TensorRT without a GPU writes an engine-ready ONNX and a build
    script instead of an engine); the manifest sits beside the first of them.
    """
    exporter = importlib.import_module(f"partialnet.exporters.{get_format(format).exporter}")
    if hasattr(exporter, "artifact_paths"):
        files = list(exporter.artifact_paths(out))
    else:
        files = [Output(out, "-o"), *(Output(out.with_suffix(suffix), f"-o ({suffix})") for suffix in exporter.companion_suffixes())]
    return [*files, Output(files[0].path.with_name(files[0].path.name + ".json"), "manifest")]


def export_folded(
    model: nn.Module,
    info: CheckpointInfo,
    folded: tuple[nn.Module, FoldReport],
    format: str,
    out: Path,
    options: ExportOptions,
    images_dir: str | Path | None = None,
    samples: int = 8,
    tolerances: dict | None = None,
    force: bool = False,
    inputs: Sequence[Path | None] = (),
    dataset: str | None = None,
    enforce: bool = True,
) -> dict:
    """Export an already folded model and verify it against `model`; returns the manifest.

    enforce=False publishes an artifact whose gates failed, with the failure in its manifest (bench
    times INT8 builds of random-weight models, whose classes mean nothing).

    An exporter that could only prepare its artifact here (stats["unavailable"]) still has what it
    wrote verified and published; then this raises Unavailable with the next command to run.
    """
    fmt = get_format(format)
    if not out.name.endswith(fmt.suffix):
        raise BadInput(f"{out}: a {fmt.name} artifact must end in {fmt.suffix}")
    outputs = artifact_outputs(out, fmt.name)
    manifest_path = outputs[-1].path
    deploy, report = folded
    metadata = artifact_metadata(info, report, options, options.precision)
    exporter = importlib.import_module(f"partialnet.exporters.{fmt.exporter}")
    judging = None
    if options.int8:
        judging = judging_images(options.data, options.imgsz, options.calib_size)
    started = time.perf_counter()
    with atomic_outputs(outputs, force, inputs) as staged, tempfile.TemporaryDirectory(prefix="partialnet-export-") as work:
        *staged_files, staged_manifest = staged
        stats = exporter.export(deploy, staged_files, options, metadata, Path(work))
        raise_if_pending()  # stop requests wait for a converter to return, then stop before verification
        for item in staged_files:
            item.flush()
        temp_artifact = staged_files[0].path
        verify_path = Path(stats.pop("verify_path", temp_artifact))  # IR: the pair as OpenVINO wrote it
        verify_format = get_format(stats.pop("verify_format", fmt.name))
        exported = time.perf_counter()
        verifier = importlib.import_module(f"partialnet.exporters.{verify_format.exporter}")
        io = verifier.read_io(verify_path)
        static = static_verification(verifier, verify_format, verify_path, deploy, io)
        if static is not None:
            parity_record = static
            if not static["passed"] and enforce:
                raise CheckFailed(f"the exported {fmt.name} artifact (not written) fails its static checks", details=static)
        else:
            parity = check_parity(
                verify_path, model, io, images_dir, samples, tolerances, dataset=dataset, runtime=verify_format.runtime, judging=judging
            )
            if not parity.passed and enforce:
                raise parity_failure(parity, f"the exported {fmt.name} artifact (not written)")
            parity_record = parity.to_dict()
        verified = time.perf_counter()
        manifest = {
            "artifact": outputs[0].path.name,
            "format": fmt.name,
            "files": [o.path.name for o in outputs[:-1]],
            "sha256": sha256_of(temp_artifact),
            "bytes": sum(size_of(item.path) for item in staged_files),  # an IR's .bin, a script: all of it
            "file_bytes": {o.path.name: size_of(item.path) for o, item in zip(outputs, staged_files)},
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "options": options.to_dict(),
            "metadata": metadata,
            "source": source_record(info),
            "graph": stats,
            "fold": report.to_dict(),
            "parity": parity_record,
            "seconds": {"export": round(exported - started, 2), "verify": round(verified - exported, 2)},
            "versions": versions(),
        }
        staged_manifest.write_json(manifest)
    result = {"output": str(outputs[0].path), "manifest_path": str(manifest_path), **manifest}
    if stats.get("unavailable"):
        raise Unavailable(stats["unavailable"], details=result)
    return result


def static_verification(verifier, fmt, path: Path, deploy: nn.Module, io: dict) -> dict | None:
    """A format whose runtime cannot run here but can be checked without it (Core ML off macOS)."""
    from partialnet.runtimes.table import RUNTIMES, availability

    runtime = RUNTIMES[fmt.runtime]
    reason = availability(fmt.runtime, runtime.devices[0])
    if reason is None or not hasattr(verifier, "verify_static"):
        return None
    report = verifier.verify_static(path, deploy, io)
    report["why"] = reason
    return report


def _identity(variant: str | None, sha: str) -> str:
    if sha.startswith("random weights"):
        return f"{variant} with {sha}"
    return f"{variant} weights with sha256 {sha[:12]}…"


def versions() -> dict:
    """Installed versions of the packages an artifact or a timing depends on (recorded in manifests)."""
    from partialnet.machine import package_versions

    return package_versions()


def verify(
    artifact: str | Path,
    ref: str,
    variant: str | None = None,
    images_dir: str | Path | None = None,
    samples: int = 8,
    tolerances: dict | None = None,
    dataset: str | None = None,
) -> ParityReport:
    """Check an existing artifact against the checkpoint (or variant) it was exported from."""
    artifact = Path(artifact)
    check_dataset(dataset)
    check_count(samples, "--samples", MAX_SAMPLES)
    check_tolerances(**(tolerances or {}))
    fmt = format_for_path(artifact)
    exporter = importlib.import_module(f"partialnet.exporters.{fmt.exporter}")
    io = exporter.read_io(artifact)
    meta = io["metadata"]
    judging = None
    if io["precision"] == "int8":
        if meta.get("calibration_data") == "digits" or dataset == "digits":
            check_data("digits", 1)
            judging = ("digits", tuple(io["imgsz"]))
        elif not images_dir:
            source = meta.get("calibration_data", "unknown data").removeprefix("images:")
            raise BadInput(f"{artifact} is INT8 (calibrated on {source}): judge it on real images with --images DIR or --dataset digits")
    model, info = resolve(ref, variant)
    exported_from = (meta.get("variant"), meta.get("source_sha256"))
    reference_is = (info.variant, info.sha256 or f"random weights (seed {RANDOM_WEIGHTS_SEED})")
    if exported_from[1] and exported_from != reference_is:
        raise BadInput(f"{artifact} was exported from {_identity(*exported_from)}, but --ref {ref} is {_identity(*reference_is)}")
    dataset = dataset or info.dataset
    _check_dataset_model(dataset, info)
    static = static_verification(exporter, fmt, artifact, fold(model, tuple(io["imgsz"]))[0], io)
    if static is not None:
        if not static["passed"]:
            raise CheckFailed(f"{artifact} fails its static checks", details=static)
        raise Unavailable(f"{artifact}: {static['verdict']} ({static['why']}); its static checks passed", details=static)
    if judging:
        judging = judging_images(*judging, 0)
    report = check_parity(artifact, model, io, images_dir, samples, tolerances, dataset=dataset, runtime=fmt.runtime, judging=judging)
    if not report.passed:
        raise parity_failure(report, str(artifact))
    return report


def train_digits(
    output: str | Path,
    variant: str = "partialnet_t0",
    epochs: int = 6,
    seed: int = 0,
    force: bool = False,
    progress=None,
) -> dict:
    """Train `variant` on the digits yardstick and write an ordinary checkpoint every command accepts."""
    from partialnet import digits
    from partialnet.models.registry import get_variant

    name = get_variant(variant).name
    check_count(epochs, "--epochs", 200)
    outputs = [Output(Path(output), "-o")]
    check_outputs(outputs, (), force)
    model, result = digits.train(name, epochs, seed, progress)
    payload = {"state_dict": model.state_dict(), "dataset": digits.DATASET, "digits": result.to_dict()}
    with atomic_outputs(outputs, force) as (staged,):
        torch.save(payload, staged.file)
    return {"output": str(output), **result.to_dict()}


def export_all(
    source: str,
    output_dir: str | Path | None = None,
    imgsz: tuple[int, int] = (224, 224),
    batch: int = 1,
    force: bool = False,
    variant: str | None = None,
    images_dir: str | Path | None = None,
    samples: int = 8,
    tolerances: dict | None = None,
    dataset: str | None = None,
) -> dict:
    """Every format this machine can produce, from one load and one fold, each verified as far as it can be.

    Returns one status row per format in the spirit of Ultralytics' benchmark table; `failed` lists the
    formats that could be verified here and failed (the CLI exits 1 on any).
    """
    from partialnet.exporters.status import format_rows

    check_dataset(dataset)
    check_input_shape(batch, *imgsz, "--batch/--imgsz")
    check_count(samples, "--samples", MAX_SAMPLES)
    check_tolerances(**(tolerances or {}))
    inputs = [source_path(source)]
    begun = time.perf_counter()
    plan, rows = [], []
    for status in format_rows():
        fmt = get_format(status["format"])
        if status["export"] == "no":
            rows.append({"format": fmt.name, "status": "skipped", "verdict": "skipped", "why": status["export_reason"]})
            continue
        base = Path(output_dir) / Path(default_output(source, fmt.suffix)).name if output_dir else default_output(source, fmt.suffix)
        plan.append((fmt, base))
    outputs = [o for fmt, base in plan for o in artifact_outputs(base, fmt.name)]
    check_outputs(outputs, inputs, force)  # every file of every format, before the load
    if images_dir:
        load_images(Path(images_dir), imgsz, limit=1)
    model, info = resolve(source, variant)
    dataset = dataset or info.dataset
    _check_dataset_model(dataset, info)
    folded = fold(model, imgsz)
    for fmt, base in plan:
        options = ExportOptions(imgsz=imgsz, batch=batch, half=fmt.default_precision == "fp16")
        started = time.perf_counter()
        row = {"format": fmt.name, "file": None, "why": None}
        try:
            result = export_folded(model, info, folded, fmt.name, base, options, images_dir, samples, tolerances, force, inputs, dataset)
            row.update(status="verified", verdict="verified")
        except Unavailable as exc:
            result = exc.details if exc.details and "manifest_path" in exc.details else None
            why = (result or {}).get("graph", {}).get("unavailable_short") or str(exc)
            row.update(status="not verifiable here" if result else "skipped", verdict="exported, not verifiable here" if result else "skipped", why=why)
        except CheckFailed as exc:
            result = None
            row.update(status="failed", verdict="failed", why=str(exc)[:300])
        row["seconds"] = round(time.perf_counter() - started, 1)
        if result:
            parity = result["parity"]
            if "checks" in parity:  # static verification (Core ML off macOS)
                row.update(status="not verifiable here", verdict="exported, not verifiable here", why=f"{parity['verdict']} ({parity.get('why')}); static checks passed")
            row.update(file=result["output"], bytes=result["bytes"], precision=result["metadata"]["precision"])
            cases = parity.get("cases") or []
            if cases:
                row["max_abs"] = max(c["max_abs"] for c in cases)
                row["top1_agreement"] = min(c["top1_agreement"] for c in cases)
            if parity.get("accuracy"):
                row["digits_top1"] = parity["accuracy"]["artifact_top1"]
                row["reference_top1"] = parity["accuracy"]["reference_top1"]
        rows.append(row)
    order = {name: i for i, name in enumerate(FORMATS)}
    rows.sort(key=lambda r: order[r["format"]])
    return {
        "source": source_record(info),
        "imgsz": list(imgsz),
        "batch": batch,
        "rows": rows,
        "failed": [r["format"] for r in rows if r["status"] == "failed"],
        "seconds": round(time.perf_counter() - begun, 1),
    }
