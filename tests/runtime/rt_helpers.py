"""Raw peers for the local runtime's tests: bytes in, decoded frames out, nothing hidden."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from typing import Any

import msgpack

from cocaine_http.protocol.wire import packb


def hx(text: str) -> bytes:
    return bytes.fromhex(" ".join(text.split()))


def alive(pid: int) -> bool:
    """Whether a process with this pid still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


#: Client connections opened by tcp() in the current run(), closed at its end.
_open_writers: list[asyncio.StreamWriter] = []


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    """Run a test's coroutine; the client connections it opened with :func:`tcp`
    (raw peers included) are closed before its loop ends, whatever happened."""

    async def main() -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            writers = list(_open_writers)
            _open_writers.clear()
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    return asyncio.run(main())


async def tcp(port: int, host: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection``, closed by :func:`run` at the end if the test did not."""
    reader, writer = await asyncio.open_connection(host, port)
    _open_writers.append(writer)
    return reader, writer


class RawPeer:
    """A TCP client that speaks frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> RawPeer:
        return cls(*await tcp(port, host))

    def send(self, *frames: Any) -> None:
        for frame in frames:
            self.writer.write(frame if isinstance(frame, bytes) else packb(frame))

    async def recv(self, timeout: float = 5.0) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("connection closed")
            self.unpacker.feed(data)

    async def recv_bytes(self, n: int, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (anything still readable is discarded)."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except asyncio.TimeoutError:
            return False

    async def nothing(self, wait: float = 0.2) -> bool:
        """True when nothing arrives within *wait* seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), wait)
        except asyncio.TimeoutError:
            return True
        self.unpacker.feed(data)
        return False

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class FakeCall:
    """The caller's side of one fake event; the test script plays the worker with ``feed_*``."""

    def __init__(self, event: str, sunk: list[tuple[Any, ...]]) -> None:
        self.event = event
        self.sunk = sunk
        self.events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.finished = False
        self.aborted = False

    @property
    def done(self) -> bool:
        return self.finished or self.aborted

    async def write(self, data: bytes) -> None:
        self.sunk.append(("chunk", data))

    async def close(self) -> None:
        self.sunk.append(("close",))

    def abort(self, reason: str = "client disconnected") -> None:
        self.aborted = True
        self.sunk.append(("abort", reason))

    async def next(self) -> tuple[Any, ...]:
        return await self.events.get()

    def feed_chunk(self, data: bytes) -> None:
        self.events.put_nowait(("chunk", data))

    def feed_error(self, code: Any, message: str) -> None:
        self.finished = True
        self.events.put_nowait(("error", code, message))

    def feed_close(self) -> None:
        self.finished = True
        self.events.put_nowait(("close",))


class FakeApp:
    """An in-process stand-in for an app service: ``script(call, sunk)`` plays the worker.

    ``sunk`` is the list of what the client side sent (``("chunk", data)``,
    ``("close",)``, ``("abort", reason)``); ``refuse`` makes ``open`` raise.
    """

    def __init__(self, name: str, script: Any, *, refuse: str | None = None) -> None:
        self.name = name
        self.script = script
        self.refuse = refuse
        self.invocations: list[FakeCall] = []
        self.sunk: list[list[tuple[Any, ...]]] = []
        self.tasks: list[asyncio.Task[Any]] = []

    async def open(self, event: str, tag: str | None = None) -> FakeCall:
        if self.refuse:
            raise RuntimeError(self.refuse)
        sunk: list[tuple[Any, ...]] = []
        call = FakeCall(event, sunk)
        self.invocations.append(call)
        self.sunk.append(sunk)
        self.tasks.append(asyncio.get_running_loop().create_task(self.script(call, sunk)))
        return call

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
