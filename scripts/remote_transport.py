"""What `--target` costs: the same bench row timed through a loopback sshd and locally, side by side.

Starts the tests' real OpenSSH server on 127.0.0.1 (tests/sshd.py; needs Debian's openssh-server), then
times, for partialnet_t0 on ONNX Runtime (quick protocol, one worker process per row):
connecting (probe + mktemp -d), the first row of a model (its files copied and checked), later rows
(ssh session, agent start, reply) against the same row run locally, and removing the folder.

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
            host = RemoteHost(ssh.parse_target("ssh://loop"), ssh.SshSettings(config=server.config), sys.executable)
            started = time.perf_counter()
            host.__enter__()
            enter = time.perf_counter() - started
            local, remote = [], []
            for _ in range(args.rows):
                t = time.perf_counter()
                br.run_worker(spec, work, 1, "spin")
                local.append(time.perf_counter() - t)
                t = time.perf_counter()
                host.run_worker(spec, work, 1, "spin")
                remote.append(time.perf_counter() - t)
            t = time.perf_counter()
            host.__exit__(None, None, None)
            leave = time.perf_counter() - t
        finally:
            server.stop()
    later_local, later_remote = statistics.median(local[1:]), statistics.median(remote[1:])
    print(f"partialnet_t0 {args.imgsz}x{args.imgsz}, onnxruntime, quick protocol; {args.rows} rows each way, alternating")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| connect: probe the target, mktemp -d (once per command) | {enter:.2f} |")
    print(f"| first row, its files copied ({sizes / 1e6:.1f} MB) and sha256 checked | {remote[0]:.2f} (same row here: {local[0]:.2f}) |")
    print(f"| later rows, median (ssh session, agent start, reply) | {later_remote:.2f} (same row here: {later_local:.2f}; "
          f"transport {later_remote - later_local:+.2f}) |")
    print(f"| remove the folder (once) | {leave:.2f} |")


if __name__ == "__main__":
    main()
