"""Real worker processes behind the runtime-side Engine, driven from sync tests.

:class:`Served` starts ``python -m cocaine_http TARGET ...`` through
:class:`cocaine_http.runtime.engine.Engine` (the runtime's argv, a UNIX
socket, generation A or B) on an event loop running in a background thread,
and sends HTTP envelopes the way the cocaine proxies do. Module-scoped
fixtures keep one worker per (app, generation) for a whole test module.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cocaine_http.http.envelope import decode_response, encode_request
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.wire import packb
from cocaine_http.runtime.engine import Engine, Reply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPAT_DIR = os.path.dirname(os.path.abspath(__file__))


class LoopThread:
    """An asyncio loop in a daemon thread; :meth:`run` a coroutine on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class HttpReply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reply: Reply

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.decode().lower() == name.lower():
                return v.decode("latin-1")
        return None


class Served:
    """One worker process serving *target*, behind an Engine."""

    def __init__(
        self,
        target: str,
        generation: Generation | str,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        app_dir: str = ROOT,
        workers: int = 1,
        locator: str | None = None,
    ) -> None:
        self.target = target
        # Nothing here runs a locator: by default the worker is told a loopback port
        # we hold bound but never listen on, so a service call from an app is refused
        # at once, never answered by a runtime that a parallel run (or the machine)
        # has on the default 10053.
        self._no_locator: socket.socket | None = None
        if locator is None:
            self._no_locator = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._no_locator.bind(("127.0.0.1", 0))
            locator = f"127.0.0.1:{self._no_locator.getsockname()[1]}"
        self.generation = Generation.parse(generation)
        self.lt = LoopThread()
        self.tmp = tempfile.mkdtemp(prefix="chs-")
        env = dict(env or {})
        env.setdefault("PYTHONPATH", ROOT)
        self.command = [sys.executable, "-m", "cocaine_http", target, "--app-dir", app_dir, *args]
        self.engine = Engine(
            "web",
            self.command,
            generation=self.generation,
            runtime_dir=self.tmp,
            cwd=ROOT,
            env=env,
            concurrency=64,
            locator=locator,
        )
        try:
            self.lt.run(self.engine.start(workers, timeout=20))
        except Exception:
            print(self.output(), file=sys.stderr)
            self.close()
            raise

    def output(self) -> str:
        lines = []
        for slave in self.engine.slaves.values():
            lines.extend(f"[{slave.uuid[:8]} {s}] {line}" for s, line in slave.output)
        return "\n".join(lines)

    @property
    def slave(self) -> Any:
        return next(iter(self.engine.slaves.values()))

    def invoke(self, chunks: Iterable[bytes], *, event: str = "http", timeout: float = 30.0) -> Reply:
        return self.lt.run(self.engine.invoke(event, list(chunks), timeout=timeout), timeout + 5)

    def request(
        self,
        method: str,
        uri: str | bytes,
        headers: Sequence[tuple[str, str]] = (("Host", "example.com"),),
        body: bytes = b"",
        *,
        extra_chunks: Sequence[bytes] = (),
        version: str = "1.1",
        event: str = "http",
    ) -> HttpReply:
        blob = encode_request(method, uri, headers, body, generation=self.generation, version=version)
        reply = self.invoke([blob, *extra_chunks], event=event)
        if reply.error is not None:
            raise AssertionError(f"worker answered an error frame {reply.error}\n{self.output()}")
        status, hdrs, data = decode_response(reply.chunks, self.generation)
        return HttpReply(status, hdrs, data, reply)

    def close(self) -> None:
        try:
            self.lt.run(self.engine.stop(), 30)
        finally:
            self.lt.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self._no_locator is not None:
                self._no_locator.close()


def raw_envelope(obj: Any) -> bytes:
    return packb(obj)


def served(target: str, generation: Generation, **kw: Any) -> Iterator[Served]:
    s = Served(target, generation, **kw)
    try:
        yield s
    finally:
        s.close()


def read_lines(path: str) -> list[str]:
    """The lines an app wrote to its probe log (what it saw, from its own process)."""
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* until it holds or *timeout* passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
