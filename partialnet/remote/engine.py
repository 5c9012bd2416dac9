"""Artifacts built where they run: `export --format trt CKPT --target ssh://jetson`.

A TensorRT engine is tied to the GPU and TensorRT version that built it, so it is built on the target.
Here: the checkpoint is folded, exported to the TensorRT-ready ONNX (verified in ONNX Runtime) with its
build script, in private scratch. There: the script runs (`trtexec`, found on PATH or where JetPack puts
it), the engine is recorded against the target's GPU and TensorRT, verified against PyTorch and timed.
Then the engine and its manifest come back and are published here together, or nothing is.

Before any slow work the target must have the build tool and be able to run the engine (the runtime's
availability there); otherwise exit 3 naming what is missing there.
"""

from __future__ import annotations

import json
from pathlib import Path

from partialnet.errors import BadInput, Unavailable
from partialnet.outputs import scratch_folder

BUILD_TIMEOUT_S = 3600
SCRATCH_NAME = "model"  # files on the target are named by partialnet, never by the user's -o


def check_target(host, fmt, options) -> str:
    """The build tool's folder on the target; exit 3 when it, or the runtime for the engine, is missing."""
    name, dirs = fmt.build_tool
    found = host.agent("tool", name, *dirs).get("path")
    if not isinstance(found, str) or not found.startswith("/"):
        raise Unavailable(f"{host.label} has no {name} (looked on PATH and in {', '.join(dirs)}); install {fmt.description.split(' ')[0]} there "
                          f"(on a Jetson it comes with JetPack); nothing was written here")
    device = fmt.devices[0]
    why = host.availability(fmt.runtime, device, options.precision)
    if why:
        raise Unavailable(f"{host.label} has {name} but cannot run the result on {device}: {why}; nothing was written here")
    return found.rsplit("/", 1)[0]


def export_on_target(host, source: str, fmt, options, out: Path, checks, variant: str | None, force: bool, prepare) -> dict:
    """Prepare here (`prepare(path)`: api.export of the format into `path`, which for a format built
    elsewhere publishes what it prepared and raises Unavailable), build and judge there, publish here;
    returns the published manifest."""
    from partialnet.sources import source_path
    from partialnet.exporters.formats import exporter_of
    from partialnet.outputs import Output, check_outputs

    exporter = exporter_of(fmt)
    outputs = [Output(out, "-o"), Output(exporter.sidecar(out), "manifest")]
    inputs = [source_path(source)]
    check_outputs(outputs, inputs, force)
    tool_dir = check_target(host, fmt, options)
    with scratch_folder("partialnet-engine-") as tmp:
        local = Path(tmp) / f"{SCRATCH_NAME}{fmt.suffix}"
        try:
            prepare(local)
            raise BadInput(f"{fmt.name}: the export built here instead of preparing for the target")  # a format row without a prepare path
        except Unavailable as exc:
            prepared = exc.details or {}
        files = exporter.prepared_files(local)
        for path in files:
            host.put(path, path.name)
        _build_there(host, files[-1].name, tool_dir)
        record = host.agent("machine-record", fmt.name)
        if "record" not in record or not isinstance(record["record"], dict):
            raise Unavailable(f"{host.label}: the engine was built but its machine record failed: {str(record.get('error'))[:200]}")
        host.fetch(local.name, local, exporter.MAX_ENGINE_BYTES)
        manifest = {**{k: v for k, v in prepared.items() if k not in ("manifest_path",)}, **_engine_files(local, out.name),
                    "metadata": {**(prepared.get("metadata") or {}), "precision": options.precision},
                    "built_for": exporter.engine_record(options, record["record"]), "built_on": host.machine()}
        exporter.sidecar(local).write_text(json.dumps(manifest))  # private scratch: read by verify and bench below
        manifest["parity_on_target"] = host.verify(local, source, checks, variant).to_dict()
        manifest["timing_on_target"] = _time_there(host, local, fmt, options)
        return _publish(local, outputs, manifest, force, inputs)


def _build_there(host, script: str, tool_dir: str) -> None:
    reply = host.agent("build", host.folder, script, tool_dir, timeout=BUILD_TIMEOUT_S, keep_open=True)
    if reply.get("code") != 0:
        tail = [str(line)[:300] for line in reply.get("tail") or []][-1:] or ["no output"]
        raise Unavailable(f"{host.label}: the build failed there (exit {reply.get('code')}): {tail[0]}; nothing was written here")


def _time_there(host, engine: Path, fmt, options) -> dict:
    from partialnet.bench.matrix import timed_row
    from partialnet.bench.protocols import get_protocol

    device = fmt.devices[0]
    row = timed_row(str(engine), fmt.runtime, options.imgsz, host.default_threads(), get_protocol("latency", device), host, device=device)
    keep = ("status", "reason", "stats", "images_per_s", "cold", "memory", "unstable", "disturbed", "why")
    return {k: row.get(k) for k in keep if k in row}


def _engine_files(local: Path, name: str) -> dict:
    """The manifest's record of the engine itself (the prepared ONNX's would fail `verify`'s check that a
    manifest is its artifact's own), under the name it is published as."""
    from partialnet.inputs import sha256_of

    digest, size = sha256_of(local), local.stat().st_size
    return {"artifact": name, "files": [name], "sha256": digest, "bytes": size, "file_bytes": {name: size}, "companion_sha256": {}}


def _publish(local: Path, outputs: list, manifest: dict, force: bool, inputs: list) -> dict:
    from partialnet.outputs import atomic_outputs, dumps_strict

    with atomic_outputs(outputs, force, inputs) as staged:
        with open(local, "rb") as f:
            staged[0].write_bytes(f.read())
        staged[1].write_text(dumps_strict(manifest, indent=1))
    manifest["manifest_path"] = str(outputs[1].path)
    return manifest
