"""Exporters: one module per format, each turning a folded deploy model into an artifact file.

Exporters never compare; `partialnet.pipeline.export_folded` verifies what they write. What a
format module must provide is written in `partialnet.exporters.contract`.
"""

from partialnet.exporters.formats import FORMATS, Format, format_for_path, get_format

__all__ = ["FORMATS", "Format", "format_for_path", "get_format"]
