"""Rich tables for the reports the API returns. Rendering only: no decisions are made here."""

from __future__ import annotations

import math
import os

from rich.console import Console
from rich.table import Table

from partialnet.bench.marks import mark
from partialnet.bench.protocols import described_as_run
from partialnet.inputs import inert
from partialnet.limits import format_imgsz
from partialnet.rounding import at_least, at_most


class InertConsole(Console):
    """A console on which no string reaches the terminal raw, wherever it came from (a result file's CPU
    name, a row label, a checkpoint's key): rich renders every str, table cells included, through here,
    while its own styling is applied as styles, not as characters in the text."""

    def render_str(self, text: str, *args, **kwargs):
        return super().render_str(inert(text, keep_lines=True), *args, **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader went away (`| head -1`): rich's default exits 1 on the spot, which reads as a failed check and
        lost the `--json` a bench writes after its table. The command goes on, silent here, and exits as it would."""
        self.quiet = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.file.fileno())  # Python's own flush of the stream at exit finds nowhere to fail
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass


def fold_table(report: dict) -> Table:
    size = format_imgsz(report["imgsz"])
    table = Table(title=f"fold report ({size})")
    columns = ("pass", "sites", "max |Δ logits|", "params", "not folded")  # descriptions: in the JSON
    for col in columns:
        table.add_column(col, justify="left" if col in ("pass", "not folded") else "right")
    params = report["params_before"]
    for p in report["passes"]:
        skipped = "; ".join(f"{s['site']}: {s['reason']}" for s in p["not_folded"]) or "-"
        table.add_row(
            p["name"],
            str(p["sites"]),
            f"{p['max_abs_diff']:.2e}",
            f"{params:,} → {p['params_after']:,}" if p["params_after"] != params else f"{params:,}",
            skipped,
        )
        params = p["params_after"]
    table.caption = (
        f"params {report['params_before']:,} → {report['params_after']:,} · "
        f"GMACs {report['gmacs_before']:.4f} → {report['gmacs_after']:.4f} · "
        f"BatchNorms {report['batchnorms_before']} → {report['batchnorms_after']}"
    )
    return table


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def share(value: float | None) -> str:
    """A fraction as a percentage that never rounds a miss away: 539/540 is 99.8 %, not 100 %."""
    if value is None:
        return "-"
    return "100%" if value == 1 else f"{min(value * 100, 99.9):.1f}%"


def own_calibration_note(parity: dict) -> str | None:
    """Said when an INT8 artifact was judged on nothing but the images it was calibrated on."""
    own = [c for c in parity.get("cases") or [] if str(c["name"]).startswith("calibration images (")]
    if not own or parity.get("accuracy"):
        return None
    return (f"note: INT8 was judged only on the {own[0]['samples']} image(s) it was calibrated on; images it never saw "
            "(--images DIR, or --dataset digits for a digits model) make a real check")


def parity_table(parity: dict, title: str) -> Table:
    table = Table(title=title)
    for col in ("inputs", "batch", "samples", "max |Δ|", "max rel", "min cosine", "top-1 agree", "verdict"):
        table.add_column(col, justify="left" if col in ("inputs", "verdict") else "right")
    for case in parity["cases"]:
        failed = [f.split(" ")[0] if not f.startswith("max") else "max |Δ|" for f in case["failures"]]
        verdict = "ok" if case["passed"] else f"FAIL ({', '.join(failed)})"
        table.add_row(
            case["name"],
            str(case["batch"]),
            str(case["samples"]),
            at_least(case["max_abs"]),
            f"{case['max_rel']:.2e}",
            at_most(case["min_cosine"]),
            share(case["top1_agreement"]),
            verdict,
        )
    tol, tight = parity["tolerances"], parity.get("tightest_passing") or {}
    gates = [  # as given: 'g' printed a cosine gate of 0.99999999 as "≥ 1"
        f"{label} {op} {f'{tol[key] * 100:g}%' if key == 'min_top1' else repr(float(tol[key]))}"
        for key, label, op in (("max_abs", "max |Δ|", "≤"), ("min_cosine", "cosine", "≥"), ("min_top1", "top-1", "≥"))
        if tol[key] is not None
    ]
    computed = parity.get("computed")
    ran = f" (computed in {computed} here)" if computed and computed not in (parity["precision"], "int8") else ""
    finite = not any(isinstance(v, float) and not math.isfinite(v) for v in (tight.get("max_abs"), tight.get("min_cosine")))
    bound = {key: "-" if tight.get(key) is None else shown(tight[key]) for key, shown in (("max_abs", at_least), ("min_cosine", at_most))}
    tightest = (f"max |Δ| ≤ {bound['max_abs']}, cosine ≥ {bound['min_cosine']}, "
                f"top-1 ≥ {share(tight.get('min_top1'))}") if finite else "none (the outputs are not all finite numbers)"
    table.caption = f"{parity['precision']}{ran} gates: {', '.join(gates)} · tightest that would pass: {tightest}"
    if parity.get("accuracy"):
        table.caption += "\n" + accuracy_line(parity["accuracy"])
    return table


def accuracy_line(accuracy: dict) -> str:
    """Top-1 (and top-5) of the artifact beside PyTorch's on labelled images, with its gate and verdict."""
    verdict = "FAIL" if accuracy["failures"] else "ok"
    return (f"{accuracy['dataset']} {'held-out ' if accuracy.get('held_out') else ''}top-1 ({accuracy['samples']} images): "
            f"artifact {accuracy['artifact_top1']:.2%}, PyTorch {accuracy['reference_top1']:.2%}, Δ {accuracy['delta_points']:+.2f} points "
            f"(gate: drop ≤ {_fmt(accuracy['max_drop_points'], 'g')}) · {verdict}"
            + (f" · top-5: artifact {accuracy['artifact_top5']:.2%}, PyTorch {accuracy['reference_top5']:.2%}"
               if accuracy.get("artifact_top5") is not None and accuracy.get("reference_top5") is not None else ""))


def export_all_table(result: dict) -> Table:
    """One row per format, as Ultralytics' benchmark prints: what was written and how far it was verified."""
    table = Table(title=f"export --format all · {result['source']['variant']} · {result['imgsz'][0]}x{result['imgsz'][1]} batch {result['batch']}")
    for col in ("format", "file", "size MB", "export s", "max |Δ|", "top-1 agree", "digits top-1", "verdict", "why"):
        table.add_column(col, justify="right" if col in ("size MB", "export s", "max |Δ|", "top-1 agree", "digits top-1") else "left",
                         overflow="fold" if col == "why" else "ellipsis")  # a path in the why is a command to paste: never cut
    for row in result["rows"]:
        size = row.get("bytes")
        table.add_row(
            row["format"], row.get("file") or "-", f"{size / 1e6:.1f}" if size else "-",
            f"{row['seconds']:.1f}" if row.get("seconds") is not None else "-",
            _fmt(row.get("max_abs"), ".1e"), share(row.get("top1_agreement")), share(row.get("digits_top1")), row["verdict"], row.get("why") or "",
        )
    return table


def static_table(report: dict, title: str) -> Table:
    """Checks that need no runtime (Core ML off macOS); the verdict never reads "ok" when nothing ran."""
    table = Table(title=title)
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for check in report["checks"]:
        table.add_row(check["check"], "pass" if check["passed"] else "FAIL", check["detail"])
    table.caption = f"verdict: {report['verdict']}" + (f" ({report['why']})" if report.get("why") else "")
    return table  # an executed program's parity and top-1 are the parity table's (parity_table)


def _parity_cell(row: dict, max_abs) -> str:
    """max |Δ| against PyTorch, or for INT8 the top-1 agreement on real images (logits differ by design)."""
    if row.get("parity_top1") is not None:
        return f"top-1 {share(row['parity_top1'])}" + ("" if row.get("parity_gate_passed", True) else " (gate failed)")
    return "-" if max_abs is None else f"Δ {max_abs:.1e}"


def _gpu_memory_cell(memory: dict) -> str:
    """Timed-loop peak allocated / whole-worker peak reserved (load and cudnn autotuning included)."""
    if memory.get("gpu_peak_allocated_mb") is None:
        return "-"
    steady = memory.get("gpu_timed_peak_allocated_mb", memory["gpu_peak_allocated_mb"])
    return f"{steady:.0f} / {memory['gpu_peak_reserved_mb']:.0f}"


def bench_settings_line(settings: dict) -> str:
    """The PyTorch options a result was measured with, since rows of one run share them."""
    chosen = [name for key, name in (("channels_last", "channels_last"), ("compile", "torch.compile"), ("cuda_graphs", "CUDA graphs"))
              if settings.get(key)]
    return ", ".join(chosen)


def bench_table(result: dict) -> Table:
    settings, machine = result["settings"], result["machine"]["cpu"]
    mode = f" · {settings['streams']} streams (async)" if settings.get("streams") else ""
    options = bench_settings_line(settings)
    gpu = settings["device"] == "cuda"
    where = settings["device"]
    if gpu:
        names = ", ".join(str(g.get("name", "?")) for g in result["machine"].get("gpus") or [] if isinstance(g, dict))
        where = f"cuda: {names or 'GPU'}"
    sizes = dict.fromkeys(format_imgsz(r["imgsz"]) for r in result["rows"] if r["status"] == "ok" and isinstance(r.get("imgsz"), list))
    size = f" · {', '.join(sizes)}" if sizes else ""  # a given artifact runs at its own size: say which was timed
    table = Table(title=f"{result['protocol']['name']} protocol{mode}{size} · {machine['model']} · {where}" + (f" · {options}" if options else ""))
    columns = ("model", "runtime", "precision", "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "CoV", "images/s", "parity",
               "load s", "1st ms", "+RSS MB", *(("GPU MB",) if gpu else ()))
    for col in columns:  # a long model name wraps rather than losing its marks (`!`, `~`) to an ellipsis
        table.add_column(col, justify="left" if col in ("model", "runtime", "precision") else "right", overflow="fold" if col == "model" else "ellipsis")
    for row in result["rows"]:
        if row["status"] != "ok":
            continue
        s = row["stats"]
        parity = row.get("parity_max_abs")
        cold, memory = row.get("cold") or {}, row.get("memory") or {}
        table.add_row(
            row["model"] + ("*" if row.get("random_weights") else "") + mark(row), row["runtime"], row["precision"],
            str(row["batch"]), str(row["threads"]),
            f"{s['p50_ms']:.3f}", _fmt(s.get("p90_ms"), ".3f"), _fmt(s.get("p99_ms"), ".3f"),
            f"{s['cov']:.3f}", f"{row['images_per_s']:.1f}", _parity_cell(row, parity),
            _fmt(cold.get("load_s"), ".2f"), _fmt(1e3 * cold["first_infer_s"] if "first_infer_s" in cold else None, ".1f"),
            _fmt(memory.get("peak_above_baseline_mb"), ".0f"), *((_gpu_memory_cell(memory),) if gpu else ()),
        )
    table.caption = (
        f"{described_as_run(result)}. load s: read + compile the model (runtime import excluded); "
        "1st ms: the first (cold) inference; +RSS MB: the worker's peak resident memory above its start"
        + ("; GPU MB: peak GPU memory allocated while timing / the worker's peak reserved by PyTorch's caching allocator "
           "(load and cudnn autotuning included)" if gpu else "")
    )
    return table


def skipped_lines(result: dict) -> list[str]:
    """One line per reason naming the runtimes it applies to, and the models when not all of them."""
    models = list(dict.fromkeys(row["model"] for row in result["rows"]))
    grouped: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for row in result["rows"]:
        if row["status"] != "ok":
            runtimes, which = grouped.setdefault((row["status"], row["reason"]), ([], []))
            for seen, name in ((runtimes, row["runtime"]), (which, row["model"])):
                if name not in seen:
                    seen.append(name)
    lines = []
    for (status, reason), (runtimes, which) in grouped.items():
        scope = f" for {', '.join(which)}" if len(models) > 1 and len(which) < len(models) else ""
        lines.append(f"{status}: {', '.join(runtimes)}{scope} ({reason})")
    return lines


def compare_table(report: dict) -> Table:
    """Both sides' medians, floors and CoVs beside the verdict, so a noisy row shows why it is noisy."""
    gate = f"{report['max_slowdown'] * 100:.3g}%"
    table = Table(title=f"compare: regression = p < {report['alpha']:g} AND slower by > {gate}; "
                        f"noisy = too dispersed to judge at {gate} ({report['noise']})")
    for col in ("model", "runtime", "prec", "batch", "thr", "base p50", "cand p50", "base CoV", "cand CoV",
                "ratio", "95% CI", "p5 ratio", "p slower", "verdict"):
        table.add_column(col, justify="left" if col in ("model", "runtime", "prec", "verdict") else "right")
    for r in report["rows"]:
        table.add_row(
            r["model"], r["runtime"], r["precision"], str(r["batch"]), str(r["threads"]),
            f"{r['baseline_p50_ms']:.3f}", f"{r['candidate_p50_ms']:.3f}", f"{r['baseline_cov']:.2f}", f"{r['candidate_cov']:.2f}",
            f"{r['ratio']:.3f}", f"{r['ratio_ci95'][0]:.3f}-{r['ratio_ci95'][1]:.3f}", f"{r['floor_ratio']:.3f}", f"{r['p_slower']:.2g}",
            r["verdict"].upper() if r["verdict"] in ("regression", "noisy") else r["verdict"],
        )
    table.caption = ("p50 in ms; CoV = std/mean of the raw samples (as bench prints it); ratio = candidate / baseline medians; "
                     "p5 ratio = the same for the 5th percentiles, the runs' fast floors")
    return table


def delegation_line(info: dict) -> str:
    """One line on what a mobile runtime's delegate took, and what it left to slower kernels."""
    total = info["nodes_delegated"] + info["nodes_portable"]
    parts = [f"{info['node_share']:.0%} of nodes ({info['nodes_delegated']}/{total})"]
    if "mac_share" in info:
        parts.append(f"{info['mac_share']:.1%} of multiply-adds")
    subgraphs = info["subgraphs"]
    left = ", ".join(f"{op} x{n}" for op, n in info["portable_ops"].items()) or "nothing"
    return (
        f"delegate: {info['delegate']} took {', '.join(parts)} in {subgraphs} subgraph{'s' if subgraphs != 1 else ''}; "
        f"left on {info.get('portable_kernels', 'other kernels')}: {left}"
    )


def claims_table(result: dict) -> Table:
    """Per claim x size x runtime: published ratio, measured ratio and interval, verdict."""
    cpu = result["machine"].get("cpu", {}).get("model", "?")
    table = Table(title=f"published claims vs this machine · {cpu} · {result['device']} · protocol {result['protocol']['name']}")
    for col in ("claim", "size", "runtime", "metric", "published", "measured", "95% CI", "verdict"):
        table.add_column(col, justify="right" if col in ("published", "measured", "95% CI") else "left")
    for row in result["claims"]:
        ci = "-" if row["ci"] is None else f"{row['ci'][0]:.3f}-{row['ci'][1]:.3f}"
        why = f" ({row['why']})" if row.get("why") else ""
        table.add_row(row["id"], row["size"], row["runtime"] or "-", row["metric"], f"{row['published']:.3f}",
                      _fmt(row["ratio"], ".3f"), ci, row["verdict"] + why)
    table.caption = "ratio = PartialNet / FasterNet of the metric (latency: lower is PartialNet's win; throughput: higher)"
    return table


def claims_measurements_table(result: dict) -> Table:
    """What was timed: both families per size and runtime, interleaved in one process."""
    table = Table(title=f"PartialNet vs FasterNet, batch {result['batch']}, {result['precision']}, {result['threads']} thread(s), "
                        f"{result['imgsz'][0]}x{result['imgsz'][1]}")
    for col in ("size", "runtime", "FasterNet p50 ms", "PartialNet p50 ms", "latency ratio", "95% CI", "A/A (95% CI)", "GMACs P / F"):
        table.add_column(col, justify="left" if col in ("size", "runtime") else "right")
    gmacs = {(c["size"], c["family"]): c["gmacs"] for c in result["costs"]}
    for cell in result["measurements"]:
        cost = f"{gmacs[(cell['size'], 'partialnet')]:.3f} / {gmacs[(cell['size'], 'fasternet')]:.3f}"
        if cell["status"] != "ok":
            table.add_row(cell["size"], cell["runtime"], "-", "-", "-", f"{cell['status']}: {cell['reason']}"[:60], "-", cost)
            continue
        aa = cell.get("aa")
        control = f"{aa['ratio']:.3f} ({aa['ci'][0]:.3f}-{aa['ci'][1]:.3f})" if aa else "-"
        ran = sorted({str(cell[f].get("precision")) for f in ("fasternet", "partialnet") if cell[f].get("precision")} - {result["precision"]})
        runtime = cell["runtime"] + (f" (ran {'/'.join(ran)})" if ran else "")  # a runtime without native fp16 computes another precision
        table.add_row(
            cell["size"], runtime, f"{cell['fasternet']['stats']['p50_ms']:.3f}", f"{cell['partialnet']['stats']['p50_ms']:.3f}",
            f"{cell['latency_ratio']:.3f}", f"{cell['latency_ci'][0]:.3f}-{cell['latency_ci'][1]:.3f}", control, cost,
        )
    table.caption = "A/A: FasterNet timed against itself in the same random alternation, the run's own resolution"
    return table


def report_claims_table(report: dict) -> Table:
    """Verdicts from every machine, each row marked with the machine it was measured on."""
    table = Table(title=f"claims across {len(report['machines'])} machine(s) · protocol {report['protocol']['name']} · "
                        f"{report.get('claims_conditions') or ''}")
    for col in ("machine", "claim", "size", "runtime", "published", "measured", "95% CI", "verdict"):
        table.add_column(col, justify="right" if col in ("published", "measured", "95% CI") else "left")
    for row in report["claims"]:
        ci = "-" if row["ci"] is None else f"{row['ci'][0]:.3f}-{row['ci'][1]:.3f}"
        table.add_row(machine_label(row), row["id"], row["size"], row["runtime"] or "-", f"{row['published']:.3f}",
                      _fmt(row["ratio"], ".3f"), ci, row["verdict"])
    return table


def machine_label(row: dict) -> str:
    """The machine a merged row came from: CPU and fingerprint, and the target it was reached as (two
    boards of one model share a fingerprint)."""
    target, run = row.get("target"), row.get("run")
    return (f"{row['cpu']} [{row['machine_id'][:8]}]" + (f" {inert(str(target))[:80]}" if target else "")
            + (f" {inert(str(run))[:60]}" if run else ""))  # the file, where one machine gave several


def report_bench_table(report: dict) -> Table:
    table = Table(title="bench rows across machines (p50 recomputed from the raw samples)")
    from partialnet.bench.report import shown_size

    for col in ("machine", "model", "runtime", "precision", "size", "batch", "threads", "p50 ms"):
        table.add_column(col, justify="right" if col in ("size", "batch", "threads", "p50 ms") else "left", overflow="fold" if col == "model" else "ellipsis")
    for row in report["bench"]:
        table.add_row(machine_label(row), row["model"] + mark(row), row["runtime"], row["precision"], shown_size(row), str(row["batch"]),
                      str(row["threads"]), f"{row['p50_ms']:.3f}")
    if any(mark(row) for row in report["bench"]):
        table.caption = "! unstable, ~ disturbed: not a figure to compare (see each row's why in --json)"
    return table


def report_measurements_table(report: dict) -> Table:
    table = Table(title="PartialNet / FasterNet latency per machine (recomputed from the raw samples)")
    for col in ("machine", "size", "runtime", "batch", "threads", "FasterNet p50 ms", "PartialNet p50 ms", "ratio", "95% CI"):
        table.add_column(col, justify="left" if col in ("machine", "size", "runtime") else "right")
    for row in report["measurements"]:
        where = machine_label(row)
        if row["status"] != "ok":
            table.add_row(where, row["size"], row["runtime"], str(row["batch"]), str(row["threads"]), "-", "-", "-", row["status"])
            continue
        table.add_row(where, row["size"], row["runtime"], str(row["batch"]), str(row["threads"]), f"{row['fasternet_p50_ms']:.3f}",
                      f"{row['partialnet_p50_ms']:.3f}", f"{row['latency_ratio']:.3f}", f"{row['latency_ci'][0]:.3f}-{row['latency_ci'][1]:.3f}")
    return table


def claims_costs_table(result: dict) -> Table:
    """Params and GMACs of both families, measured here beside the published tables."""
    table = Table(title=f"params and GMACs at {result['imgsz'][0]}x{result['imgsz'][1]} (measured here | published at 224)")
    for col in ("variant", "params", "published", "GMACs", "published"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for row in result["costs"]:
        table.add_row(row["name"], f"{row['params']:,}", f"{row['published_params']:,}", f"{row['gmacs']:.3f}", f"{row['published_gmacs']}")
    return table


def ab_lines(result: dict) -> list[str]:
    """Each runtime's A/B (`bench --ab`): B/A with its interval and rank tests, and the gate's verdict where one was
    asked; the terminal, the Markdown and the docs print these same lines."""
    lines = []
    settings = result["settings"]
    for cell in result.get("ab") or []:
        if cell["status"] != "ok":
            lines.append(f"A/B on {cell['runtime']}: {cell['status']} ({cell['reason']})")
            if "gate" in cell:  # a gate that could not judge a runtime fails: said where the runtime is named
                lines.append(f"  gate: fails: {cell['status']}, not measured")
            continue
        low, high = cell["ratio_ci95"]
        lines.append(
            f"A/B on {cell['runtime']} ({settings['device']}, batch {cell['batch']}, {settings['threads']} "
            f"thread{'s' if settings['threads'] != 1 else ''}, alternating blocks of {cell['block']}): "
            f"B/A latency ratio {cell['ratio_b_over_a']:.3f} (95% CI {low:.3f}-{high:.3f}); "
            f"p(B slower) = {cell['p_b_slower']:.2g}, p(B faster) = {cell['p_b_faster']:.2g}  [A = {cell['a']}, B = {cell['b']}]"
        )
        if "gate" in cell:
            lines.append(f"  gate: {cell['gate']['why']}")
    return lines


def aa_lines(result: dict) -> list[str]:
    """The A/A controls (`bench --aa`, claims): how far apart two identical things read in this run."""
    lines = []
    for c in result.get("aa") or []:
        if c.get("status") != "ok":
            lines.append(f"A/A on {c['runtime']}: {c.get('status')} ({c.get('reason')})")
            continue
        low, high = c["ci"]
        lines.append(f"A/A on {c['runtime']} ({c['model']} against itself, random alternating blocks): ratio {c['ratio']:.3f} "
                     f"(95% CI {low:.3f}-{high:.3f}): differences smaller than this run's A/A spread are not resolved")
    return lines


def doctor_lines(report: dict) -> list[str]:
    """`partialnet doctor` on one screen: what the machine is, what is running on it, what to do."""
    cpu, freq, mem = report["cpu"], report["frequency"], report["memory"]
    unknown = "not exposed"
    lines = [
        f"CPU        {cpu['model']} · {' '.join(cpu['flags']) or 'no listed ISA extensions'}",
        f"cores      {len(report['usable_cpus'])} usable of {cpu['logical_cores']} logical · SMT "
        + {True: "on", False: "off", None: unknown}[freq["smt_active"]],
        f"frequency  governor {', '.join(freq['governors']) if freq['governors'] else unknown} · boost "
        + {True: "on", False: "off", None: unknown}[freq["boost"]],
        f"load       1-minute average {report['loadavg_1m']} · other processes now: "
        + (f"{report['others_cores']:.2f} cores" if report["others_cores"] is not None else unknown)
        + f" (a row is marked disturbed above {report['disturbed_limit_cores']:g})",
        *(f"           {p['name']} (pid {p['pid']}): {p['cores']:.2f} cores" for p in report["busiest"]),
        f"memory     {mem['available_gb']} GB available of {mem['total_gb']} GB",
        f"threads    bench gives each runtime {report['default_threads']} thread(s) by default; pool threads spin while they wait"
        " (sleep on --device cuda rows; --wait passive|runtime to change)",
        "runtimes   " + " · ".join(f"{r['runtime']} {r['version'] or '-'}" + ("" if r["available"] else " (not usable here)") for r in report["runtimes"]),
        "advice",
        *(f"  - {tip}" for tip in report["advice"]),
    ]
    return [inert(line) for line in lines]


def clip_words(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word with an ellipsis (never "…(limit 0.2; l")."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ;,") + "…"


def matrix_table(result: dict) -> Table:
    """`partialnet matrix`: one row per format x precision, fastest first, the front and the choice marked."""
    machine = result["machine"]["cpu"]
    table = Table(title=f"{result['source']['variant']} · {result['imgsz'][0]}x{result['imgsz'][1]} · batch 1 · {result['threads']} thread(s) · "
                        f"{result['protocol']} protocol · {machine['model']}")
    for col in ("format", "precision", "status", "p50 ms", "top-1 %", "drop", "agree", "MB", "front", "why"):
        table.add_column(col, justify="left" if col in ("format", "precision", "status", "why") else "right")
    from partialnet.bench.matrix import shown_rows

    for r in shown_rows(result):
        star = " <- ship" if r.get("recommended") else (" <- smallest" if r.get("smallest") else "")
        table.add_row(
            r["format"], r["precision"], r["status"] + mark(r), _fmt(r.get("p50_ms"), ".3f"), _fmt(r.get("top1"), ".2f"),
            _fmt(r.get("drop"), "+.2f"), _fmt(r.get("agreement"), ".1%"), _fmt((r.get("bytes") or 0) / 1e6 or None, ".1f"),
            ("*" if r.get("pareto") else "") + star, clip_words(inert("; ".join(str(w) for w in (r.get("why"), r.get("marks_why")) if w)), 160),
        )
    if str(result.get("accuracy", "")).startswith("not judged"):  # the front and the choice then rest on agreement with PyTorch
        table.caption = "top-1 not judged (see accuracy below); agree: top-1 agreement with PyTorch fp32; * the Pareto front (latency vs agreement)"
    else:
        table.caption = f"top-1: {result.get('accuracy')}; drop: points below PyTorch fp32; * the Pareto front (latency vs accuracy)"
    return table


def divergence_table(found: dict, rows: int = 12) -> Table:
    """The layers whose quantized input loses the most on its own (graph order), with the drift at their output."""
    table = Table(title=f"INT8 drift from fp32, per layer ({found['images']} images; {found['how']})")
    for col in ("layer", "input alone, SQNR dB", "output, SQNR dB", "min cosine", ""):
        table.add_column(col, justify="left" if col in ("layer", "") else "right")
    judged = [r for r in found["layers"] if r["input_sqnr_db"] is not None]
    worst = sorted(judged, key=lambda r: r["input_sqnr_db"])[:rows]
    for row in sorted(worst, key=found["layers"].index):
        notes = [n for n, hit in (("first drift", row["layer"] == found["first_drift"]), ("keep float?", row["layer"] in found["keep_float"])) if hit]
        table.add_row(row["layer"], f"{row['input_sqnr_db']:.1f}", "exact" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}",
                      f"{row['cosine']:.4f}", ", ".join(notes))
    first = found["first_drift"] or f"none below {found['threshold_db']:g} dB"
    from partialnet.divergence import summary

    table.caption = (f"{summary(found)} · input alone: the float activations quantized with the artifact's own ranges; output: the artifact's layer output vs "
                     f"fp32 · first layer below {found['threshold_db']:g} dB: {first}")
    return table


def target_doctor_lines(label: str, report: dict) -> list[str]:
    from partialnet.machine import describe

    lines = [f"partialnet {report['partialnet']} (same as here) on {describe(report['machine'])}"]
    now = [line for line in doctor_lines(report["now"]) if not line.startswith("runtimes ")] if report.get("now") else []
    lines += [f"  {line}" for line in now[: now.index("advice")]] if now else [f"  threads per runtime by default: {report['default_threads']}"]
    lines.append("  runtimes there")
    for row in report["runtimes"]:
        lines.append(f"    {row['runtime']:<12} {'yes' if row['available'] else 'no: ' + str(row['why_not'])}")
    lines += [f"  {line}" for line in now[now.index("advice"):]] if now else []
    return [inert(line) for line in lines]
