"""When handlers start: at their request's end, or after the whole read that brought
their invoke, as real tasks.

A raw UNIX socket plays the runtime so that an invoke, its chunks and its end
arrive in one write; the Worker runs in the test's loop so the handler's view
can be recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from worker_helpers import run

from cocaine_http.aio.sessions import START_BATCH
from cocaine_http.aio.worker import Worker
from cocaine_http.protocol.catalog import MessageEncoder
from cocaine_http.protocol.frames import Generation

UUID = "0f5e3c1a-8d2b-4c7e-9a61-3b4d5e6f7a80"


def session_of(gen: str) -> int:
    return 2 if gen == "B" else 7


@dataclass
class RawPeer:
    """The runtime's end, connected and past the handshake; ``worker`` serves in ``serving``."""

    enc: MessageEncoder
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: Worker
    serving: asyncio.Future[int]


@contextlib.asynccontextmanager
async def raw_peer(gen: str, runtime_dir: str, handler: Any, **options: Any) -> AsyncIterator[RawPeer]:
    """Serve *handler* as "echo" in this loop, against a raw socket playing the runtime
    (*options*: the Worker's settings)."""
    enc = MessageEncoder(Generation.parse(gen))
    connected: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    path = os.path.join(runtime_dir, "app.sock")
    server = await asyncio.start_unix_server(lambda r, w: connected.put_nowait((r, w)), path)
    worker = Worker(
        [], app="echo", endpoint=path, uuid=UUID, protocol=1 if gen == "B" else 0, handle_signals=False,
        **options,
    )  # fmt: skip
    worker.on("echo", handler)
    serving = asyncio.ensure_future(worker.serve())
    try:
        reader, writer = await asyncio.wait_for(connected.get(), 5)
        await reader.readexactly(len(enc.handshake(UUID) + enc.heartbeat()))
        writer.write(enc.heartbeat())  # A activates on it; B does not mind
        yield RawPeer(enc, reader, writer, worker, serving)
        writer.close()
    finally:
        serving.cancel()
        server.close()


async def one_read_session(gen: str, runtime_dir: str, handler: Any, answer: list[bytes]) -> list[int]:
    """Serve *handler* as "echo", send one whole session (chunks ``ab``, ``cd``) in a
    single write, check the reply is *answer* then the end, and return the sessions
    still in flight after each read the worker finished."""
    in_flight: list[int] = []
    async with raw_peer(gen, runtime_dir, handler) as peer:
        enc, s, worker = peer.enc, session_of(gen), peer.worker
        channel = worker._connection.channel
        assert channel is not None and channel.on_read_end is not None
        original = channel.on_read_end

        def read_end() -> None:
            original()
            in_flight.append(worker.active_sessions)

        channel.on_read_end = read_end
        peer.writer.write(enc.invoke(s, "echo") + enc.chunk(s, b"ab") + enc.chunk(s, b"cd") + enc.choke(s))
        reply = b"".join(enc.chunk(s, data) for data in answer) + enc.choke(s)
        assert await asyncio.wait_for(peer.reader.readexactly(len(reply)), 5) == reply
        peer.writer.write(enc.terminate(1, "done"))
        assert await asyncio.wait_for(peer.serving, 5) == 0
    return in_flight


def test_a_handler_starts_with_its_whole_read_delivered_in_a_real_task(gen: str, runtime_dir: str) -> None:
    seen: dict[str, Any] = {}

    async def echo(request: Any, response: Any) -> None:
        seen["buffered"] = request.buffered  # both chunks arrived before the handler began
        seen["task"] = asyncio.current_task()
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(5):  # needs a current task: eager steps have one
                body = await request.read_all()
        else:
            body = await request.read_all()
        await response.write(body)

    run(one_read_session(gen, runtime_dir, echo, [b"abcd"]))
    assert seen["buffered"] == 4
    assert isinstance(seen["task"], asyncio.Task)
    assert seen["task"].get_name() == "echo"  # a handler's task is named after its event


def test_a_whole_request_is_answered_within_the_read_that_brought_it(gen: str, runtime_dir: str) -> None:
    async def echo(request: Any, response: Any) -> None:
        async for chunk in request:
            await response.write(chunk)

    in_flight = run(one_read_session(gen, runtime_dir, echo, [b"ab", b"cd"]))
    # the read that carried the session left nothing in flight: the handler ran to its end in it
    assert in_flight and in_flight[-1] == 0 and max(in_flight) == 0


def test_a_reads_whole_requests_start_together_by_batches(gen: str, runtime_dir: str) -> None:
    """START_BATCH + 2 whole sessions in one write: the first START_BATCH handlers
    start together once the last of their requests has ended, before the next
    invoke is read; the two others at the read's end."""
    alive_at_start: list[int] = []

    async def echo(request: Any, response: Any) -> None:
        alive_at_start.append(peer.worker.active_sessions)
        async for chunk in request:
            await response.write(chunk)

    async def body() -> None:
        nonlocal peer
        async with raw_peer(gen, runtime_dir, echo) as peer:
            enc, first = peer.enc, session_of(gen)
            sessions = [first + 2 * i for i in range(START_BATCH + 2)]
            peer.writer.write(
                b"".join(enc.invoke(s, "echo") + enc.chunk(s, b"%d" % s) + enc.choke(s) for s in sessions)
            )
            reply = b"".join(enc.chunk(s, b"%d" % s) + enc.choke(s) for s in sessions)
            assert await asyncio.wait_for(peer.reader.readexactly(len(reply)), 5) == reply
            peer.writer.write(enc.terminate(1, "done"))
            assert await asyncio.wait_for(peer.serving, 5) == 0

    peer: Any = None
    run(body())
    # each batch's handlers run one after the other, each session ending with its handler
    assert alive_at_start == [*range(START_BATCH, 0, -1), 2, 1]


def test_a_handler_that_waits_still_runs_to_the_end(gen: str, runtime_dir: str) -> None:
    async def echo(request: Any, response: Any) -> None:
        await asyncio.sleep(0.01)  # suspends in its first step: the rest runs as an ordinary task
        await response.write(await request.read_all())

    in_flight = run(one_read_session(gen, runtime_dir, echo, [b"abcd"]))
    assert 1 in in_flight  # still running when its read ended


def test_a_loop_with_its_own_task_factory_makes_the_handler_tasks(gen: str, runtime_dir: str) -> None:
    made: list[str] = []

    async def echo(request: Any, response: Any) -> None:
        await response.write(await request.read_all())

    async def body() -> list[int]:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(coro.__qualname__)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)
        return await one_read_session(gen, runtime_dir, echo, [b"abcd"])

    run(body())
    assert "Sessions._run_async" in made  # the handler ran in a task the factory made


def test_a_read_that_ends_in_garbage_runs_none_of_its_handlers(
    gen: str, runtime_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The invoke before the bad bytes was delivered, but the connection is gone by the
    read's end: its handler is never started, and the worker exits as on a lost connection."""
    called: list[int] = []

    async def echo(request: Any, response: Any) -> None:
        called.append(request.session)

    async def body() -> int:
        async with raw_peer(gen, runtime_dir, echo) as peer:
            enc, s = peer.enc, session_of(gen)
            peer.writer.write(enc.invoke(s, "echo") + enc.chunk(s, b"ab") + b"\xc1")  # 0xc1: never msgpack
            code = await asyncio.wait_for(peer.serving, 5)
            assert await asyncio.wait_for(peer.reader.read(), 5) == b""  # nothing was answered
        return code

    assert run(body()) == 1
    assert called == []
    assert not [r for r in caplog.records if r.exc_info]  # logged as errors, no traceback
