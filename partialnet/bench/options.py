"""What `partialnet bench` is asked to measure: one typed options object, its fields' flags the CLI's.

`check` refuses unsound combinations before anything heavy is imported; `plan` turns the options and
the sources into the BenchPlan the runner executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from partialnet.errors import BadInput, shown
from partialnet.limits import list_items, parse_imgsz, whole_number
from partialnet.options import choices, option, settle

if TYPE_CHECKING:
    from partialnet.bench.run import BenchPlan

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEVICES = ("cpu", "cuda")
WAITS = ("spin", "passive", "runtime")  # how pool threads wait (bench.threads sets each runtime's)
DEFAULT_SOURCE = "partialnet_t0"
DEFAULT_IMGSZ = (224, 224)


def split_list(values: list[str] | None, flag: str = "--runtime") -> list[str]:
    """`--runtime a,b --runtime c` -> [a, b, c]; `--runtime ''` is refused, never read as "every runtime"."""
    names = list_items(",".join(values or []), flag)
    if values and not names:
        raise BadInput(f"{flag} {','.join(values)!r}: an empty list; name at least one (or leave {flag} out for the default)")
    return names


def batch_text(value: str | int | list[int]) -> str:
    """A Python caller's batch=32 or [1, 32] as the flag's text ("1,32"), checked with it by parse_batches."""
    sizes = [value] if whole_number(value) else value
    if isinstance(sizes, (list, tuple)) and sizes and all(whole_number(v) and abs(v) < 10**9 for v in sizes):
        return ",".join(str(int(v)) for v in sizes)
    if not isinstance(value, str):
        raise BadInput(f"--batch {shown(value)}: expected batch sizes such as 32, [1, 32] or '1,32'")
    return value


def parse_batches(value: str | None) -> list[int] | None:
    if value is None:
        return None
    parts = split_list([value], "--batch")
    if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 6 and int(p) > 0 for p in parts):
        raise BadInput(f"--batch {value!r}: expected positive integers such as 1,32")
    from partialnet.limits import check_once

    return check_once([int(p) for p in parts], "--batch", value)


@dataclass
class BenchOptions:
    device: str = option("cpu", "--device", "cpu or cuda.", parse=choices(DEVICES, "--device"))
    runtime: list[str] | None = option(None, "--runtime", "Runtimes (repeat or comma-separate); default: all but the mobile ones "
                                       "(executorch, litert), with the runtime of each artifact given.", cli_type=Optional[list[str]])
    batch: str | None = option(None, "--batch", "Batch sizes, e.g. 1,32 (default: the protocol's, else 1).", cli_type=Optional[str],
                               parse=batch_text)
    imgsz: tuple[int, int] | None = option(None, "--imgsz", "Input size: 224, or H W (also H,W); multiples of 32, >= 64 (default: "
                                           "224; a given artifact runs at its own).", cli_type=Optional[str], parse=parse_imgsz, show_default=False)
    threads: int | None = option(None, "--threads", "Threads per runtime (default: all cores; paper: 1).", cli_type=Optional[int], min=1)
    protocol: str = option("latency", "--protocol", "latency, throughput, paper or quick.")
    precision: str = option("fp32", "--precision", "fp32 (pinned, default), bf16, fp16 or int8 (needs --data) where a runtime supports it.",
                            parse=choices(PRECISIONS, "--precision"))
    data: str | None = option(None, "--data", "--precision int8: calibration data, 'digits' or a folder of images.", cli_type=Optional[str])
    calib_size: int = option(300, "--calib-size", "--precision int8: calibration images.", min=1)
    weights: str | None = option(None, "--weights", "Which model copy of a checkpoint holding several (e.g. state_dict_ema); default: "
                                 "the one the note names.", cli_type=Optional[str])
    channels_last: bool = option(False, "--channels-last", "PyTorch: channels_last memory format.")
    compile: bool = option(False, "--compile", "PyTorch: torch.compile the deploy model.")
    cuda_graphs: bool = option(False, "--cuda-graphs", "PyTorch on --device cuda: capture the forward once as a CUDA graph and replay it.")
    ab: tuple[str, str] | None = option(None, "--ab", "A B: alternate two models in one run and report B/A.", cli_type=Optional[tuple[str, str]])
    block: int = option(10, "--block", "--ab: iterations per alternating block.", min=1)
    max_slowdown: float | None = option(None, "--max-slowdown", "--ab: a gate: exit 1 when B is significantly slower than A by more "
                                        "than this fraction (0.10 = 10 %), or too noisy to tell (compare's rules, in one run).",
                                        cli_type=Optional[float])
    alpha: float = option(0.01, "--alpha", "--ab --max-slowdown: significance level of the one-sided rank test (default 0.01).",
                          cli_type=Optional[float], show_default=False)
    wait: str | None = option(None, "--wait", "How pool threads wait between parallel regions: spin (default on the CPU: no collapse "
                              "when another process holds a core), passive (sleep; default with --device cuda, where they only "
                              "wait), runtime (each runtime's own default).", cli_type=Optional[str],
                              parse=choices(WAITS, "--wait"))
    aa: bool = option(False, "--aa", "An A/A control: each runtime's first model timed against itself in random alternating blocks; "
                      "the ratio and its interval show the run's resolution.")
    label: str | None = option(None, "--label", "Row name for a single model (so compare can match base.pth with new.pth).",
                               cli_type=Optional[str])
    streams: str | None = option(None, "--streams", "N or auto: keep N requests in flight (OpenVINO async requests, ONNX Runtime "
                                 "parallel sessions) and report images/s as a server gets it.", cli_type=Optional[str])
    given: frozenset[str] | None = field(default=None, repr=False, compare=False)  # the flags typed (None: those off their defaults)

    def __post_init__(self) -> None:
        settle(self)  # a Python caller's imgsz=64, runtime="onnxruntime" as the flags take them; a wrong type is bad input

    def asked(self) -> set[str]:
        """The options the user asked for: typed on the command line, or set off their defaults in Python."""
        from partialnet.options import defaults_of, flags_of

        if self.given is not None:
            return set(self.given)
        defaults = defaults_of(BenchOptions)
        return {name for name in flags_of(BenchOptions) if getattr(self, name) != defaults[name]}

    def check(self, sources: list[str] | None) -> None:
        """Every rule between the options, before torch or a runtime is imported."""
        from partialnet.bench.protocols import get_protocol
        from partialnet.bench.streams import parse_streams
        from partialnet.limits import MAX_THREADS, check_count, check_input_shape

        if self.aa and self.streams:
            raise BadInput("--aa alternates one request at a time; --streams measures many in flight: use one or the other")
        if self.ab and self.streams:
            raise BadInput("--ab alternates one request at a time; --streams measures many in flight: use one or the other")
        if self.cuda_graphs and self.device != "cuda":
            raise BadInput("--cuda-graphs needs --device cuda (CUDA graphs replay GPU work)")
        if self.cuda_graphs and self.compile:
            raise BadInput("--cuda-graphs and --compile exclude each other (torch.compile brings its own graphs: pick one)")
        for b in self.batches():
            check_input_shape(b, *self.size(), "--batch/--imgsz")
        if self.threads is not None:
            check_count(self.threads, "--threads", MAX_THREADS)
        parse_streams(self.streams)
        get_protocol(self.protocol, self.device)
        if self.ab and sources:
            raise BadInput("--ab A B names the two models; give no other sources with it")
        if self.label is not None:
            self._check_label()
        if self.label and self.ab:
            raise BadInput("--label names the one model of a run; an A/B's rows are named by its two sides (A and B)")
        if self.label and len(sources or [DEFAULT_SOURCE]) != 1:
            raise BadInput("--label names one model; give exactly one source with it")
        self._check_applies()
        self._check_runtimes_can_run(sources)
        from partialnet.sources import check_sources

        check_sources(list(self.ab or sources or [DEFAULT_SOURCE]), pair=bool(self.ab))

    def _check_label(self) -> None:
        """A row's name lands in results that other tools print and match on: a newline there forged a line of the table."""
        from partialnet.inputs import inert

        if not self.label.strip():
            raise BadInput("--label '': an empty row name; give a name, or leave --label out to name the row by its model")
        found = sorted({ascii(c)[1:-1] for c in self.label if inert(c) != c})  # controls, bidi overrides, lone surrogates
        if found:
            raise BadInput(f"--label {ascii(self.label)}: the name holds control characters ({' '.join(found)}); give a plain name")

    def _check_ab_shape(self, asked: set) -> None:
        """An A/B alternates one batch size, in blocks its protocol can repeat: a second batch size was dropped, and
        `--block 10` under the quick protocol (10 iterations a side) was cut to 2, both without a word."""
        from partialnet.bench.protocols import PROTOCOLS, get_protocol
        from partialnet.bench.run import effective_block

        batches = self.batches()
        if len(batches) > 1:
            raise BadInput(f"--ab compares A and B at one batch size; --batch {self.batch} names {len(batches)}: run one --ab per batch")
        protocol = get_protocol(self.protocol, self.device)
        fits = effective_block(protocol, self.block)
        if "block" in asked and fits != self.block:
            longer = sorted((p.min_iters, p.name) for p in PROTOCOLS.values() if effective_block(p, self.block) == self.block)
            other = f", or --protocol {longer[0][1]} ({longer[0][0]} iterations a side)" if longer else ""
            raise BadInput(f"--block {self.block} with --protocol {protocol.name}: its {protocol.min_iters} iterations a side would alternate "
                           f"fewer than 5 times; give --block {fits} or less{other}")

    def _check_applies(self) -> None:
        """An option that would change nothing in this run is refused, never silently dropped."""
        asked = self.asked()
        if "block" in asked and not self.ab:
            raise BadInput("--block is the A/B block size: it applies with --ab only")
        if self.ab:
            self._check_ab_shape(asked)
        if self.max_slowdown is not None and not self.ab:
            raise BadInput("--max-slowdown gates an A/B run (--ab A B); to gate two separate runs, use partialnet compare")
        if "alpha" in asked and self.max_slowdown is None:
            raise BadInput("--alpha is the A/B gate's significance level: it applies with --max-slowdown only")
        if self.max_slowdown is not None:
            from partialnet.bench.compare import check_gate

            check_gate(self.alpha, self.max_slowdown)
        if "calib_size" in asked and self.precision != "int8":
            raise BadInput("--calib-size is the number of calibration images for --precision int8")
        from partialnet.runtimes.table import RUNTIMES

        runtimes = split_list(self.runtime)
        runs_the_model = [r for r in runtimes if r not in RUNTIMES or RUNTIMES[r].runs == "deploy"]  # unknown names: refused later
        for flag, on in (("--channels-last", self.channels_last), ("--compile", self.compile), ("--cuda-graphs", self.cuda_graphs)):
            if on and runtimes and not runs_the_model:
                raise BadInput(f"{flag} changes how the PyTorch model runs; --runtime {','.join(runtimes)} times no PyTorch row")
        takers = [r.name for r in RUNTIMES.values() if r.streams]
        if self.streams and runtimes and all(r in RUNTIMES for r in runtimes) and not set(runtimes) & set(takers):
            raise BadInput(f"--streams (requests in flight, asynchronously) is a mode of {', '.join(takers)}; "
                           f"--runtime {','.join(runtimes)} has no multi-stream mode")

    def _check_runtimes_can_run(self, sources: list[str] | None) -> None:
        """Exit 2 where no runtime asked for could run any source given on this device on any machine (`--precision
        int8 --runtime pytorch`, `model.onnx --runtime pytorch`): a usage error, refused before a file is read; what
        this machine lacks stays exit 3. A given artifact runs at its own precision, so options that would set one
        are refused where every source is an artifact (they were recorded in the result, and nothing used them)."""
        from partialnet.sources import artifact_format

        formats = [artifact_format(s) for s in self.ab or sources or [DEFAULT_SOURCE]]
        if all(formats):
            self._refuse_building_options()
        self._refuse_weights_without_a_file(list(self.ab or sources or [DEFAULT_SOURCE]))
        from partialnet.exporters.formats import FORMATS

        # an A/B's runtime must run both sides; a plain run's, any one source
        reasons = {(runtime, fmt): self._never_runs(runtime, [fmt] if not self.ab else formats)
                   for runtime in self.runtimes(sources) for fmt in dict.fromkeys(formats)}
        if all(reasons.values()):  # named by the runtimes asked for, or (none asked) by each artifact's own runtime
            said = [f"{runtime}: {why}" for (runtime, fmt), why in reasons.items() if self.runtime or fmt is None or FORMATS[fmt].runtime == runtime]
            raise BadInput(f"no runtime asked for runs the sources given on {self.device}, on any machine "
                           f"({'; '.join(dict.fromkeys(said or (f'{r}: {why}' for (r, _), why in reasons.items())))})")
        self._refuse_streams_nothing_keeps(reasons)
        never = {runtime: why for (runtime, _), why in reasons.items() if why}
        if self.ab and self.max_slowdown is not None and never:  # its skipped cell failed the gate on every run
            runtime, why = next(iter(never.items()))
            raise BadInput(f"--max-slowdown gates every runtime of the A/B, and {runtime} cannot run both sides on any machine ({why}): "
                           "leave it out of --runtime")

    def _refuse_streams_nothing_keeps(self, reasons: dict) -> None:
        """--streams where every runtime that would run a source has no multi-stream mode (`bench model.pte
        --streams 2`: only ExecuTorch runs it): no row would keep requests in flight, on any machine."""
        from partialnet.runtimes.table import RUNTIMES

        running = list(dict.fromkeys(runtime for (runtime, _), why in reasons.items() if why is None))
        takers = [r.name for r in RUNTIMES.values() if r.streams]
        if self.streams and running and not set(running) & set(takers):
            which = "which has no multi-stream mode" if len(running) == 1 else "none of which has a multi-stream mode"
            raise BadInput(f"--streams (requests in flight, asynchronously) is a mode of {', '.join(takers)}; "
                           f"the sources given run in {', '.join(running)} only, {which}")

    def _refuse_weights_without_a_file(self, sources: list[str]) -> None:
        """--weights picks a copy inside checkpoint files: with none among the sources (artifacts, variant names)
        it would pick nothing, and the result would still name it."""
        from partialnet.limits import check_name
        from partialnet.sources import artifact_format, is_variant_name

        if self.weights is None:
            return
        check_name(self.weights, "weights")
        if all(artifact_format(s) or is_variant_name(s) for s in sources):
            raise BadInput(f"--weights {ascii(self.weights)[1:-1][:60]} picks one of the model copies in a checkpoint file; no source "
                           "given is one (artifacts and variant names hold one model)")

    def _never_runs(self, runtime: str, formats: list[str | None]) -> str | None:
        """Why `runtime` runs not every one of these sources (artifact formats, None a checkpoint) on any machine."""
        from partialnet.runtimes.table import never_runs_source

        return next((why for fmt in formats if (why := never_runs_source(runtime, self.device, self.precision, fmt))), None)

    def _refuse_building_options(self) -> None:
        """Every source is an artifact: what would build one is refused (it was recorded in the result, never used).
        --precision stays where a runtime computes it from an fp32 file (OpenVINO's bf16), and at fp32, the
        computation an fp32 file runs as (OpenVINO's runner pins it, where OpenVINO alone would pick bf16)."""
        from partialnet.runtimes.table import RUNTIMES

        asked = self.asked()
        computed = {p for spec in RUNTIMES.values() for p, _ in spec.computes}
        if "precision" in asked and self.precision not in computed | {"fp32"}:
            raise BadInput(f"--precision {self.precision} builds checkpoints and variant names at that precision; every source given is an "
                           f"artifact, which runs at its own (its file says which; an fp32 file runs as {', '.join(sorted(computed))} on request)")
        for name, flag in (("data", "--data"), ("calib_size", "--calib-size")):
            if name in asked:
                raise BadInput(f"{flag} calibrates INT8 artifacts built from checkpoints; every source given is an artifact already")

    def runtimes(self, sources: list[str] | None = None) -> list[str]:
        """The runtimes asked for, every name known; else the default set (an A/B's default runtime) with the runtime
        of each artifact given: `bench model.pte` runs it in ExecuTorch, which the default set leaves out only for
        the cost of exporting to it."""
        from partialnet.exporters.formats import FORMATS
        from partialnet.runtimes.table import AB_DEFAULT, RUNTIMES, resolve_runtimes
        from partialnet.sources import artifact_format

        if split_list(self.runtime):
            return resolve_runtimes(split_list(self.runtime))
        formats = list(dict.fromkeys(artifact_format(s) for s in self.ab or sources or []))
        theirs = [FORMATS[f].runtime for f in formats if f]
        if self.ab and theirs:  # one runtime times both sides: one that runs both where there is one (.onnx beside .xml: OpenVINO)
            both = [r for r in dict.fromkeys([*theirs, *RUNTIMES]) if self._never_runs(r, formats) is None]
            return both[:1] or theirs
        return list(dict.fromkeys([*([AB_DEFAULT] if self.ab else resolve_runtimes(None)), *theirs]))

    def size(self) -> tuple[int, int]:
        return self.imgsz or DEFAULT_IMGSZ

    def batches(self) -> list[int]:
        from partialnet.bench.protocols import get_protocol

        return parse_batches(self.batch) or list(get_protocol(self.protocol, self.device).batches or (1,))

    def plan(self, sources: list[str] | None) -> "BenchPlan":
        """The run these options describe (checked first); INT8 calibration data is checked here too."""
        from partialnet.bench import run as bench_run
        from partialnet.bench.protocols import get_protocol
        from partialnet.bench.streams import parse_streams
        from partialnet.bench.threads import default_threads

        self.check(sources)
        proto = get_protocol(self.protocol, self.device)
        plan = bench_run.BenchPlan(
            sources=list(sources or [DEFAULT_SOURCE]),
            runtimes=self.runtimes(sources),
            device=self.device, batches=self.batches(), imgsz=self.size(), threads=self.threads or proto.threads or default_threads(),
            protocol=proto, precision=self.precision, channels_last=self.channels_last, compile=self.compile,
            cuda_graphs=self.cuda_graphs, streams=parse_streams(self.streams), label=self.label, control=self.aa, wait=self.wait,
        )
        if isinstance(plan.streams, int) and plan.streams > plan.threads:
            raise BadInput(f"--streams {plan.streams} with {plan.threads} thread(s): each request in flight needs a thread of its own; "
                           "raise --threads or lower --streams")
        self._check_calibration([*plan.sources, *(self.ab or ())])
        bench_run.fit_to_artifacts(plan, [*(self.ab or plan.sources)], imgsz_given=self.imgsz is not None, batches_given=self.batch is not None,
                                   pair=bool(self.ab))
        plan.data, plan.calib_size, plan.weights = self.data, self.calib_size, self.weights
        bench_run.check_copies(plan, [*plan.sources, *(self.ab or ())])
        return plan

    def _check_calibration(self, sources: list[str]) -> None:
        from partialnet.sources import artifact_format

        builds_here = [s for s in sources if not artifact_format(s)]
        if self.precision == "int8" and builds_here and not self.data:
            raise BadInput("--precision int8 builds INT8 artifacts and needs calibration data: --data digits or --data DIR")
        if self.data and self.precision != "int8":
            raise BadInput("--data is calibration data for --precision int8")
        if self.data:
            from partialnet.calibration import check_data

            check_data(self.data, self.calib_size)
