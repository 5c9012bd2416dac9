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


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("matplotlib (needed for --plot)", "plot") from None
    return plt


def claims_figure(result: dict):
    """The papers' figure redrawn from this machine: latency (CPU) or throughput (GPU) against GMACs.

    One line per family x runtime, log-log, each point labelled with its size; built and returned
    unsaved so tests can check its structure (axes, series, scales) instead of pixels.
    """
    plt = _pyplot()
    cells = [c for c in result["measurements"] if c["status"] == "ok"]
    if not cells:
        raise BadInput("nothing to plot: no measured PartialNet/FasterNet pair")
    gmacs = {(c["size"], c["family"]): c["gmacs"] for c in result["costs"]}
    gpu = result["device"] == "cuda"
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    styles = {"partialnet": "-", "fasternet": "--"}
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    colours = {r: f"C{i}" for i, r in enumerate(runtimes)}
    for runtime in runtimes:
        for family in ("partialnet", "fasternet"):
            points = []
            for cell in (c for c in cells if c["runtime"] == runtime):
                p50_ms = cell[family]["stats"]["p50_ms"]
                value = cell["batch"] / (p50_ms / 1e3) if gpu else p50_ms
                points.append((gmacs[(cell["size"], family)], value, cell["size"]))
            points.sort()
            label = f"{'PartialNet' if family == 'partialnet' else 'FasterNet'} · {runtime}"
            ax.plot([p[0] for p in points], [p[1] for p in points], styles[family], marker="o", color=colours[runtime], label=label)
            for x, y, size in points:
                ax.annotate(size.upper(), (x, y), textcoords="offset points", xytext=(3, -10 if family == "fasternet" else 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"GMACs per image at {result['imgsz'][0]}x{result['imgsz'][1]}")
    ax.set_ylabel("throughput (images/s)" if gpu else "median latency (ms)")
    device = ", ".join(g["name"] for g in result["machine"].get("gpus", [])) if gpu else result["machine"]["cpu"]["model"]
    ax.set_title(
        f"PartialNet vs FasterNet · {device} · {', '.join(runtimes)}\n"
        f"protocol {result['protocol']['name']}, batch {result['batch']}, {result['threads']} thread(s) · {result['created_utc'][:10]}",
        fontsize=8,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left" if not gpu else "upper right", frameon=False)
    fig.tight_layout()
    return fig


def save(fig, target) -> None:
    plt = _pyplot()
    try:
        fig.savefig(target, format="png")
    finally:
        plt.close(fig)
