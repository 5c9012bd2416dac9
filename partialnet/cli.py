"""The `partialnet` command: parse, call `partialnet.api`, render. Errors become exit codes here only.

Exit codes: 0 success, 1 a check failed, 2 bad input or usage, 3 not possible on this machine,
4 an internal error (a bug: set PARTIALNET_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import collections
import inspect
import os
import signal
import sys
import traceback
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from partialnet import progress, render, signals
from partialnet.errors import EXIT_INTERNAL, BadInput, CheckFailed, PartialnetError, Unavailable
from partialnet.bench.marks import marked_notes
from partialnet.bench.options import BenchOptions, split_list
from partialnet.exporters.formats import DEFAULT_FORMAT, FORMATS
from partialnet.exporters.options import ExportOptions, check_all_options
from partialnet.options import defaults_of, flags_of, from_cli
from partialnet.remote.options import TargetOptions
from partialnet.verify_options import VerifyOptions
from partialnet.inputs import inert
from partialnet.limits import format_imgsz, parse_imgsz
from partialnet.outputs import command_record
from partialnet.sources import check_artifact, check_source, source_path
from partialnet.signals import Interrupted

# torch, onnx and the runtimes load inside the commands that use them (partialnet.api and below):
# `partialnet --help` and usage errors answer without importing any of them.

app = typer.Typer(
    name="partialnet",
    help="Load, fold, export, verify and benchmark PartialNet / FasterNet checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped output (CI logs, `| tee`) gets room for whole tables instead of rich's 80-column default.
out = render.InertConsole(highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = render.InertConsole(stderr=True, highlight=False, markup=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

ImgszOption = Annotated[
    Optional[str],
    typer.Option("--imgsz", help="Input size (default 224): 224, or H W (also H,W); multiples of 32, >= 64.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _refuse_empty(value, hint: str = "") -> None:
    """An empty argument is Path("."): `export ""` took the current folder for a checkpoint (exit 4), `verify ""` said
    ". is a directory"."""
    if any(item is not None and not str(item).strip() for item in (value if isinstance(value, list) else [value])):
        raise typer.BadParameter(f"an empty string names no file{hint}")


def _not_empty(value):
    _refuse_empty(value, "; give a checkpoint file or a variant name (partialnet models)")
    return value


def _a_path(value):
    """A file argument (verify, compare, report), refused when empty, as a Path."""
    _refuse_empty(value)
    return [Path(v) for v in value] if isinstance(value, list) else Path(value)


SourceArgument = Annotated[str, typer.Argument(help="A checkpoint file, or a variant name (random weights).", callback=_not_empty)]


def _version(value: bool) -> None:
    if value:
        from partialnet import __version__

        out.print(f"partialnet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Load, fold, export, verify and benchmark PartialNet / FasterNet checkpoints."""


class StageView:
    """Progress of fold/export/verify stages: a spinner naming the running stage on a terminal, one
    plain line per finished stage elsewhere (CI logs), both on stderr so stdout stays the result."""

    def __init__(self, console: Console):
        self.console = console
        self.tty = console.is_terminal
        self.running: list[str] = []
        self.status = None

    def started(self, name: str, detail: str) -> None:
        self.running.append(f"{name} {detail}".strip())
        if self.tty:
            if self.status is None:
                self.status = self.console.status("", spinner="dots")
                self.status.start()
            self.status.update(self.running[-1] + " …")

    def finished(self, name: str, seconds: float, ended: str = "ok") -> None:
        label = self.running.pop() if self.running else name
        indent = "  " * len(self.running)
        mark = ("✓" if ended == "ok" else "✗") if self.tty else "-"
        self.console.print(f"{indent}{mark} {label}: {seconds:.2f} s{'' if ended == 'ok' else f' ({ended})'}", markup=False)
        if self.tty and self.status is not None:
            if self.running:
                self.status.update(self.running[-1] + " …")

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


class _Stages:
    """Record the command's stages while showing them; the breakdown is read at the very end."""

    def __enter__(self) -> progress.StageClock:
        self.view = StageView(err)
        self._recording = progress.recording(self.view)
        return self._recording.__enter__()

    def __exit__(self, *exc) -> None:
        self.view.close()
        self._recording.__exit__(*exc)


def timing_line(timing: dict) -> str:
    """`16.3 s wall (from process start): startup 1.5 s 9 %, …, export 4.2 s 76 % (torch.onnx.export 3.5 s, simplify 0.2 s)`.

    Where the wait went: each top-level stage with its whole time (its shares add up to the wall time), the
    stages nested in it named inside the brackets, so `export` is never shown as its own remainder alone.
    Work another process did meanwhile follows, apart: it overlapped these seconds and is not in their shares.
    """
    stages, within, wall = timing["stages_s"], timing.get("within", {}), timing["wall_s"]
    whole = progress.whole_stages(stages, within)
    parts = []
    for name, sec in whole.items():
        if name in within or sec < 0.05:
            continue
        inner = ", ".join(f"{c} {whole[c]:.1f} s" for c, parent in within.items() if parent == name and whole.get(c, 0) >= 0.05)
        parts.append(f"{name} {sec:.1f} s {100 * sec / wall if wall > 0 else 0:.0f} %" + (f" ({inner})" if inner else ""))
    line = f"{wall:.1f} s wall (from process start): " + ", ".join(parts)
    for where, done in timing.get("beside_s", {}).items():
        line += f"; meanwhile, in a {where}: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in done.items() if sec >= 0.05)
    return line


def _api():
    """partialnet.api, imported when a command runs (it pulls in torch): a stage of its own."""
    import sys

    if "partialnet.api" in sys.modules:
        return sys.modules["partialnet.api"]
    with progress.stage("import", "torch, onnx"):
        from partialnet import api
    return api


def _print_json(data) -> None:
    """Strict JSON on stdout too: a NaN becomes null with the field listed, as in every file we write."""
    from partialnet.outputs import dumps_strict

    out.print_json(dumps_strict(data), highlight=False)


@app.command()
def models(imgsz: ImgszOption = None, as_json: JsonOption = False) -> None:
    """List the 12 variants with params and GMACs measured here beside the published values."""
    size = parse_imgsz(imgsz)
    from partialnet.models.table import model_table  # torch, but not the exporters and runtimes behind api

    rows = model_table(size)
    if as_json:
        _print_json(rows)
        return
    size = format_imgsz(rows[0]["imgsz"])
    table = Table(title=f"PartialNet / FasterNet variants (GMACs = multiply-adds at {size}, fvcore convention)")
    for col in ("variant", "E", "depths", "act", "PAT_sp", "params", "published", "GMACs", "published", "Δ GMACs", "top-1*"):
        table.add_column(col, justify="right" if col not in ("variant", "act", "depths") else "left")
    for r in rows:
        rel = r["gmacs_rel_diff"]
        table.add_row(
            r["name"],
            str(r["embed_dim"]),
            "-".join(map(str, r["depths"])),
            r["act"],
            "on" if r["pat_sp"] else "off",
            f"{r['params']:,}",
            f"{r['published_params']:,}" + ("" if r["params_match"] else " ≠"),
            f"{r['gmacs']:.3f}",
            f"{r['published_gmacs']:g}",
            f"{100 * rel:+.2f}%" if rel is not None else "n/a",
            f"{r['published_top1']:.1f}" if r["published_top1"] else "-",
        )
    out.print(table)
    out.print("* published ImageNet-1K top-1, not verified here (needs trained weights and data).")


@app.command()
def formats(as_json: JsonOption = False) -> None:
    """List the export formats: aliases, extra, options, and what this machine can do with each (and why not)."""
    from partialnet.exporters.status import format_rows

    rows = format_rows()
    if as_json:
        _print_json(rows)
        return
    table = Table(title="export formats (partialnet export --format NAME)")
    table.caption = "prepares: everything but the engine is written and verified; the printed build script finishes it on a GPU machine"
    for col in ("format", "aliases", "suffix", "extra", "installed", "export", "verify", "bench", "options"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["format"], ", ".join(r["aliases"]), r["suffix"], r["extra"] or "(core)", "yes" if r["installed"] else "no",
            r["export"], r["verify"], f"{r['bench']} ({r['runtime']})", " ".join(r["options"]),
        )
    out.print(table)
    for r in rows:
        for why in (r["export_reason"], r["runtime_reason"]):
            if why:
                out.print(f"{r['format']}: {why}", markup=False)


def _widths(widths: list[list[int]]) -> str:
    return " | ".join(f"stage {2 * i}: {','.join(map(str, w))}" for i, w in enumerate(widths))


WeightsOption = Annotated[Optional[str], typer.Option(
    "--weights", help="Which model copy of a file holding several: a top-level key (state_dict_ema) or a key prefix (model_ema.); "
    "default: the first of state_dict, model, model_ema, ... (each command names the others).")]


@app.command()
def info(
    source: SourceArgument,
    variant: Annotated[Optional[str], typer.Option("--variant", help="Expected variant; default: inferred.")] = None,
    weights: WeightsOption = None,
    imgsz: ImgszOption = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a checkpoint: variant, container, params, GMACs, BatchNorms, PAT_sp, DPConv widths."""
    size = parse_imgsz(imgsz)
    check_source(source, variant)
    row = _api().inspect(source, variant, size, weights)
    if as_json:
        _print_json(row)
        return
    table = Table(show_header=False, title=inert(row["source"]))
    table.add_column("field", style="bold")
    table.add_column("value")
    how = "inferred from tensor shapes" if row["variant_inferred"] else "as named"
    table.add_row("variant", f"{row['variant']} ({how})")
    table.add_row("weights", "RANDOM (no checkpoint given)" if row["random_weights"] else ", ".join(row["dtypes"]))
    table.add_row("container", row["container"])
    if not row["random_weights"]:
        prefix = f", prefix '{row['prefix']}' stripped" if row["prefix"] else ""
        table.add_row("key layout", row["key_layout"] + prefix)
        if row["ignored_keys"]:
            table.add_row("ignored keys", f"{len(row['ignored_keys'])} outside the model: {', '.join(row['ignored_keys'][:3])}")
        table.add_row("file", f"{row['file_bytes']:,} bytes, sha256 {row['sha256'][:16]}…")
    table.add_row("family", f"{row['family']}, embed_dim {row['embed_dim']}, depths {'-'.join(map(str, row['depths']))}, {row['act']}")
    table.add_row("params", f"{row['params']:,}")
    table.add_row("GMACs", f"{row['gmacs']:.4f} at {'x'.join(map(str, row['imgsz']))}")
    table.add_row("BatchNorm layers", str(row["batchnorm_layers"]))
    table.add_row("PAT_sp", "on" if row["pat_sp"] else "off")
    table.add_row("DPConv widths", _widths(row["dpconv_widths"]) if row["dpconv_widths"] else "none (static mixers)")
    table.add_row("num_classes", str(row["num_classes"]))
    out.print(table)


def _path_text(text: str) -> Path:
    """A path option as typed. An empty one (an unset variable in `-o "$OUT"`) is refused: pathlib reads "" as the
    current folder, so `matrix -o ''` wrote its artifacts there and `--images ''` judged the current folder."""
    if not text.strip():
        raise typer.BadParameter("an empty string names no file or folder")
    return Path(text)


def _output_file(text: str) -> Path:
    """An output file's name as typed: pathlib reads `x.json/` as the file x.json, so a trailing slash (a folder)
    would be dropped without a word; refused here, before any work."""
    from partialnet.sources import names_a_folder

    _path_text(text)
    if names_a_folder(text):
        raise typer.BadParameter(f"{text!r} names a folder, not a file")
    return Path(text)


def _path_option(*names: str, help: str):
    """An option naming a file or folder to read or write, refused when empty, shown as <path>."""
    return typer.Option(*names, help=help, parser=_path_text, metavar="<path>")


def _file_option(*names: str, help: str):
    """An option naming a file to write: read as typed (a trailing slash refused), shown as <path>."""
    return typer.Option(*names, help=help, parser=_output_file, metavar="<path>")


ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
VariantOption = Annotated[Optional[str], typer.Option("--variant", help="Expected variant; default: inferred.")]
def _typer_parameters(cls) -> list[inspect.Parameter]:
    """The Typer options of an options dataclass, from its fields' flags (keyword-only, in field order)."""
    defaults = defaults_of(cls)
    params = []
    for name, flag in flags_of(cls).items():
        bounds = {k: v for k, v in (("min", flag.min), ("max", flag.max)) if v is not None}
        cli_type = flag.cli_type or type(defaults[name])
        if Path in get_args(cli_type):
            bounds.update(parser=_path_text, metavar="<path>")
        option = typer.Option(flag.flag, *flag.decls, help=flag.help, show_default=flag.show_default, **bounds)
        default = None if flag.cli_type is not None else defaults[name]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[cli_type, option], default=default))
    return params


CONTEXT = "partialnet_click_context"  # the parameter through which typer hands `takes` the command's context


def _typed_flags(ctx: typer.Context) -> set[str]:
    """The parameters the user typed, even at their defaults: `--precision fp32` beside an INT8 artifact, or
    `--opset 17` for Core ML, is asked for, and refused where it would be ignored, as off-default values are."""
    from_defaults = {"DEFAULT", "DEFAULT_MAP"}
    return {name for name in ctx.params if (source := ctx.get_parameter_source(name)) is not None and source.name not in from_defaults}


def takes(**families):
    """`@takes(options=ExportOptions)`: the command's parameter `options` arrives as one ExportOptions built
    from the flags its fields declare, so a new option is one field, not six edits."""

    def wrap(func):
        sig = inspect.signature(func, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name not in families]
        added = [param for cls in families.values() for param in _typer_parameters(cls)]

        def command(**values):
            typed = _typed_flags(values.pop(CONTEXT))
            for name, cls in families.items():
                values[name] = from_cli(cls, {field: values.pop(field) for field in flags_of(cls)}, typed)
            return func(**values)

        context = inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        command.__name__, command.__qualname__, command.__doc__ = func.__name__, func.__qualname__, func.__doc__
        command.__signature__ = sig.replace(parameters=[*own, *added, context])
        command.__annotations__ = {p.name: p.annotation for p in [*own, *added, context]}
        return command

    return wrap


def _render_failure_details(exc: PartialnetError) -> None:
    """A failed parity check still shows its table before the one-line error."""
    if exc.details and "checks" in exc.details:
        err.print(render.static_table(exc.details, "checks without the runtime"))
    if exc.details and exc.details.get("cases"):
        err.print(render.parity_table(exc.details, "parity (FAILED)"))
    if exc.details and exc.details.get("divergence"):
        err.print(render.divergence_table(exc.details["divergence"]))


@app.command("fold")
def fold_command(
    source: SourceArgument,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Deploy file; default beside the checkpoint.")] = None,
    imgsz: ImgszOption = None,
    report: Annotated[Optional[str], typer.Option("--report", help="Fold report JSON; default <output>.fold.json.")] = None,
    variant: VariantOption = None,
    weights: WeightsOption = None,
    force: ForceOption = False,
) -> None:
    """Fold every BatchNorm and constant into a deploy model, exactly, and report each pass."""
    from partialnet.outputs import check_outputs
    from partialnet.sources import fold_outputs, source_path

    size = parse_imgsz(imgsz)
    check_source(source, variant)
    check_outputs(fold_outputs(source, output, report), [source_path(source)], force)  # before torch is imported
    with _Stages() as clock:
        result = _api().fold_checkpoint(source, output, size, variant, report, force, weights)
    for note in source_notes(result):
        out.print(note, markup=False)
    out.print(render.fold_table(result["report"]))
    out.print(f"wrote {result['output']} and {result['report_path']} in {timing_line(clock.breakdown())}")


@app.command("export")
@takes(options=ExportOptions, checks=VerifyOptions, where=TargetOptions)
def export_command(
    source: SourceArgument,
    options: ExportOptions,
    checks: VerifyOptions,
    where: TargetOptions,
    format: Annotated[str, typer.Option(
        "--format", "-f", help=f"Artifact format: {', '.join(FORMATS)}, or all (every format this machine can produce).")] = DEFAULT_FORMAT,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Artifact path; default beside the checkpoint.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="--format all: print the status table as JSON.")] = False,
    variant: VariantOption = None,
    weights: WeightsOption = None,
    force: ForceOption = False,
) -> None:
    """Fold, export and verify: the artifact is written only if it matches PyTorch. --format all: every format here."""
    if format.strip().lower() == "all":
        if where.addresses():
            raise BadInput("--format all exports here; --target builds one format that must be built on its own machine "
                           "(--format trt): export that one with --target, the portable ones here")
        _export_all(source, output, options, checks, (variant, weights), force, as_json)
        return
    if as_json:
        raise BadInput("--json prints --format all's status table; one format's record is the manifest written beside its artifact "
                       "(NAME.json)")
    from partialnet.exporters.formats import get_format
    from partialnet.exporters.options import check_flags

    try:
        fmt = get_format(format)
    except BadInput as exc:
        raise BadInput(f"{exc}, or all (every format this machine can produce)") from None
    check_flags(fmt, options, FORMATS)  # before torch is imported: a typo answers at once
    check_source(source, variant)
    if where.addresses():
        from partialnet.exporters.formats import check_built_on_target

        check_built_on_target(fmt, len(where.addresses()))
        _export_on_target(source, format, options, checks, where, output, (variant, weights), force)
        return
    _check_export_outputs(source, fmt, output, force)
    stages = _Stages()
    try:
        with stages as clock:
            result = _api().export(source, format, options, output=output, checks=checks, variant=variant, force=force, weights=weights)
    except Unavailable as exc:  # TensorRT without a GPU: what was prepared is published; show it, then exit 3
        if exc.details and "manifest_path" in exc.details:
            _render_export(exc.details, clock.breakdown())
        raise
    _render_export(result, clock.breakdown())


def _check_export_outputs(source: str, fmt, output: str | None, force: bool) -> None:
    """An output name of the wrong kind, or files that exist without --force, answered before torch is imported
    (api.export checks them again, for Python callers)."""
    from partialnet.exporters.formats import check_artifact_name, published
    from partialnet.outputs import check_outputs
    from partialnet.sources import FORMAT_ALL_HINT, output_file, source_path

    out = output_file(output, source, fmt.suffix, hint=FORMAT_ALL_HINT)
    check_artifact_name(out, fmt)
    files = published(fmt, out, typed=output is not None)
    if files is not None:
        check_outputs(files, [source_path(source)], force)


def _export_on_target(source, format, options, checks, where: TargetOptions, output, picked: tuple, force) -> None:
    """An artifact tied to the machine that runs it, built on the target (see partialnet.remote.engine);
    `picked`: (--variant, --weights)."""
    variant, weights = picked
    with _Stages() as clock:
        result = _api().export_on_target(source, format, options, output=output, checks=checks, variant=variant, force=force, where=where,
                                         weights=weights)
    artifact, target = Path(result["artifact"]), result["target"]
    parity, timing = result["parity_on_target"], result["timing_on_target"]
    out.print(render.parity_table(parity, f"parity on {target}: {artifact} vs {source}"))
    p50 = (timing.get("stats") or {}).get("p50_ms")
    out.print(f"built on {target} for {result['built_for'].get('gpu')} (TensorRT {result['built_for'].get('tensorrt')}); "
              f"p50 there {p50 if p50 is None else f'{p50:.3f} ms'}; wrote {artifact} and {result['manifest_path']} · {timing_line(clock.breakdown())}",
              markup=False)


def _export_all(source, output, options, checks, picked: tuple, force, as_json) -> None:
    if output is not None and os.path.exists(output) and not os.path.isdir(output):
        raise BadInput(f"-o {output}: with --format all, -o names a directory")
    variant, weights = picked
    check_all_options(options, FORMATS)  # before torch's import, as one format's options are
    check_source(source, variant)
    with _Stages() as clock:
        result = _api().export_all(source, output, options, checks=checks, variant=variant, force=force, weights=weights)
    result["timing"] = clock.breakdown()
    if as_json:
        _print_json(result)
    else:
        for note in source_notes(result["source"]):
            out.print(note, markup=False)
        out.print(render.export_all_table(result))
        counts = collections.Counter(row["verdict"] for row in result["rows"])
        beside = result.get("second_process") or []
        out.print(" · ".join(f"{n} {verdict}" for verdict, n in counts.items()) + " · one load, one fold"
                  + (f" (and one more for {', '.join(beside)}, exported in a second process meanwhile)" if beside else ""))
        out.print(f"in {timing_line(result['timing'])}")
    if result["failed"]:
        raise CheckFailed(f"not exported and verified: {', '.join(result['failed'])} (each row's why above)")


def random_weights_note(variant: str, seed: int | None) -> str:
    return f"note: {variant} has RANDOM weights (seed {seed}): no checkpoint was given"


def source_notes(record: dict, imgsz=None) -> list[str]:
    """What a user must know about the weights a command used: random ones, one copy of several in the file, or
    a size (`imgsz`: the command's) other than the one they were trained at."""
    notes = [random_weights_note(record["variant"], record["random_weights_seed"])] if record["random_weights"] else []
    trained = record.get("trained_imgsz")
    if trained and imgsz and list(trained) != list(imgsz):
        flag = trained[0] if trained[0] == trained[1] else f"{trained[0]},{trained[1]}"
        notes.append(f"note: {record['source']} was trained at {format_imgsz(trained)} ({record.get('dataset')}); at "
                     f"{format_imgsz(imgsz)} it is near chance and its own dataset does not judge it: --imgsz {flag}")
    copies = other_copies(record.get("container"))
    if copies:
        chosen = f" (--weights {record['weights']})" if record.get("weights") else ""
        notes.append(f"note: loaded {copies[0]}{chosen} of {record['source']}; it also holds {copies[1]} "
                     "(not loaded: pick a copy with --weights NAME)")
    return notes


def other_copies(container) -> tuple[str, str] | None:
    """(the copy loaded, the others) from a checkpoint's container record, where the file holds several."""
    text = str(container or "")
    if "; also holds " not in text:
        return None
    loaded, others = text.split("; also holds ", 1)
    return loaded, others.removesuffix(", not loaded")


def _quantization_value(value) -> str:
    """A quantization record's value as a line reads it: an INT8 LiteRT input's {dtype, scale, zero_point} as
    `int8, scale 0.0186, zero point -14` (it printed a Python dict)."""
    if not isinstance(value, dict):
        return str(value)
    return ", ".join(str(v) if k == "dtype" else f"{k.replace('_', ' ')} {f'{v:.4g}' if isinstance(v, float) else v}" for k, v in value.items())


def _render_export(result: dict, timing: dict) -> None:
    for note in source_notes(result["source"], result["options"]["imgsz"]):
        out.print(note, markup=False)
    if "checks" in result["parity"]:
        out.print(render.static_table(result["parity"], f"checks without the runtime: {result['output']}"))
    if result["parity"].get("cases"):
        out.print(render.parity_table(result["parity"], f"parity: {result['output']} vs PyTorch"))
    note = render.own_calibration_note(result["parity"])
    if note:
        err.print(note, markup=False)
    if result["parity"].get("default_differs"):
        err.print(f"note: {result['parity']['default_differs']}", markup=False, highlight=False)
    graph = result["graph"]
    quantization = graph.get("quantization")
    if quantization:
        out.print("int8: " + "; ".join(f"{k.replace('_', ' ')} {_quantization_value(v)}" for k, v in quantization.items()),
                  markup=False, highlight=False)
    if graph.get("delegation"):
        out.print(render.delegation_line(graph["delegation"]))
    others = [str(Path(result["output"]).with_name(name)) for name in result.get("files", [])[1:]]
    out.print(
        f"wrote {', '.join([result['output'], *others])} ({result['bytes']:,} bytes, {graph['nodes']} nodes, simplify: {graph['simplify']})"
        f" and {result['manifest_path']}"
    )
    out.print(f"in {timing_line(timing)}")


@app.command("verify")
@takes(checks=VerifyOptions, where=TargetOptions)
def verify_command(
    artifact: Annotated[str, typer.Argument(callback=_a_path, help="An exported artifact (" + ", ".join(f.suffix for f in FORMATS.values()) + ").")],
    ref: Annotated[str, typer.Option("--ref", help="The checkpoint (or variant name) it was exported from.", callback=_not_empty)],
    checks: VerifyOptions,
    where: TargetOptions,
    variant: VariantOption = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="Which model copy of --ref; default: the one the artifact says it was exported from.")] = None,
    compute: Annotated[Optional[str], typer.Option(
        "--compute", help="Run an fp32 artifact at this precision, as a runtime computes it on request (bf16: OpenVINO with "
        "INFERENCE_PRECISION_HINT=bf16), and judge it by that precision's gates.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run an artifact in its runtime and compare it with the original PyTorch model."""
    checks = checks.check()
    check_artifact(artifact)
    if compute is not None:
        from partialnet.runtimes.table import check_compute  # the runtimes package brings numpy: not for --help

        compute = check_compute(compute)
    check_source(ref, variant)
    if where.addresses():
        if compute:
            _api().check_compute(artifact, compute)  # here, before anything goes up: the target would refuse it too
        return _verify_on_targets(artifact, ref, checks, where, (variant, weights), as_json, compute)
    with _Stages() as clock:
        try:
            report = _api().verify(artifact, ref, checks, variant=variant, compute=compute, weights=weights)
        except CheckFailed as exc:  # a script reading --json gets the failing report too, not an empty stdout
            if as_json and exc.details:
                _print_json({"passed": False, **exc.details, "error": str(exc)})
            raise
    if as_json:
        _print_json({**report.to_dict(), "timing": clock.breakdown()})
        return
    for note in source_notes(report.source, report.source.get("imgsz")) if report.source else []:  # random weights, or which copy of several it was held to
        out.print(note, markup=False)
    if report.source and report.source.get("identity_checked") is False:
        out.print(f"note: {artifact} carries no record of its source (its manifest is not beside it): that it came from {ref} "
                  "was not checked, only that it computes the same", markup=False)
    if report.offline:
        out.print(render.static_table(report.offline, f"checks without the runtime: {artifact}"))
    out.print(render.parity_table(report.to_dict(), f"parity: {artifact} vs {ref}"))
    if report.default_differs:
        err.print(f"note: {report.default_differs}", markup=False, highlight=False)
    how = f" ({report.offline['verdict']})" if report.offline else ""
    how += f" (computed in {compute} by {report.candidate})" if compute else ""
    out.print(f"ok: the artifact matches PyTorch{how} · {timing_line(clock.breakdown())}")


def _verify_on_targets(artifact: Path, ref: str, checks: VerifyOptions, where: TargetOptions, picked: tuple, as_json: bool, compute=None) -> None:
    """The artifact run in its runtime on each target, against PyTorch there; reports as if local.
    `picked`: (--variant, --weights)."""
    from partialnet.inputs import check_regular

    check_regular(artifact, "artifact")
    reports = {}
    with where.hosts() as hosts:
        for host in hosts:
            try:
                reports[host.label] = host.verify(artifact, ref, checks, picked[0], compute, weights=picked[1])
            except CheckFailed as exc:  # a script reading --json gets the failing target's report too, as a local verify gives it
                if as_json and exc.details:
                    done = {label: {**r.to_dict(), "machine": h.machine()} for (label, r), h in zip(reports.items(), hosts)}
                    _print_json({**done, host.label: {"passed": False, **exc.details, "error": str(exc), "machine": host.machine()}})
                raise
    if as_json:
        _print_json({label: {**r.to_dict(), "machine": host.machine()} for (label, r), host in zip(reports.items(), hosts)})
        return
    for label, report in reports.items():
        out.print(render.parity_table(report.to_dict(), f"parity on {label}: {artifact} vs {ref}"))
        out.print(f"ok on {label}: the artifact matches PyTorch there", markup=False)


@app.command("digits")
def digits_command(
    output: Annotated[str, typer.Option("-o", "--output", help="Checkpoint to write (an ordinary state_dict container).")],
    variant: Annotated[str, typer.Option("--variant", help="Variant to train with 10 classes.")] = "partialnet_t0",
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs (6 reach ~99 % with T0).")] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights and the batch order.")] = 0,
    imgsz: Annotated[Optional[str], typer.Option("--imgsz", help="Train at this size (default 64): accuracy is judged only at the size "
                                                 "a model was trained for.", show_default=False)] = None,
    force: ForceOption = False,
) -> None:
    """Train a model on scikit-learn's real handwritten digits: the accuracy yardstick for every precision."""
    with RowProgress(err) as rows:
        logged = EpochLines(rows)
        result = _api().train_digits(output, variant, epochs, seed, force, logged, parse_imgsz(imgsz, default=64))
        logged.finish()
    out.print(
        f"{result['variant']} on digits: held-out top-1 {result['top1']:.2%} on {result['test_images']} images "
        f"after {result['epochs']} epochs ({result['train_images']} training images, {result['seconds']:.0f} s)"
    )
    out.print(f"wrote {result['output']}")


@app.command("bench")
@takes(options=BenchOptions, where=TargetOptions)
def bench_command(
    options: BenchOptions,
    where: TargetOptions,
    sources: Annotated[Optional[list[str]], typer.Argument(
        help="Variant names, checkpoints or artifacts (.onnx, .xml, .pte, .tflite, .engine, .mlpackage; default: partialnet_t0).",
        callback=_not_empty)] = None,
    json_path: Annotated[Optional[Path], _file_option("--json", help="Write the full result (raw samples, machine) here.")] = None,
    csv_path: Annotated[Optional[Path], _file_option("--csv", help="Write one CSV line per row here.")] = None,
    md_path: Annotated[Optional[Path], _file_option("--md", help="Write a Markdown table here.")] = None,
    plot_path: Annotated[Optional[Path], _file_option("--plot", help="Write a PNG of latency vs GMACs here.")] = None,
    force: ForceOption = False,
) -> None:
    """Measure latency and throughput per runtime, each row in its own process, and save the evidence."""
    options.check(sources)
    _warn_smoke_gate(options)
    addresses = where.addresses()
    if not addresses:
        from partialnet.runtimes.table import refuse_here_without_gpu

        refuse_here_without_gpu(options.device, options.runtimes(sources), options.precision)
    # Arguments are sound: now the heavy modules (torch comes in with the checkpoint reader).
    with progress.stage("import"):
        from partialnet.bench.results import per_target_outputs, write_outputs
        from partialnet.outputs import check_outputs
    inputs = [path for s in [*(sources or []), *(options.ab or ())] for path in _read_with(s, source_path(s))]
    labels = [str(a) for a in addresses] or [None]
    outputs = per_target_outputs(json_path, csv_path, md_path, plot_path, labels)
    check_outputs([o for named in outputs.values() for o in named if o], inputs, force)  # before any model is loaded or timed
    results = _bench_everywhere(options, sources, where)
    gate_failures = _gate_ab(options, labels, results)
    for label, result in zip(labels, results):
        _render_bench(result, options, label)
        written = write_outputs(result, *(outputs[label][i].path if outputs[label][i] else None for i in range(4)), force=force, inputs=inputs)
        if written:
            out.print(f"wrote {', '.join(written)}")
    if len(results) > 1:
        from partialnet.bench.report import merge_loaded

        out.print(render.report_bench_table(merge_loaded([(label, r) for label, r in zip(labels, results)])))
    failed = [(label, r) for label, result in zip(labels, results) for r in result["rows"] if r["status"] == "failed"]
    if failed:
        label, row = failed[0]
        at = f" on {label}" if label else ""
        raise CheckFailed(f"{len(failed)} row(s) failed{at}: {row['model']} on {row['runtime']}: {row['reason']}")
    if gate_failures:
        (first, why), others = gate_failures[0], [name for name, _ in gate_failures[1:]]
        more = f" (and {'; '.join(others)}: see the gate lines above)" if others else ""
        raise CheckFailed(f"A/B gate (--max-slowdown {options.max_slowdown:g}, --alpha {options.alpha:g}) failed on "
                          f"{len(gate_failures)} runtime(s): {first}: {why}{more}")


def _warn_smoke_gate(options: BenchOptions) -> None:
    """A gate is a conclusion, and the quick protocol says it is none: two warm-up runs and 0.2 s for both sides read a B/A
    ratio lower than the latency protocol does (docs/ci-gating.md). Kept, since a smoke gate still catches a gross
    slowdown, but said before the run, not found out later."""
    from partialnet.bench.protocols import get_protocol

    if options.ab and options.max_slowdown is not None and get_protocol(options.protocol, options.device).name == "quick":
        err.print("warning: --protocol quick is a smoke run, not for conclusions: its A/B ratios read closer to 1 than the "
                  "latency protocol's, so a gate on it can pass a real slowdown; gate with --protocol latency", markup=False)


def _gate_ab(options: BenchOptions, labels: list, results: list[dict]) -> list[tuple[str, str]]:
    """`--ab --max-slowdown`: each cell judged (the verdict goes into the result before it is shown or written);
    the failures as (runtime, or runtime on target; why)."""
    if options.max_slowdown is None:
        return []
    from partialnet.bench.ab_gate import gate_ab

    return [(f"{runtime} on {label}" if label else runtime, why) for label, result in zip(labels, results)
            for runtime, why in gate_ab(result, options.alpha, options.max_slowdown)]


def _read_with(source: str, path) -> list:
    """A source and the files bench reads beside it (an artifact's companions and manifest): none may be an output."""
    from partialnet.sources import artifact_format

    fmt = artifact_format(source) if path is not None else None
    if fmt is None:
        return [path]
    from partialnet.pipeline import artifact_outputs

    return [path, *(o.path for o in artifact_outputs(Path(source), fmt))]


def _bench_everywhere(options: BenchOptions, sources, where: TargetOptions) -> list[dict]:
    """One result here, or one per target (each target's rows planned with its own runtimes and cores;
    each model prepared once for all of them)."""

    here = options.plan(sources)  # every refusal of the options and sources, before any target is reached
    with where.hosts() as hosts:
        plans = [replace(here, where=host, threads=options.threads or here.protocol.threads or host.default_threads())
                 for host in hosts or []] or [here]

        def announce(plan) -> None:
            if hosts:
                err.print(f"target {describe_machine(plan.where.machine())}", markup=False, highlight=False)

        with RowProgress(err) as report_progress:
            return _api().bench_plans(plans, options.ab, options.block, report_progress, announce)


def describe_machine(machine: dict) -> str:
    from partialnet.machine import describe

    return describe(machine)


def _render_bench(result: dict, options: BenchOptions, label: str | None) -> None:
    if label:
        out.print(f"on {label}:", markup=False)
    if options.ab:
        _render_ab(result)
    for line in render.aa_lines(result):
        out.print(line)
    for note in [*random_weight_notes(result["rows"]), *copy_notes(result["rows"])]:
        out.print(note, markup=False)
    out.print(render.bench_table(result))
    for line in [*marked_notes(result["rows"]), *render.skipped_lines(result)]:
        out.print(line)


def copy_notes(rows: list[dict]) -> list[str]:
    """Which copy of a checkpoint of several (weights and their EMA) was timed, said once per file: bench takes the
    first, as every command does without --weights (latency does not depend on which)."""
    notes: dict[str, str] = {}
    for r in rows:
        copies = other_copies(r.get("container"))
        if not r.get("weights") or r["model"] in notes:
            continue
        if copies:
            notes[r["model"]] = (f"note: {r['model']}: timed {copies[0]} (--weights {r['weights']}); the file also holds "
                                 f"{copies[1]} (the same network: latency does not depend on the copy)")
        elif not r.get("container"):  # an artifact: its metadata names the copy it was exported from
            notes[r["model"]] = f"note: {r['model']}: exported from its checkpoint's copy {r['weights']} (--weights {r['weights']})"
    return list(notes.values())


def random_weight_notes(rows: list[dict]) -> list[str]:
    """Rows timed on random weights, said once per model; an artifact was given, but it was exported from a bare variant name."""
    from partialnet.sources import artifact_format

    notes: dict[str, str] = {}
    for r in rows:
        if r.get("random_weights") and r["model"] not in notes:
            how = ("was exported from RANDOM weights (a variant name, no checkpoint)" if artifact_format(str(r.get("source") or ""))
                   else "has RANDOM weights (seeded; no checkpoint given)")
            notes[r["model"]] = f"note: {r['model']}* {how}: latency does not depend on the weights"
    return list(notes.values())


class RowProgress:
    """Bench progress: a bar on a terminal; one plain line per step on stderr elsewhere (CI logs)."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = None

    def __enter__(self):
        if self.console.is_terminal:
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=None)
        return self

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=message, completed=done or 0, total=total)
        else:
            self.console.print(f"[{done + 1}/{total}] {message}" if total else message, markup=False)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class EpochLines:
    """Training progress: every step on a terminal's bar; in a log, one line per finished epoch (rich's bar,
    stopped off a terminal, left only an empty line before whatever came next)."""

    def __init__(self, rows: RowProgress) -> None:
        self.rows, self.epoch, self.message = rows, None, None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.rows.bar is not None:
            self.rows(message, done, total)
            return
        epoch = message.split(",")[0]  # "epoch 2/6, loss 0.123"
        if self.epoch not in (None, epoch):
            self.rows(self.message)
        self.epoch, self.message = epoch, message

    def finish(self) -> None:
        if self.rows.bar is None and self.message:
            self.rows(self.message)


def _render_ab(result: dict) -> None:
    for line in render.ab_lines(result):
        out.print(line, markup=False, highlight=False)


@app.command("claims")
@takes(where=TargetOptions)
def claims_command(
    where: TargetOptions,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    runtime: Annotated[Optional[list[str]], typer.Option(
        "--runtime", help="Runtimes (comma-separated); default: PyTorch eager and every deployed runtime here.")] = None,
    sizes: Annotated[Optional[str], typer.Option("--sizes", help="Sizes to compare, e.g. t0,t1,t2 (default) or t0,t1,t2,s,m,l.")] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="paper (default), latency, throughput or quick.")] = "paper",
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Threads per runtime (default: the protocol's; paper: 1).")] = None,
    imgsz: ImgszOption = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Relative tolerance around a published ratio (0-0.5).")] = 0.05,
    half: Annotated[bool, typer.Option("--half", help="fp16 (as the reference code's --half; the papers' protocol is fp32, so "
                                              "verdicts say they are off it); fp32 otherwise.")] = False,
    cuda_graphs: Annotated[bool, typer.Option(
        "--cuda-graphs", help="--device cuda: replay each forward as one CUDA graph, so the ratio is the GPU's work without "
        "host launches (not the papers' eager protocol).")] = False,
    unfolded: Annotated[bool, typer.Option("--unfolded", help="Also time the training-form PyTorch models (BatchNorm unfused).")] = False,
    block: Annotated[int, typer.Option("--block", min=1, help="Iterations per alternating block.")] = 10,
    json_path: Annotated[Optional[Path], _file_option("--json", help="Write the full result (claims, samples, machine) here.")] = None,
    md_path: Annotated[Optional[Path], _file_option("--md", help="Write the report as Markdown here.")] = None,
    plot_path: Annotated[Optional[Path], _file_option("--plot", help="Write a PNG of latency (CPU) or throughput (GPU) vs GMACs here.")] = None,
    force: ForceOption = False,
) -> None:
    """Check the papers' PartialNet-vs-FasterNet speed claims on this machine, each size A/B in one process."""
    addresses = where.addresses()
    plan, chosen = _claims_plan(device, runtime, sizes, protocol, threads, imgsz, tolerance, half, cuda_graphs, here=not addresses)
    from partialnet.bench import claims_run
    from partialnet.bench.results import per_target_outputs
    from partialnet.outputs import check_outputs

    if not addresses:  # a target's cores are checked when it answers, before its first row
        _threads_fit_here(plan.threads, plan.device)
    labels = [str(a) for a in addresses] or [None]
    outputs = per_target_outputs(json_path, None, md_path, plot_path, labels)
    check_outputs([o for named in outputs.values() for o in named if o], [], force)
    results = []
    with where.hosts() as hosts:
        for label, plan in zip(labels, _claims_plans(plan, hosts, threads, runtime)):
            if hosts:
                out.print(f"on {label}:", markup=False)
            with RowProgress(err) as report_progress:
                results.append(claims_run.run_claims(plan, chosen, tolerance, block, report_progress, unfolded))
            _render_claims(results[-1], tolerance)
            json_out, _, md_out, plot_out = (o.path if o else None for o in outputs[label])
            written = claims_run.write_claims_outputs(results[-1], json_out, md_out, plot_out, force)
            if written:
                out.print(f"wrote {', '.join(written)}")
    if len(results) > 1:
        from partialnet.bench.report import merge_loaded

        out.print(render.report_measurements_table(merge_loaded(list(zip(labels, results)))))


def _claims_plans(plan, hosts: list, threads: int | None, runtime) -> list:
    """The plan for each target (its own cores and runtimes unless given), every one able to run the request
    before the first one's rows; or the plan here."""
    from partialnet.bench import claims_run
    from partialnet.bench.run import refuse_if_nothing_runs

    plans = [replace(plan, where=host, threads=threads or plan.protocol.threads or host.default_threads(),
                     runtimes=plan.runtimes if runtime else claims_run.default_runtimes(plan.device, host)) for host in hosts or []]
    for each in plans:
        refuse_if_nothing_runs(each)
    return plans or [plan]


def _threads_fit_here(threads: int, device: str) -> None:
    from partialnet.bench.run import check_threads_fit
    from partialnet.bench.where import HERE

    check_threads_fit(threads, HERE, device)


def _claims_plan(device, runtime, sizes, protocol, threads, imgsz, tolerance, half, cuda_graphs=False, here=False):
    """The claims run's plan and sizes, every option checked before a model is built (and, `here` on a machine
    with no GPU driver, --device cuda refused before torch is imported)."""
    import math

    from partialnet.bench.claims import claim_runtimes, parse_sizes
    from partialnet.bench.protocols import get_protocol
    from partialnet.bench.threads import default_threads
    from partialnet.limits import MAX_THREADS, check_count, check_input_shape
    from partialnet.bench.options import DEVICES
    from partialnet.options import choice
    from partialnet.runtimes.table import refuse_here_without_gpu, resolve_runtimes

    device = choice(device, DEVICES, "--device")
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 0.5):
        raise BadInput(f"--tolerance {tolerance}: expected a number in 0..0.5")
    if cuda_graphs and device != "cuda":
        raise BadInput("--cuda-graphs needs --device cuda (CUDA graphs replay GPU work)")
    proto = get_protocol(protocol, device)
    size = parse_imgsz(imgsz)
    batch = (proto.batches or (1,))[0]
    check_input_shape(batch, *size, "--imgsz")
    if threads is not None:
        check_count(threads, "--threads", MAX_THREADS)
    chosen = parse_sizes(sizes)
    asked = resolve_runtimes(split_list(runtime)) if runtime else None
    precision = "fp16" if half else "fp32"
    if here:
        refuse_here_without_gpu(device, asked or claim_runtimes(), precision)
    from partialnet.bench import claims_run
    from partialnet.bench import run as bench_run

    plan = bench_run.BenchPlan(
        sources=[],
        runtimes=asked or claims_run.default_runtimes(device),
        device=device,
        batches=[batch],
        imgsz=size,
        threads=threads or proto.threads or default_threads(),
        protocol=proto,
        precision=precision,
        cuda_graphs=cuda_graphs,
        control=True,  # the A/A control beside every cell: a ratio means what the run's resolution lets it mean
    )
    return plan, chosen


def _render_claims(result: dict, tolerance: float) -> None:
    from partialnet.machine import describe

    out.print(render.claims_table(result))
    out.print(render.claims_measurements_table(result))
    out.print(render.claims_costs_table(result))
    out.print(f"tolerance {tolerance:.0%}: {result['tolerance_rule']}")
    out.print(f"{result['weights']}; timed: {result['timed_model']}")
    out.print(f"machine: {describe(result['machine'])}")


@app.command("doctor")
@takes(where=TargetOptions)
def doctor_command(where: TargetOptions, as_json: JsonOption = False) -> None:
    """Is this machine (or each --target) fit to benchmark on now? CPU, cores, load, runtimes, advice."""
    from partialnet import doctor

    if where.addresses():
        with where.hosts() as hosts:
            reports = {host.label: doctor.target_report(host) for host in hosts}
        if as_json:
            _print_json(reports)
            return
        for label, report in reports.items():
            for line in render.target_doctor_lines(label, report):
                out.print(line, markup=False)
        return
    report = doctor.examine()
    if as_json:
        _print_json(report)
        return
    for line in render.doctor_lines(report):
        out.print(line, markup=False)


@app.command("matrix")
@takes(where=TargetOptions)
def matrix_command(
    where: TargetOptions,
    source: SourceArgument,
    formats: Annotated[Optional[str], typer.Option("--formats", help="all (default) or a comma-separated list of formats.")] = None,
    precisions: Annotated[Optional[str], typer.Option("--precisions", help="all (default) or a subset of fp32,bf16,fp16,int8 (bf16: the fp32 file).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="INT8 calibration: digits (default for a digits checkpoint) or a folder.")] = None,
    images: Annotated[Optional[Path], _path_option("--images", help="Judge top-1/5 on your labelled images (class-index or WNID folders).")] = None,
    calib_size: Annotated[Optional[int], typer.Option("--calib-size", min=1, help="INT8 cells: calibration images (default 300).")] = None,
    calib_method: Annotated[Optional[str], typer.Option("--calib-method", help="INT8 cells: the calibration method (see export).")] = None,
    int8_keep_float: Annotated[Optional[str], typer.Option("--int8-keep-float", help="INT8 cells: layers or op kinds kept in float.")] = None,
    budget: Annotated[float, typer.Option("--budget", help="Points of top-1 the recommended artifact may lose vs PyTorch fp32.")] = 1.0,
    imgsz: ImgszOption = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads per runtime (every row the same).")] = 1,
    protocol: Annotated[str, typer.Option("--protocol", help="latency (default) or quick.")] = "latency",
    output: Annotated[Optional[Path], _path_option("-o", "--output", help="Folder for every artifact and matrix.json.")] = None,
    json_path: Annotated[Optional[Path], _file_option("--json", help="Also write the matrix as JSON here.")] = None,
    md_path: Annotated[Optional[Path], _file_option("--md", help="Also write the matrix as Markdown here.")] = None,
    plot_path: Annotated[Optional[Path], _file_option("--plot", help="Also write a PNG: latency vs accuracy, marker area = file size.")] = None,
    variant: VariantOption = None,
    weights: WeightsOption = None,
    force: ForceOption = False,
) -> None:
    """Every format x precision this machine can produce: accuracy, speed, size, the Pareto front, the one to ship."""
    check_source(source, variant)
    from partialnet.bench import matrix as mx
    from partialnet.outputs import Output, check_outputs

    extra = [Output(p, flag) for flag, p in (("--json", json_path), ("--md", md_path), ("--plot", plot_path)) if p]
    if len(where.addresses()) > 1:
        raise BadInput("matrix --target takes one target (its artifacts land in one folder); run it per target and merge with `partialnet report`")
    check_outputs(extra, [source_path(source)], force)
    with where.hosts() as hosts, RowProgress(err) as report_progress:
        result = _api().matrix(source, formats=formats, precisions=precisions, data=data, images=images, calib_size=calib_size,
                               calib_method=calib_method, int8_keep_float=int8_keep_float, budget=budget,
                               imgsz=parse_imgsz(imgsz), threads=threads, protocol=protocol, output_dir=output, variant=variant,
                               force=force, progress=report_progress, where=hosts[0] if hosts else None, weights=weights,
                               extra_outputs=extra)
    for note in source_notes(result["source"]):  # random weights, or the copy of several that was loaded
        out.print(note, markup=False)
    out.print(render.matrix_table(result))
    out.print(f"accuracy: {result['accuracy']}")
    for line in mx.recommendation_lines(result):
        out.print(line)
    _write_matrix_extras(result, extra, force, [source_path(source)])
    out.print(f"wrote {result['folder']}/{mx.MANIFEST}" + "".join(f", {o.path}" for o in extra))
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    if failed:  # as export --format all: a cell that could be made here and failed its check fails the command
        first = failed[0]
        raise CheckFailed(f"{len(failed)} cell(s) failed (everything else was written): {first['format']} {first['precision']}: "
                          f"{str(first.get('why'))[:200]}")


def _write_matrix_extras(result: dict, extra: list, force: bool, inputs: list) -> None:
    """--json, --md and --plot of a matrix, published together."""
    from partialnet.bench import matrix as mx
    from partialnet.bench import plot
    from partialnet.outputs import atomic_outputs, dumps_strict

    writers = {"--json": lambda staged: staged.write_text(dumps_strict(result, indent=1)),
               "--md": lambda staged: staged.write_text(mx.to_markdown(result)),
               "--plot": lambda staged: plot.save(plot.matrix_figure(result), staged.file)}
    if extra:
        with atomic_outputs(extra, force, inputs) as staged:
            for item in staged:
                writers[item.output.option](item)


@app.command("report")
def report_command(
    results: Annotated[list[str], typer.Argument(callback=_a_path, help="Result files from claims, bench or matrix --json (any machines).")],
    output: Annotated[Optional[Path], _file_option("-o", "--output", help="Write the merged report as Markdown here.")] = None,
    plot_path: Annotated[Optional[Path], _file_option("--plot", help="Write a PNG, one panel per machine, here.")] = None,
    json_path: Annotated[Optional[Path], _file_option("--json", help="Write the merged report as JSON here.")] = None,
    force: ForceOption = False,
) -> None:
    """Merge claims, bench or matrix results from several machines; rows measured under different protocols are refused."""
    from partialnet.bench import report as report_mod
    from partialnet.outputs import check_outputs

    check_outputs(report_mod.report_outputs(output, plot_path, json_path), list(results), force)
    report = report_mod.merge(list(results))
    if plot_path:
        report_mod.check_plottable(report)
    if report["claims"]:
        out.print(render.report_claims_table(report))
        for line in report_mod.claim_reasons(report):
            out.print(line, markup=False)
    if report["measurements"]:
        out.print(render.report_measurements_table(report))
    if report["bench"]:
        out.print(render.report_bench_table(report))
    if report.get("matrices"):
        from partialnet.bench.matrix_report import to_markdown as matrices_markdown

        out.print("\n".join(matrices_markdown(report["matrices"])), markup=False)
    written = report_mod.write_report_outputs(report, output, plot_path, json_path, force, list(results))
    if written:
        out.print(f"wrote {', '.join(written)}")


@app.command("compare")
def compare_command(
    baseline: Annotated[str, typer.Argument(callback=_a_path, help="Baseline bench JSON.")],
    candidate: Annotated[str, typer.Argument(callback=_a_path, help="Candidate bench JSON.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the one-sided rank test.")] = 0.01,
    max_slowdown: Annotated[float, typer.Option("--max-slowdown", help="Slowdown that matters, as a fraction (0.10 = 10 %).")] = 0.10,
    allow_different_machines: Annotated[bool, typer.Option("--allow-different-machines", help="Compare results from different hardware.")] = False,
    allow_different_settings: Annotated[bool, typer.Option("--allow-different-settings", help="Compare results timed under different protocols, "
                                                          "modes or settings (never different input sizes).")] = False,
    noise: Annotated[str, typer.Option("--noise", help="A row too noisy to judge: 'fail' (exit 1, rerun) or 'ignore' (report it, pass).")] = "fail",
    missing: Annotated[str, typer.Option("--missing", help="A baseline row the candidate skipped or left out: 'fail' (exit 1) or 'ignore' "
                                                          "(report it, pass).")] = "fail",
    as_json: JsonOption = False,
) -> None:
    """Gate on latency. Exit 1: a matched row regressed (significant AND above --max-slowdown), failed in the
    candidate, is noisy (too dispersed to judge: rerun) under --noise fail, or was measured in the baseline
    only under --missing fail. Exit 0: none of these (or the two files are one measurement). Exit 2: unusable
    files or options."""
    from partialnet.bench.compare import check_gate, compare_results, failure, is_same_file, why_lines
    from partialnet.bench.results import load_result

    noise, missing = check_gate(alpha, max_slowdown, noise, missing)
    report = compare_results(load_result(baseline), load_result(candidate), alpha, max_slowdown, allow_different_machines,
                             noise, is_same_file(baseline, candidate), missing, allow_different_settings)
    for note in _compare_notes(report, baseline, candidate):
        (err if as_json else out).print(note, markup=False)
    if as_json:
        _print_json(report)
    else:
        out.print(render.compare_table(report))
        for line in [*_unmatched_lines(report), *why_lines(report)]:
            out.print(line, markup=False)
    message = failure(report)
    if message:
        raise CheckFailed(message)
    slower = report["noisy_reading_slower"]
    if slower:  # passed by --noise ignore; the warning goes to stderr, so --json stays one document
        err.print(f"warning: {len(slower)} noisy row(s) passed by --noise ignore read as a regression on their samples alone "
                  f"({slower[0]}{', ...' if len(slower) > 1 else ''}): rerun them on a quiet machine before trusting this pass", markup=False)
    if not as_json:
        ignored = f" ({report['noisy']} noisy row(s) not judged: --noise ignore)" if report["noisy"] else ""
        ignored += f" ({len(report['only_in_baseline'])} baseline row(s) not measured: --missing ignore)" if report["only_in_baseline"] else ""
        judged = "among the rows judged" if ignored else ""
        out.print(f"ok: no latency regression{' ' + judged if judged else ''}{ignored}")


def _unmatched_lines(report: dict) -> list[str]:
    """The rows compare could not judge as a pair, each with why."""
    def key(k) -> str:
        return " / ".join(map(str, k))

    return [*(f"FAILED in the candidate: {key(i['key'])}: {i['reason']}" for i in report["failed_in_candidate"]),
            *(f"only in baseline: {key(i['key'])}: {i['reason']}" for i in report["only_in_baseline"]),
            *(f"only in candidate: {key(k)}" for k in report["only_in_candidate"]),
            *(f"not judged: {key(i['key'])}: the baseline's row {i['status']} ({i['reason']}); the candidate's is "
              f"{i['candidate']}: rerun the baseline" for i in report["unmeasured_in_baseline"])]


def _compare_notes(report: dict, baseline: Path, candidate: Path) -> list[str]:
    """What a reader must know before the verdicts: the files came from other hardware, or are one measurement."""
    notes = []
    if report["machines_differ"]:
        notes.append(f"note: the two results come from different machines ({report['machines_differ']}): "
                     "a ratio across hardware says as much about the machines as about the build")
    if report.get("software_differs"):
        notes.append(f"note: the two results were timed with different software ({'; '.join(report['software_differs'])}): "
                     "a difference may be theirs, not the build's")
    if report.get("load_unread") and not report["same_input"]:
        sides = " and the ".join(f"{side}'s" for side in report["load_unread"])
        notes.append(f"note: the {sides} rows record no machine-load readings (an older file, or a machine without /proc): "
                     "a run disturbed by other work cannot be told from a quiet one there")
    if report["same_input"]:
        where = baseline if baseline == candidate else f"{baseline}, {candidate}"
        notes.append(f"note: baseline and candidate {report['same_input_reason']} ({where}): every row is trivially ok")
    return notes


def join_imgsz(argv: list[str]) -> list[str]:
    """`--imgsz H W` (two numbers, as users type it) becomes `--imgsz H,W`: click options take one value."""
    out, i = [], 0
    while i < len(argv):
        out.append(argv[i])
        if argv[i] == "--imgsz" and i + 2 < len(argv) and argv[i + 1].isdigit() and argv[i + 2].isdigit():
            out.append(f"{argv[i + 1]},{argv[i + 2]}")
            i += 3
            continue
        i += 1
    return out


def debug_enabled() -> bool:
    """PARTIALNET_DEBUG=1 (or true/yes/on) shows tracebacks; 0, empty or unset means off."""
    return os.environ.get("PARTIALNET_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def install_signal_handlers() -> None:
    signals.install()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning nobody silenced at its source: one line, never a raw Python warning block."""
    text = " ".join(str(message).split())[:200]
    err.print(f"warning: {text} ({category.__name__})", markup=False)


def _click_errors():
    """Click's exception classes: vendored inside typer since 0.29, the click package before."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer depends on click itself
        from click import exceptions
    return exceptions


def _named_command(argv: list[str]) -> str:
    """`partialnet CMD` where argv's first word is a command: click's parser raises an option's missing value
    (`bench --batch`) with no context, so the hint named the top-level help."""
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    first = next((a for a in argv if not a.startswith("-")), None)
    return f"partialnet {first}" if first in names else "partialnet"


def _commands_taking(option: str) -> list[str]:
    """The commands that have `option`, for a command that does not."""
    return [name for name, command in _commands().items() if any(option in p.opts for p in command.params)]


def _commands() -> dict:
    """Each command's click object, by name: the flags it has."""
    import typer.main

    return typer.main.get_command(app).commands


def _usage_error(exc, argv: list[str]) -> None:
    """Click's usage errors as one line plus one hint, with the nearest valid name where one is close."""
    import difflib

    NoSuchOption = _click_errors().NoSuchOption
    message = exc.format_message()
    if isinstance(exc, NoSuchOption):
        near = difflib.get_close_matches(exc.option_name, sorted(exc.possibilities or []), n=1)
        # a flag other commands have is named with them; a look-alike is offered beside that only as its plural
        # (`matrix --precision`: --precisions), since `matrix --dataset` was offered --data, another option altogether
        takers = _commands_taking(exc.option_name)
        if takers and near and exc.option_name.rstrip("s") != near[0].rstrip("s"):
            near = []
        also = f"{', '.join(takers[:-1])} and {takers[-1]}" if len(takers) > 1 else "".join(takers)
        message = exc.message + (f"; did you mean {near[0]}?" if near else "") + (f" ({also} take{'s' if len(takers) == 1 else ''} it)" if takers else "")
    command = exc.ctx.command_path if exc.ctx is not None else _named_command(argv)
    err.print(f"error: {message}", markup=False)
    err.print(f"hint: {command} --help", markup=False)


def run() -> None:
    """Console-script entry point: the one place where errors and signals turn into exit codes.

    0 ok, 1 a check failed, 2 bad input or usage, 3 not possible here, 4 a bug; 130 Ctrl-C, 143 SIGTERM.
    """
    install_signal_handlers()
    warnings.showwarning = _show_warning
    debug = debug_enabled()
    argv = join_imgsz(sys.argv[1:])
    with command_record():
        code = _run_app(argv, debug)
    sys.exit(code if isinstance(code, int) else 0)


def _run_app(argv: list[str], debug: bool) -> int:
    ClickException, NoArgsIsHelpError, UsageError = (getattr(_click_errors(), n) for n in ("ClickException", "NoArgsIsHelpError", "UsageError"))
    Abort = typer.Abort
    try:
        code = app(args=argv, prog_name="partialnet", standalone_mode=False)
        signals.raise_if_pending()  # a stop that came after the command's last checkpoint (`models` has none) is still a stop
    except NoArgsIsHelpError as exc:
        out.print(exc.format_message(), markup=False, highlight=False)
        code = 0
    except UsageError as exc:
        _usage_error(exc, argv)
        code = 2
    except ClickException as exc:
        err.print(f"error: {exc.format_message()}", markup=False)
        code = exc.exit_code
    except PartialnetError as exc:
        if debug:
            traceback.print_exc()
        _render_failure_details(exc)
        err.print(f"error: {error_line(str(exc))}", markup=False)
        code = exc.exit_code
    except (KeyboardInterrupt, Abort):
        err.print(stopped_line("interrupted (Ctrl-C)"), markup=False)
        code = 130
    except Interrupted as exc:
        err.print(stopped_line(f"stopped by {signal.Signals(exc.signum).name}"), markup=False)
        code = 128 + exc.signum
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if debug:
            traceback.print_exc()
        exhausted = exhausted_line(exc, argv)
        if exhausted:
            err.print(f"error: {error_line(exhausted)}", markup=False)
            return Unavailable.exit_code
        err.print(f"internal error: {type(exc).__name__}: {error_line(str(exc))} (set PARTIALNET_DEBUG=1 for the traceback)", markup=False)
        code = EXIT_INTERNAL
    return code


DISK_FULL = ("ENOSPC", "EDQUOT", "EFBIG")


def exhausted_line(exc: BaseException, argv: list[str] = ()) -> str | None:
    """A machine that ran out of room is "not possible here" (exit 3), not a bug: memory for a model at a size
    the limits allow but this machine cannot hold, or a full disk under standard output (`> /dev/full`), which
    no output check can see in advance. What was already published is named: it stays."""
    import errno

    from partialnet.outputs import published_so_far

    kept = f"; {kept_part('it')}" if published_so_far() else ""
    if isinstance(exc, OSError) and errno.errorcode.get(exc.errno) in DISK_FULL:
        return f"{exc.strerror or 'no space left'} (writing the command's output or its working files){kept}"
    asked = _allocation_refused(exc)
    if isinstance(exc, MemoryError) or asked is not None:
        return (f"out of memory{f' (an allocation of {asked:,} bytes)' if asked else ''}: this machine cannot hold the model at this input size "
                f"and batch; {_smaller(argv)}{kept}")
    return None


def _smaller(argv: list[str]) -> str:
    """What needs less memory, in the flags the command has: `digits` has no --batch, `verify` neither (the
    artifact's size and batch were fixed at its export)."""
    commands = _commands()
    command = next((commands[a] for a in argv if a in commands), None)
    flags = [f for f in ("--imgsz", "--batch") if command is None or any(f in p.opts for p in command.params)]
    return f"a smaller {' or '.join(flags)} needs less" if flags else "run it on a machine with more memory"


def _allocation_refused(exc: BaseException) -> int | None:
    """The size torch's CPU allocator refused, where a machine could plausibly have held it (up to 16x its memory):
    a petabyte asked for is a wrong shape, a bug, not a machine too small. CUDA's own out-of-memory type too."""
    import re

    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch here
        return 0
    found = re.search(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (\d+) bytes", str(exc))
    if not isinstance(exc, RuntimeError) or not found:
        return None
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(found.group(1)) if int(found.group(1)) <= 16 * memory else None


MAX_ERROR_CHARS = 2_000


def error_line(text: str) -> str:
    """One line, of a length a log can hold: a newline in a stranger's key name printed a forged "error:" line
    of its own, and a 100,000-character key a 100 KB line."""
    text = inert(text)
    return text if len(text) <= MAX_ERROR_CHARS else f"{text[:MAX_ERROR_CHARS]}… ({len(text) - MAX_ERROR_CHARS:,} more characters)"


def stopped_line(how: str) -> str:
    """What a stop left: temporaries are always removed; what a command had already published (matrix publishes
    its artifacts before it times them) stays, and is named."""
    from partialnet.outputs import published_so_far

    if not published_so_far():
        return f"error: {how}; temporary files removed, nothing published"
    return f"error: {how}; temporary files removed; {kept_part('the stop')} (a rerun replaces them with --force)"


def kept_part(before: str) -> str:
    """What a command had published before it ended early, named: those files stay."""
    from partialnet.outputs import published_so_far

    published = published_so_far()
    more = f" and {len(published) - 1} more" if len(published) > 1 else ""
    return f"published before {before}, and kept: {published[0]}{more}"


def entry() -> None:
    """The console script: `run`, then leave without tearing the interpreter down.

    Once the last line is printed and every output is published, the interpreter's teardown (module
    finalisers of torch, ONNX Runtime, OpenVINO, ExecuTorch) only makes the user wait: about 1.4 s after
    `export`'s last line, which reports the command's wall time. So the streams are flushed and the
    process ends at once with the command's exit code. `run` itself exits normally (tests call it).
    """
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing left to say
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
