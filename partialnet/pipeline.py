"""Export with verification: fold output in, a verified artifact and its manifest out.

Shared by the `export` command (through `partialnet.api`) and by the benchmark, which builds its own
artifacts per runtime. Nothing here parses arguments or prints; stages (export, simplify, verify) are
announced through `partialnet.progress` for whoever shows progress.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import weakref
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch import nn

from partialnet.calibration import judging_images
from partialnet.checkpoint import RANDOM_WEIGHTS_SEED, CheckpointInfo, sha256_of, size_of
from partialnet.errors import BadInput, CheckFailed, Unavailable
from partialnet.exporters.formats import check_artifact_name, exporter_of, get_format, published
from partialnet.exporters.options import ExportOptions
from partialnet.exporters.pt2e import PROGRAM_BATCH, ProgramLayers, ProgramRunner, judged_before_lowering
from partialnet.exporters.sidecar import sidecar
from partialnet.folding import FoldReport
from partialnet.outputs import Output, atomic_outputs, scratch_folder
from partialnet.preprocess import CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD
from partialnet.progress import stage
from partialnet.runtimes.torch_eager import TorchRunner
from partialnet.signals import raise_if_pending, stops_cleanly
from partialnet.verify_options import VerifyOptions
from partialnet.verify import DEFAULT_TOLERANCES, ParityReport, compare, image_batches, judge_accuracy, random_batches

DYNAMIC_VERIFY_BATCH = 4


def source_record(info: CheckpointInfo) -> dict:
    return {
        "source": info.source,
        "variant": info.variant,
        "sha256": info.sha256,
        "random_weights": info.random_weights,
        "random_weights_seed": RANDOM_WEIGHTS_SEED if info.random_weights else None,
        "container": info.container,  # which weights of the file were loaded, and the copies beside them that were not
        "weights": info.weights,  # the --weights name of the copy loaded, when the file holds several
        **({"dataset": info.dataset, "trained_imgsz": list(info.trained_imgsz)} if info.dataset and info.trained_imgsz else {}),
    }


def input_description(fmt, precision: str) -> str:
    """How the file takes its input: float32, float16 (an fp16 ONNX) or int8 (an INT8 LiteRT model; its manifest
    said "float RGB" to a phone engineer about to feed it floats)."""
    if precision == "int8" and fmt.int8_io:
        return ("images: int8, quantized from the normalised float RGB with the input tensor's scale and zero point "
                "(q = round(x / scale) + zero_point); the logits are int8 too, dequantized with the output tensor's")
    return f"images: {'float16' if precision == 'fp16' and fmt.half_io else 'float32'} RGB, normalised"


def preprocess_description(info: CheckpointInfo, imgsz: tuple[int, int]) -> str:
    """The preprocessing the weights were trained with: ImageNet's, or the digits yardstick's own."""
    from partialnet import digits

    if info.dataset == digits.DATASET:
        return f"digits: {digits.PREPROCESS}"
    return f"bicubic resize short side to {int(min(imgsz) / CROP_RATIO)}, centre crop, /255, mean/std"


def artifact_metadata(info: CheckpointInfo, report: FoldReport, options: ExportOptions, precision: str, fmt) -> dict[str, str]:
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
        "input": input_description(fmt, precision),
        "mean": json.dumps(IMAGENET_MEAN),
        "std": json.dumps(IMAGENET_STD),
        "preprocess": preprocess_description(info, options.imgsz),
        "num_classes": str(info.num_classes),
        "fold": report.summary(),
        **({"source_weights": info.weights} if info.weights is not None else {}),  # verify loads the same copy again
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
    checks: VerifyOptions,
    *,
    runtime: str,
    judging: tuple[str, np.ndarray] | None = None,
    threads: int | None = None,
    compute: str | None = None,
) -> ParityReport:
    """Run `artifact` in its runtime and compare it with the unfolded PyTorch model (and on `checks.dataset`).

    `compute` asks the runtime to compute an fp32 artifact at that precision (bf16), gated by that
    precision's tolerances; a runtime that answers it computed something else raises Unavailable. Without
    it the runtime is asked for the artifact's own precision, as `bench` asks, so what is judged is what
    is timed (an fp16 OpenVINO IR computes f16 on a CPU with fp16 units, f32 elsewhere).
    """
    if io["precision"] not in DEFAULT_TOLERANCES:
        raise BadInput(f"{artifact}: input precision {io['precision']} is not fp32 or fp16")
    with artifact_runner(runtime, artifact, threads, compute or io["precision"]) as built:
        if compute and built.precision != compute:
            raise Unavailable(f"{runtime} computes {built.precision} here, not {compute}: this CPU has no native {compute}")
        report = judge_runner(built, reference, io, checks, judging, compute or io["precision"])
        report.computed = built.precision
        report.default_differs = built.default_differs()
        return report


def judge_runner(built, reference: nn.Module, io: dict, checks: VerifyOptions, judging, precision: str) -> ParityReport:
    """A prepared runner's answers beside the unfolded PyTorch model's, by `precision`'s gates: an artifact's
    runner, or a quantized program's before it is lowered (so a bad calibration stops before the slow part)."""
    labelled = checks.labelled()
    images, labels = checks.images_at(tuple(io["imgsz"]))
    tol = DEFAULT_TOLERANCES[precision].merged(**checks.tolerances)
    with TorchRunner(reference) as torch_runner:
        # the same images are judged twice (INT8's judging case, then accuracy), and PyTorch's answers serve every artifact
        runner = Remembered(built, {})
        if precision == "fp32":
            reference_runner = Remembered(torch_runner, _REFERENCE_OUTPUTS.setdefault(reference, {}))
        else:  # answered per image, from batches: see PerImage
            reference_runner = PerImage(torch_runner, _REFERENCE_IMAGES.setdefault(reference, {}))
            reference_runner.prefetch([a for a in (images, judging[1] if judging else None) if a is not None])
        report = compare(runner, reference_runner, _parity_cases(io, checks.samples, images, judging), tol, precision)
        if labelled is not None:
            report.accuracy = labelled_accuracy(labelled.name, images, labels, runner, reference_runner, io, tol)
        elif checks.dataset:
            report.accuracy = dataset_accuracy(checks.dataset, runner, reference_runner, io, tol)
        return report


# PyTorch's logits per reference model and input batch: a matrix judges a dozen artifacts on the same images
_REFERENCE_OUTPUTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def content_key(array: np.ndarray) -> tuple:
    """What a deterministic model's answer depends on: the array's shape, dtype and bytes."""
    return array.shape, str(array.dtype), hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=20).digest()


_REFERENCE_IMAGES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


class PerImage:
    """PyTorch's answers kept per image and computed in batches, whatever batch the artifact is fed at.

    An artifact with a static batch of 1 is judged image by image, and PyTorch answered each image alone
    too: 540 held-out digits images were about 2.6 s of a 64x64 INT8 export's verify on a 2-core Xeon. Used
    for the precisions whose own error dwarfs the float noise of another batch size (int8, fp16, bf16);
    fp32 is still compared batch for batch, so its figures stay the round-off of one computation.
    """

    BATCH = 64

    def __init__(self, runner, memo: dict) -> None:
        self.runner, self.memo, self.name = runner, memo, runner.name

    def _answer(self, images: np.ndarray, keys: list[tuple]) -> None:
        """Run PyTorch on the images not yet answered, BATCH at a time."""
        missing = [i for i, key in enumerate(keys) if key not in self.memo]
        for start in range(0, len(missing), self.BATCH):
            raise_if_pending()  # a large --images folder is minutes of PyTorch for a big model
            rows = missing[start : start + self.BATCH]
            for i, logits in zip(rows, self.runner.infer(np.ascontiguousarray(images[rows]))):
                self.memo[keys[i]] = logits

    def prefetch(self, image_sets: list[np.ndarray]) -> None:
        for images in image_sets:
            self._answer(images, [content_key(image) for image in images])

    def infer(self, batch: np.ndarray) -> np.ndarray:
        keys = [content_key(image) for image in batch]
        self._answer(batch, keys)
        return np.stack([self.memo[key] for key in keys])


class Remembered:
    """A runner that answers a batch it has already seen from memory (deterministic models, same bytes in)."""

    def __init__(self, runner, memo: dict) -> None:
        self.runner, self.memo, self.name = runner, memo, runner.name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        key = content_key(batch)
        if key not in self.memo:
            self.memo[key] = self.runner.infer(batch)
        return self.memo[key]


def artifact_runner(runtime: str, artifact: Path, threads: int | None = None, precision: str = "fp32"):
    """The runner that verifies an artifact: its format's runtime, fp32 pinned where a runtime could drift."""
    from partialnet.runtimes.table import RUNTIMES, artifact_runner as build

    return build(runtime, artifact, threads, precision=precision, device=RUNTIMES[runtime].devices[0])




def dataset_accuracy(dataset: str, runner, reference_runner, io: dict, tol) -> dict:
    """Held-out top-1 of the artifact and of the PyTorch model on the documented digits split."""
    from partialnet import digits

    images, labels = digits.held_out(tuple(io["imgsz"]))
    return {**labelled_accuracy(dataset, images, labels, runner, reference_runner, io, tol), "held_out": True}


def labelled_accuracy(name: str, images: np.ndarray, labels: np.ndarray, runner, reference_runner, io: dict, tol) -> dict:
    """Top-1 and top-5 of the artifact beside the PyTorch model's on labelled images; the gate is on top-1."""
    from partialnet import digits

    # PyTorch takes any batch (None: digits.topk's chunks), whatever the artifact's: one image at a time, its pass
    # over the 540 digits images was 3.2 s of a 64x64 export's 4.4 s verify (2-core Xeon), batched 0.6 s. A
    # top-k count does not move with the float noise of another batch size; the artifact keeps its own batch.
    expected = digits.topk(reference_runner.infer, images, labels, None)
    artifact = digits.topk(runner.infer, images, labels, io["batch"])
    judged = judge_accuracy(name, len(labels), artifact[1], expected[1], tol)
    return {**judged, "artifact_top5": artifact[5], "reference_top5": expected[5]}


def check_labels_fit(checks: VerifyOptions, info: CheckpointInfo) -> None:
    """Labelled images whose classes the model's head cannot predict are refused before any export."""
    check_dataset_model(checks.dataset, info)
    labelled = checks.labelled()
    if labelled is not None:
        labelled.check_head(info.num_classes)


def check_dataset_model(dataset: str | None, info: CheckpointInfo) -> None:
    from partialnet import digits

    if dataset == "digits" and info.num_classes != digits.NUM_CLASSES:
        raise BadInput(f"--dataset digits needs a 10-class model (train one with `partialnet digits`); {info.source} has {info.num_classes} classes")


def parity_failure(report: ParityReport, what: str, divergence: dict | None = None) -> CheckFailed:
    """The failure, with the per-layer report's one-clause summary where an INT8 artifact has one."""
    from partialnet.divergence import summary

    details = {**report.to_dict(), **({"divergence": divergence} if divergence else {})}
    tail = f" ({summary(divergence)})" if divergence else ""
    return CheckFailed(f"{what} does not match PyTorch: {'; '.join(report.failures())}{tail}", details=details)


def artifact_outputs(out: Path, format: str, built_elsewhere: bool = False, typed: bool = True) -> list[Output]:
    """What an export publishes (formats.published), or, for a format whose builder is missing here (TensorRT
    without a GPU writes an engine-ready ONNX and a build script instead of an engine), what its exporter names;
    the manifest sits beside the first of them."""
    from dataclasses import replace

    fmt = get_format(format)
    listed = published(fmt, out, typed)
    if listed is not None:
        return listed
    files = list(exporter_of(fmt).artifact_paths(out, built_elsewhere))
    if not typed:
        files = [replace(o, option=o.option.replace("-o", "the default output (no -o given):", 1)) for o in files]
    return [*files, Output(sidecar(files[0].path), "manifest")]


@stops_cleanly
def export_folded(
    model: nn.Module,
    info: CheckpointInfo,
    folded: tuple[nn.Module, FoldReport],
    format: str,
    out: Path,
    options: ExportOptions,
    checks: VerifyOptions | None = None,
    *,
    force: bool = False,
    inputs: Sequence[Path | None] = (),
    enforce: bool = True,
) -> dict:
    """Export an already folded model and verify it against `model`; returns the manifest.

    enforce=False publishes an artifact whose gates failed, with the failure in its manifest (bench
    times INT8 builds of random-weight models, whose classes mean nothing).

    An exporter that could only prepare its artifact here (stats["unavailable"]), or an artifact whose numbers
    could not be computed here (checked statically only), is still published; then this raises Unavailable
    (exit 3, as `verify` does for it) with the next command to run.
    """
    fmt = get_format(format)
    check_artifact_name(out, fmt)
    outputs = artifact_outputs(out, fmt.name, options.built_elsewhere)
    with atomic_outputs(outputs, force, inputs) as staged:
        result = export_staged(model, info, folded, fmt.name, outputs, staged, options, checks or VerifyOptions(), enforce)
    if result["graph"].get("unavailable"):
        raise Unavailable(result["graph"]["unavailable"], details=result)
    judged = result["parity"]
    if "checks" in judged and not judged.get("executed"):  # published: it passed every static check, and a Mac can run it
        raise Unavailable(f"{out} written after its static checks, but its numbers were not computed here: {judged['verdict']} "
                          f"({judged['why']}); check them where its runtime runs: partialnet verify {shlex.quote(str(out))} --ref CHECKPOINT", details=judged)
    return result


def export_staged(
    model: nn.Module,
    info: CheckpointInfo,
    folded: tuple[nn.Module, FoldReport],
    format: str,
    outputs: list[Output],
    staged: list,
    options: ExportOptions,
    checks: VerifyOptions,
    enforce: bool = True,
) -> dict:
    """Export into `staged` (the artifact's files, its manifest last), verify, write the manifest; publishing
    is the caller's (one format: export_folded; every format together: api.export_all)."""
    fmt = get_format(format)
    deploy, report = folded
    metadata = artifact_metadata(info, report, options, options.precision, fmt)
    judging = None
    if options.int8:
        with stage("calibration data", "held-out images to judge INT8 on"):
            judging = judging_images(options.data, options.imgsz, options.calib_size, options.calibration)
    started = time.perf_counter()
    with scratch_folder("partialnet-export-") as work:
        *staged_files, staged_manifest = staged
        early = _judge_before_lowering(fmt, model, deploy, options, checks, judging, Path(work)) if options.int8 and enforce else None
        with stage("export", fmt.name), judged_before_lowering(early):
            stats = exporter_of(fmt).export(deploy, staged_files, options, metadata, Path(work))
        raise_if_pending()  # stop requests wait for a converter to return, then stop before verification
        for item in staged_files:
            item.flush()
        exported = time.perf_counter()
        parity_record = _verify_export(fmt, stats, staged_files[0].path, model, deploy, checks, judging, enforce, Path(work))
        manifest = {
            **_files_record(fmt, outputs[:-1], staged_files),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "options": options.to_dict(),
            "metadata": metadata,
            "source": source_record(info),
            "graph": stats,
            "fold": report.to_dict(),
            "parity": parity_record,
            "seconds": {"export": round(exported - started, 2), "verify": round(time.perf_counter() - exported, 2)},
            "versions": versions(),
        }
        staged_manifest.write_json(manifest)
    return {"output": str(outputs[0].path), "manifest_path": str(outputs[-1].path), **manifest}


def _files_record(fmt, outputs: list[Output], staged_files: list) -> dict:
    """The manifest's record of what was published: every file's size, and the sha256 of the artifact and of
    each file it runs from beside it (`companion_sha256`, by suffix, as the names change where a target
    receives them: an IR's .bin holds its weights), not of a build's helpers (a timing cache, a build script)."""
    artifact = outputs[0].path
    companions = fmt.companions
    staged = {o.path.name: item.path for o, item in zip(outputs, staged_files)}
    return {
        "artifact": artifact.name,
        "format": fmt.name,
        "files": list(staged),
        "sha256": sha256_of(staged[artifact.name]),
        "bytes": sum(size_of(path) for path in staged.values()),  # an IR's .bin, a script: all of it
        "file_bytes": {name: size_of(path) for name, path in staged.items()},
        "companion_sha256": {suffix: sha256_of(staged[artifact.with_suffix(suffix).name]) for suffix in companions},
    }


def _judge_before_lowering(fmt, model, deploy, options: ExportOptions, checks: VerifyOptions, judging, work: Path):
    """The check an exporter runs on its quantized program before lowering it (`pt2e.before_lowering`): the
    artifact's own gates and images, so a program that fails them is refused, with its per-layer report,
    instead of being lowered first. One that passes is lowered and judged again as the artifact."""

    def judge(program, lowered_by: str) -> None:
        io = {"imgsz": list(options.imgsz), "batch": PROGRAM_BATCH, "precision": "int8", "dynamic": False}
        with stage("judge before lowering", f"the q/dq program in PyTorch, before {lowered_by}"):
            report = judge_runner(ProgramRunner(program, f"{fmt.name} q/dq program"), model, io, checks, judging, "int8")
        if not report.passed:
            divergence = int8_divergence(ProgramLayers(program, lowered_by), work, None, checks, judging, tuple(options.imgsz), deploy)
            raise parity_failure(report, f"the quantized {fmt.name} program (checked before lowering; nothing written)", divergence)

    return judge


def _verify_export(fmt, stats: dict, artifact: Path, model, deploy, checks: VerifyOptions, judging, enforce: bool, work: Path) -> dict:
    """The staged artifact judged against `model` (or, where its runtime cannot run here, by its format's
    static checks); a failure stops the export before anything is published, unless not `enforce`d."""
    verify_path = Path(stats.pop("verify_path", artifact))  # IR: the pair as OpenVINO wrote it
    verify_format = get_format(stats.pop("verify_format", fmt.name))
    verifier = exporter_of(verify_format)
    with stage("verify", f"{verify_format.runtime} vs PyTorch"):
        io = verifier.read_io(verify_path)
        static = static_verification(verifier, verify_format, verify_path, deploy, io, model, checks)
        if static is None:
            parity = check_parity(verify_path, model, io, checks, runtime=verify_format.runtime, judging=judging)
    if static is not None:
        if not static["passed"] and enforce:
            raise CheckFailed(f"the exported {fmt.name} artifact (not written) {static_failure(static)}", details=static)
        return static
    record = parity.to_dict()
    if not parity.passed and io["precision"] == "int8":
        record["divergence"] = int8_divergence(verifier, work, verify_path, checks, judging, tuple(io["imgsz"]), deploy)
    if not parity.passed and enforce:
        raise parity_failure(parity, f"the exported {fmt.name} artifact (not written)", record.get("divergence"))
    return record


def int8_divergence(exporter, work: Path, artifact: Path | None, checks: VerifyOptions, judging, imgsz, deploy=None) -> dict | None:
    """Where a failing INT8 artifact (or, before lowering, its quantized program: no artifact yet) drifts from
    its float graph, on the images it was judged on."""
    with stage("divergence", "per-layer drift from fp32"):
        return _layer_divergence(exporter, work, artifact, checks, judging, imgsz, deploy)


def _layer_divergence(exporter, work: Path, artifact: Path | None, checks: VerifyOptions, judging, imgsz, deploy) -> dict | None:
    from partialnet.divergence import MAX_IMAGES, layer_divergence

    if checks.images:  # the user's images first, then the held-out set, then what it was judged on
        images = checks.images_at(imgsz)[0][:MAX_IMAGES]
    elif checks.dataset:
        from partialnet import digits

        images = digits.held_out(imgsz)[0]
    else:
        images = judging[1] if judging is not None else None
    return layer_divergence(exporter, work, artifact, images, deploy)


def checked_without_runtime(verifier, fmt) -> str | None:
    """Why `fmt`'s runtime cannot run here, where its exporter can check the artifact without it; else None."""
    from partialnet.runtimes.table import RUNTIMES, availability

    reason = availability(fmt.runtime, RUNTIMES[fmt.runtime].devices[0])
    return reason if reason is not None and hasattr(verifier, "verify_static") else None


def static_verification(
    verifier, fmt, path: Path, deploy: nn.Module, io: dict, reference: nn.Module | None = None, checks: VerifyOptions | None = None,
) -> dict | None:
    """A format whose runtime cannot run here but that its exporter can check without it (Core ML off macOS:
    static checks, then its program in a reference interpreter, judged by the precision's gates)."""
    reason = checked_without_runtime(verifier, fmt)
    if reason is None:
        return None
    cases = tol = judge = None
    if reference is not None and io["precision"] in DEFAULT_TOLERANCES:
        checks = checks or VerifyOptions()
        cases = _parity_cases(io, checks.samples, None)
        tol = DEFAULT_TOLERANCES[io["precision"]].merged(**checks.tolerances)
        judge = _accuracy_judge(checks, io, tol)
    report = verifier.verify_static(path, deploy, io, reference, cases, tol, judge)
    report["why"] = reason
    return report


def _accuracy_judge(checks: VerifyOptions, io: dict, tol):
    """The top-1 check asked for (labelled images, or a dataset), as a function of the two runners an offline
    verification runs; None where none was asked. Core ML's digits check had been dropped there without a word."""
    labelled = checks.labelled()
    if labelled is not None:
        images, labels = checks.images_at(tuple(io["imgsz"]))
        return lambda runner, reference_runner: labelled_accuracy(labelled.name, images, labels, runner, reference_runner, io, tol)
    if checks.dataset:
        return lambda runner, reference_runner: dataset_accuracy(checks.dataset, runner, reference_runner, io, tol)
    return None


def static_failure(report: dict) -> str:
    """What failed in an offline verification, in one clause naming the first failed check or the parity miss."""
    failed = next((c for c in report.get("checks", []) if not c["passed"]), None)
    if failed:
        return f"fails its static checks: {failed['check']}: {failed['detail']}"
    found = [f"{c['name']}: {f}" for c in report.get("cases", []) for f in c.get("failures", [])]
    if not found and (report.get("accuracy") or {}).get("failures"):
        return f"loses top-1 in partialnet's reference interpreter: {'; '.join(report['accuracy']['failures'])}"
    return f"does not match PyTorch in partialnet's reference interpreter: {'; '.join(found) or report['verdict']}"


def versions() -> dict:
    """Installed versions of the packages an artifact or a timing depends on (recorded in manifests)."""
    from partialnet.machine import package_versions

    return package_versions()

