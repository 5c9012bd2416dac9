"""What each format can do on this machine, and why not: the data behind `partialnet formats`.

Computed from the format and runtime tables plus cheap probes (is the backend importable, is there a
GPU), never by importing a heavy backend, so the command answers in a moment.
"""

from __future__ import annotations

import importlib.util

from partialnet.exporters.formats import FORMATS, Format, exporter_of
from partialnet.exporters.options import FLAGS, listed_flag
from partialnet.runtimes.table import RUNTIMES, availability


def _installed(module: str | None) -> bool:
    return module is None or importlib.util.find_spec(module) is not None


def _export_status(fmt: Format) -> tuple[str, str | None]:
    if fmt.fallback:  # prepares what it can without its builder (see the contract's unavailable_reason)
        exporter = exporter_of(fmt)
        reason = exporter.unavailable_reason()
        if reason:
            return "prepares", f"{exporter.PREPARES}, exit 3: {reason}"
        return "yes", None
    if not _installed(fmt.backend):
        return "no", f"pip install 'partialnet[{fmt.extra}]'"
    return "yes", None


def _verify_instead(fmt: Format) -> str:
    """How a format is checked where its runtime cannot run."""
    if fmt.fallback:
        return "in ONNX Runtime (the prepared ONNX)"
    if hasattr(exporter_of(fmt), "verify_static"):
        return "static checks + reference interpreter"
    return "no"


def format_rows() -> list[dict]:
    rows = []
    for fmt in FORMATS.values():
        export, export_why = _export_status(fmt)
        runtime = RUNTIMES[fmt.runtime]
        device = runtime.devices[0] if "cpu" not in runtime.devices else "cpu"
        run_why = availability(fmt.runtime, device)
        rows.append(
            {
                "format": fmt.name,
                "aliases": list(fmt.aliases),
                "suffix": fmt.suffix,
                "extra": fmt.extra,
                "installed": _installed(fmt.backend),
                "devices": list(fmt.devices),
                "options": [listed_flag(o) for o in FLAGS if o in fmt.options],
                "description": fmt.description,
                "export": export,
                "export_reason": export_why,
                "verify": "yes" if run_why is None else _verify_instead(fmt),
                "bench": "yes" if run_why is None else "no",
                "runtime": fmt.runtime,
                "runtime_reason": run_why,
            }
        )
    return rows
