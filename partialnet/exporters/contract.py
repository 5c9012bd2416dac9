"""The written contract of a format's module (`partialnet.exporters.<Format.exporter>`).

A format is one such module plus one row in `formats.FORMATS`; the pipeline, `verify`, `formats` and
the runners reach a format only through these names, so nothing else learns which formats exist.

Required:
- `export(model, staged, options, metadata, workdir) -> dict`: write the folded model into the staged
  files (the first is the artifact), return what the manifest records (graph stats, options used).
- `read_io(path, **known) -> dict`: the artifact's I/O as stored in the file itself: `imgsz`, `batch`,
  `precision` (what the file holds, not what its metadata claims), `metadata`; hostile files refused
  with a one-line BadInput. Runners and `verify` read artifacts through `formats.read_io`, by suffix.

What an export publishes is the row's (`companions`, `artifact_kind`: `formats.published`, free of torch, so
`export` refuses an existing output before the import), except for a row with `fallback=True`, whose module
names it: `artifact_paths(out, built_elsewhere) -> list[Output]` (what it prepares where its builder is
missing, or for a build on a target).

Optional:
- `preflight(options)`: the format's own checks of its options and backend, run before the load.
- `verify_static(path, deploy, io, reference, cases, tolerances, judge) -> dict`: verification where the
  format's runtime cannot run here (Core ML off macOS); `judge(runner, reference_runner)`, where given, is the
  top-1 on labelled images asked for, run with the runners that ran the parity (its dict under "accuracy").
- `unavailable_reason() -> str | None`, `PREPARES` (text) and `artifact_paths`, for a row with `fallback=True`: why
  the builder cannot finish here, what the export prepares instead (exit 3), and the files either way.

A call, not a name: an INT8 exporter whose slow step lowers or converts a quantized PT2E program calls
`pt2e.before_lowering(program, lowered_by)` first, so the pipeline can refuse a program that already fails
the INT8 gates (ExecuTorch, LiteRT); the per-layer report of that refusal reads the program itself.
"""

from __future__ import annotations

REQUIRED = ("export", "read_io")
OPTIONAL = ("preflight", "verify_static", "unavailable_reason", "PREPARES")


def missing(module, fallback: bool = False) -> list[str]:
    """The contract's names `module` lacks (empty when it keeps the contract)."""
    names = [n for n in REQUIRED if not callable(getattr(module, n, None))]
    if fallback:
        names += [n for n in ("unavailable_reason", "PREPARES", "artifact_paths") if not hasattr(module, n)]
    return names
