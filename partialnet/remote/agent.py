"""What runs on a target: `python -m partialnet.remote.agent VERB ARGS…`.

`probe` says what this machine is and can run (partialnet's version, the machine fingerprint, every
runtime's availability here), so rows are planned with the target's own answers; `doctor` is `partialnet
doctor`'s report sampled there (is the board fit to time on now). `worker` runs one bench
row exactly as a local row runs (`python -m partialnet.bench.worker` in its own process, threads pinned),
reading the spec as the first line of stdin; when stdin closes (the other side's Ctrl-C, SIGTERM or a
dropped connection) the worker is killed, so nothing keeps running on a board nobody is watching.
`cli` runs a partialnet command (verify), `tool`/`build`/`machine-record` serve engines built where they
run (export --target), `sha256` checks copies. Replies are one JSON line on stdout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

MAX_SPEC_BYTES = 1 << 20


def probe() -> dict:
    import partialnet
    from partialnet.bench.threads import default_threads
    from partialnet.machine import fingerprint
    from partialnet.runtimes.table import RUNTIMES, availability

    table = {name: {device: {p: availability(name, device, p) for p in spec.precisions} for device in spec.devices}
             for name, spec in RUNTIMES.items()}
    return {"partialnet": partialnet.__version__, "machine": fingerprint(), "availability": table, "default_threads": default_threads()}


def doctor() -> dict:
    """This machine's own `doctor` report (load, busiest processes, governor, memory, advice), sampled here."""
    from partialnet.doctor import examine

    return examine()


def _watch_stdin(proc: subprocess.Popen) -> None:
    """End the worker when the controlling side goes away (its stdin reaches EOF)."""
    while sys.stdin.buffer.read(1 << 12):
        pass
    if proc.poll() is None:
        proc.kill()


def worker(threads: str, wait: str, folder: str) -> dict:
    from partialnet.bench.threads import worker_env
    from partialnet.signals import ended

    line = sys.stdin.buffer.readline(MAX_SPEC_BYTES + 1)
    if len(line) > MAX_SPEC_BYTES:
        return {"status": "failed", "reason": "spec too large"}
    work = Path(folder)
    (work / "spec.json").write_bytes(line)
    result = work / "result.json"
    result.unlink(missing_ok=True)  # the last row's: a worker that dies before writing its own must not hand it back
    proc = subprocess.Popen([sys.executable, "-m", "partialnet.bench.worker", str(work / "spec.json"), str(result)],
                            env=worker_env(int(threads), wait), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    threading.Thread(target=_watch_stdin, args=(proc,), daemon=True).start()
    _, err = proc.communicate()
    if not result.exists():
        tail = (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "reason": f"worker {ended(proc.returncode)} on the target: {tail[:200]}"}
    return json.loads(result.read_text())


def cli(*args: str) -> dict:
    """A partialnet command on this machine (verify, export's engine build), ended if the other side goes;
    its exit code, its stdout (the command's --json) and the last line it wrote on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "partialnet", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    threading.Thread(target=_watch_stdin, args=(proc,), daemon=True).start()
    out, err = proc.communicate()
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    return {"code": proc.returncode, "stdout": out.decode("utf-8", "replace")[: 4 << 20], "error": lines[-1][:400] if lines else ""}


def tool(name: str, *dirs: str) -> dict:
    """Where a build tool is on this machine: PATH first, then where its installers put it."""
    import shutil

    found = shutil.which(name) or next((str(Path(d) / name) for d in dirs if os.access(Path(d) / name, os.X_OK)), None)
    return {"path": found}


def build(folder: str, script: str, tool_dir: str) -> dict:
    """Run a build script partialnet prepared (bash, in its folder, the tool's folder on PATH); ended if
    the other side goes. Its exit code and the last lines it printed."""
    env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{tool_dir}"}
    proc = subprocess.Popen(["bash", str(Path(folder) / script)], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    threading.Thread(target=_watch_stdin, args=(proc,), daemon=True).start()
    out, _ = proc.communicate()
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    return {"code": proc.returncode, "tail": [line[:300] for line in lines[-8:]]}


def machine_record(format_name: str) -> dict:
    """What an artifact built here is tied to (its format's own record: TensorRT version, GPU)."""
    from partialnet.errors import PartialnetError
    from partialnet.exporters.formats import exporter_of, get_format

    try:
        return {"record": exporter_of(get_format(format_name)).machine_record()}
    except PartialnetError as exc:
        return {"error": str(exc)[:300]}


def sha256(folder: str) -> dict:
    digests = {}
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            h = hashlib.sha256()
            with open(entry.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digests[entry.name] = h.hexdigest()
    return digests


VERBS = {"probe": probe, "doctor": doctor, "worker": worker, "sha256": sha256, "cli": cli, "tool": tool, "build": build, "machine-record": machine_record}


def main() -> int:
    verb, *args = sys.argv[1:] or ["?"]
    if verb not in VERBS:
        sys.stderr.write(f"partialnet.remote.agent: unknown verb {verb!r}\n")
        return 2
    reply = VERBS[verb](*args)
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # not sys.exit: the stdin watcher thread may still be blocked in a read at shutdown
