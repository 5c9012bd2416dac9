"""Remote targets over a real OpenSSH server on 127.0.0.1 (tests/sshd.py): rows measured "there" through
the same client users have, the refusals a real ssh gives, and targets that misbehave."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sshd
from helpers import interruptible_popen

pytestmark = pytest.mark.skipif(not Path(sshd.SSHD).exists(), reason="needs Debian's openssh-server (sshd); .ci/run installs it")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.stop()


def ssh_args(server, *targets: str, python: str | None = None) -> list[str]:
    return [*(a for t in targets for a in ("--target", f"ssh://{t}")), "--ssh-config", str(server.config),
            "--remote-python", python or sys.executable]


def remote_folders(server) -> set[str]:
    """The targets' private folders, in the temp folder the test server gives its sessions: none may outlive
    a command (another test run on the same machine has its own server and folder)."""
    return {p.name for p in (server.folder / "tmp").glob("partialnet-remote.*")}


def shared_connections() -> set[str]:
    """The shared connections' socket folders here, and the connections (`ssh: FOLDER/HASH [mux]`) still open."""
    import tempfile

    folders = {p.name for p in Path(tempfile.gettempdir()).glob("pn-ssh.*")}
    open_ones = subprocess.run(["pgrep", "-f", r"pn-ssh\.[^ ]+/[0-9a-f]{20} \[mux\]"], capture_output=True, text=True).stdout.split()
    return folders | set(open_ones)


def test_the_shared_connections_socket_folder_fits_a_socket_or_is_not_used(monkeypatch, tmp_path):
    """ssh refuses to run at all with a ControlPath over sockaddr_un's size: a long $TMPDIR (macOS's) falls back
    to /tmp, and where nothing fits every call connects on its own."""
    import tempfile

    from partialnet.remote import ssh

    address, settings = ssh.Address("board"), ssh.SshSettings()
    with ssh.shared_connections(settings, [address]) as shared:
        assert shared.control_dir.is_dir() and (shared.control_dir.stat().st_mode & 0o777) == 0o700
        assert f"ControlPath={shared.control_dir}/" in " ".join(shared.options(address, "-p"))
        assert shared.direct().options(address, "-p") == settings.options(address, "-p")  # a forced stop's cleanup line
        assert ssh._socket_name(address) != ssh._socket_name(ssh.Address("board", port=2222))
    assert not shared.control_dir.exists() and "ControlPath" not in " ".join(shared.options(address, "-p"))
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with ssh.shared_connections(settings, [address]) as shared:
        assert shared.control_dir.parent == Path("/tmp")
    monkeypatch.setattr(ssh, "_SUN_PATH", 20)  # nowhere fits
    with ssh.shared_connections(settings, [address]) as shared:
        assert shared is settings and not list(deep.iterdir())


def test_target_addresses_are_parsed_strictly(cli, tmp_path):
    from partialnet.remote.ssh import Address, parse_targets, quoted

    assert parse_targets(["ssh://pi@board:2222,ssh://jetson", "ssh://jetson"]) == [Address("board", "pi", 2222), Address("jetson")]
    for bad in ("board", "ssh://", "ssh://a b", "ssh://h:0", "ssh://h:99999", "ssh://$(touch x)", "ssh://-oProxyCommand=x"):
        result = cli("doctor", "--target", bad)
        assert result.code == 2 and result.err.count("\n") == 1, (bad, result.err)
    assert quoted(["echo", "$(touch x)", "a'b", "`id`", "x\ny"]) == "echo '$(touch x)' 'a'\"'\"'b' '`id`' 'x\ny'"
    assert cli("bench", "--ssh-config", "/nonexistent").code == 2  # SSH settings without a target
    assert parse_targets(["ssh://pi@[fe80::1]:22"]) == [Address("fe80::1", "pi", 22)] and str(Address("::1", None, 22)) == "ssh://[::1]:22"
    for bad in ("ssh://loop:", "ssh://@loop", "ssh://[::1", "ssh://[zz]", "ssh://[::1]x", "ssh://[fe80::1%eth0]", "", ",", "ssh://a,,ssh://b"):
        result = cli("bench", "partialnet_t0", "--target", bad)  # an empty one too: a CI job's unset $BOARD is not "here"
        assert result.code == 2 and result.err.count("\n") == 1 and "--target" in result.err, (bad, result.err)
    (tmp_path / "bad_config").write_text("Host x\n  Bogusoption yes\n")
    unreadable = cli("doctor", "--target", "ssh://x", "--ssh-config", tmp_path / "bad_config")
    assert unreadable.code == 2 and "line 2: Bad configuration option: bogusoption" in unreadable.err, unreadable.err  # was exit 3
    everything = cli("export", "partialnet_t0", "-f", "all", "--target", "ssh://loop")
    assert everything.code == 2 and "--format all exports here" in everything.err  # it used to export everything here, silently


@pytest.mark.skipif(not sshd.has_ipv6(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_target_is_reached(cli, server, tmp_path, digits_onnx):
    """ssh://[ADDR]:PORT: ssh is given the bare address, scp the bracketed one (the artifact goes up that way)."""
    result = cli("bench", digits_onnx, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--json", tmp_path / "b.json",
                 "--target", f"ssh://[::1]:{server.port}", "--ssh-config", server.config, "--remote-python", sys.executable)
    assert result.code == 0, result.err
    (row,) = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert row["status"] == "ok" and json.loads((tmp_path / "b.json").read_text())["machine"]["target"] == f"ssh://[::1]:{server.port}"


def test_bench_on_two_targets_runs_there_and_merges(cli, server, tmp_path, t0_onnx):
    """(The session's T0 ONNX goes up to both; a checkpoint exported here first: the dying-worker test below.)"""
    before, shared = remote_folders(server), shared_connections()
    accepted, sessions = server.log_text().count("Accepted publickey"), server.log_text().count("Starting session: command")
    result = cli("bench", t0_onnx, "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1",
                 "--json", tmp_path / "b.json", *ssh_args(server, "loop", "loop2"))
    assert result.code == 0, result.err
    files = sorted(tmp_path.glob("b.*.json"))
    assert [f.name for f in files] == ["b.loop.json", "b.loop2.json"]
    for f in files:
        data = json.loads(f.read_text())
        assert data["machine"]["target"] in ("ssh://loop", "ssh://loop2")
        row = data["rows"][0]
        assert row["status"] == "ok" and row["runtime"] == "onnxruntime" and row["parity_max_abs"] < 1e-4 and row["threads"] == 1
    assert "bench rows across machines" in result.out and "ssh://loop2" in result.out
    # probe, mktemp, copies, rows, cleanup: all through sshd, and each target's through one connection
    assert server.log_text().count("Starting session: command") > sessions + 8
    assert server.log_text().count("Accepted publickey") == accepted + 2
    assert shared_connections() == shared  # each closed, its socket's folder removed
    assert remote_folders(server) == before


def test_verify_on_target_with_a_hostile_file_name(cli, server, tmp_path, t0_onnx):
    import shutil

    art = tmp_path / "odd $(touch PWNED) `id` 'q'.onnx"
    shutil.copyfile(t0_onnx, art)  # the session's T0 export and its manifest, under a name a shell would run
    shutil.copyfile(t0_onnx.with_name(t0_onnx.name + ".json"), art.with_name(art.name + ".json"))
    result = cli("verify", art, "--ref", "partialnet_t0", "--samples", "2", *ssh_args(server, "loop"))
    assert result.code == 0, result.err
    assert "parity on ssh://loop" in result.out and "ok on ssh://loop" in result.out
    assert not list(tmp_path.glob("PWNED")) and not Path("PWNED").exists() and not Path.home().joinpath("PWNED").exists()
    # failing there: the table and the --json report come back, and the artifact is named as given (they were lost, and
    # the error named its copy in the target's folder, removed by then)
    failed = cli("verify", art, "--ref", "partialnet_t0", "--samples", "2", "--atol", "1e-12", "--json", *ssh_args(server, "loop"))
    assert failed.code == 1 and f"error: {art} (verified on ssh://loop) does not match PyTorch" in failed.err, failed.err
    assert "parity (FAILED)" in failed.err and "partialnet-remote." not in failed.err
    report = json.loads(failed.out)["ssh://loop"]
    assert report["passed"] is False and report["cases"] and report["machine"]["target"] == "ssh://loop"


def test_verify_on_target_computes_bf16_there(cli, server, tmp_path):
    """--compute goes up with the command: the target's CPU decides whether the fp32 IR runs as bf16."""
    pytest.importorskip("openvino")
    from partialnet import api

    art = tmp_path / "t0.xml"
    api.export("partialnet_t0", "openvino", api.ExportOptions(imgsz=(64, 64)), output=art, checks=api.VerifyOptions(samples=1))
    result = cli("verify", art, "--ref", "partialnet_t0", "--samples", "2", "--compute", "bf16", "--json", *ssh_args(server, "loop"))
    if result.code == 3:  # the target (this machine) has no bf16 units: OpenVINO computes f32 and says so
        assert "no native bf16" in result.err, result.err
        return
    assert result.code == 0, result.err
    (report,) = result.json().values()
    assert report["precision"] == "bf16" and report["candidate"] == "openvino" and report["machine"]["target"]


@pytest.mark.parametrize("host, expected", [
    ("loop-unknown", "unknown host key, refused"),
    ("loop-wrongkey", "the key was refused"),
    ("closed", "Connection refused"),
])
def test_unreachable_targets_are_exit_3_with_one_line(cli, server, host, expected):
    result = cli("doctor", *ssh_args(server, host))
    assert result.code == 3 and expected in result.err and result.err.count("\n") == 1, result.err


def test_accept_new_host_key_records_it(cli, server, tmp_path):
    known = server.folder / "known_hosts_empty"
    result = cli("doctor", "--accept-new-host-key", *ssh_args(server, "loop-unknown"))
    assert result.code == 0, result.err
    assert "onnxruntime" in result.out and known.read_text().strip()
    known.write_text("")


def test_doctor_on_a_target_says_whether_it_is_fit_to_time_on_now(cli, server, tmp_path):
    """The target's own load, busiest processes, memory and advice, sampled there (it used to print only the
    fingerprint and the runtimes); a doctor reply of another shape is refused in one line."""
    result = cli("doctor", "--json", *ssh_args(server, "loop"))
    assert result.code == 0, result.err
    now = json.loads(result.out)["ssh://loop"]["now"]
    assert now["cpu"]["logical_cores"] == os.cpu_count() and now["memory"]["total_gb"] > 0 and now["advice"]
    assert isinstance(now["others_cores"], (int, float)) and isinstance(now["busiest"], list)  # 0 on a quiet machine
    shown = cli("doctor", *ssh_args(server, "loop"))
    for part in ("  load       1-minute average", "  memory     ", "  runtimes there", "    onnxruntime  yes", "  advice"):
        assert part in shown.out, shown.out
    from partialnet.errors import BadInput
    from partialnet.remote.replies import checked_doctor

    with pytest.raises(BadInput, match=r"the target's doctor report is not partialnet's: busiest\[0\]\.pid is not an integer"):
        checked_doctor({**now, "busiest": [{"pid": "1", "name": "x", "cores": 1.0}]}, "ssh://loop")
    assert len(checked_doctor({**now, "advice": ["x" * 10_000]}, "ssh://loop")["advice"][0]) == 400
    assert checked_doctor(now, "ssh://loop") == now  # a real report keeps every field it is printed from


def test_a_verify_reply_keeps_a_non_finite_failure_and_names_a_misshapen_field():
    """A remote verify of an artifact that outputs NaN was written with null metrics; reading it back was
    'not partialnet's (TypeError)', exit 2, instead of the failed check (exit 1) it reports."""
    from partialnet.errors import BadInput
    from partialnet.remote.replies import parity_report

    case = {"name": "random, batch 1", "batch": 1, "samples": 8, "max_abs": None, "max_rel": None, "min_cosine": None,
            "top1_agreement": 0.0, "failures": ["the artifact output has 8000 non-finite values (NaN)"]}
    reply = {"candidate": "a.onnx", "reference": "partialnet_t0", "precision": "fp32", "tolerances": {"max_abs": 1e-4, "min_cosine": 0.99999},
             "cases": [case], "accuracy": None}
    report = parity_report(reply)
    assert not report.passed and math.isnan(report.cases[0].max_abs) and report.cases[0].failures == case["failures"]
    with pytest.raises(BadInput, match=r"not partialnet's: cases\[0\]\.batch is not an integer"):
        parity_report({**reply, "cases": [{**case, "batch": "1"}]})
    with pytest.raises(BadInput, match=r"not partialnet's: cases\[0\]\.samples is missing"):
        parity_report({**reply, "cases": [{k: v for k, v in case.items() if k != "samples"}]})


def test_more_threads_than_the_targets_cores_is_refused_before_any_row(cli, server, tmp_path):
    before = remote_folders(server)
    too_many = (os.cpu_count() or 1) + 1
    result = cli("bench", "partialnet_t0", "--imgsz", "64", "--runtime", "onnxruntime", "--protocol", "quick", "--threads", str(too_many),
                 "--json", tmp_path / "b.json", *ssh_args(server, "loop"))
    assert result.code == 2 and f"--threads {too_many}: ssh://loop has {os.cpu_count()} logical cores" in result.err, result.err
    assert not (tmp_path / "b.json").exists() and remote_folders(server) == before


def test_a_target_that_cannot_run_the_request_is_refused_before_any_targets_rows(cli, server, tmp_path):
    """Two targets, the second without onnxruntime: refused before the first target's rows were measured
    (they used to be measured, then thrown away with the refusal)."""
    before = remote_folders(server)
    python = str(sshd.fake_python(tmp_path, "noort", sys.executable))
    for command in (["bench", "partialnet_t0", "--runtime", "onnxruntime", "--json", tmp_path / "b.json"],
                    ["claims", "--runtime", "onnxruntime", "--sizes", "t0", "--json", tmp_path / "c.json"]):
        result = cli(*command, "--imgsz", "64", "--protocol", "quick", "--threads", "1", *ssh_args(server, "loop", "loop-noort", python=python))
        assert result.code == 3 and "no runtime can run on cpu on ssh://loop-noort (onnxruntime: on ssh://loop-noort: not installed)" in result.err, result.err
        assert "preparing" not in result.err and "on ssh://loop:" not in result.out, result.err  # nothing prepared, nothing timed
    assert not list(tmp_path.glob("*.json")) and remote_folders(server) == before


def test_target_without_partialnet_or_another_version_is_exit_3_with_the_install_line(cli, server, tmp_path):
    missing = cli("doctor", *ssh_args(server, "loop", python=str(sshd.fake_python(tmp_path, "bare", sys.executable))))
    old = cli("doctor", *ssh_args(server, "loop", python=str(sshd.fake_python(tmp_path, "old", sys.executable))))
    nowhere = cli("doctor", *ssh_args(server, "loop", python="/no/such/python"))
    for result in (missing, old, nowhere):
        assert result.code == 3 and "pip install 'partialnet==" in result.err and result.err.count("\n") == 1, result.err
    assert "0.0.1" in old.err
    odd = cli("doctor", *ssh_args(server, "loop", python=str(sshd.fake_python(tmp_path, "odd_probe", sys.executable))))
    assert odd.code == 3 and "ssh://loop: the probe's reply is not partialnet's: availability.onnxruntime.cpu is not an object" in odd.err, odd.err
    flood = cli("doctor", *ssh_args(server, "loop", python=str(sshd.fake_python(tmp_path, "flood_probe", sys.executable))))
    assert flood.code == 3 and "its probe sent more than 8 MiB" in flood.err, flood.err  # was "probe failed: no message"


@pytest.mark.parametrize("mode, code, expected", [
    ("garbage", 1, "not partialnet's JSON"),
    ("huge", 1, "more than 8 MiB"),
    ("drop", 3, "the connection dropped"),
])
def test_misbehaving_target_fails_its_row_in_one_line(cli, server, tmp_path, mode, code, expected):
    before = remote_folders(server)
    python = sshd.fake_python(tmp_path, mode, sys.executable)
    started = time.monotonic()
    result = cli("bench", "partialnet_t0", "--imgsz", "64", "--runtime", "pytorch", "--protocol", "quick", *ssh_args(server, "loop", python=str(python)))
    assert result.code == code and expected in result.err, result.err
    assert "Traceback" not in result.err and result.err.strip().count("\n") <= 3
    assert time.monotonic() - started < 60
    assert remote_folders(server) == before


def test_a_row_whose_worker_dies_on_the_target_fails_and_never_reports_the_row_before(cli, server, tmp_path):
    """The agent reused one result file per folder: a worker killed before writing its own (the OOM killer)
    handed back the previous row's samples, and the run passed with two identical rows."""
    python = sshd.fake_python(tmp_path, "oom", sys.executable)
    result = cli("bench", "partialnet_t0", "--imgsz", "64", "--runtime", "onnxruntime,pytorch", "--protocol", "quick", "--threads", "1",
                 "--json", tmp_path / "b.json", *ssh_args(server, "loop", python=str(python)))
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "failed"], rows
    assert "worker was killed by SIGKILL on the target" in rows[1]["reason"] and result.code == 1, result.err


def test_sigterm_mid_row_ends_the_remote_worker_and_removes_its_folder(server, tmp_path):
    before = remote_folders(server)
    cmd = [sys.executable, "-m", "partialnet", "bench", "partialnet_t0", "--runtime", "pytorch", "--protocol", "throughput",
           "--threads", "1", *ssh_args(server, "loop")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not _worker_running(server, before):
            time.sleep(0.2)
        assert _worker_running(server, before), "the row never started on the target"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "SIGTERM" in err and "Traceback" not in err
    time.sleep(1)
    assert remote_folders(server) == before
    assert not _worker_running(server, before)


def test_a_forced_stop_removes_the_targets_folder_too(server, tmp_path, digits_onnx):
    """Ctrl-C then SIGTERM at once (a CI runner's cancel): the second signal ends the command the default way,
    and the target's folder went with it only when cleanup had already reached it."""
    before = remote_folders(server)
    proc = _bench_there(server, digits_onnx, "loop", "latency")
    try:
        _wait_for(lambda: any((server.folder / "tmp" / f / "spec.json").exists() for f in remote_folders(server) - before))
        assert remote_folders(server) - before, "the command never made its folder on the target"
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM  # forced: the default action, not a clean exit
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and remote_folders(server) != before:
        time.sleep(0.2)
    assert remote_folders(server) == before


def test_sigterm_mid_copy_ends_the_copy_at_once(server, tmp_path, digits_onnx):
    """A 9 MB artifact over a ~200 KB/s link: the stop used to wait for the whole copy (45 s here, up to 600 s)."""
    before = remote_folders(server)
    proc = _bench_there(server, digits_onnx, "loop-slow", "quick")
    try:
        _wait_for(lambda: subprocess.run(["pgrep", "-f", f"scp -q .*{server.config}"], capture_output=True).returncode == 0)
        time.sleep(1)
        assert proc.poll() is None, "the command ended before its copy started"
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert took < 10, f"the stop waited {took:.0f} s for the copy"
    assert remote_folders(server) == before


def _bench_there(server, artifact, host: str, protocol: str) -> subprocess.Popen:
    """`partialnet bench ARTIFACT` timed on `host`, in its own process (a test signals it)."""
    cmd = [sys.executable, "-m", "partialnet", "bench", str(artifact), "--runtime", "onnxruntime", "--protocol", protocol,
           "--threads", "1", *ssh_args(server, host)]
    return interruptible_popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def _worker_running(server, before: set[str]) -> bool:
    new = remote_folders(server) - before
    if not new:
        return False
    found = subprocess.run(["pgrep", "-f", f"partialnet.bench.worker .*{next(iter(new))}"], capture_output=True)
    return found.returncode == 0


def test_claims_and_matrix_time_their_rows_on_the_target(cli, server, tmp_path):
    claims = cli("claims", "--sizes", "t0", "--runtime", "pytorch", "--protocol", "quick", "--imgsz", "64", "--json", tmp_path / "c.json",
                 *ssh_args(server, "loop"))
    assert claims.code == 0, claims.err
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["machine"]["target"] == "ssh://loop" and data["measurements"][0]["status"] == "ok"
    assert "machine: ssh://loop:" in claims.out
    matrix = cli("matrix", "partialnet_t0", "--formats", "onnx", "--precisions", "fp32", "--imgsz", "64", "--protocol", "quick",
                 "-o", tmp_path / "m", *ssh_args(server, "loop"))
    assert matrix.code == 0, matrix.err
    result = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert result["machine"]["target"] == "ssh://loop"
    assert {(r["format"], r["status"]) for r in result["rows"]} == {("onnx", "ok"), ("pytorch", "ok")}
    two = cli("matrix", "partialnet_t0", *ssh_args(server, "loop", "loop2"))
    assert two.code == 2 and "one target" in two.err


def test_engine_export_on_target_refuses_before_any_work_and_leaves_nothing(cli, server, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = remote_folders(server)
    no_tool = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out / "t0.engine", *ssh_args(server, "loop"))
    assert no_tool.code == 3 and "has no trtexec" in no_tool.err and "/usr/src/tensorrt/bin" in no_tool.err, no_tool.err
    portable = cli("export", "partialnet_t0", "-f", "onnx", "-o", out / "t0.onnx", *ssh_args(server, "loop"))
    assert portable.code == 2 and "portable" in portable.err and "import torch" not in portable.out  # said before the imports
    python = _python_with_fake_trtexec(tmp_path)
    no_runtime = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out / "t0.engine", *ssh_args(server, "loop", python=python))
    assert no_runtime.code == 3 and "has trtexec but cannot run the result on cuda" in no_runtime.err, no_runtime.err
    assert list(out.iterdir()) == [] and remote_folders(server) == before


def test_engine_export_on_target_builds_there_and_publishes_nothing_when_the_record_fails(cli, server, tmp_path, monkeypatch):
    """The prepare -> copy -> build-there path with a stand-in trtexec on the target (no TensorRT exists on
    these machines, nor on the lent GPU): the target's TensorRT runtime is declared present (the only
    stand-in), the build script really runs there, and the missing TensorRT Python then stops the command
    before anything is published here."""
    from partialnet.remote.host import RemoteHost

    real = RemoteHost.availability
    monkeypatch.setattr(RemoteHost, "availability", lambda self, runtime, device, precision="fp32":
                        None if device == "cuda" else real(self, runtime, device, precision))
    out = tmp_path / "out"
    out.mkdir()
    before = remote_folders(server)
    result = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out / "t0.engine",
                 *ssh_args(server, "loop", python=_python_with_fake_trtexec(tmp_path)))
    assert result.code == 3 and "the engine was built but its machine record failed" in result.err, result.err
    assert (tmp_path / "fakebin" / "ran").read_text().count("--saveEngine=model.engine") == 1  # the build ran on the target
    assert list(out.iterdir()) == [] and remote_folders(server) == before


def _python_with_fake_trtexec(tmp_path: Path) -> str:
    """The target's Python with a stand-in trtexec on its PATH: it writes the engine file it is asked for."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "trtexec"
    tool.write_text(f'#!/bin/sh\necho "$*" >> {bin_dir}/ran\nfor a in "$@"; do case "$a" in --saveEngine=*) '
                    'printf "stand-in engine" > "${a#--saveEngine=}";; esac; done\n')
    tool.chmod(0o755)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nPATH="{bin_dir}:$PATH" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return str(python)


def test_a_stop_while_the_targets_folder_is_made_removes_it(server, monkeypatch):
    """Ctrl-C while a slow board answered mktemp: the folder was recorded only from the reply, so it stayed on the
    target under "temporary files removed". Its name is chosen here now, and its removal known before it is made.
    The stop is injected right after the real command ran over the real server (a signal's timing, on demand)."""
    import signal

    from partialnet.remote import host as remote_host
    from partialnet.remote.options import TargetOptions
    from partialnet.signals import Interrupted

    real = remote_host.RemoteHost._ssh

    def stopped_after_making(self, argv, timeout, **kw):
        reply = real(self, argv, timeout, **kw)
        if argv[:3] == ["sh", "-c", remote_host.MAKE_FOLDER]:
            assert remote_folders(server), "the folder was not made"
            raise Interrupted(signal.SIGINT)
        return reply

    monkeypatch.setattr(remote_host.RemoteHost, "_ssh", stopped_after_making)
    before = remote_folders(server)
    options = TargetOptions(target=["ssh://loop"], ssh_config=server.config, remote_python=sys.executable)
    with pytest.raises(Interrupted):
        with options.hosts():
            pass
    assert remote_folders(server) == before
