"""Real HTTP servers on loopback for the differential battery: gunicorn, uvicorn, ``cocaine-http dev``.

Each server runs as a child process; the reference servers get a listening
socket bound to an ephemeral 127.0.0.1 port by this process (gunicorn
``--bind fd://N``, uvicorn ``--fd N``), ``cocaine-http dev`` binds port 0 and
prints its URL. :func:`fetch` speaks HTTP/1.1 through ``http.client`` so
repeated response headers stay visible, in order.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT = 60.0


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # (lower-case name, value), in the order received
    body: bytes
    #: the connection ended before the body did (the framing said more was coming)
    truncated: bool = False

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


class Server:
    """One server process; :attr:`port` on 127.0.0.1; :meth:`output` is what it logged."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str,
        env: dict[str, str] | None = None,
        sock: socket.socket | None = None,
        url_pattern: str | None = None,
    ) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"battery-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([cwd, ROOT]), **(env or {})}
        for leaked in ("FORWARDED_ALLOW_IPS", "DJANGO_SETTINGS_MODULE"):  # set by in-process tests
            full_env.pop(leaked, None)
        self.proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(sock.fileno(),) if sock else (),
            start_new_session=True,
        )
        self.port = 0
        self._url_pattern = url_pattern
        if sock is not None:
            self.port = sock.getsockname()[1]
            sock.close()  # the child holds its own copy

    def ready(self) -> Server:
        """Wait until it answers HTTP (started in parallel, waited for one by one)."""
        if not self.port:
            assert self._url_pattern is not None
            self.port = self._wait_for_port(self._url_pattern)
        self._wait_ready()
        return self

    def output(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def _wait_for_port(self, pattern: str) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{self.name} did not start:\n{self.output()}")

    def _wait_ready(self) -> None:
        # the first answer (any status) says the app is imported and serving
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                fetch(self.port, "GET", "/__battery_ready__", timeout=10)
                return
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{self.name} never answered ({last!r}):\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def gunicorn(target: str, cwd: str = ROOT) -> Server:
    sock = _listening_socket()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"fd://{sock.fileno()}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--log-level",
        "warning",
        target,
    ]
    return Server("gunicorn", argv, cwd=cwd, sock=sock)


def uvicorn(target: str, cwd: str = ROOT) -> Server:
    sock = _listening_socket()
    argv = [sys.executable, "-m", "uvicorn", "--fd", str(sock.fileno()), "--log-level", "warning", target]
    return Server("uvicorn", argv, cwd=cwd, sock=sock)


def dev(target: str, protocol: str, cwd: str = ROOT, worker_args: Sequence[str] = ()) -> Server:
    argv = [
        sys.executable,
        "-m",
        "cocaine_http",
        "dev",
        target,
        "--bind",
        "127.0.0.1:0",
        "--locator-port",
        "0",
        "--protocol",
        protocol,
        "--log-level",
        "info",
    ]
    if worker_args:
        argv += ["--", *worker_args]
    return Server(f"dev-{protocol}", argv, cwd=cwd, url_pattern=r"HTTP\s+http://127\.0\.0\.1:(\d+)")


def fetch(
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    timeout: float = 60.0,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            conn.putheader("Host", "localhost")
        for name, value in headers:
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        truncated = False
        try:
            data = resp.read()
        except http.client.IncompleteRead as exc:
            data, truncated = exc.partial, True
        return Reply(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data, truncated)
    finally:
        conn.close()
