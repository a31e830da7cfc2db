"""Stopping ``cocaine-http dev`` with requests in flight (issue #16): a real
process, raw sockets, the signal sent once the app has received every request."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_rt_cli import start

SLOW_APP = """
import asyncio


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    while (await receive()).get("more_body"):
        pass
    print("received", path, flush=True)
    await asyncio.sleep(float(path.rsplit("/", 1)[1]))
    body = ("done " + path).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


class Output:
    """The dev process's console, read by a thread, lines kept in order."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(bool(re.search(pattern, line)) for line in self.lines) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{count} x {pattern!r} not seen:\n" + "".join(self.lines))
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the process ended:\n" + "".join(self.lines))
            self.lines.append(line)

    def rest(self) -> str:
        self._thread.join(10)
        while not self._new.empty():
            line = self._new.get()
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)


def read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def dev(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], tuple[str, int], Output]:
    (tmp_path / "slowapp.py").write_text(SLOW_APP)
    proc, seen = start(
        "dev",
        "slowapp:app",
        "--bind",
        "127.0.0.1:0",
        "--locator-port",
        "0",
        "--workers",
        "2",  # 2 x 10 sessions (the profile's concurrency): all 20 run at once
        *extra,
        cwd=tmp_path,
    )
    host, port = seen["HTTP"].removeprefix("http://").rsplit(":", 1)
    return proc, (host, int(port)), Output(proc)


def send_requests(where: tuple[str, int], paths: list[str]) -> list[socket.socket]:
    socks = []
    for path in paths:
        sock = socket.create_connection(where, timeout=10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        socks.append(sock)
    return socks


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_lets_every_request_in_flight_finish(tmp_path: Path, sig: int) -> None:
    proc, where, out = dev(tmp_path)
    try:
        paths = [f"/r{i}/1.5" for i in range(20)]
        socks = send_requests(where, paths)
        out.wait_for(r"received /r\d+/1\.5", 20)  # the app holds all 20
        t0 = time.monotonic()
        proc.send_signal(sig)
        replies = [read_all(sock, 20) for sock in socks]
        took = time.monotonic() - t0
        for sock in socks:
            sock.close()
        for path, reply in zip(paths, replies, strict=True):
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 "), reply
            assert b"\r\nconnection: close" in head.lower(), head
            assert body == b"done " + path.encode(), reply
        assert took < 10, took
        with pytest.raises(OSError):  # the listener closed at the signal
            socket.create_connection(where, timeout=2).close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = out.rest()
    assert "waiting up to 30.0 s for 20 connection(s) in flight" in log, log


def test_graceful_timeout_bounds_the_wait(tmp_path: Path) -> None:
    proc, where, out = dev(tmp_path, "--graceful-timeout", "0.5")
    try:
        socks = send_requests(where, [f"/s{i}/60" for i in range(3)])
        out.wait_for(r"received /s\d+/60", 3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        replies = [read_all(sock, 20) for sock in socks]
        for sock in socks:
            sock.close()
        assert replies == [b""] * 3  # cut once the grace ran out, not held for the 60 s
        assert time.monotonic() - t0 < 15
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "still busy after 0.5 s; cut" in out.rest()


def test_idle_keepalive_connections_close_at_once(tmp_path: Path) -> None:
    proc, where, out = dev(tmp_path)
    try:
        [busy] = send_requests(where, ["/k/1.0"])
        idle = socket.create_connection(where, timeout=10)
        idle.sendall(b"GET /i/0 HTTP/1.1\r\nHost: t\r\n\r\n")
        idle.settimeout(10)
        first = b""
        while not first.endswith(b"done /i/0"):  # head and body may come in separate reads
            data = idle.recv(65536)
            assert data, first
            first += data
        assert first.startswith(b"HTTP/1.1 200 "), first
        out.wait_for(r"received /k/1\.0", 1)
        proc.send_signal(signal.SIGTERM)
        assert read_all(idle, 5) == b""  # closed while the busy one still runs
        reply = read_all(busy, 20)
        assert reply.endswith(b"done /k/1.0"), reply
        idle.close()
        busy.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
