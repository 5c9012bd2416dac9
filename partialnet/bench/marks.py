"""How a marked row shows in every table: `!` unstable, `~` disturbed, and one note line saying why.

Kept free of numpy so the command line can render without importing it.
"""

from __future__ import annotations


def mark(row: dict) -> str:
    """The row's mark in every table: ! unstable, ~ disturbed (both: !~)."""
    return ("!" if row.get("unstable") else "") + ("~" if row.get("disturbed") else "")


def marked_notes(rows: list[dict]) -> list[str]:
    """One line per marked row: which, and why, so a reader never takes its figure as the model's speed."""
    return [f"{mark(row)} {row['model']} on {row['runtime']} (batch {row['batch']}): {row['why']}; not a figure to publish or gate on"
            for row in rows if row.get("status") == "ok" and (row.get("unstable") or row.get("disturbed"))]
