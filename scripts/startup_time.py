"""How long the CLI makes a user wait before it does anything: a benchmark, never a test.

Each command runs in a fresh interpreter, several times; the table shows the median wall time and
what the command imported (torch or not). Then the slowest imports of `import partialnet.cli`
(`python -X importtime`), which is what `--help` pays for.

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
LAUNCH = "import sys; from partialnet.cli import run; sys.argv = ['partialnet', *sys.argv[1:]]; run()"


def timed_run(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", LAUNCH, *args], env=env, capture_output=True, timeout=300)
    return time.perf_counter() - started


def slowest_imports(env: dict, top: int = 8) -> list[tuple[str, float]]:
    """Cumulative import time per top-level module of `import partialnet.cli`, slowest first."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import partialnet.cli"], env=env, capture_output=True, text=True)
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
    results = {}
    for name, argv in COMMANDS.items():
        times = [timed_run(argv, env) for _ in range(args.repeat)]
        results[name] = {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}
        print(f"{name:32s} median {results[name]['median_s']:6.2f} s   min {results[name]['min_s']:6.2f} s   ({len(times)} runs)")
    imports = slowest_imports(env)
    print("slowest imports of `import partialnet.cli` (cumulative):")
    for module, seconds in imports:
        print(f"  {module:24s} {seconds * 1e3:8.1f} ms")
    if args.json:
        from partialnet.outputs import write_json

        write_json(args.json, force=args.force, data={"machine": cpu, "tree": args.tree, "commands": results, "imports": imports})


if __name__ == "__main__":
    main()
