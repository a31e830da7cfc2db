"""The role transports over real sockets on loopback: the worker's and the frame one."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cocaine_http.aio.frame_transport import FrameTransport
from cocaine_http.aio.worker_transport import WorkerTransport
from cocaine_http.errors import DecodeError, MalformedMessageError
from cocaine_http.protocol.catalog import MessageEncoder
from cocaine_http.protocol.frames import Frame, Generation
from cocaine_http.protocol.worker import WorkerProtocol

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


async def unix_peer(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    path = os.path.join(tempfile.mkdtemp(prefix="transport"), "rt.sock")
    return await asyncio.start_unix_server(handler, path), path


class Sink:
    """A session sink that records what it is told, and whether its transport was dispatching."""

    def __init__(self) -> None:
        self.transport: WorkerTransport | None = None
        self.got: list[Any] = []
        self.choked = asyncio.Event()

    def _dispatching(self) -> bool:
        return self.transport is not None and self.transport.dispatching

    def on_invoke(self, session: int, event: str, headers: list[Any]) -> None:
        self.got.append(("invoke", session, event, self._dispatching()))

    def on_chunk(self, session: int, data: bytes, headers: list[Any] | None) -> None:
        if data == b"boom":
            raise RuntimeError("bug in a sink")
        self.got.append(("chunk", session, data, self._dispatching()))

    def on_choke(self, session: int) -> None:
        self.got.append(("choke", session, self._dispatching()))
        self.choked.set()

    def on_event(self, event: Any) -> None:
        self.got.append(("event", event))


def test_a_failing_sink_is_logged_and_the_worker_connection_lives(caplog: pytest.LogCaptureFixture) -> None:
    """A sink method that raises costs its own frame only; the frames after it
    in the same read still arrive."""
    enc = MessageEncoder(Generation.A)

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(enc.invoke(1, "echo") + enc.chunk(1, b"boom") + enc.chunk(1, b"fine") + enc.choke(1))
        await w.drain()
        await r.read()
        w.close()

    async def main() -> list[Any]:
        server, path = await unix_peer(peer)
        sink = Sink()
        transport = sink.transport = WorkerTransport(Generation.A, WorkerProtocol(Generation.A, "u"), sink)
        await transport.connect(path)
        await sink.choked.wait()
        assert transport.connected
        transport.close()
        server.close()
        return sink.got

    assert run(main()) == [("invoke", 1, "echo", True), ("chunk", 1, b"fine", True), ("choke", 1, True)]
    assert "callback failed on message type 4 of session 1" in caplog.text


def test_read_end_follows_every_frame_of_a_read_even_when_one_closes_it() -> None:
    """``on_read_end`` runs once per read, after its last frame, with ``dispatching`` set
    throughout; a read whose tail is garbage still ends with it (after the close)."""
    enc = MessageEncoder(Generation.A)
    first = enc.invoke(1, "x") + enc.frame_header(1, 1) + b"a" + enc.frame_header(1, 1) + b"b" + enc.choke(1)
    second = enc.invoke(2, "y") + enc.frame_header(2, 1) + b"c" + b"\xc1"  # good frames, then a reserved byte
    go_on = asyncio.Event()

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(first)
        await w.drain()
        await go_on.wait()
        w.write(second)
        await w.drain()
        await r.read()
        w.close()

    async def main() -> list[Any]:
        server, path = await unix_peer(peer)
        sink = Sink()
        transport = sink.transport = WorkerTransport(Generation.A, WorkerProtocol(Generation.A, "u"))
        transport.sink = sink
        closed = asyncio.Event()
        errors: list[BaseException | None] = []

        def read_end() -> None:
            sink.got.append(("read end", transport.dispatching, transport.closed))
            go_on.set()

        def on_close(exc: BaseException | None) -> None:
            errors.append(exc)
            closed.set()

        transport.on_read_end = read_end
        transport.on_close = on_close
        await transport.connect(path)
        await closed.wait()  # the read-end hook ran after the close, in the same read
        server.close()
        assert not transport.dispatching
        assert len(errors) == 1 and isinstance(errors[0], MalformedMessageError)
        return sink.got

    assert run(main()) == [
        ("invoke", 1, "x", True),
        ("chunk", 1, b"a", True),
        ("chunk", 1, b"b", True),
        ("choke", 1, True),
        ("read end", True, False),
        ("invoke", 2, "y", True),
        ("chunk", 2, b"c", True),
        ("read end", True, True),
    ]


def test_a_worker_transport_without_a_sink_refuses_to_connect() -> None:
    async def main() -> None:
        transport = WorkerTransport(Generation.B, WorkerProtocol(Generation.B, "u"))
        with pytest.raises(RuntimeError, match="sink"):
            transport.make_protocol()

    run(main())


@pytest.mark.parametrize("gen", list(Generation))
def test_frame_transport_hands_every_frame_to_its_callable_then_closes_on_garbage(gen: Generation) -> None:
    enc = MessageEncoder(gen)

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(enc.chunk(3, b"one") + enc.frame(3, 7, ["x", 1]) + enc.choke(3) + b"\xc1")
        await w.drain()
        await r.read()
        w.close()

    async def main() -> tuple[list[tuple[int, int, list[Any]]], list[Any]]:
        server, path = await unix_peer(peer)
        frames: list[tuple[int, int, list[Any]]] = []
        events: list[Any] = []
        closed = asyncio.Event()

        def on_frame(frame: Frame) -> None:
            frames.append((frame.session, frame.type, list(frame.args)))

        transport = FrameTransport(gen, on_frame)
        transport.on_connect = lambda: events.append(("connect", transport.peername))
        transport.on_protocol_error = lambda exc: events.append(("protocol error", type(exc)))
        transport.on_close = lambda exc: (events.append(("close", type(exc))), closed.set())
        await transport.connect(path)
        await closed.wait()
        server.close()
        return frames, events

    frames, events = run(main())
    chunk, choke = (4, 6) if gen is Generation.A else (0, 2)
    assert frames == [(3, chunk, [b"one"]), (3, 7, [b"x", 1]), (3, choke, [])]
    assert events[0][0] == "connect"
    assert events[1:] == [("protocol error", MalformedMessageError), ("close", MalformedMessageError)]
    assert issubclass(MalformedMessageError, DecodeError)
