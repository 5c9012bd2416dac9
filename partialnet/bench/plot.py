"""Latency against compute: one point per (model, runtime, batch), a line per runtime."""

from __future__ import annotations

from partialnet.errors import BadInput, missing_extra


def plot(result: dict, target) -> None:
    """Draw `result` as a PNG into `target` (a path or a binary file; bench writes through partialnet.outputs)."""
    plt = _pyplot()
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
    save(fig, target)


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
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    gpu = result["device"] == "cuda"
    points = [(c["runtime"], c["size"], c["batch"], c["fasternet"]["stats"]["p50_ms"], c["partialnet"]["stats"]["p50_ms"]) for c in cells]
    _draw_families(ax, points, gmacs, gpu)
    device = ", ".join(g["name"] for g in result["machine"].get("gpus", [])) if gpu else result["machine"]["cpu"]["model"]
    ax.set_xlabel(f"GMACs per image at {result['imgsz'][0]}x{result['imgsz'][1]}")
    ax.set_title(
        f"PartialNet vs FasterNet · {device} · {', '.join(dict.fromkeys(p[0] for p in points))}\n"
        f"protocol {result['protocol']['name']}, batch {result['batch']}, {result['threads']} thread(s) · {result['created_utc'][:10]}",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def _draw_families(ax, points, gmacs: dict, gpu: bool) -> None:
    """points: (runtime, size, batch, FasterNet p50 ms, PartialNet p50 ms); a line per family x runtime."""
    runtimes = list(dict.fromkeys(p[0] for p in points))
    colours = {r: f"C{i}" for i, r in enumerate(runtimes)}
    for runtime in runtimes:
        for family, index, style in (("partialnet", 4, "-"), ("fasternet", 3, "--")):
            line = sorted(
                (gmacs[(size, family)], batch / (row[index] / 1e3) if gpu else row[index], size)
                for row in points if row[0] == runtime
                for size, batch in [(row[1], row[2])]
            )
            label = f"{'PartialNet' if family == 'partialnet' else 'FasterNet'} · {runtime}"
            ax.plot([p[0] for p in line], [p[1] for p in line], style, marker="o", color=colours[runtime], label=label)
            for x, y, size in line:
                ax.annotate(size.upper(), (x, y), textcoords="offset points", xytext=(3, -10 if family == "fasternet" else 4), fontsize=7)
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.24, not 2.4x10^-1
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.tick_params(which="minor", labelsize=6)
    ax.set_ylabel("throughput (images/s)" if gpu else "median latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best", frameon=True, framealpha=0.8)


def report_figure(report: dict, gmacs: dict):
    """One panel per machine (and per batch/thread setting measured there), drawn as `claims_figure` draws."""
    plt = _pyplot()
    ok = [r for r in report["measurements"] if r["status"] == "ok"]
    panels = list(dict.fromkeys((r["machine_id"], r["batch"], r["threads"]) for r in ok))
    if not panels:
        raise BadInput("nothing to plot: the report has no measured PartialNet/FasterNet pair")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), dpi=110, squeeze=False)
    for ax, (machine_id, batch, threads) in zip(axes[0], panels):
        rows = [r for r in ok if (r["machine_id"], r["batch"], r["threads"]) == (machine_id, batch, threads)]
        gpu = rows[0]["device"] == "cuda"
        points = [(r["runtime"], r["size"], r["batch"], r["fasternet_p50_ms"], r["partialnet_p50_ms"]) for r in rows]
        _draw_families(ax, points, gmacs, gpu)
        ax.set_xlabel("GMACs per image at 224x224")
        ax.set_title(f"{report['machines'][machine_id]['cpu'].get('model')} [{machine_id[:8]}] · {rows[0]['device']}\n"
                     f"protocol {report['protocol']['name']}, batch {batch}, {threads} thread(s)", fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, target) -> None:
    plt = _pyplot()
    try:
        fig.savefig(target, format="png")
    finally:
        plt.close(fig)
