"""Lifespan, terminate, mappings and options, through real worker processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from http_harness import COMPAT_DIR, ROOT, Served, raw_envelope, read_lines, wait_for

from cocaine_http.protocol.frames import Generation

GENS = pytest.mark.parametrize("gen", [Generation.A, Generation.B], ids=["A", "B"])


@GENS
def test_fastapi_lifespan_once_per_process(gen: Generation, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = str(tmp_path / "lifespan.log")
    worker = Served(
        "examples.fastapi_app.app:app", gen, args=["--env", f"FASTAPI_APP_LIFESPAN_LOG={log}"], workers=2
    )
    try:
        pids = {s.pid for s in worker.engine.slaves.values()}
        for _ in range(6):
            reply = worker.request("GET", "/state")
            assert json.loads(reply.body) == {"greeting": "Hello from the lifespan"}
        assert sorted(read_lines(log)) == sorted(f"startup {pid}" for pid in pids)
    finally:
        worker.close()
    lines = read_lines(log)
    assert sorted(lines) == sorted([*(f"startup {p}" for p in pids), *(f"shutdown {p}" for p in pids)])
    for pid in pids:  # startup strictly before shutdown, in each process
        assert lines.index(f"startup {pid}") < lines.index(f"shutdown {pid}")


@GENS
def test_raw_lifespan_messages(gen: Generation, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = str(tmp_path / "probe.log")
    worker = Served("badapps:asgi", gen, app_dir=COMPAT_DIR, env={"PROBE_LOG": log})
    pid = worker.slave.pid
    try:
        assert json.loads(worker.request("GET", "/scope").body)["state"] == {"counter": 0}
    finally:
        worker.close()
    assert read_lines(log) == [f"lifespan lifespan.startup {pid}", f"lifespan lifespan.shutdown {pid}"]


@GENS
def test_terminate_sends_http_disconnect(gen: Generation, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = str(tmp_path / "probe.log")
    worker = Served("badapps:asgi", gen, app_dir=COMPAT_DIR, env={"PROBE_LOG": log})
    try:
        engine, slave = worker.engine, worker.slave

        async def go() -> tuple[object, int | None, list[bytes]]:
            inv = await engine.open("http")
            await inv.write(raw_envelope(["GET", "/wait-disconnect", "1.1", [], b""]))
            await inv.close()
            first = await inv.read()  # the head
            second = await inv.read()  # "waiting": the app now sits in receive()
            code = await engine.terminate(slave)
            rest = [c async for c in inv]
            return inv.error, code, [first, second, *rest]

        error, code, chunks = worker.lt.run(go())
        assert code == 0
        assert wait_for(lambda: "disconnect http.disconnect" in read_lines(log))
        assert error is not None  # the response was cut short: an error frame, not a clean close
        assert len(chunks) == 2
    finally:
        worker.close()


def test_graceful_timeout_bounds_the_drain(tmp_path) -> None:  # type: ignore[no-untyped-def]
    worker = Served("badapps:sleeper", Generation.B, app_dir=COMPAT_DIR, args=["--timeout", "0.3"])
    try:
        engine, slave = worker.engine, worker.slave

        async def go() -> tuple[float, int | None, object]:
            inv = await engine.open("http")
            await inv.write(raw_envelope(["GET", "/?10", "1.1", [], b""]))
            await inv.close()
            # a round trip on the same connection: the worker has the sleeping request
            assert (await engine.invoke("http", [raw_envelope(["GET", "/?0", "1.1", [], b""])])).error is None
            t0 = time.monotonic()
            code = await engine.terminate(slave)
            await inv.reply(5)
            return time.monotonic() - t0, code, inv.error

        elapsed, code, error = worker.lt.run(go())
        assert code == 0
        assert elapsed < 3.0
        assert error is not None
    finally:
        worker.close()


def test_event_mappings_and_default() -> None:
    worker = Served(
        "badapps:wsgi=w",
        Generation.B,
        app_dir=COMPAT_DIR,
        args=[
            "badapps:ASGI2App=a2",
            'badapps:wsgi_factory("hello", punct="?")=f',
            "badapps:asgi_no_lifespan=*",
        ],
    )
    try:
        assert worker.request("GET", "/status-429", event="w").status == 429
        assert worker.request("GET", "/p/q", event="a2").body == b"asgi2 /p/q"
        assert worker.request("GET", "/", event="f").body == b"hello?"
        assert worker.request("GET", "/", event="anything").body == b"ok"
        # the worker's records reach the logging service, or stderr when (as here) there is none
        assert wait_for(lambda: "ASGI 'lifespan' protocol appears unsupported" in worker.output())
    finally:
        worker.close()


def test_root_path_wsgi_and_asgi() -> None:
    w = Served("badapps:wsgi", Generation.A, app_dir=COMPAT_DIR, args=["--root-path", "/web/http/"])
    try:
        env = json.loads(w.request("GET", "/environ").body)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/web/http", "/environ")
        env = json.loads(w.request("GET", "/web/http/environ").body)  # X-Cocaine-* routing: the full URI
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/web/http", "/environ")
    finally:
        w.close()
    a = Served("examples.fastapi_app.app:app", Generation.B, args=["--root-path", "/web/http"])
    try:
        reply = a.request("GET", "/items/3?q=z")
        assert reply.status == 200 and json.loads(reply.body)["q"] == "z"
        assert json.loads(a.request("GET", "/headers").body)["path"] == "/web/http/headers"
    finally:
        a.close()


def test_access_log() -> None:
    worker = Served("examples.flask_app.app:app", Generation.B, args=["--access-log"])
    try:
        worker.request("GET", "/items/9?q=1", [("Host", "h"), ("X-Real-IP", "198.51.100.2")])
        # gunicorn's default format; no logging service here, so the line goes to stderr
        line = re.compile(r'198\.51\.100\.2 - - \[[^]]+\] "GET /items/9\?q=1 HTTP/1\.1" 200 \d+ "-" "-"')
        assert wait_for(lambda: line.search(worker.output()) is not None), worker.output()
    finally:
        worker.close()


def _run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("COCAINE_HTTP_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "cocaine_http", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=COMPAT_DIR,
    )


RUNTIME = [
    "--app",
    "web",
    "--endpoint",
    "/nonexistent/web.1",
    "--locator",
    "127.0.0.1:10053",
    "--uuid",
    "u-1",
]


def test_lifespan_startup_failure_exits_before_connecting() -> None:
    proc = _run_cli("badapps:asgi_lifespan_fails", *RUNTIME)
    assert proc.returncode == 3, proc.stderr
    assert "database unreachable" in proc.stderr


def test_lifespan_on_requires_support() -> None:
    proc = _run_cli("badapps:asgi_no_lifespan", "--lifespan", "on", *RUNTIME)
    assert proc.returncode == 3, proc.stderr
    assert "ASGI lifespan startup failed: AssertionError: only http" in proc.stderr


def test_import_error_exit_code() -> None:
    proc = _run_cli("badapps:nosuch", *RUNTIME)
    assert proc.returncode == 4
    assert "attribute 'nosuch' not found in 'badapps'" in proc.stderr


def test_unknown_runtime_flags_are_ignored_in_worker_mode() -> None:
    proc = _run_cli("badapps:wsgi", *RUNTIME, "--future-flag", "x")
    assert "ignoring unknown argument '--future-flag'" in proc.stderr
    assert proc.returncode == 1  # could not connect to the (nonexistent) runtime, but did start

