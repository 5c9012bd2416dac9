"""Formats with no metadata slot (.pte, .tflite): partialnet's metadata lives in the manifest beside them.

Export verifies a scratch copy with a minimal sidecar before the real manifest exists; read_io reads
whichever manifest sits beside the file. Manifests come from strangers: only a JSON object of strings
is taken as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

from partialnet.errors import BadInput


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_scratch(workdir: Path, name: str, content: bytes, metadata: dict[str, str], precision: str) -> Path:
    """A copy of the artifact in `workdir`, with the sidecar verification reads, before anything is published."""
    scratch = workdir / name
    scratch.write_bytes(content)
    sidecar(scratch).write_text(json.dumps({"metadata": {**metadata, "precision": precision}}))
    return scratch


def read_metadata(path: Path) -> tuple[dict[str, str], str]:
    """(metadata, precision) from the manifest beside `path`; ({}, "fp32") when there is none."""
    from partialnet.inputs import read_beside

    record = read_beside(sidecar(Path(path)), "export manifest")
    if record is None:
        return {}, "fp32"
    metadata = record.get("metadata") if isinstance(record, dict) else None
    if not isinstance(metadata, dict):  # a manifest there that says nothing is no absent one: what was put in its place?
        raise BadInput(f"{sidecar(Path(path))}: not an export manifest (expected a JSON object with a \"metadata\" object, as export writes)")
    metadata = {str(k): str(v) for k, v in metadata.items()}
    return metadata, metadata.get("precision", "fp32")
