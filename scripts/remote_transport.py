"""What `--target` costs: the same bench row timed through a loopback sshd and locally, side by side.

Starts the tests' real OpenSSH server on 127.0.0.1 (tests/sshd.py; needs Debian's openssh-server), then
times, for partialnet_t0 on ONNX Runtime (quick protocol, one worker process per row):
connecting (probe + mktemp -d), the first row of a model (its files copied and checked), later rows
(ssh session, agent start, reply) against the same row run locally, and removing the folder: once with an
ssh connection per call, once through the one shared connection a command keeps per target.

Every row, here or there, carries the marks bench gives it (unstable samples, a disturbed machine): a marked
row is named under the table, and `--json` writes them all for scripts/readme_figures.py, which publishes
no block with a marked row.

    python scripts/remote_transport.py [--rows 6] [--imgsz 224] [--json rows.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def _timed_row(run, marks: list, where: str) -> float:
    """One worker row's wall seconds; its marks (judged as bench judges a row) kept in `marks`."""
    from partialnet.bench.stability import judgement

    t = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t
    if result.get("status") != "ok":
        raise SystemExit(f"a row {where} failed: {result.get('reason')}")
    marks.append({"model": "partialnet_t0", "runtime": f"onnxruntime {where}", "batch": 1, "status": "ok",
                  **judgement(result["samples_s"], result.get("machine_load"))})
    return seconds


def _one_way(host, spec, work, rows: int, br, way: str) -> dict:
    """Connect, `rows` rows alternating with the same row here, leave: the seconds of each step, and each row's marks."""
    started = time.perf_counter()
    host.__enter__()
    enter = time.perf_counter() - started
    local, remote, marks = [], [], []
    for _ in range(rows):
        local.append(_timed_row(lambda: br.run_worker(spec, work, 1, "spin"), marks, "here"))
        remote.append(_timed_row(lambda: host.run_worker(spec, work, 1, "spin"), marks, f"on the target ({way})"))
    t = time.perf_counter()
    host.__exit__(None, None, None)
    return {"enter": enter, "local": local, "remote": remote, "leave": time.perf_counter() - t, "marks": marks}


def main() -> None:
    import sshd
    from partialnet.bench import run as br
    from partialnet.bench.protocols import get_protocol
    from partialnet.remote import ssh
    from partialnet.remote.host import RemoteHost

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--json", type=Path, help="Write every row's marks here (as bench's rows: unstable, disturbed, why).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remote-transport-") as tmp:
        server = sshd.start(Path(tmp) / "sshd")
        try:
            plan = br.BenchPlan(sources=["partialnet_t0"], runtimes=["onnxruntime"], device="cpu", batches=[1],
                                imgsz=(args.imgsz, args.imgsz), threads=1, protocol=get_protocol("quick", "cpu"))
            work = Path(tmp) / "work"
            work.mkdir()
            target = br._prepare_targets(plan, work, None, {})[0]
            spec = br._spec(plan, target, "onnxruntime", 1)
            sizes = sum(Path(spec[k]).stat().st_size for k in ("artifact", "reference") if spec.get(k))
            address, settings = ssh.parse_target("ssh://loop"), ssh.SshSettings(config=server.config)
            own = _one_way(RemoteHost(address, settings, sys.executable), spec, work, args.rows, br, "a connection per call")
            with ssh.shared_connections(settings, [address]) as shared:  # what a command does
                one = _one_way(RemoteHost(address, shared, sys.executable), spec, work, args.rows, br, "one shared connection")
        finally:
            server.stop()
    print(f"partialnet_t0 {args.imgsz}x{args.imgsz}, onnxruntime, quick protocol; {args.rows} rows each way, alternating; "
          "each step with one ssh connection per call, then with the one shared connection a command keeps per target")
    print("| step | a connection per call, s | one shared connection, s |")
    print("|---|---|---|")
    print(f"| connect: probe the target, mktemp -d (once per command) | {own['enter']:.2f} | {one['enter']:.2f} |")
    print(f"| first row, its files copied ({sizes / 1e6:.1f} MB) and sha256 checked | {own['remote'][0]:.2f} | {one['remote'][0]:.2f} |")
    for way in (own, one):
        way["later"] = statistics.median(way["remote"][1:]) - statistics.median(way["local"][1:])
    print(f"| later rows: median transport (ssh session, agent start, reply) over the same row here | {own['later']:+.2f} | {one['later']:+.2f} |")
    print(f"| remove the folder (once) | {own['leave']:.2f} | {one['leave']:.2f} |")
    _report_marks(own["marks"] + one["marks"], args.json)


def _report_marks(rows: list[dict], json_path: Path | None) -> None:
    from partialnet.bench.marks import marked_notes
    from partialnet.outputs import write_json

    for note in marked_notes(rows):
        print(note)
    if json_path:
        write_json(json_path, {"rows": rows})


if __name__ == "__main__":
    main()
