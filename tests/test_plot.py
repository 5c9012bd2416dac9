"""`bench --plot`: the figure's structure on synthetic results (panels, series, scales, title, legend and
label geometry), never its pixels, and no benchmarking."""

from __future__ import annotations

import io
import sys

import pytest

pytest.importorskip("matplotlib")

from partialnet.bench import plot  # noqa: E402
from partialnet.errors import BadInput, Unavailable  # noqa: E402
from partialnet.models.registry import VARIANTS  # noqa: E402

RUNTIMES = ("pytorch", "onnxruntime", "openvino")
CPU = "Synthetic CPU 9000 @ 3.0GHz"


def row(variant, runtime="onnxruntime", batch=1, ms=None, *, model=None, gmacs=None, status="ok", precision="fp32", threads=1):
    """One bench row as bench.run writes it; latency defaults to 10 ms per GMAC, per image."""
    gmacs = VARIANTS[variant].published_gmacs if gmacs is None and variant in VARIANTS else gmacs
    ms = (gmacs or 1.0) * 10 * batch if ms is None else ms
    measured = {"stats": {"p50_ms": ms, "median_ci95_ms": [ms * 0.98, ms * 1.02]}, "images_per_s": batch / (ms / 1e3) if ms else None}
    return {
        "model": model or variant, "variant": variant, "runtime": runtime, "batch": batch, "gmacs": gmacs, "status": status,
        "precision": precision, "threads": threads, "device": "cpu", "imgsz": [224, 224], **(measured if status == "ok" else {}),
    }


def result(rows, protocol="latency", threads=1, device="cpu", gpus=()):
    return {
        "schema": "partialnet.bench/1",
        "created_utc": "2025-03-14T09:26:53+00:00",
        "protocol": {"name": protocol},
        "settings": {"device": device, "threads": threads, "batches": sorted({r["batch"] for r in rows}), "imgsz": [224, 224], "precision": "fp32"},
        "machine": {"cpu": {"model": CPU, "flags": ["avx2"]}, "gpus": [{"name": g} for g in gpus]},
        "rows": rows,
    }


def grid(families=("partialnet", "fasternet"), sizes=("t0", "t1", "t2"), runtimes=RUNTIMES, batches=(1,)):
    """Every family x size x runtime x batch, runtimes 10 % apart: a crowded figure."""
    return [row(f"{f}_{s}", rt, b, VARIANTS[f"{f}_{s}"].published_gmacs * 10 * b * (1 + 0.1 * i))
            for b in batches for f in families for s in sizes for i, rt in enumerate(runtimes)]


@pytest.fixture
def figure():
    """Build a figure and close it after the test, whatever the test asserted."""
    import matplotlib.pyplot as plt

    made = []

    def build(data, builder=plot.bench_figure, *args):
        made.append(builder(data, *args))
        return made[-1]

    yield build
    for fig in made:
        plt.close(fig)


def panels(fig) -> dict:
    return {ax.get_title(): ax for ax in fig.axes}


def lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def text_box(note, renderer):
    """The label's own text box, not its leader line (an Annotation's extent includes its arrow)."""
    from matplotlib.text import Text

    return Text.get_window_extent(note, renderer)


def test_one_log_latency_panel_per_batch_and_throughput_where_batched(figure):
    fig = figure(result(grid(runtimes=("onnxruntime",), batches=(1, 32))))
    assert list(panels(fig)) == ["batch 1 · latency", "batch 32 · latency", "batch 32 · throughput"]
    for title, ax in panels(fig).items():
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
        assert ax.get_xlabel() == "GMACs per image at 224x224"
        assert ax.get_ylabel() == ("throughput (images/s)" if "throughput" in title else "median latency per batch (ms)")


def test_batch_one_alone_under_the_latency_protocol_is_one_panel(figure):
    assert len(figure(result(grid())).axes) == 1


def test_the_throughput_protocol_draws_throughput_even_at_batch_one(figure):
    fig = figure(result(grid(runtimes=("pytorch",), batches=(1,)), protocol="throughput"))
    assert list(panels(fig)) == ["batch 1 · latency", "batch 1 · throughput"]
    throughput = lines(panels(fig)["batch 1 · throughput"])["PartialNet · pytorch"]
    assert list(throughput.get_ydata()) == pytest.approx([1 / (VARIANTS[f"partialnet_{s}"].published_gmacs * 10 / 1e3) for s in ("t0", "t1", "t2")])


def test_one_line_per_family_and_runtime_sorted_by_gmacs(figure):
    fig = figure(result(list(reversed(grid()))))  # rows in any order
    (ax,) = fig.axes
    drawn = lines(ax)
    assert set(drawn) == {f"{name} · {rt}" for name in ("PartialNet", "FasterNet") for rt in RUNTIMES}
    for label, line in drawn.items():
        family = "partialnet" if label.startswith("PartialNet") else "fasternet"
        xs = list(line.get_xdata())
        assert len(xs) == 3 and xs == sorted(xs)
        assert set(xs) == {VARIANTS[f"{family}_{s}"].published_gmacs for s in ("t0", "t1", "t2")}  # never the other family's points


def test_each_runtime_one_colour_each_family_one_style(figure):
    (ax,) = figure(result(grid())).axes
    drawn = lines(ax)
    for rt in RUNTIMES:
        assert drawn[f"PartialNet · {rt}"].get_color() == drawn[f"FasterNet · {rt}"].get_color()
    assert {drawn[f"PartialNet · {rt}"].get_linestyle() for rt in RUNTIMES} == {"-"}
    assert {drawn[f"FasterNet · {rt}"].get_linestyle() for rt in RUNTIMES} == {"--"}


def test_a_batch_32_row_lands_only_in_the_batch_32_panels(figure):
    rows = [row("partialnet_t0", batch=1, ms=3.0), row("partialnet_t1", batch=1, ms=5.0), row("partialnet_t0", batch=32, ms=77.0)]
    by_title = panels(figure(result(rows)))
    ys = {title: [y for line in ax.get_lines() for y in line.get_ydata()] for title, ax in by_title.items()}
    assert ys["batch 1 · latency"] == [3.0, 5.0]
    assert ys["batch 32 · latency"] == [77.0]
    assert ys["batch 32 · throughput"] == pytest.approx([32 / 0.077])


def test_unknown_family_rows_are_loose_markers_with_their_own_label(figure):
    rows = [row("partialnet_t0"), row("partialnet_t1"), row(None, model="custom_b1.onnx", gmacs=0.7, ms=6.0)]
    (ax,) = figure(result(rows)).axes
    drawn = lines(ax)
    assert set(drawn) == {"PartialNet · onnxruntime", "custom_b1.onnx · onnxruntime"}
    loose = drawn["custom_b1.onnx · onnxruntime"]
    assert loose.get_linestyle() == "None" and list(loose.get_xdata()) == [0.7]


def test_a_second_model_of_the_same_size_is_not_joined_into_the_line(figure):
    rows = [row("partialnet_t0"), row("partialnet_t1"), row("partialnet_t0", model="partialnet_t0:best.pth", ms=2.0)]
    drawn = lines(figure(result(rows)).axes[0])
    assert len(drawn["PartialNet · onnxruntime"].get_xdata()) == 2
    assert drawn["partialnet_t0:best.pth · onnxruntime"].get_linestyle() == "None"


def test_mixed_precisions_get_their_own_lines(figure):
    rows = [row("partialnet_t0"), row("partialnet_t1"), row("partialnet_t0", precision="int8", ms=1.0), row("partialnet_t1", precision="int8", ms=2.0)]
    fig = figure(result(rows))
    assert set(lines(fig.axes[0])) == {"PartialNet · onnxruntime · fp32", "PartialNet · onnxruntime · int8"}
    assert "fp32 ·" not in fig.get_suptitle()


def test_rows_that_cannot_be_placed_are_left_out(figure):
    rows = [row("partialnet_t0"), row("partialnet_t1", status="skipped"), row("partialnet_t2", status="failed"), row(None, model="x.onnx", gmacs=None)]
    (ax,) = figure(result(rows)).axes
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [1]


@pytest.mark.parametrize(
    "rows",
    [[], [row("partialnet_t0", status="skipped")], [row(None, model="x.onnx", gmacs=None)], [row("partialnet_t0", ms=0.0)]],
)
def test_nothing_plottable_is_bad_input(rows):
    with pytest.raises(BadInput, match="nothing to plot"):
        plot.bench_figure(result(rows))


@pytest.mark.parametrize("threads, expected", [(1, "1 thread"), (2, "2 threads")])
def test_title_names_machine_runtimes_protocol_threads_and_date(figure, threads, expected):
    rows = [row("partialnet_t0", "pytorch", threads=threads), row("fasternet_t0", "onnxruntime", threads=threads)]
    title = figure(result(rows, protocol="paper", threads=threads)).get_suptitle()
    assert expected in title and "1 threads" not in title
    assert f"cpu: {CPU}" in title and "pytorch, onnxruntime" in title and "protocol paper" in title and "2025-03-14" in title


def test_a_gpu_title_names_the_gpu_and_its_host(figure):
    rows = [dict(row("partialnet_t0", "tensorrt"), device="cuda")]
    title = figure(result(rows, device="cuda", gpus=["NVIDIA H100"])).get_suptitle()
    assert f"cuda: NVIDIA H100 (host {CPU})" in title


def test_a_long_title_wraps_between_fields_inside_the_figure(figure):
    runtimes = ("pytorch", "onnxruntime", "openvino", "tensorrt", "executorch", "litert")
    fig = figure(result([row("partialnet_t0", rt) for rt in runtimes] + [row("partialnet_t1", rt) for rt in runtimes]))
    title = fig.get_suptitle()
    assert len(title.splitlines()) == 3 and "protocol latency · 1 thread · fp32 · 2025-03-14" in title.splitlines()
    (text,) = [t for t in fig.texts if t.get_text() == title]
    box = text.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1


def test_the_legend_sits_outside_every_panel(figure):
    fig = figure(result(grid(batches=(1, 8))))
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
        assert box.y1 < ax.get_tightbbox(renderer).y0  # below the tick labels and axis label too
    assert len(legend.get_texts()) == 6  # one entry per family x runtime, not one per panel


def assert_labels_apart(ax, renderer, columns):
    """Every (size, GMACs) column labelled, each label on one of its points, inside the panel, on no other label."""
    notes = list(ax.texts)
    assert {(note.get_text(), note.xy[0]) for note in notes} == columns, ax.get_title()
    points = {(x, y) for line in ax.get_lines() for x, y in line.get_xydata()}
    frame = ax.get_window_extent(renderer)
    boxes = [(note.get_text(), text_box(note, renderer)) for note in notes]
    for i, (note, (text, box)) in enumerate(zip(notes, boxes)):
        assert tuple(note.xy) in points
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), (ax.get_title(), text)
        for other_text, other in boxes[i + 1:]:
            assert not box.overlaps(other), (ax.get_title(), text, other_text)


@pytest.mark.parametrize("spread", [1.1, 1.6])  # runtimes 10 % apart share labels; 60 % apart each get their own
@pytest.mark.parametrize("batches", [(1,), (1, 32)])
def test_size_labels_do_not_collide_in_a_crowded_panel(figure, batches, spread):
    rows = [dict(r, stats={"p50_ms": r["stats"]["p50_ms"] * spread ** RUNTIMES.index(r["runtime"])}) for r in grid(batches=batches)]
    fig = figure(result(rows))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    columns = {(s.upper(), VARIANTS[f"{f}_{s}"].published_gmacs) for f in ("partialnet", "fasternet") for s in ("t0", "t1", "t2")}
    for ax in fig.axes:
        assert_labels_apart(ax, renderer, columns)
    if spread > 1.5:
        assert len(fig.axes[0].texts) == 18  # too far apart to share: one label per point


def test_one_runtime_colours_the_families_apart(figure):
    drawn = lines(figure(result(grid(runtimes=("onnxruntime",)))).axes[0])
    assert drawn["PartialNet · onnxruntime"].get_color() != drawn["FasterNet · onnxruntime"].get_color()


def test_the_same_result_gives_the_same_label_positions():
    import matplotlib.pyplot as plt

    def positions():
        fig = plot.bench_figure(result(grid()))
        try:
            return [(note.get_text(), note.xyann) for note in fig.axes[0].texts]
        finally:
            plt.close(fig)

    assert positions() == positions()


def test_plot_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    buffer = io.BytesIO()
    plot.plot(result(grid(batches=(1, 32))), buffer)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    plot.plot(result(grid()), tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert set(plt.get_fignums()) == before


def test_without_matplotlib_the_error_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(Unavailable, match=r"pip install 'partialnet\[plot\]'") as caught:
        plot.plot(result(grid()), io.BytesIO())
    assert "\n" not in str(caught.value)


def test_tick_labels_are_plain_numbers():
    class Axis:
        def __init__(self, low, high):
            self.view = (low, high)

        def get_view_interval(self):
            return self.view

    assert plot._log_tick_text(0.5, False, Axis(0.1, 10)) == "0.5"
    assert plot._log_tick_text(0.2, True, Axis(0.1, 5)) == "0.2"  # under two decades: 2 and 5 only
    assert plot._log_tick_text(0.3, True, Axis(0.1, 5)) == ""
    assert plot._log_tick_text(0.3, True, Axis(0.1, 10_000)) == ""  # wide axis: no minor labels


def claims_data(device="cpu"):
    sizes = ("t0", "t1", "t2")
    return {
        "created_utc": "2025-03-14T09:26:53+00:00", "device": device, "imgsz": [224, 224], "batch": 1, "threads": 1,
        "protocol": {"name": "quick"}, "machine": {"cpu": {"model": CPU}, "gpus": [{"name": "NVIDIA H100"}]},
        "costs": [{"size": s, "family": f, "gmacs": VARIANTS[f"{f}_{s}"].published_gmacs} for s in sizes for f in ("partialnet", "fasternet")],
        "measurements": [
            {"status": "ok", "runtime": rt, "size": s, "batch": 1,
             "partialnet": {"stats": {"p50_ms": VARIANTS[f"partialnet_{s}"].published_gmacs * 10 * (1 + 0.1 * i)}},
             "fasternet": {"stats": {"p50_ms": VARIANTS[f"fasternet_{s}"].published_gmacs * 10 * (1 + 0.1 * i)}}}
            for s in sizes for i, rt in enumerate(RUNTIMES)
        ],
    }


def test_the_claims_figure_shares_the_drawing(figure):
    fig = figure(claims_data(), plot.claims_figure)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log" and "latency" in ax.get_ylabel()
    assert set(lines(ax)) == {f"{name} · {rt}" for name in ("PartialNet", "FasterNet") for rt in RUNTIMES}
    assert all(len(line.get_xdata()) == 3 for line in ax.get_lines())
    assert "protocol quick" in ax.get_title() and "1 thread " in ax.get_title() and CPU in ax.get_title()
    (legend,) = fig.legends
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert_labels_apart(ax, renderer, {(s.upper(), VARIANTS[f"{f}_{s}"].published_gmacs) for f in ("partialnet", "fasternet") for s in ("t0", "t1", "t2")})


def test_the_report_figure_has_one_panel_per_machine(figure):
    data = claims_data()
    report = {
        "protocol": {"name": "quick"},
        "machines": {"a" * 16: {"cpu": {"model": CPU}}, "b" * 16: {"cpu": {"model": "Other"}}},
        "measurements": [
            {"status": "ok", "machine_id": machine, "batch": 1, "threads": 1, "device": "cpu", "runtime": m["runtime"], "size": m["size"],
             "partialnet_p50_ms": m["partialnet"]["stats"]["p50_ms"], "fasternet_p50_ms": m["fasternet"]["stats"]["p50_ms"]}
            for machine in ("a" * 16, "b" * 16) for m in data["measurements"]
        ],
    }
    gmacs = {(c["size"], c["family"]): c["gmacs"] for c in data["costs"]}
    fig = figure(report, plot.report_figure, gmacs)
    assert len(fig.axes) == 2 and all(ax.get_yscale() == "log" for ax in fig.axes) and len(fig.legends) == 1


@pytest.mark.parametrize("latencies_ms, expected", [([1.10, 1.16, 1.22], {"1.12", "1.16", "1.2"}), ([0.5, 3.0, 40.0], {"1", "10"})],
                         ids=["inside-one-decade", "across-decades"])
def test_a_latency_axis_always_shows_numbers(latencies_ms, expected):
    """Every latency of one runtime between 1.10 and 1.22 ms once left the log axis with gridlines and no number."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0.7, 1.1, 1.9], latencies_ms, "o-")
    plot._log_axes(ax, "median latency (ms)")
    plot._finish(fig, [])
    low, high = ax.get_ylim()
    shown = {t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high}
    plt.close(fig)
    assert shown == expected


def test_a_long_reason_is_cut_at_a_word():
    from partialnet.render import clip_words

    why = "how to run it; disturbed: other processes used 1.00 of 2 cores while it ran (limit 0.2; load average 3.94)"
    assert clip_words(why, 200) == why
    assert clip_words(why, 70) == "how to run it; disturbed: other processes used 1.00 of 2 cores while…"


def test_a_marked_row_is_drawn_hollow_and_the_title_says_so(figure):
    """bench --plot drew a disturbed row like a clean one (matrix's plot had drawn them hollow)."""
    rows = grid(runtimes=("onnxruntime",))
    rows[0]["disturbed"] = True
    fig = figure(result(rows))
    (ax,) = fig.axes
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and list(hollow[0].get_xdata()) == [rows[0]["gmacs"]]
    assert "hollow: a row marked unstable or disturbed" in fig._suptitle.get_text().replace("\n", " ")
    assert "hollow" not in figure(result(grid(runtimes=("onnxruntime",))))._suptitle.get_text()
