"""Measured speed against compute, drawn the way the papers draw it.

Every figure here is log-log (latency or throughput vs GMACs per image), one line per model family x
runtime, each point labelled with its size where it cannot collide with another label, and the legend
outside the data. Builders return the unsaved Figure so tests can check its structure (panels, series,
scales, label boxes) instead of pixels; `save` writes it and closes it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from partialnet.errors import BadInput, missing_extra
from partialnet.inputs import finite_number

FAMILY_NAMES = {"partialnet": "PartialNet", "fasternet": "FasterNet"}
FAMILY_STYLES = (("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"))  # known families first, in FAMILY_NAMES order
LOOSE_MARKERS = ("X", "P", "*", "h", "v", "<", ">", "d")
LATENCY_LABEL = "median latency per batch (ms)"
THROUGHPUT_LABEL = "throughput (images/s)"
LABEL_FONTSIZE = 7
TITLE_FONTSIZE = 8
MARKERSIZE = 5
LABEL_RINGS = 8  # how far (in steps of LABEL_STEP_PT) a size label may move away from its point
LABEL_STEP_PT = 6
LEADER_FROM_RING = 2  # a label this far out gets a thin line back to its point


def plot(result: dict, target) -> None:
    """bench --plot: `bench_figure` as a PNG into `target` (a path, or the binary file partialnet.outputs stages)."""
    save(bench_figure(result), target)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("matplotlib (needed for --plot)", "plot") from None
    return plt


def save(fig, target) -> None:
    plt = _pyplot()
    try:
        fig.savefig(target, format="png")
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------- bench


def bench_figure(result: dict):
    """One latency panel per batch size, plus a throughput panel per batch size where batching was measured.

    Batch sizes never share an axis: a batch-32 call takes ~30x a batch-1 call, so on one axis the
    batch-1 differences between models (the point of the figure) would be flattened to nothing.
    """
    plt = _pyplot()
    rows = _plottable(result.get("rows") or [])
    if not rows:
        raise BadInput("nothing to plot: no measured row with a known GMACs figure")
    batches = sorted({r["batch"] for r in rows})
    throughput = _throughput_batches(result, batches)
    fig = plt.figure(figsize=(max(6.4, 4.8 * len(batches)), 3.9 * (2 if throughput else 1) + 1.5), dpi=120)
    try:
        labelled = _bench_panels(fig, rows, batches, throughput)
        fig.suptitle(_wrapped(_bench_title(result, rows, bool(throughput)), fig, TITLE_FONTSIZE), fontsize=TITLE_FONTSIZE)
        _finish(fig, labelled)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _plottable(rows: list) -> list[dict]:
    """Measured rows a log-log figure can show: a positive GMACs figure and a positive median."""
    return [
        r for r in rows
        if r.get("status") == "ok" and _positive(r.get("gmacs")) and _positive((r.get("stats") or {}).get("p50_ms"))
        and isinstance(r.get("batch"), int) and r["batch"] > 0
    ]


def _positive(value) -> bool:
    return finite_number(value) and value > 0


def _throughput_batches(result: dict, batches: list[int]) -> set[int]:
    """Throughput is drawn where it is what the run measured: batches above 1, or all under the throughput protocol."""
    if (result.get("protocol") or {}).get("name") == "throughput":
        return set(batches)
    return {b for b in batches if b > 1}


def _latency_ms(row: dict) -> float:
    return row["stats"]["p50_ms"]


def _images_per_s(row: dict) -> float:
    return row["batch"] / (row["stats"]["p50_ms"] / 1e3)  # recomputed: a result file's own figure is not trusted


def _bench_panels(fig, rows: list[dict], batches: list[int], throughput: set[int]) -> list:
    """Latency panels on the first grid row, throughput under the batch it belongs to; all share the GMACs axis."""
    grid = fig.add_gridspec(2 if throughput else 1, len(batches))
    look = _Look.of(rows)
    xlabel = _gmacs_label(rows)
    panels = [(0, col, b, "latency") for col, b in enumerate(batches)]
    panels += [(1, col, b, "throughput") for col, b in enumerate(batches) if b in throughput]
    labelled, first, first_throughput = [], None, None
    for grid_row, col, batch, metric in panels:
        ax = fig.add_subplot(grid[grid_row, col], sharex=first, sharey=first_throughput if metric == "throughput" else None)
        first = first or ax
        if metric == "throughput":  # images/s is comparable across batch sizes; latency per call is not
            first_throughput = first_throughput or ax
        value = _latency_ms if metric == "latency" else _images_per_s
        series = _bench_series([r for r in rows if r["batch"] == batch], value, look)
        labelled.append((ax, _draw_series(ax, series)))
        _log_axes(ax, LATENCY_LABEL if metric == "latency" else THROUGHPUT_LABEL)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"batch {batch} · {metric}", fontsize=9)
    return labelled


def _family(row: dict) -> str | None:
    variant = row.get("variant")
    return variant.split("_", 1)[0] if isinstance(variant, str) and "_" in variant else None


def _size(row: dict) -> str:
    return row["variant"].split("_", 1)[1].upper()


def _family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, family)


@dataclass(frozen=True)
class _Look:
    """Colour per runtime, line style and marker per family, marker per loose model: fixed for the whole
    figure so one legend entry means the same thing in every panel."""

    runtimes: tuple
    colour: Callable  # (runtime, family) -> colour
    families: dict
    loose: dict
    mixed_precision: bool

    @classmethod
    def of(cls, rows: list[dict]) -> "_Look":
        runtimes, styles = tuple(dict.fromkeys(r["runtime"] for r in rows)), _family_styles(_family(r) for r in rows)
        return cls(
            runtimes,
            _palette(runtimes, styles),
            styles,
            {m: LOOSE_MARKERS[i % len(LOOSE_MARKERS)] for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))},
            len({r.get("precision") for r in rows}) > 1,
        )


def _palette(runtimes, families) -> Callable:
    """Colour by runtime, as line style is by family; with one runtime, by family too, so that two
    families never draw in the same colour."""
    runtimes = list(dict.fromkeys(runtimes))
    if len(runtimes) > 1:
        by_runtime = {r: f"C{i % 10}" for i, r in enumerate(runtimes)}
        return lambda runtime, family: by_runtime[runtime]
    by_family = {f: f"C{i % 7}" for i, f in enumerate(families)}
    return lambda runtime, family: by_family.get(family, "C7")  # C7 (grey): no family


def _family_styles(families) -> dict:
    known = [f for f in FAMILY_NAMES]
    order = known + sorted({f for f in families if f and f not in FAMILY_NAMES})
    return {f: FAMILY_STYLES[i % len(FAMILY_STYLES)] for i, f in enumerate(order)}


@dataclass
class _Series:
    label: str
    colour: str
    linestyle: str  # "none": unconnected markers
    marker: str
    points: list = field(default_factory=list)  # (GMACs, value, direct label or "")
    hollow: list = field(default_factory=list)  # (GMACs, value) of points whose row is marked unstable or disturbed


def _bench_series(rows: list[dict], value, look: _Look) -> list[_Series]:
    """A line per family x runtime (x precision when the run mixed them); anything a line must not join
    (a model of unknown family, or a second model of a size the line already has) stays a loose marker."""
    lines: dict[tuple, _Series] = {}
    loose: list[_Series] = []
    for row in rows:
        family, runtime = _family(row), row["runtime"]
        precision = row.get("precision") if look.mixed_precision else None
        suffix = f" · {precision}" if precision else ""
        key = (family, runtime, precision)
        colour = look.colour(runtime, family)
        marked = [(row["gmacs"], value(row))] if row.get("unstable") or row.get("disturbed") else []  # drawn hollow, as matrix's
        if family is None or _repeats(lines.get(key), row):
            point = (row["gmacs"], value(row), "")
            loose.append(_Series(f"{_short(row['model'])} · {runtime}{suffix}", colour, "none", look.loose[row["model"]], [point], marked))
            continue
        if key not in lines:
            lines[key] = _Series(f"{_family_name(family)} · {runtime}{suffix}", colour, *look.families[family])
        lines[key].points.append((row["gmacs"], value(row), _size(row)))
        lines[key].hollow += marked
    runtime_rank = {r: i for i, r in enumerate(look.runtimes)}
    family_rank = {f: i for i, f in enumerate(look.families)}
    ordered = sorted(lines, key=lambda k: (runtime_rank[k[1]], family_rank[k[0]], str(k[2])))
    return [lines[k] for k in ordered] + loose


def _repeats(line: _Series | None, row: dict) -> bool:
    """A second model of a size the line already has (random weights and a checkpoint of T0, say)."""
    return line is not None and _size(row) in {text for *_, text in line.points}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _gmacs_label(rows: list[dict]) -> str:
    sizes = {tuple(r["imgsz"]) for r in rows if isinstance(r.get("imgsz"), (list, tuple)) and len(r["imgsz"]) == 2}
    if len(sizes) == 1:
        (h, w), = sizes
        return f"GMACs per image at {h}x{w}"
    return "GMACs per image"


def _threads_text(threads) -> str:
    threads = sorted(set(threads))
    if len(threads) == 1:
        return f"{threads[0]} thread" + ("" if threads[0] == 1 else "s")
    return ", ".join(map(str, threads)) + " threads"


def _wrapped(text: str, fig, fontsize: float) -> str:
    """A long CPU name or runtime list must not run off the figure: break between " · " fields where a
    line is full (so "1 thread" or "protocol quick" never splits), and inside a field only if it alone is too long."""
    chars = int(fig.get_figwidth() * 72 / (fontsize * 0.6))  # ~0.6 em per character, a little generous
    lines = []
    for line in text.split("\n"):
        current = ""
        for part in line.split(" · "):
            joined = f"{current} · {part}" if current else part
            if current and len(joined) > chars:
                lines.append(current)
                joined = part
            current = joined
        lines.append(current)
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in lines)


def _bench_title(result: dict, rows: list[dict], throughput: bool) -> str:
    """Everything a reader needs to know the numbers belong to one machine and one way of timing."""
    settings, machine = result.get("settings") or {}, result.get("machine") or {}
    cpu = (machine.get("cpu") or {}).get("model") or "unknown CPU"
    device = settings.get("device") or rows[0].get("device") or "cpu"
    gpus = ", ".join(str(g.get("name", "?")) for g in machine.get("gpus") or [] if isinstance(g, dict))
    where = f"{device}: {gpus} (host {cpu})" if device != "cpu" and gpus else f"{device}: {cpu}"
    runtimes = ", ".join(dict.fromkeys(r["runtime"] for r in rows))
    threads = [t for t in (r.get("threads") for r in rows) if isinstance(t, int)] or (
        [settings["threads"]] if isinstance(settings.get("threads"), int) else []
    )
    details = [f"protocol {(result.get('protocol') or {}).get('name', '?')}"]
    details += [_threads_text(threads)] if threads else []
    precisions = {r.get("precision") for r in rows}
    details += [str(precisions.pop())] if len(precisions) == 1 else []
    details += [str(result.get("created_utc") or "")[:10]] if result.get("created_utc") else []
    details += ["hollow: a row marked unstable or disturbed"] if any(r.get("unstable") or r.get("disturbed") for r in rows) else []
    what = "latency and throughput" if throughput else "latency"
    return f"{what} vs compute · {where} · {runtimes}\n" + " · ".join(details)


# --------------------------------------------------------------------------------------------- claims


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
    fig, ax = plt.subplots(figsize=(7.5, 5.4), dpi=120)
    gpu = result["device"] == "cuda"
    points = [(c["runtime"], c["size"], c["batch"], c["fasternet"]["stats"]["p50_ms"], c["partialnet"]["stats"]["p50_ms"]) for c in cells]
    labels = _draw_families(ax, points, gmacs, gpu)
    device = ", ".join(g["name"] for g in result["machine"].get("gpus", [])) if gpu else result["machine"]["cpu"]["model"]
    ax.set_xlabel(f"GMACs per image at {result['imgsz'][0]}x{result['imgsz'][1]}", fontsize=8)
    ax.set_title(
        f"PartialNet vs FasterNet · {device} · {', '.join(dict.fromkeys(p[0] for p in points))}\n"
        f"protocol {result['protocol']['name']}, batch {result['batch']}, {result.get('precision', 'fp32')}"
        f"{', CUDA graphs (not eager)' if result.get('cuda_graphs') is True else ''}, {_threads_text([result['threads']])}"
        f" · {result['created_utc'][:10]}",
        fontsize=8,
    )
    _finish(fig, [(ax, labels)])
    return fig


def report_figure(report: dict, gmacs: dict):
    """One panel per machine (and per batch/thread setting measured there), drawn as `claims_figure` draws."""
    plt = _pyplot()
    ok = [r for r in report["measurements"] if r["status"] == "ok"]
    panels = list(dict.fromkeys((r["machine_id"], r["batch"], r["threads"]) for r in ok))
    if not panels:
        raise BadInput("nothing to plot: the report has no measured PartialNet/FasterNet pair")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), dpi=110, squeeze=False)
    labelled = []
    for ax, (machine_id, batch, threads) in zip(axes[0], panels):
        rows = [r for r in ok if (r["machine_id"], r["batch"], r["threads"]) == (machine_id, batch, threads)]
        gpu = rows[0]["device"] == "cuda"
        points = [(r["runtime"], r["size"], r["batch"], r["fasternet_p50_ms"], r["partialnet_p50_ms"]) for r in rows]
        labelled.append((ax, _draw_families(ax, points, gmacs, gpu)))
        ax.set_xlabel("GMACs per image at 224x224", fontsize=8)
        ax.set_title(f"{report['machines'][machine_id]['cpu'].get('model')} [{machine_id[:8]}] · {rows[0]['device']}\n"
                     f"protocol {report['protocol']['name']}, batch {batch}, {_threads_text([threads])}", fontsize=8)
    _finish(fig, labelled)
    return fig


def _draw_families(ax, points, gmacs: dict, gpu: bool) -> list:
    """points: (runtime, size, batch, FasterNet p50 ms, PartialNet p50 ms); a line per family x runtime.

    Returns the size labels, placed by `_finish` once the layout is final.
    """
    runtimes = list(dict.fromkeys(p[0] for p in points))
    styles = _family_styles(FAMILY_NAMES)
    colour = _palette(runtimes, styles)
    series = []
    for runtime in runtimes:
        for family, index in (("partialnet", 4), ("fasternet", 3)):
            line = _Series(f"{_family_name(family)} · {runtime}", colour(runtime, family), *styles[family])
            for row in (p for p in points if p[0] == runtime):
                size, batch, ms = row[1], row[2], row[index]
                line.points.append((gmacs[(size, family)], batch / (ms / 1e3) if gpu else ms, size.upper()))
            series.append(line)
    labels = _draw_series(ax, series)
    _log_axes(ax, THROUGHPUT_LABEL if gpu else "median latency (ms)")
    return labels


# -------------------------------------------------------------------------------------------- drawing


def _draw_series(ax, series: list[_Series]) -> list[tuple]:
    """Each series sorted by GMACs (a line reads as a scaling curve); returns its direct labels unplaced,
    because where they fit is only known in pixels, after the layout."""
    labels = []
    for s in series:
        points = sorted(s.points, key=lambda p: (p[0], p[1]))
        ax.plot([p[0] for p in points], [p[1] for p in points], linestyle=s.linestyle, marker=s.marker, color=s.colour,
                label=s.label, markersize=MARKERSIZE, linewidth=1.3)
        if s.hollow:
            ax.plot([x for x, _ in s.hollow], [y for _, y in s.hollow], linestyle="none", marker=s.marker, markersize=MARKERSIZE,
                    markerfacecolor="white", markeredgecolor=s.colour)
        labels += [(x, y, text, s.colour) for x, y, text in points if text]
    return labels


def _log_axes(ax, ylabel: str) -> None:
    """Log-log with plain tick numbers: model sizes span decades of GMACs and of latency."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(_plain_log_formatter(minor=False))
        axis.set_minor_formatter(_plain_log_formatter(minor=True))
    ax.tick_params(which="major", labelsize=7)
    ax.tick_params(which="minor", labelsize=6)
    ax.margins(x=0.12, y=0.15)  # room around the extreme points for their labels
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3, which="both")


def _plain_log_formatter(minor: bool):
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: _log_tick_text(value, minor, formatter.axis))
    return formatter


def _log_tick_text(value: float, minor: bool, axis) -> str:
    """0.5, not 5x10^-1; minor ticks labelled only while the axis spans few decades, so a wide axis
    does not print 2..9 of every decade on top of one another."""
    if not value > 0:
        return ""
    if not minor:
        return f"{value:g}"
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else math.inf
    mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9), 6)
    shown = range(1, 10) if decades < 0.5 else (2, 3, 5) if decades < 1 else (2, 5) if decades < 2 else ()
    return f"{value:g}" if mantissa in shown else ""


# ---------------------------------------------------------------------------------- layout and labels

# below-right first: latency curves rise to the right, so that side of a point is usually clear
DIRECTIONS = ((1, -1), (-1, 1), (1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
ALIGN_X = {1: "left", 0: "center", -1: "right"}
ALIGN_Y = {1: "bottom", 0: "center", -1: "top"}
LINE_PENALTY = 2  # a spot crossing a line is worth as much as one this many rings further out


def _finish(fig, labelled: list) -> None:
    """Legend under the panels, panels fitted above it (tight_layout leaves room for a suptitle itself),
    then the size labels.

    Labels come last because their collision test is done in pixels: any relayout after it would move
    the points out from under them.
    """
    for ax in fig.axes:
        _ticks_inside(ax)
    renderer = fig.canvas.get_renderer()
    legend = _outside_legend(fig, renderer)
    bottom = legend.get_window_extent(renderer).y1 / fig.bbox.height + 0.01 if legend else 0.0
    fig.tight_layout(rect=(0, min(bottom, 0.45), 1, 1))
    fig.canvas.draw()  # settles autoscaled limits and tick labels before anything is measured against them
    for ax, labels in labelled:
        _place_labels(ax, labels, renderer)


def _ticks_inside(ax) -> None:
    """A log axis narrower than the step between its labelled ticks (1.10-1.22 ms: every latency of one runtime
    on a fast machine) would show gridlines and no number at all: there, evenly spaced plain numbers instead."""
    from matplotlib.ticker import MaxNLocator, NullLocator

    ax.autoscale_view()
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "log":
            continue
        low, high = sorted(axis.get_view_interval())
        ticks = [(v, False) for v in axis.get_majorticklocs()] + [(v, True) for v in axis.get_minorticklocs()]
        labelled = [v for v, minor in ticks if low <= v <= high and _log_tick_text(v, minor, axis)]
        if len(labelled) < 2:
            axis.set_major_locator(MaxNLocator(nbins=4))
            axis.set_minor_locator(NullLocator())


def _outside_legend(fig, renderer):
    """One legend for all panels, below them: its entries mean the same in every panel, and inside a
    panel it would hide points. As many columns as fit the figure's width."""
    entries: dict = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return None
    for ncol in range(len(entries), 0, -1):
        legend = fig.legend(list(entries.values()), list(entries), loc="lower center", bbox_to_anchor=(0.5, 0.005),
                            ncol=ncol, fontsize=7, frameon=False)
        if ncol == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            return legend
        legend.remove()
    return None


def _place_labels(ax, labels: list[tuple], renderer) -> None:
    """Put each size label at the nearest candidate spot that covers no placed label and no marker and
    stays inside the panel, preferring spots that cross no line.

    The same size measured by several runtimes sits at one GMACs figure; where those points are close
    they share one label (in a neutral colour) instead of stacking three identical ones. Candidates are
    tried in a fixed order, so the same result always gives the same figure; a label pushed a few rings
    out gets a thin leader back to its points.
    """
    pt = ax.figure.dpi / 72  # pixels per point
    frame = ax.get_window_extent(renderer)
    obstacles = _marker_boxes(ax, pt)
    segments = _line_segments(ax)
    for text, colour, members in _label_groups(ax, labels, renderer):
        width, height = _text_size(ax, text, renderer)
        span = _span(ax.transData.transform([(x, y) for x, y in members]))
        ring, (dx, dy), gap, box = _choose(_candidates(span, width, height, pt), frame, obstacles, segments)
        x, y = _nearest(members, ax, box)
        anchor = ax.transData.transform((x, y))
        leader = ring >= LEADER_FROM_RING
        ax.annotate(
            text, (x, y), textcoords="offset points", xytext=_offset_pt(box, (dx, dy), anchor, pt), ha=ALIGN_X[dx], va=ALIGN_Y[dy],
            fontsize=LABEL_FONTSIZE, color=colour,
            arrowprops=dict(arrowstyle="-", color=colour, lw=0.5, alpha=0.7, shrinkA=0, shrinkB=MARKERSIZE / 2) if leader else None,
        )
        obstacles.append(box)
        if leader:
            segments.append((tuple(anchor), ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)))


def _offset_pt(box, direction: tuple, anchor, pt: float) -> tuple:
    """Where the chosen box's aligned corner (or edge middle) sits relative to the anchor, in points, so
    the label keeps its place if the figure is saved at another dpi."""
    dx, dy = direction
    x = box.x0 if dx > 0 else box.x1 if dx < 0 else (box.x0 + box.x1) / 2
    y = box.y0 if dy > 0 else box.y1 if dy < 0 else (box.y0 + box.y1) / 2
    return (x - anchor[0]) / pt, (y - anchor[1]) / pt


def _label_groups(ax, labels: list[tuple], renderer) -> list[tuple]:
    """(text, colour, [(x, y), ...]): labels of one text at one GMACs figure, merged while their points
    are within a few label heights of each other on screen."""
    reach = 2.5 * _text_size(ax, "T0", renderer)[1]
    columns: dict[tuple, list] = {}
    for x, y, text, colour in labels:
        columns.setdefault((text, x), []).append((ax.transData.transform((x, y))[1], x, y, colour))
    groups = []
    for (text, _), points in columns.items():
        points.sort()
        run = [points[0]]
        for point in points[1:]:
            if point[0] - run[-1][0] > reach:
                groups.append(_group(text, run))
                run = []
            run.append(point)
        groups.append(_group(text, run))
    return groups


def _group(text: str, run: list) -> tuple:
    colours = {p[3] for p in run}
    return text, colours.pop() if len(colours) == 1 else "0.25", [(p[1], p[2]) for p in run]


def _span(pixels) -> tuple:
    xs, ys = [p[0] for p in pixels], [p[1] for p in pixels]
    return min(xs), min(ys), max(xs), max(ys)


def _nearest(members: list, ax, box) -> tuple:
    """The point a label (and its leader) hangs from: the member closest to the label's box."""
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2

    def distance(point):
        px, py = ax.transData.transform(point)
        return (px - cx) ** 2 + (py - cy) ** 2

    return min(members, key=distance)


def _text_size(ax, text: str, renderer) -> tuple[float, float]:
    probe = ax.annotate(text, (0, 0), xycoords="axes pixels", fontsize=LABEL_FONTSIZE)
    extent = probe.get_window_extent(renderer)
    probe.remove()
    return extent.width, extent.height


def _candidates(span: tuple, width: float, height: float, pt: float) -> list[tuple]:
    """(ring, direction, gap in pixels, label box) around the points' span, nearest ring first."""
    from matplotlib.transforms import Bbox

    x0, y0, x1, y1 = span
    out = []
    for ring in range(LABEL_RINGS):
        gap = (4 + LABEL_STEP_PT * ring) * pt
        for dx, dy in DIRECTIONS:
            left = x1 + gap if dx > 0 else x0 - gap - width if dx < 0 else (x0 + x1 - width) / 2
            bottom = y1 + gap if dy > 0 else y0 - gap - height if dy < 0 else (y0 + y1 - height) / 2
            out.append((ring, (dx, dy), gap, Bbox.from_bounds(left, bottom, width, height)))
    return out


def _choose(candidates: list[tuple], frame, obstacles: list, segments: list) -> tuple:
    """The free spot with the lowest ring (+ a penalty for crossing a line); when none is free, the
    least covered one, so a hopelessly crowded panel still gets every label."""
    inside = [c for c in candidates if _within(c[3], frame)] or candidates
    free = [c for c in inside if not any(_overlaps(c[3], o) for o in obstacles)]
    if free:
        return min(free, key=lambda c: c[0] + LINE_PENALTY * any(_crosses(c[3], s) for s in segments))
    return min(inside, key=lambda c: sum(_overlap_area(c[3], o) for o in obstacles))


def _marker_boxes(ax, pt: float) -> list:
    from matplotlib.transforms import Bbox

    boxes = []
    for line in ax.get_lines():
        half = line.get_markersize() / 2 * pt + 1
        for px, py in ax.transData.transform(line.get_xydata()):
            boxes.append(Bbox.from_extents(px - half, py - half, px + half, py + half))
    return boxes


def _line_segments(ax) -> list:
    segments = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "none", "", " "):
            continue
        xy = ax.transData.transform(line.get_xydata())
        segments += [(tuple(a), tuple(b)) for a, b in zip(xy[:-1], xy[1:])]
    return segments


def _within(box, frame, margin: float = 2.0) -> bool:
    return (box.x0 >= frame.x0 + margin and box.x1 <= frame.x1 - margin
            and box.y0 >= frame.y0 + margin and box.y1 <= frame.y1 - margin)


def _overlaps(a, b, pad: float = 1.5) -> bool:
    return a.x0 < b.x1 + pad and b.x0 < a.x1 + pad and a.y0 < b.y1 + pad and b.y0 < a.y1 + pad


def _overlap_area(a, b) -> float:
    return max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))


def _crosses(box, segment) -> bool:
    """Whether a straight segment passes through the box (Liang-Barsky clipping)."""
    (x1, y1), (x2, y2) = segment
    dx, dy = x2 - x1, y2 - y1
    low, high = 0.0, 1.0
    for p, q in ((-dx, x1 - box.x0), (dx, box.x1 - x1), (-dy, y1 - box.y0), (dy, box.y1 - y1)):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


# ---------------------------------------------------------------------------------------------- matrix


def matrix_figure(result: dict):
    """`matrix --plot`: latency (log) against accuracy, one labelled point per artifact, marker area by file
    size, the Pareto front drawn, marked rows hollow; machine and protocol in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.4), dpi=120)
    _matrix_panel(ax, result["rows"], result["threads"])
    ax.set_title(f"{result['source']['variant']} at {result['imgsz'][0]}x{result['imgsz'][1]} · {result['machine']['cpu']['model']} · "
                 f"{result['protocol']} protocol\nmarker area: file size; hollow: a row marked unstable or disturbed", fontsize=8)
    fig.tight_layout()
    return fig


def matrices_figure(merged: dict):
    """`report` over matrices: one panel per machine, each drawn as `matrix --plot` draws it."""
    plt = _pyplot()
    panels = merged["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), dpi=110, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _matrix_panel(ax, panel["rows"], merged["threads"])
        ax.set_title(f"{panel['cpu']} ({panel['machine_id'][:8]})", fontsize=8)
    fig.suptitle(f"{merged['variant']} at {merged['imgsz'][0]}x{merged['imgsz'][1]} · {merged['protocol']} protocol · "
                 "marker area: file size; hollow: unstable or disturbed", fontsize=9)
    fig.tight_layout()
    return fig


def _matrix_panel(ax, rows: list[dict], threads: int) -> None:
    rows = [r for r in rows if r.get("p50_ms")]
    if not rows:
        raise BadInput("nothing to plot: no artifact was timed")
    by_accuracy = any(r.get("top1") is not None for r in rows)
    value = (lambda r: r.get("top1")) if by_accuracy else (lambda r: 100 * (r.get("agreement") or 0))
    biggest = max((r.get("bytes") or 0) for r in rows) or 1
    for r in rows:
        marked = r.get("unstable") or r.get("disturbed")
        area = 30 + 400 * (r.get("bytes") or 0) / biggest
        ax.scatter([r["p50_ms"]], [value(r)], s=area, facecolors="none" if marked else None, edgecolors="black" if marked else None, alpha=0.7)
    ax.set_xscale("log")
    _direct_labels(ax, [(r["p50_ms"], value(r), f"{r['format']}/{r['precision']}" + (" (ship)" if r.get("recommended") else "")) for r in rows])
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["p50_ms"])
    if front:
        ax.plot([r["p50_ms"] for r in front], [value(r) for r in front], linestyle="--", linewidth=1, label="Pareto front")
        ax.legend(fontsize=7)
    ax.xaxis.set_major_formatter(_plain_log_formatter(minor=False))
    ax.xaxis.set_minor_formatter(_plain_log_formatter(minor=True))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"median latency, ms (batch 1, {_threads_text([threads])})", fontsize=8)
    ax.set_ylabel("held-out top-1, %" if by_accuracy else "top-1 agreement with PyTorch, %", fontsize=8)
    ax.grid(alpha=0.3, which="both")


def _direct_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """A label beside each point, moved up or down in steps until it overlaps no label placed before it
    (artifacts of one precision sit within a few percent of each other and would print on top of one another)."""
    ax.margins(x=0.08, y=0.15)  # room for labels above and below the outermost points
    ax.figure.canvas.draw()  # the axes' limits and transform as they will be drawn
    frame = ax.bbox
    placed: list[tuple[float, float, float, float]] = []
    for x, y, text in sorted(points, key=lambda p: (p[0], p[1])):
        px, py = ax.transData.transform((x, y))
        width, height = 4.6 * len(text), 9.0
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5):
            box = (px + 5, py + 3 + 10 * step, px + 5 + width, py + 3 + 10 * step + height)
            inside = frame.y0 <= box[1] and box[3] <= frame.y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        ax.annotate(text, (x, y), xytext=(5, 3 + 10 * step), textcoords="offset points", fontsize=7,
                    arrowprops={"arrowstyle": "-", "linewidth": 0.4, "alpha": 0.5} if step else None)
