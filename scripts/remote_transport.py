"""What `--target` costs: the same bench row timed through a loopback sshd and locally, side by side.

Starts the tests' real OpenSSH server on 127.0.0.1 (tests/sshd.py; needs Debian's openssh-server), then
times, for partialnet_t0 on ONNX Runtime (quick protocol, one worker process per row):
connecting (probe + mktemp -d), the first row of a model (its files copied and checked), later rows
(ssh session, agent start, reply) against the same row run locally, and removing the folder: once with an
ssh connection per call, once through the one shared connection a command keeps per target.

    python scripts/remote_transport.py [--rows 6] [--imgsz 224]
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


def _one_way(host, spec, work, rows: int, br) -> dict:
    """Connect, `rows` rows alternating with the same row here, leave: the seconds of each step."""
    started = time.perf_counter()
    host.__enter__()
    enter = time.perf_counter() - started
    local, remote = [], []
    for _ in range(rows):
        t = time.perf_counter()
        br.run_worker(spec, work, 1, "spin")
        local.append(time.perf_counter() - t)
        t = time.perf_counter()
        host.run_worker(spec, work, 1, "spin")
        remote.append(time.perf_counter() - t)
    t = time.perf_counter()
    host.__exit__(None, None, None)
    return {"enter": enter, "local": local, "remote": remote, "leave": time.perf_counter() - t}


def main() -> None:
    import sshd
    from partialnet.bench import run as br
    from partialnet.bench.protocols import get_protocol
    from partialnet.remote import ssh
    from partialnet.remote.host import RemoteHost

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--imgsz", type=int, default=224)
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
            own = _one_way(RemoteHost(address, settings, sys.executable), spec, work, args.rows, br)
            with ssh.shared_connections(settings, [address]) as shared:  # what a command does
                one = _one_way(RemoteHost(address, shared, sys.executable), spec, work, args.rows, br)
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


if __name__ == "__main__":
    main()
