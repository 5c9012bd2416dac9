"""Latency against compute: one point per (model, runtime, batch), a line per runtime."""

from __future__ import annotations

from partialnet.errors import BadInput, missing_extra


def plot(result: dict, target) -> None:
    """Draw `result` as a PNG into `target` (a path or a binary file; bench writes through partialnet.outputs)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("matplotlib (needed for --plot)", "plot") from None
    rows = [r for r in result["rows"] if r["status"] == "ok" and r.get("gmacs")]
    if not rows:
        raise BadInput("nothing to plot: no measured row with a known GMACs figure")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for runtime in sorted({r["runtime"] for r in rows}):
        for batch in sorted({r["batch"] for r in rows if r["runtime"] == runtime}):
            pts = sorted((r["gmacs"], r["stats"]["p50_ms"], r["model"]) for r in rows if r["runtime"] == runtime and r["batch"] == batch)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{runtime}, batch {batch}")
            for x, y, name in pts:
                ax.annotate(name.split(":")[0], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    machine = result["machine"]["cpu"]
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("median latency per batch (ms)")
    ax.set_title(f"{result['protocol']['name']} protocol · {machine['model']} · {result['settings']['threads']} threads", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(target, format="png")
    finally:
        plt.close(fig)
