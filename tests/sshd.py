"""A real OpenSSH server on 127.0.0.1 for the remote-target tests: Debian's sshd, started by the tests on
a free port with a temporary host key and an authorized client key, as the current user. The "remote"
Python is this checkout's environment, reached through the same ssh client users have.

An ssh config beside it names the ways in: `loop` and `loop2` (the server, its host key known: two
"machines" for the merged-targets case), `loop-noort` (the same, telling a fake Python to break), `loop-slow`
(the same through a ~200 KB/s link), `loop-unknown`
(same server, empty known_hosts), `loop-wrongkey` (a key the server does not authorize) and `closed`
(a port nothing listens on).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    folder: Path
    port: int
    config: Path  # the client's ssh config (-F)
    log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


THROTTLE = """import os, socket, sys, threading, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while data := os.read(0, 16384):
        s.sendall(data)
        time.sleep(len(data) / 200_000)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    os.write(1, data)
"""


def _throttle(folder: Path) -> Path:
    """A ProxyCommand that sends at about 200 KB/s: a slow link, so a copy is still running when a test stops it."""
    script = folder / "throttle.py"
    script.write_text(THROTTLE)
    return script


LISTEN_IPV6 = "ListenAddress [::1]\n"


def has_ipv6() -> bool:
    """Whether this machine has an IPv6 loopback (the server listens there too, for ssh://[::1]:PORT)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def start(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in ("host_key", "client_key", "other_key"):
        _keygen(folder / name)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    log = folder / "sshd.log"
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\n{LISTEN_IPV6 if has_ipv6() else ''}"
        f"HostKey {folder / 'host_key'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\nMaxStartups 50\nMaxSessions 50\n"
        f"SetEnv TMPDIR={folder / 'tmp'}\n"  # the target's temp folder is this server's own: tests see only their folders
        "AcceptEnv PARTIALNET_TEST_*\n"  # what a fake Python there is told to break, per way in (loop-noort)
    )
    (folder / "tmp").mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config"), "-E", str(log)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host_key = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n[::1]:{port} {host_key[0]} {host_key[1]}\n")
    (folder / "known_hosts_empty").write_text("")
    user = getpass.getuser()
    common = f"  HostName 127.0.0.1\n  User {user}\n  IdentitiesOnly yes\n  GlobalKnownHostsFile /dev/null\n"
    (folder / "ssh_config").write_text(
        f"Host loop loop2\n{common}  Port {port}\n  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        f"Host ::1\n  User {user}\n  IdentitiesOnly yes\n  GlobalKnownHostsFile /dev/null\n  IdentityFile {folder / 'client_key'}\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n"  # ssh://[::1]:PORT, an address typed as such
        f"Host loop-slow\n{common}  Port {port}\n  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        f"  ProxyCommand {sys.executable} {_throttle(folder)} %h %p\n"
        f"Host loop-noort\n{common}  Port {port}\n  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        "  SetEnv PARTIALNET_TEST_NOORT=1\n"
        f"Host loop-unknown\n{common}  Port {port}\n  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts_empty'}\n"
        f"Host loop-wrongkey\n{common}  Port {port}\n  IdentityFile {folder / 'other_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        f"Host closed\n{common}  Port {free_port()}\n  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
    )
    server = Server(folder, port, folder / "ssh_config", log, proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited {proc.returncode}: {server.log_text()[-400:]}")
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("sshd did not start listening in 20 s")


HOSTILE = {
    # what a broken or hostile target's Python does when asked to run a row (the probe answers truthfully)
    "garbage": 'echo "Segmentation fault? {not json"; exit 0',
    "huge": "head -c 100000000 /dev/zero | tr '\\0' x; exit 0",
    "drop": 'kill -9 "$PPID"; sleep 5',  # the sshd session process: the connection drops mid-row
    "old": None,  # the probe reports another partialnet version
    "bare": None,  # a Python without partialnet (its site-packages off)
}


def fake_python(folder: Path, mode: str, real: str) -> Path:
    """A "Python" on the target that runs partialnet's agent for everything but what `mode` breaks."""
    script = folder / f"python-{mode}"
    if mode == "bare":
        body = f'exec "{real}" -S "$@"\n'
    elif mode == "oom":  # every row's bench worker after the first is killed (as an OOM killer would) before it writes its result
        body = (f'if [ "$3" = worker ]; then n=$(cat "{folder}/rows" 2>/dev/null || echo 0); echo $((n + 1)) > "{folder}/rows"\n'
                f'  [ "$n" -ge 1 ] && ( while ! pid=$(pgrep -f "partialnet.bench.worker $6/spec.json"); do sleep 0.05; done; kill -9 $pid ) &\n'
                f'fi\nexec "{real}" "$@"\n')
    elif mode == "noort":  # reached as loop-noort, the probe says onnxruntime is not installed there
        edit = ('import json, sys; d = json.loads(sys.stdin.read()); '
                'd["availability"]["onnxruntime"] = {dev: {p: "not installed" for p in row} for dev, row in d["availability"]["onnxruntime"].items()}; '
                'print(json.dumps(d))')
        body = (f'if [ -n "$PARTIALNET_TEST_NOORT" ] && [ "$3" = probe ]; then "{real}" "$@" | "{real}" -c \'{edit}\'; exit 0; fi\n'
                f'exec "{real}" "$@"\n')
    elif mode == "flood_probe":  # the probe floods stderr (a broken site-packages printing warnings forever)
        body = f'if [ "$3" = probe ]; then head -c 100000000 /dev/zero | tr "\\0" x >&2; exit 1; fi\nexec "{real}" "$@"\n'
    elif mode == "odd_probe":  # another build of the same version: its probe's availability is of another shape
        edit = 'import json, sys; d = json.loads(sys.stdin.read()); d["availability"] = {"onnxruntime": {"cpu": "yes"}}; print(json.dumps(d))'
        body = f'if [ "$3" = probe ]; then "{real}" "$@" | "{real}" -c \'{edit}\'; exit 0; fi\nexec "{real}" "$@"\n'
    elif mode == "old":
        body = (f'if [ "$3" = probe ]; then "{real}" "$@" | sed \'s/"partialnet": "[^"]*"/"partialnet": "0.0.1"/\'; exit 0; fi\n'
                f'exec "{real}" "$@"\n')
    else:
        body = f'if [ "$3" = worker ]; then cat >/dev/null & {HOSTILE[mode]}; fi\nexec "{real}" "$@"\n'
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script
