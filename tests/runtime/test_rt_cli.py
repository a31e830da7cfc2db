"""``cocaine-http dev`` / ``runtime`` as a user runs them: a real process, signals, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rt_helpers import alive

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "workers" / "rt_worker.py"


def start(*args: str, cwd: Path = ROOT) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cocaine_http", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[str, str] = {}
    lines = []
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.match(r"\s+(HTTP|locator)\s+(\S+)", line):
            seen[match.group(1)] = match.group(2)
        if "Ctrl-C to stop" in line:
            return proc, seen
    proc.kill()
    raise AssertionError("no banner:\n" + "".join(lines))


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, out


def test_runtime_with_app_directories(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "tiny"
    app.mkdir(parents=True)
    (app / "manifest.json").write_text(json.dumps({"slave": str(WORKER), "environment": {"X": "1"}}))
    (app / "profile.json").write_text(json.dumps({"pool-limit": 2}))
    proc, seen = start(
        "runtime",
        "--apps",
        str(tmp_path / "apps"),
        "--bind",
        "127.0.0.1:0",
        "--locator-port",
        "0",
        "--workers",
        "1",
        "--protocol",
        "0.11",
    )
    try:
        url = seen["HTTP"]
        r = httpx.get(url + "/tiny/http/pid", timeout=10)
        assert r.status_code == 200, r.text
        pid = int(r.text)
        # nothing goes to an app that was not addressed, even the only one; / lists the apps
        assert httpx.get(url + "/hello", timeout=10).status_code == 404
        r = httpx.get(url + "/", timeout=10)
        assert (r.status_code, r.text) == (404, "Invalid url\napps: /tiny/http/\n")
        host, port = seen["locator"].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=5).close()
    finally:
        code, out = stop(proc, signal.SIGTERM)
    assert code == 0, out
    assert "stopped" in out
    for _ in range(50):
        if not alive(pid):
            break
        time.sleep(0.05)
    assert not alive(pid), "worker left running"


@pytest.mark.parametrize("protocol", ["0.11", "0.12"])
def test_dev_serves_the_flask_example(protocol: str) -> None:
    proc, seen = start(
        "dev",
        "examples.flask_app.app:app",
        "--bind",
        "127.0.0.1:0",
        "--locator-port",
        "0",
        "--protocol",
        protocol,
    )
    try:
        r = httpx.get(seen["HTTP"] + "/", timeout=10)
        assert (r.status_code, r.text) == (200, "Hello, world!\n"), r.text
    finally:
        code, out = stop(proc)
    assert code == 0, out


def test_bad_arguments_and_busy_ports() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run(
        [sys.executable, "-m", "cocaine_http", "dev", "x:app", "--protocol", "0.9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert bad.returncode == 2 and "0.11 or 0.12" in bad.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "cocaine_http", "runtime", "--no-http", "--locator-port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert res.returncode == 1 and "cannot start" in res.stderr and "--locator-port 0" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "cocaine_http", "runtime", "--apps", "/nonexistent/apps"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert res.returncode == 1 and "not a directory" in res.stderr
