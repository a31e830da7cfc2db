"""The dev HTTP front at the edge: a real ``cocaine-http dev`` with a real worker, raw sockets.

Hostile requests (RFC 9112 framing, gunicorn's size limits) get the status
gunicorn gives, checked against a gunicorn running the same app; then
Date/Server, X-Real-IP, the WebSocket refusal and load under the dev defaults.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from cocaine_http.errors import HttpRequestRefused
from cocaine_http.runtime.refusals import HeadScan

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(WORKERS), str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, needle: str, deadline: float = 10.0, count: int = 1) -> str:
        """Wait until the server's output holds *needle* *count* times (it is written after the answer)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            text = self.output()
            if text.count(needle) >= count:
                return text
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not in the output:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def launch(argv: list[str], log: Path, ready: str) -> Server:
    """Start *argv* with its output in *log*; the port is the first match of the *ready* regex."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=WORKERS, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    end = time.monotonic() + 30
    while time.monotonic() < end and proc.poll() is None:
        match = re.search(ready, log.read_text(errors="replace"))
        if match:
            server = Server(proc, int(match.group(1)), log)
            if ready.startswith("Listening") or "Ctrl-C to stop" in server.output():
                return server
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{argv[:4]} did not start:\n{log.read_text(errors='replace')}")


def dev(log: Path, *flags: str) -> Server:
    argv = [sys.executable, "-m", "cocaine_http", "dev", "edge_app:app", "--bind", "127.0.0.1:0"]
    return launch([*argv, "--locator-port", "0", *flags], log, r"HTTP\s+http://127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = dev(tmp_path_factory.mktemp("dev") / "dev.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import gunicorn.config

    argv = [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", "1", "edge_app:wsgi"]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        argv.append("--no-control-socket")  # gunicorn 25+: no shared socket in $HOME
    server = launch(
        argv, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", r"Listening at: http://[^:]+:(\d+)"
    )
    try:
        yield server
    finally:
        server.stop()


def exchange(port: int, data: bytes, *, eof: bool = True, limit: float = 10.0) -> bytes:
    """Send *data*; read until the server closes (or, ``eof=False``, one whole head)."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.sendall(data)
        out = b""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            out += piece
            if not eof and b"\r\n\r\n" in out:
                break
        return out


def status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def headers(response: bytes) -> list[tuple[str, str]]:
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in head)]


def body(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def get(port: int, path: str, extra: bytes = b"") -> bytes:
    return exchange(
        port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (path.encode(), extra)
    )


def req(line: bytes = b"GET / HTTP/1.1", fields: int = 0, extra: bytes = b"") -> bytes:
    """A request closing its connection, with *fields* header fields in all."""
    names = b"".join(b"X-%d: v\r\n" % i for i in range(fields - 2))
    return line + b"\r\nHost: x\r\nConnection: close\r\n" + names + extra + b"\r\n"


SMUGGLED = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
#: name -> (request, status): the status is gunicorn's (checked against it below)
CASES = {
    "cl-and-te": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED,
        400,
    ),
    "te-and-cl": (
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + SMUGGLED,
        400,
    ),
    "bare-lf-request-line": (b"GET /b HTTP/1.1\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "bare-lf-header": (b"GET /b HTTP/1.1\r\nHost: x\nConnection: close\r\n\r\n", 400),
    "bare-lf-end": (b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\n", 400),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "http2-version": (b"GET /c HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    "obs-fold": (req(extra=b"X-Fold: a\r\n b\r\n"), 400),
    "100-fields": (req(fields=100), 200),
    "101-fields": (req(fields=101), 431),
    "line-4094": (req(b"GET /" + b"l" * (4094 - 14) + b" HTTP/1.1"), 200),
    "line-4095": (req(b"GET /" + b"l" * (4095 - 14) + b" HTTP/1.1"), 414),
    "field-8190": (req(extra=b"X-Big: " + b"f" * (8190 - 2 - 7) + b"\r\n"), 200),
    "field-8191": (req(extra=b"X-Big: " + b"f" * (8191 - 2 - 7) + b"\r\n"), 431),
    "line-100k": (b"GET /" + b"l" * 100_000, 414),  # refused before the line ends
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_requests_get_gunicorns_status(case: str, front: Server, gunicorn: Server) -> None:
    data, expected = CASES[case]
    ours = exchange(front.port, data)
    assert status(ours) == expected, ours[:300]
    assert status(exchange(gunicorn.port, data)) == expected  # the oracle agrees
    if expected != 200:
        assert ("connection", "close") in headers(ours)
        reason = body(ours).decode().strip()
        assert reason.count(":") >= 1 and len(reason) < 200, reason  # "<phrase>: <why>"
        front.wait_output(f"refused a request from 127.0.0.1: {expected} {reason.partition(': ')[2]}")
    assert b"/smuggled" not in body(get(front.port, "/seen"))


def test_smuggled_request_never_runs(front: Server) -> None:
    # both headers, and a complete request hidden in the body: one 400, then close
    data = b"POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 43\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = exchange(front.port, data + b"0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status(out) == 400 and out.count(b"HTTP/1.1 ") == 1
    assert body(out) == b"Bad Request: both Content-Length and Transfer-Encoding\n"
    seen = body(get(front.port, "/seen")).split(b"\n")
    assert b"/front" not in seen and b"/hidden" not in seen


@pytest.mark.parametrize(
    ("size", "code", "why"),
    [
        (b"ffffffffffffffffff", 400, b"chunk size does not fit in 64 bits"),  # 2**72 - 1
        (b"ffffffffffffffff", 413, b"request body too large"),  # over --max-body-size
    ],
)
def test_huge_chunk_size_refused_at_once(front: Server, size: bytes, code: int, why: bytes) -> None:
    # the client keeps the connection open: only a refusal at the size line answers
    # before the 75 s request deadline (the read gives up after 10 s)
    data = b"POST /chunky HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabc"
    out = exchange(front.port, data)
    assert status(out) == code and why in body(out)
    assert b"/chunky" not in body(get(front.port, "/seen"))


def test_date_and_server_headers(front: Server) -> None:
    for out in (get(front.port, "/"), exchange(front.port, CASES["bare-lf-header"][0])):
        found = headers(out)
        assert ("server", "cocaine-http") in found
        (date,) = [v for n, v in found if n == "date"]
        assert parsedate_to_datetime(date).tzname() == "UTC" and date.endswith(" GMT")
    # an app's own Server header is kept, not doubled
    assert [v for n, v in headers(get(front.port, "/server")) if n == "server"] == ["edge-app"]


def test_x_real_ip_is_the_peer(front: Server) -> None:
    out = get(front.port, "/client", b"X-Real-IP: 203.0.113.9\r\n")
    assert body(out) == repr((("127.0.0.1", 0), ["127.0.0.1"])).encode()


def test_websocket_is_refused(front: Server) -> None:
    handshake = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    out = exchange(front.port, handshake)
    assert status(out) == 501
    text = body(out).decode()
    assert "WebSocket" in text and "Cocaine's HTTP proxies do not carry" in text
    assert b"/ws" not in body(get(front.port, "/seen")).split(b"\n")


async def _many(port: int, path: str, count: int, limit: float = 60.0) -> list[bytes]:
    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
            return await reader.read()
        finally:
            writer.close()

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), limit)


def test_dev_defaults_take_300_concurrent_requests(front: Server) -> None:
    # each request waits in the app until all 300 are inside it at once
    answers = asyncio.run(_many(front.port, "/hold?n=300", 300))
    assert [status(a) for a in answers] == [200] * 300, {bytes(body(a)) for a in answers}
    assert "1000 sessions each, queue 2048" in front.output()


def test_concurrency_and_backlog_flags(tmp_path: Path) -> None:
    release = tmp_path / "release"
    server = dev(
        tmp_path / "dev.log", "--concurrency", "2", "--backlog", "3", "--no-date-header", "--no-server-header"
    )
    try:
        assert "1 worker (limit 1, 2 sessions each, queue 3)" in server.output()
        assert status(get(server.port, "/")) == 200  # the worker is up: the burst meets 2 free sessions

        async def main() -> list[bytes]:
            calls = asyncio.ensure_future(_many(server.port, f"/hold?n=100&release={release}", 10))
            # 2 run, 3 wait, 5 are shed at once; then the app is let go
            await asyncio.to_thread(server.wait_output, " 503 ", 30, 5)
            release.write_bytes(b"")
            return await calls

        answers = asyncio.run(main())
        assert sorted(status(a) for a in answers) == [200] * 5 + [503] * 5, [body(a) for a in answers]
        shed = next(a for a in answers if status(a) == 503)
        assert b"queue is full" in body(shed)
        found = [n for n, _ in headers(shed)]
        assert "date" not in found and "server" not in found
    finally:
        server.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_head_scan_gives_the_same_answer_however_the_bytes_arrive(case: str) -> None:
    # the front sees a head in whatever pieces TCP gives; whole, byte by byte and
    # split at every third byte must give the same refusal (or none)
    data = CASES[case][0]
    outcomes = set()
    for step in (len(data), 1, 3):
        scan = HeadScan(4094, 100, 8190)
        try:
            for at in range(0, len(data), step):
                scan.feed(memoryview(data)[at : at + step])
                if not scan.active:
                    break
            outcomes.add(None)
        except HttpRequestRefused as exc:
            outcomes.add((exc.status, exc.message))
    assert len(outcomes) == 1, outcomes
    (outcome,) = outcomes
    scanned = {"bare-lf-request-line", "bare-lf-header", "bare-lf-end", "obs-fold", "101-fields"}
    if case in scanned or case.startswith(("line-4095", "line-100k", "field-8191")):
        assert outcome is not None and outcome[0] == CASES[case][1]
    else:  # left to h11 and the checks on the parsed head
        assert outcome is None


def test_runtime_flags_override_the_profile_only_when_given(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "tiny"
    app.mkdir(parents=True)
    (app / "manifest.json").write_text(json.dumps({"slave": str(WORKERS / "rt_worker.py")}))
    (app / "profile.json").write_text(json.dumps({"concurrency": 3}))
    base = [sys.executable, "-m", "cocaine_http", "runtime", "--apps", str(app), "--bind", "127.0.0.1:0"]
    base += ["--locator-port", "0"]
    for flags, shown in (
        ([], "3 sessions each, queue 100"),
        (["--concurrency", "7", "--backlog", "9"], "7 sessions each, queue 9"),
    ):
        server = launch(
            [*base, *flags], tmp_path / f"runtime{len(flags)}.log", r"HTTP\s+http://127\.0\.0\.1:(\d+)"
        )
        try:
            assert shown in server.output()
        finally:
            server.stop()


def test_help_lists_the_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cocaine_http", "dev", "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for flag in ("--concurrency", "--backlog", "--no-date-header", "--no-server-header"):
        assert flag in out
