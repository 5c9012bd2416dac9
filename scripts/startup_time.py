"""How long the CLI makes a user wait before it does anything: a benchmark, never a test.

Each command runs in a fresh interpreter, several times, the commands taken in turn (so a noisy
neighbour hits them alike); the table shows the median wall time beside `import torch` alone (the
floor: `partialnet models` must stay within 2x of it) and, for `export`, how long the process took to
exit after printing its last line (the wall time it reports). Then the slowest imports of
`import partialnet.cli` (`python -X importtime`), which is what `--help` pays for.

    python scripts/startup_time.py [--repeat 5] [--tree DIR] [--json out.json [--force]]

`--tree DIR` runs another checkout of partialnet (e.g. a `git worktree` of an older commit) with
the same interpreter, so a before/after pair is measured on one machine in one sitting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "partialnet --help": ["--help"],
    "usage error (unknown option)": ["export", "x", "--formt", "onnx"],
    "bad input (--device tpu)": ["bench", "--device", "tpu"],
    "partialnet formats": ["formats"],
    "partialnet models": ["models"],
}
LAUNCH = "import sys; from partialnet import cli; sys.argv = ['partialnet', *sys.argv[1:]]; getattr(cli, 'entry', cli.run)()"  # run: trees before main existed


TORCH_FLOOR = "import torch (the floor)"
EXPORT = ["export", "partialnet_t0", "--imgsz", "64", "--samples", "1", "--force"]


def timed_run(args: list[str], env: dict, cwd: str) -> float:
    """One run from a neutral folder: `python -c` puts the working directory first on sys.path, so run from
    a checkout it would import that checkout whatever --tree says."""
    started = time.perf_counter()
    code = ["-c", "import torch"] if args == [TORCH_FLOOR] else ["-c", LAUNCH, *args]
    subprocess.run([sys.executable, *code], env=env, capture_output=True, timeout=300, cwd=cwd)
    return time.perf_counter() - started


def exit_after_last_line(env: dict, folder: str) -> float:
    """Seconds between `export`'s last printed line (its wall time) and the process's end."""
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *EXPORT, "-o", os.path.join(folder, "t0.onnx")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=folder)
    last = time.perf_counter()
    for _ in proc.stdout:
        last = time.perf_counter()
    proc.wait(timeout=300)
    return time.perf_counter() - last


def slowest_imports(env: dict, top: int = 8) -> list[tuple[str, float]]:
    """Cumulative import time per top-level module of `import partialnet.cli`, slowest first."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import partialnet.cli"], env=env, capture_output=True, text=True, cwd="/")
    rows = []
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[1].isdigit() and not parts[2].startswith(" ") and "." not in parts[2].strip():
            rows.append((parts[2].strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", help="another partialnet checkout to time instead of the installed one")
    parser.add_argument("--json", help="also write the figures here (refuses to overwrite)")
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    args = parser.parse_args()
    if args.json:  # refused before the timing, not after
        from partialnet.errors import BadInput
        from partialnet.outputs import check_outputs

        try:
            check_outputs([args.json], force=args.force)
        except BadInput as exc:
            parser.exit(2, f"startup_time.py: error: {exc}\n")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if args.tree:
        env["PYTHONPATH"] = os.path.abspath(args.tree) + os.pathsep + env.get("PYTHONPATH", "")
    from partialnet.machine import cpu_info

    cpu = cpu_info()
    print(f"machine: {cpu['model']} ({cpu['logical_cores']} cores; {' '.join(cpu['flags'])}); tree: {args.tree or 'installed'}")
    import tempfile

    commands = {TORCH_FLOOR: [TORCH_FLOOR], **COMMANDS}
    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as neutral:
        for _ in range(args.repeat):
            for name, argv in commands.items():
                times[name].append(timed_run(argv, env, neutral))
    results = {name: {"median_s": statistics.median(t), "min_s": min(t), "runs": len(t)} for name, t in times.items()}
    for name, row in results.items():
        print(f"{name:32s} median {row['median_s']:6.2f} s   min {row['min_s']:6.2f} s   ({row['runs']} runs)")
    ratio = results["partialnet models"]["median_s"] / results[TORCH_FLOOR]["median_s"]
    print(f"partialnet models / import torch: {ratio:.2f}x (medians, same runs)")
    with tempfile.TemporaryDirectory() as folder:
        tails = [exit_after_last_line(env, folder) for _ in range(args.repeat)]
    results["export: exit after its last line"] = {"median_s": statistics.median(tails), "max_s": max(tails), "runs": len(tails)}
    print(f"export: exit after its last line  median {statistics.median(tails):6.2f} s   max {max(tails):6.2f} s   ({len(tails)} runs)")
    imports = slowest_imports(env)
    print("slowest imports of `import partialnet.cli` (cumulative):")
    for module, seconds in imports:
        print(f"  {module:24s} {seconds * 1e3:8.1f} ms")
    if args.json:
        from partialnet.outputs import write_json

        write_json(args.json, force=args.force, data={"machine": cpu, "tree": args.tree, "commands": results, "imports": imports})


if __name__ == "__main__":
    main()
