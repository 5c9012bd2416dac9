"""The transport: the system OpenSSH client (`ssh`, `scp`), so users' ~/.ssh/config, agents and jump
hosts apply as they already set them up.

Every remote command is an argv list joined with `shlex.quote`: nothing a user or a file name says is
ever read by the remote shell as syntax. BatchMode means a missing key fails instead of prompting;
host keys are verified (an unknown host is refused unless the user asked to accept new keys); what the
target sends back is bounded in size and treated as data. One command opens one connection per target and
runs its every step through it (OpenSSH's ControlMaster): a handshake costs a board's CPU a second or more,
and a bench opens a dozen channels.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from partialnet.errors import BadInput, Unavailable

CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 5  # a dropped connection is noticed after ALIVE_INTERVAL_S * ALIVE_COUNT seconds
ALIVE_COUNT = 3
MAX_REPLY_BYTES = 8 << 20  # a bench result with its raw samples is well under 1 MiB
CONTROL_PERSIST_S = 30  # a shared connection left idle this long closes itself: all that outlives a killed command
# a control socket's path: the folder, "/", its name and the ".XXXXXXXXXXXXXXXX" ssh binds before renaming, within
# sockaddr_un's 104 bytes (macOS; Linux has 108) or ssh refuses to connect at all
_SOCKET_NAME = 20
_SOCKET_TAIL = 1 + _SOCKET_NAME + 17
_SUN_PATH = 104
_TEMP_PREFIX = "pn-ssh."
_TEMP_NAME = len(_TEMP_PREFIX) + 8  # a TemporaryDirectory's name: the prefix and 8 random letters, digits or _
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]+")  # ssh splits an -o value at spaces and expands % in ControlPath
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Address:
    """`ssh://[USER@]HOST[:PORT]`; HOST may be an alias of the user's ssh config."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user + '@' if self.user else ''}{host}{':' + str(self.port) if self.port else ''}"

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_target(text: str) -> Address:
    """One --target value; refused (exit 2) unless it is exactly the documented form."""
    if not text.startswith("ssh://"):
        raise BadInput(f"--target {text!r}: expected ssh://[USER@]HOST[:PORT]")
    rest = text[len("ssh://") :]
    at, user, hostport = "@" in rest, *rest.rpartition("@")[::2]
    if hostport.startswith("["):  # an IPv6 address, bracketed as in URLs: ssh://[fe80::1]:22
        host, closed, port = hostport[1:].partition("]")
        if not closed or not _is_ipv6(host) or (port and not port.startswith(":")):
            raise BadInput(f"--target {text!r}: {hostport!r} is not a bracketed IPv6 address [ADDR] or [ADDR]:PORT")
        port, colon = port[1:], bool(port)
    else:
        host, colon, port = hostport.partition(":")
        if not _HOST.fullmatch(host):
            raise BadInput(f"--target {text!r}: host {host!r} is not a host name, address or ssh config alias")
    if at and not _USER.fullmatch(user):
        raise BadInput(f"--target {text!r}: user {user!r} is not a plain user name")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise BadInput(f"--target {text!r}: port {port!r} is not 1-65535")
    return Address(host=host, user=user or None, port=int(port) if port else None)


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text  # a zone index (%eth0) is refused: a link-local hop is for the ssh config, not a --target


def parse_targets(values: list[str] | None) -> list[Address]:
    """`--target a --target b,c` -> addresses, each once. An empty one is refused, not read as "here": a CI
    job whose `--target "$BOARD"` lost its variable must not time the CI runner and pass."""
    items = [v.strip() for value in values or [] for v in value.split(",")]
    if "" in items:
        raise BadInput(f"--target {ascii(','.join(values or []))[:80]}: an empty target; expected ssh://[USER@]HOST[:PORT] (is a variable unset?)")
    return list(dict.fromkeys(parse_target(v) for v in items))


@dataclass(frozen=True)
class SshSettings:
    config: Path | None = None  # --ssh-config: passed as -F
    accept_new_host_key: bool = False  # --accept-new-host-key: StrictHostKeyChecking=accept-new
    control_dir: Path | None = None  # the command's private folder of shared connections (None: a connection per call)

    def options(self, address: Address, port_flag: str) -> list[str]:
        opts = ["-F", str(self.config)] if self.config else []
        opts += ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new_host_key else 'yes'}",
                 "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
                 "-o", f"ServerAliveCountMax={ALIVE_COUNT}", "-o", "LogLevel=ERROR"]
        if self.control_dir is not None and self.control_dir.is_dir():  # ssh fails outright on a folder that is gone
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/{_socket_name(address)}",
                     "-o", f"ControlPersist={CONTROL_PERSIST_S}"]
        return opts + ([port_flag, str(address.port)] if address.port else [])

    def direct(self) -> "SshSettings":
        """These settings with a connection of its own: for a command that may run after the shared ones closed."""
        return replace(self, control_dir=None)


def _socket_name(address: Address) -> str:
    """One connection per target as typed, not ssh's %C (host name, port, user): two aliases of one server may
    differ in what each session is sent (SetEnv, SendEnv), which a shared connection would not honour."""
    import hashlib

    return hashlib.sha256(str(address).encode()).hexdigest()[:_SOCKET_NAME]


def _control_folder_fits(folder: Path) -> bool:
    return len(str(folder)) + _SOCKET_TAIL < _SUN_PATH and bool(_PLAIN_PATH.fullmatch(str(folder)))


@contextmanager
def shared_connections(settings: SshSettings, addresses: list[Address]) -> Iterator[SshSettings]:
    """`settings` that reuse one connection per target until the block ends, when each is closed.

    The sockets live in a private folder (mode 0700) in $TMPDIR, or in /tmp where $TMPDIR's path is too long
    for a socket (macOS's is); where neither fits, every call connects on its own, as without this.
    """
    with _control_folder() as folder:
        if folder is None:
            yield settings
            return
        shared = replace(settings, control_dir=folder)
        try:
            yield shared
        finally:
            for address in addresses:
                _close_shared(shared, address)


@contextmanager
def _control_folder() -> Iterator[Path | None]:
    """The private folder for the sockets, in the first of $TMPDIR and /tmp whose path leaves room for them."""
    import tempfile

    from partialnet.outputs import scratch_folder

    for parent in (Path(tempfile.gettempdir()), Path("/tmp")):
        if parent.is_dir() and _control_folder_fits(parent / ("x" * _TEMP_NAME)):
            with scratch_folder(_TEMP_PREFIX, parent=parent) as folder:
                yield folder
            return
    yield None


def _close_shared(settings: SshSettings, address: Address) -> None:
    """Ask the target's shared connection to close (`ssh -O exit`); where none was opened, ssh says so and nothing happens."""
    argv = [client("ssh"), *settings.options(address, "-p"), "-O", "exit", "--", address.destination]
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pass  # it closes itself after CONTROL_PERSIST_S idle


def client(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise Unavailable(f"--target needs the OpenSSH client's `{name}` on PATH (Debian/Ubuntu: apt install openssh-client)")
    return found


def quoted(argv: list[str]) -> str:
    """The one command line the remote shell receives: each argument quoted, so none is syntax."""
    return " ".join(shlex.quote(str(a)) for a in argv)


@dataclass
class Reply:
    code: int
    out: bytes
    err: str
    too_big: bool = False
    timed_out: bool = False


def ssh_argv(settings: SshSettings, address: Address, remote: list[str]) -> list[str]:
    return [client("ssh"), *settings.options(address, "-p"), "-T", "--", address.destination, quoted(remote)]


def run(settings: SshSettings, address: Address, remote: list[str], *, stdin: bytes = b"", timeout: float = 60,
        keep_open: bool = False, stop=None) -> Reply:
    """Run `remote` (an argv list) on the target; stdout bounded by MAX_REPLY_BYTES, a deadline, and `stop()`
    (a callable that raises, polled every 0.2 s: a signal here ends the ssh session, and the agent on the
    target ends its worker when its stdin closes). With `keep_open`, stdin stays open after `stdin` is
    sent: the agent's sign that this side is still there."""
    proc = subprocess.Popen(ssh_argv(settings, address, remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        proc.stdin.write(stdin)
        proc.stdin.flush()
        if not keep_open:
            proc.stdin.close()
        return _collect(proc, time.monotonic() + timeout, stop)
    except BrokenPipeError:
        return _collect(proc, time.monotonic() + timeout, stop)
    finally:
        _end(proc)


def _collect(proc: subprocess.Popen, deadline: float, stop) -> Reply:
    out, err = bytearray(), bytearray()
    streams = {proc.stdout: out, proc.stderr: err}
    with selectors.DefaultSelector() as sel:
        for stream in streams:
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            if stop:
                stop()
            if time.monotonic() > deadline:
                return Reply(-1, bytes(out), err.decode("utf-8", "replace"), timed_out=True)
            for key, _ in sel.select(timeout=0.2):
                chunk = key.fileobj.read(1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                streams[key.fileobj].extend(chunk)
                if len(out) > MAX_REPLY_BYTES or len(err) > MAX_REPLY_BYTES:
                    return Reply(-1, b"", "", too_big=True)
    return Reply(proc.wait(), bytes(out), err.decode("utf-8", "replace"))


def _end(proc: subprocess.Popen) -> None:
    for stream in (s for s in (proc.stdin, proc.stdout, proc.stderr) if s is not None):
        try:
            stream.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def copy(settings: SshSettings, address: Address, local: Path, remote: str, timeout: float) -> None:
    """scp one local file to a remote path that partialnet named itself (no user text in it)."""
    _scp(settings, address, [str(local), f"{_scp_host(address)}:{remote}"], f"copying {local.name}", timeout)


def fetch(settings: SshSettings, address: Address, remote: str, local: Path, timeout: float) -> None:
    """scp one remote file partialnet named into a local scratch path."""
    _scp(settings, address, [f"{_scp_host(address)}:{remote}", str(local)], f"fetching {remote.rsplit('/', 1)[-1]}", timeout)


def _scp_host(address: Address) -> str:
    return f"{address.user + '@' if address.user else ''}[{address.host}]" if ":" in address.host else address.destination


def _scp(settings: SshSettings, address: Address, ends: list[str], what: str, timeout: float) -> None:
    """One copy, ended at once by a stop here (a CI runner's SIGTERM must not wait out a slow link's copy)."""
    from partialnet.signals import raise_if_pending

    argv = [client("scp"), "-q", *settings.options(address, "-P"), "--", *ends]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        done = _collect(proc, time.monotonic() + timeout, raise_if_pending)
    finally:
        _end(proc)
    if done.timed_out:
        raise Unavailable(f"{address}: {what} did not finish in {timeout:.0f} s")
    if done.too_big or done.code != 0:
        raise Unavailable(f"{address}: {what} failed: {'scp said too much' if done.too_big else last_line(done.err)}")


def last_line(text: str) -> str:
    from partialnet.inputs import inert

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return inert(lines[-1])[:240] if lines else "no message"


def connection_error(address: Address, reply: Reply, settings: SshSettings) -> Unavailable | BadInput:
    """ssh's own failures (exit 255) as one line that says what to do; a config ssh cannot read is bad input."""
    text = reply.err
    if "bad configuration option" in text.lower() or "terminating, " in text:
        where = f"--ssh-config {settings.config}" if settings.config else "your ssh config"
        first = next((line for line in text.splitlines() if "bad configuration option" in line.lower()), text)
        return BadInput(f"{where}: ssh cannot read it ({last_line(first)})")
    if "Host key verification failed" in text or "No matching host key" in text or "host key for" in text.lower():
        how = "verify the key and add it to known_hosts (ssh-keyscan, then compare fingerprints), or pass --accept-new-host-key"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            return Unavailable(f"{address}: the host key has CHANGED since it was recorded; refusing (check with the machine's owner)")
        return Unavailable(f"{address}: unknown host key, refused; {how}")
    if "Permission denied" in text:
        return Unavailable(f"{address}: the key was refused (Permission denied); check the user, IdentityFile and authorized_keys")
    if reply.timed_out:
        return Unavailable(f"{address}: no answer in time")
    if any(sign in text for sign in ("closed by remote host", "Connection reset", "Broken pipe", "Timeout, server")):
        return Unavailable(f"{address}: the connection dropped mid-command ({last_line(text)})")
    if reply.code == 255 and not text.strip() and settings.control_dir is not None:  # the shared connection said it, not this call
        return Unavailable(f"{address}: the connection dropped mid-command (the shared connection closed)")
    return Unavailable(f"{address}: ssh failed: {last_line(text)}")
