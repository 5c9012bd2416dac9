"""What one busy neighbour does to each runtime, by thread count and wait policy: a benchmark, never a test.

Runs `partialnet bench partialnet_t0` for every configuration twice, on a quiet machine and while a busy
loop (`python -c "while True: pass"`) holds one core, the two taken in turn, and prints each row's p50,
CoV and marks with the loaded/quiet ratio. This is the measurement behind the default thread count and
wait policy (partialnet.bench.threads) and the disturbed/unstable limits (docs/benchmarking.md).

    python scripts/busy_neighbour.py [--runtimes pytorch,onnxruntime,openvino] [--protocol quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {  # name -> extra bench arguments
    "threads=all, runtime": ["--wait", "runtime"],  # each runtime's own wait policy: what partialnet did before
    "threads=all, spin": ["--wait", "spin"],
    "threads=all, passive": ["--wait", "passive"],
    "threads=1, spin": ["--threads", "1", "--wait", "spin"],
}
CLI = "import sys; from partialnet.console_script import main; sys.argv = ['partialnet', *sys.argv[1:]]; main()"


def bench(args: list[str], out: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", CLI, "bench", "partialnet_t0", *args, "--json", str(out), "--force"],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return json.loads(out.read_text())["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default="pytorch,onnxruntime,openvino")
    parser.add_argument("--protocol", default="quick")
    parser.add_argument("--imgsz", default="224")
    parser.add_argument("--json", help="also write every row here")
    args = parser.parse_args()
    from partialnet.machine import cpu_info

    cpu = cpu_info()
    print(f"machine: {cpu['model']} ({cpu['usable_cores']} usable cores; {' '.join(cpu['flags'])}); protocol {args.protocol}, {args.imgsz}px")
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in CONFIGS.items():
            common = ["--runtime", args.runtimes, "--protocol", args.protocol, "--imgsz", args.imgsz, *extra]
            quiet = bench(common, Path(tmp) / "quiet.json")
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                loaded = bench(common, Path(tmp) / "loaded.json")
            finally:
                busy.kill()
                busy.wait()
            for q, lo in zip(quiet, loaded):
                if q["status"] != "ok" or lo["status"] != "ok":
                    continue
                table.append({"config": name, "runtime": q["runtime"], "threads": q["threads"], "quiet": q, "loaded": lo,
                              "ratio": lo["stats"]["p50_ms"] / q["stats"]["p50_ms"]})
    print(f"{'config':22s} {'runtime':12s} thr  {'quiet p50':>10s} {'CoV':>5s} {'loaded p50':>11s} {'CoV':>5s} {'loaded/quiet':>12s}  marks (quiet | loaded)")
    for r in table:
        q, lo = r["quiet"], r["loaded"]
        marks = f"{q.get('why') or '-'} | {lo.get('why') or '-'}"
        print(f"{r['config']:22s} {r['runtime']:12s} {r['threads']:3d}  {q['stats']['p50_ms']:10.3f} {q['stats']['cov']:5.2f} "
              f"{lo['stats']['p50_ms']:11.3f} {lo['stats']['cov']:5.2f} {r['ratio']:11.2f}x  {marks}")
    if args.json:
        from partialnet.outputs import write_json

        write_json(args.json, force=False, data={"machine": cpu, "rows": table})


if __name__ == "__main__":
    main()
