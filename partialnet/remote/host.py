"""A target for the length of one command: checked, given a private folder, fed files, asked to run rows,
and left as it was found.

On entry the target's Python is asked what it is (`agent probe`): a missing interpreter, a missing
partialnet or another version is exit 3 with the install command for that machine. Its folder is made
there (under a random name chosen here, where `mktemp -d -t` would put it) and removed on the way out, also after Ctrl-C or SIGTERM here (best effort: a
failure to remove it is said, with the path). Files go up once each under names partialnet chose
(`f3.onnx`), then their sha256 is read back and compared. A row's reply is parsed strictly: one JSON
object of known fields and finite numbers, else the row fails with what was wrong.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from partialnet.errors import BadInput, Unavailable
from partialnet.inputs import sha256_of
from partialnet.remote import ssh
from partialnet.signals import forget_remote_folder, remember_remote_folder
from partialnet.remote.replies import checked_doctor, checked_probe, checked_result, parse_reply

PROBE_TIMEOUT_S = 120
COPY_TIMEOUT_S = 600
WORKER_TIMEOUT_S = 1800
_REMOTE_DIR = re.compile(r"/[A-Za-z0-9._/-]{1,200}")
def install_line(python: str, version: str) -> str:
    return f"{python} -m pip install 'partialnet=={version}' (with the extras of the runtimes to run there, e.g. 'partialnet[openvino]=={version}')"


# A forced stop's removal of the target's folder, tried for up to 10 s: the row running there ends only once the
# shared connection it came by closes, and until then its worker may still write into the folder rm is emptying
# (rm then fails on a folder no longer empty; a leftover folder, seen in suite runs).
REMOVE_UNTIL_GONE = 'for i in 1 2 3 4 5 6 7 8 9 10; do rm -rf -- "$0"; [ -e "$0" ] || exit 0; sleep 1; done; exit 1'
# The folder is made under a name chosen here (as mktemp -d -t would place it: $TMPDIR, else /tmp), so its removal is
# known before the command that makes it runs: a stop, or a dropped link, while a slow board answered mktemp had left
# the folder there, unnamed, under a message saying everything was removed.
MAKE_FOLDER = 'd="${TMPDIR:-/tmp}/$0"; mkdir -m 700 -- "$d" && printf %s "$d"'
REMOVE_NAMED = 'exec sh -c \'' + REMOVE_UNTIL_GONE.replace("'", "'\\''") + '\' "${TMPDIR:-/tmp}/$0"'


class RemoteHost:
    """Where rows run: the same three questions a local run answers (what runs here, run this row, what
    machine), answered by the target."""

    def __init__(self, address: ssh.Address, settings: ssh.SshSettings, python: str = "python3") -> None:
        self.address, self.settings, self.python = address, settings, python
        self.folder: str | None = None
        self._name = ""  # the folder's last component, chosen here
        self.info: dict = {}
        self._uploaded: dict[tuple, str] = {}  # (local path, size, mtime) -> remote path

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> "RemoteHost":
        import secrets

        self.info = self.probe()
        self._name = f"partialnet-remote.{secrets.token_hex(8)}"
        # a forced stop removes the shared connections' folder first: this command line connects on its own
        remember_remote_folder(f"{self.address}:{self._name}", ssh.ssh_argv(self.settings.direct(), self.address, self._removal()))
        try:
            reply = self._ssh(["sh", "-c", MAKE_FOLDER, self._name], timeout=PROBE_TIMEOUT_S)
            folder = reply.out.decode("ascii", "replace").strip()
            if reply.code != 0 or not _REMOTE_DIR.fullmatch(folder):
                raise Unavailable(f"{self.address}: making a private folder failed there ({ssh.last_line(reply.err) if reply.code else 'odd path'})")
        except BaseException:  # stopped or cut off while it was being made: it may exist, so it goes too
            self._remove(f"$TMPDIR/{self._name}")
            raise
        self.folder = folder
        return self

    def __exit__(self, *exc) -> None:
        if self.folder is None:
            return
        folder, self.folder = self.folder, None
        self._remove(folder)

    def _removal(self) -> list[str]:
        return ["sh", "-c", REMOVE_NAMED, self._name]

    def _remove(self, shown: str) -> None:
        """The folder removed over a connection of its own, or a warning naming it."""
        try:
            reply = ssh.run(self.settings, self.address, self._removal(), timeout=60)
            failed = reply.code != 0 and (ssh.last_line(reply.err) or f"exit {reply.code}")
        except OSError as error:
            failed = str(error)
        # only now: a forced stop while this removal ran (its ssh ends with the shared connection) removes it too
        forget_remote_folder(f"{self.address}:{self._name}")
        if failed:
            sys.stderr.write(f"warning: could not remove {shown} on {self.address}: {failed}\n")

    def probe(self) -> dict:
        """What the target is and runs; exit 3 with the install line when partialnet there cannot serve."""
        from partialnet import __version__

        reply = self._ssh([self.python, "-m", "partialnet.remote.agent", "probe"], timeout=PROBE_TIMEOUT_S)
        if reply.code == 127 or "No module named" in reply.err:
            what = "has no partialnet" if "No module named" in reply.err else f"has no {self.python}"
            raise Unavailable(f"{self.address} {what}; install it there: {install_line(self.python, __version__)}")
        if reply.too_big:
            raise Unavailable(f"{self.address}: its probe sent more than {ssh.MAX_REPLY_BYTES >> 20} MiB; a partialnet probe is a few KB")
        if reply.code != 0:
            raise Unavailable(f"{self.address}: {self.python} -m partialnet.remote.agent probe failed: {ssh.last_line(reply.err)}")
        try:
            info = parse_reply(reply.out, f"{self.address}")
            if info.get("partialnet") != __version__:
                raise Unavailable(f"{self.address} has partialnet {str(info.get('partialnet'))[:40]}, this side {__version__}; "
                                  f"install the same there: {install_line(self.python, __version__)}")
            return checked_probe(info, str(self.address))
        except BadInput as exc:
            raise Unavailable(str(exc)) from None

    def examine(self) -> dict:
        """`partialnet doctor` sampled on the target (its load, its busiest processes, its advice)."""
        reply = self._ssh([self.python, "-m", "partialnet.remote.agent", "doctor"], timeout=PROBE_TIMEOUT_S)
        try:
            if reply.code != 0:
                raise BadInput(f"{self.address}: its doctor failed: {ssh.last_line(reply.err)}")
            return checked_doctor(parse_reply(reply.out, str(self.address)), str(self.address))
        except BadInput as exc:
            raise Unavailable(str(exc)) from None

    def _ssh(self, argv: list[str], timeout: float, **kw) -> ssh.Reply:
        from partialnet.signals import raise_if_pending

        reply = ssh.run(self.settings, self.address, argv, timeout=timeout, stop=raise_if_pending, **kw)
        if reply.code == 255 or (reply.timed_out and not kw.get("keep_open")):
            raise ssh.connection_error(self.address, reply, self.settings)
        return reply

    # ------------------------------------------------------------------ the Where interface
    @property
    def label(self) -> str:
        return str(self.address)

    def machine(self) -> dict:
        return {**self.info["machine"], "target": str(self.address)}

    def logical_cores(self) -> int | None:
        cpu = self.info["machine"].get("cpu")
        return cpu.get("logical_cores") if isinstance(cpu, dict) else None

    def default_threads(self) -> int:
        value = self.info.get("default_threads")
        return value if isinstance(value, int) and 0 < value <= 4096 else 1

    def availability(self, runtime: str, device: str, precision: str = "fp32") -> str | None:
        from partialnet.runtimes.table import availability

        here = availability(runtime, "cpu")  # a runtime this side lacks cannot even prepare its rows
        row = self.info["availability"].get(runtime)
        if not isinstance(row, dict):
            return f"unknown on {self.address} (another partialnet build?)"
        if device not in row:
            return f"runs on {', '.join(map(str, row))} only on {self.address}, not {device}"
        reason = row[device].get(precision, f"{runtime} runs {', '.join(row[device])} there, not {precision}")
        if reason is None and here and "not installed" in here and self.needs_local(runtime):
            return f"{here} (needed here to prepare its artifact)"
        return None if reason is None else f"on {self.address}: {str(reason)[:200]}"

    @staticmethod
    def needs_local(runtime: str) -> bool:
        from partialnet.runtimes.table import RUNTIMES

        return RUNTIMES[runtime].runs == "built"

    # ------------------------------------------------------------------ files
    def upload(self, local: Path, companions: tuple[str, ...] = ()) -> str:
        """The remote path of `local` (copied once per command), with its companions and manifest beside it."""
        from partialnet.exporters.sidecar import sidecar

        st = local.stat()
        key = (str(local.resolve()), st.st_size, st.st_mtime_ns)
        if key in self._uploaded:
            return self._uploaded[key]
        stem = f"{self.folder}/f{len(self._uploaded)}"
        suffix = "".join(c for c in local.suffix if c.isalnum() or c == ".")[:16]
        pairs = [(local, f"{stem}{suffix}")]
        pairs += [(local.with_suffix(s), f"{stem}{s}") for s in companions if local.with_suffix(s).is_file()]
        manifest = sidecar(local)
        if manifest.is_file():
            pairs.append((manifest, f"{stem}{suffix}.json"))
        for path, remote in pairs:
            if not path.is_file():
                raise BadInput(f"{path}: not a regular file; only files can be sent to a target")
            ssh.copy(self.settings, self.address, path, remote, COPY_TIMEOUT_S)
        self._check_copies(pairs)
        self._uploaded[key] = pairs[0][1]
        return pairs[0][1]

    def _check_copies(self, pairs: list[tuple[Path, str]]) -> None:
        reply = self._ssh([self.python, "-m", "partialnet.remote.agent", "sha256", self.folder], timeout=PROBE_TIMEOUT_S)
        there = parse_reply(reply.out, str(self.address)) if reply.code == 0 else {}
        for path, remote in pairs:
            if there.get(remote.rsplit("/", 1)[1]) != sha256_of(path):
                raise Unavailable(f"{self.address}: {path.name} arrived damaged or not at all (sha256 differs after the copy)")

    # ------------------------------------------------------------------ rows
    def run_worker(self, spec: dict, work: Path, threads: int, wait: str) -> dict:
        """One row on the target, by the local worker's spec/result protocol."""
        from partialnet.signals import raise_if_pending

        remote_spec = self._files_there(spec)
        for side in ("a", "b"):  # an A/B spec: two row specs in one worker
            if isinstance(spec.get(side), dict):
                remote_spec[side] = self._files_there(spec[side])
        argv = [self.python, "-m", "partialnet.remote.agent", "worker", str(int(threads)), wait, self.folder]
        reply = ssh.run(self.settings, self.address, argv, stdin=json.dumps(remote_spec).encode() + b"\n", keep_open=True,
                        timeout=WORKER_TIMEOUT_S, stop=raise_if_pending)
        raise_if_pending()
        return self._row_result(reply)

    def verify(self, artifact: Path, ref: str, checks, variant: str | None = None, compute: str | None = None, weights: str | None = None):
        """`partialnet verify` on the target: the artifact (with its companions and manifest) and the
        checkpoint go up, the command runs there, its report comes back as if verified here."""
        from partialnet.sources import looks_like_path
        from partialnet.remote.replies import parity_report, whole_json

        if checks.images is not None:
            raise BadInput("verify --target judges on random inputs and --dataset; --images DIR is not sent to targets "
                           "(copy the folder there and run verify on that machine)")
        there = self.upload(Path(artifact), _companions(str(artifact)))
        argv = ["verify", there, "--ref", self.upload(Path(ref)) if looks_like_path(ref) else ref, "--samples", str(checks.samples), "--json"]
        for flag, value in (("--variant", variant), ("--weights", weights), ("--compute", compute), ("--dataset", checks.dataset), ("--atol", checks.atol),
                            ("--min-cosine", checks.min_cosine), ("--min-top1", checks.min_top1)):
            if value is not None:
                argv += [flag, str(value)]
        reply = self.cli(argv, check_failed_ok=True)
        if reply["code"] == 0:
            return parity_report(whole_json(reply["stdout"], str(self.address)))
        return self._verify_failed(reply, artifact, there)

    def _verify_failed(self, reply: dict, artifact: Path, there: str):
        """A failed verify there, raised as one here: its report kept (the table, --json), the artifact named as the
        user gave it, not by its copy's path in the target's folder (removed by then); both were lost."""
        from partialnet.errors import CheckFailed
        from partialnet.pipeline import parity_failure
        from partialnet.remote.replies import parity_report, whole_json  # as verify reads a passing reply

        said = str(reply.get("error", "")).removeprefix("error: ").replace(there, str(artifact)) or "exit 1"
        try:
            report = parity_report(whole_json(reply["stdout"], str(self.address)))
        except BadInput:  # a check that failed before any parity (a manifest, an identity): its one line is all there is
            raise CheckFailed(f"on {self.address}: {said}") from None
        if report.passed:
            raise CheckFailed(f"on {self.address}: {said}")
        raise parity_failure(report, f"{artifact} (verified on {self.address})")

    def cli(self, args: list[str], check_failed_ok: bool = False) -> dict:
        """A partialnet command on the target; its exit code mapped to the same error here (2, 3, 1), or with
        `check_failed_ok` its reply on exit 1 too (a failed verify's report is in its stdout)."""
        from partialnet.errors import CheckFailed
        from partialnet.signals import raise_if_pending

        argv = [self.python, "-m", "partialnet.remote.agent", "cli", *args]
        reply = ssh.run(self.settings, self.address, argv, keep_open=True, timeout=WORKER_TIMEOUT_S, stop=raise_if_pending)
        raise_if_pending()
        if reply.code == 255 or reply.timed_out or reply.too_big:
            raise ssh.connection_error(self.address, reply, self.settings) if not reply.too_big else \
                Unavailable(f"{self.address}: sent more than {ssh.MAX_REPLY_BYTES >> 20} MiB; stopped")
        try:
            answer = parse_reply(reply.out, str(self.address)) if reply.code == 0 else {}
            code, error = int(answer["code"]), str(answer.get("error", ""))[:400]
        except (BadInput, KeyError, TypeError, ValueError):
            raise Unavailable(f"{self.address}: the agent's reply is not partialnet's ({ssh.last_line(reply.err)})") from None
        said = error.removeprefix("error: ") or f"exit {code}"
        errors = {2: BadInput, 3: Unavailable, 1: CheckFailed}
        if code != 0 and not (code == 1 and check_failed_ok):
            raise errors.get(code, Unavailable)(f"on {self.address}: {said}")
        return answer

    def agent(self, verb: str, *args: str, timeout: float = PROBE_TIMEOUT_S, keep_open: bool = False) -> dict:
        """One agent verb on the target and its JSON reply (a failure there is exit 3 here, in one line)."""
        reply = self._ssh([self.python, "-m", "partialnet.remote.agent", verb, *args], timeout=timeout, keep_open=keep_open)
        if reply.too_big or reply.timed_out:
            raise Unavailable(f"{self.address}: {verb} sent too much or did not finish in {timeout:.0f} s")
        if reply.code != 0:
            raise Unavailable(f"{self.address}: agent {verb} failed: {ssh.last_line(reply.err)}")
        try:
            return parse_reply(reply.out, str(self.address))
        except BadInput as exc:
            raise Unavailable(str(exc)) from None

    def put(self, local: Path, name: str) -> str:
        """Copy `local` into the folder under `name` (a name partialnet chose), checked by sha256."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", name):
            raise BadInput(f"{name!r}: not a name partialnet sends to a target")
        remote = f"{self.folder}/{name}"
        ssh.copy(self.settings, self.address, local, remote, COPY_TIMEOUT_S)
        self._check_copies([(local, remote)])
        return remote

    def fetch(self, name: str, local: Path, max_bytes: int) -> None:
        """Bring `name` back from the folder into `local` (a private scratch path here), size and sha256 checked."""
        digests = self.agent("sha256", self.folder)
        if not isinstance(digests.get(name), str):
            raise Unavailable(f"{self.address}: {name} was not made there")
        ssh.fetch(self.settings, self.address, f"{self.folder}/{name}", local, COPY_TIMEOUT_S)
        if local.stat().st_size > max_bytes or sha256_of(local) != digests[name]:
            raise Unavailable(f"{self.address}: {name} came back damaged or too large")

    def _files_there(self, spec: dict) -> dict:
        """The spec with each file it names uploaded and replaced by its path on the target."""
        remote = dict(spec)
        for key in ("deploy", "reference", "artifact"):
            if spec.get(key):
                remote[key] = self.upload(Path(spec[key]), _companions(spec[key]))
        source = spec.get("unfolded_source")
        if source and Path(source).is_file():  # a checkpoint goes up; a variant name is just a name
            remote["unfolded_source"] = self.upload(Path(source))
        return remote

    def _row_result(self, reply: ssh.Reply) -> dict:
        if reply.too_big:
            return {"status": "failed", "reason": f"the target sent more than {ssh.MAX_REPLY_BYTES >> 20} MiB for one row; stopped it"}
        if reply.timed_out:
            return {"status": "failed", "reason": f"the row did not finish on the target in {WORKER_TIMEOUT_S} s"}
        if reply.code == 255:
            raise ssh.connection_error(self.address, reply, self.settings)
        if reply.code != 0:
            return {"status": "failed", "reason": f"the agent on the target exited {reply.code}: {ssh.last_line(reply.err)}"}
        try:
            return checked_result(parse_reply(reply.out, str(self.address)))
        except BadInput as exc:
            return {"status": "failed", "reason": str(exc)}


def _companions(path: str) -> tuple[str, ...]:
    from partialnet.exporters.formats import FORMATS

    fmt = next((f for f in FORMATS.values() if path.lower().endswith(f.suffix)), None)
    return fmt.companions if fmt else ()
