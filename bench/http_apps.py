"""Requests per second per core: the hello examples through cocaine-http vs gunicorn and uvicorn.

Everything -- this process (the load generator, and for cocaine-http the
runtime-side Engine), the servers and the worker -- is pinned to ONE core,
so the figures are per core and the ratios compare CPU cost per request.

* cocaine-http: ``python -m cocaine_http examples.<app>:app`` started by
  :class:`cocaine_http.runtime.engine.Engine` with the runtime's argv, driven
  with W invocations in flight (each one HTTP envelope, as a proxy sends).
* gunicorn sync / gthread (1 worker) and uvicorn (1 worker) get a listening
  loopback socket (gunicorn: ours via ``fd://``; uvicorn: a port chosen by
  binding port 0; never a fixed port) and are
  driven over HTTP/1.1 by a minimal asyncio client with W connections, one
  request in flight per connection (keep-alive when the server allows it;
  gunicorn's sync worker closes after every response, so the client
  reconnects, as a proxy in front of it would).

Usage::

    python bench/http_apps.py [--requests 6000] [--concurrency 16] [--rounds 5]
                              [--cpu N] [--only flask|fastapi]

All targets of an app run at once and the rounds interleave them, so load
from elsewhere on the machine hits every target alike; each round gives one
ratio, and the median ratio is reported (with the per-round figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cocaine_http.http.envelope import decode_response, encode_request  # noqa: E402
from cocaine_http.protocol.frames import Generation  # noqa: E402
from cocaine_http.runtime.engine import Engine  # noqa: E402

APPS = {"flask": "examples.flask_app.app:app", "fastapi": "examples.fastapi_app.app:app"}
TARGETS = {("flask", "gunicorn-sync"): 1.5, ("fastapi", "uvicorn"): 1.2}
EXPECTED = b"Hello, world!\n"
_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)

# -- HTTP load generator ----------------------------------------------------------------


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[bytes, bool]] | None = None
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._check()

    def _check(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if self.lost:
                self.waiter.set_exception(ConnectionError("closed mid-response"))
            return
        head = bytes(self.buf[: end + 4])
        match = _CL.search(head)
        if match is None:
            raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
        total = end + 4 + int(match.group(1))
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4 : total])
        del self.buf[:total]
        self.waiter.set_result((body, bool(_CLOSE.search(head))))

    async def request(self, raw: bytes) -> tuple[bytes, bool]:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.waiter


async def http_load(port: int, n: int, concurrency: int) -> float:
    loop = asyncio.get_running_loop()
    raw = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    left = n

    async def one_client() -> None:
        nonlocal left
        conn: _Conn | None = None
        while left > 0:
            left -= 1
            if conn is None or conn.lost:
                _, conn = await loop.create_connection(_Conn, "127.0.0.1", port)
            body, close = await conn.request(raw)
            if body != EXPECTED:
                raise RuntimeError(f"unexpected body {body!r}")
            if close:
                assert conn.transport is not None
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


async def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    raw = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if EXPECTED in data:
                return
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


def server_command(kind: str, app: str, fd: int, port: int, concurrency: int) -> list[str]:
    bindir = os.path.dirname(sys.executable)
    if kind == "gunicorn-sync":
        return [
            os.path.join(bindir, "gunicorn"),
            "-w",
            "1",
            "-k",
            "sync",
            "--bind",
            f"fd://{fd}",
            "--log-level",
            "warning",
            app,
        ]
    if kind == "gunicorn-gthread":
        return [
            os.path.join(bindir, "gunicorn"), "-w", "1", "-k", "gthread", "--threads", str(concurrency),
            "--bind", f"fd://{fd}", "--log-level", "warning", app,
        ]
    if kind == "uvicorn":
        # not --fd: uvicorn takes an inherited fd for a UNIX socket, so asyncio would not set
        # TCP_NODELAY on its connections and Nagle + delayed ACKs would cost 40 ms a request
        return [os.path.join(bindir, "uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--log-level", "warning", "--no-access-log", app]
    raise ValueError(kind)


@contextlib.asynccontextmanager
async def http_server(
    kind: str, app: str, concurrency: int
) -> AsyncIterator[Callable[[int], Awaitable[float]]]:
    """Start one server; yields ``measure(n) -> req/s``."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": ROOT}
    if kind == "uvicorn":
        sock.close()  # uvicorn binds the (just freed, port-0-chosen) port itself
    proc = subprocess.Popen(  # noqa: ASYNC220 - harness setup, before any timing
        server_command(kind, app, sock.fileno(), port, concurrency),
        pass_fds=() if kind == "uvicorn" else (sock.fileno(),),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    try:
        await wait_ready(port, proc)
        yield lambda n: http_load(port, n, concurrency)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- cocaine-http through the Engine ------------------------------------------------------------


async def cocaine_load(engine: Engine, n: int, concurrency: int, generation: Generation) -> float:
    blob = encode_request("GET", "/", [("Host", "127.0.0.1")], b"", generation=generation)
    left = n

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            reply = await engine.invoke("http", [blob], timeout=30)
            status, _, body = decode_response(reply.chunks, generation)
            if status != 200 or body != EXPECTED:
                raise RuntimeError(f"unexpected reply {status} {body!r} {reply.error}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0)


@contextlib.asynccontextmanager
async def cocaine_worker(
    app: str, concurrency: int, generation: Generation
) -> AsyncIterator[Callable[[int], Awaitable[float]]]:
    """Start one worker behind an Engine; yields ``measure(n) -> req/s``."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "cocaine_http", app, "--app-dir", ROOT, "--log-level", "warning"]
        async with Engine(
            "bench",
            command,
            generation=generation,
            runtime_dir=tmp,
            cwd=ROOT,
            env={"PYTHONPATH": ROOT},
            concurrency=max(concurrency, 1),
            queue_limit=max(1000, concurrency * 4),
        ) as engine:
            await engine.start(1, timeout=30)
            yield lambda n: cocaine_load(engine, n, concurrency, generation)


# -- main ---------------------------------------------------------------------------------------


def pin(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {chosen})  # inherited by every process started from here
    return chosen


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def run(args: argparse.Namespace) -> None:
    gen = Generation.parse(args.generation)
    coc = f"cocaine-http ({gen.name})"
    for name in ("flask", "fastapi"):
        if args.only and args.only != name:
            continue
        app = APPS[name]
        bases = ("gunicorn-sync", "gunicorn-gthread") if name == "flask" else ("uvicorn",)
        async with contextlib.AsyncExitStack() as stack:
            targets = {coc: await stack.enter_async_context(cocaine_worker(app, args.concurrency, gen))}
            for kind in bases:
                targets[kind] = await stack.enter_async_context(http_server(kind, app, args.concurrency))
            for measure in targets.values():  # warm-up
                await measure(max(200, args.requests // 10))
            figures: dict[str, list[float]] = {t: [] for t in targets}
            # rounds interleave the targets, so load from elsewhere on the machine
            # hits all of them alike; ratios are taken per round
            for _ in range(args.rounds):
                for target, measure in targets.items():
                    figures[target].append(await measure(args.requests))
        for target, values in figures.items():
            print(
                f"{name:8s} {target:18s} median {median(values):7.0f} req/s   best {max(values):7.0f}   "
                f"rounds: {', '.join(f'{v:.0f}' for v in values)}",
                flush=True,
            )
        for base in bases:
            ratios = [c / b for c, b in zip(figures[coc], figures[base], strict=True)]
            target = TARGETS.get((name, base))
            goal = (
                f"  (target >= {target}x: {'met' if median(ratios) >= target else 'NOT met'})"
                if target
                else ""
            )
            print(
                f"{name:8s} cocaine-http / {base:16s} median {median(ratios):5.2f}x  "
                f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}){goal}",
                flush=True,
            )
        print(flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=6000, help="requests per round (default 6000)")
    p.add_argument("--concurrency", "-W", type=int, default=16, help="requests in flight (default 16)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the last allowed one)")
    p.add_argument("--generation", default="B", help="protocol generation for cocaine-http (A or B)")
    p.add_argument("--only", choices=sorted(APPS), default=None)
    args = p.parse_args()
    cpu = pin(args.cpu)
    print(
        f"pinned to CPU {cpu}; {args.requests} requests x {args.rounds} rounds, "
        f"{args.concurrency} in flight\n",
        flush=True,
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
