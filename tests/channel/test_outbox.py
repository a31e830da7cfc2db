"""The outbox: frames written in one loop turn leave in one socket write.

A real channel over a UNIX socket; its ``send`` is wrapped to record each
hand-over to the socket (and still sends), and the peer checks that every
byte arrived in order.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from cocaine_http.aio.flow import Outbox
from cocaine_http.aio.worker_transport import WorkerTransport
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.worker import WorkerProtocol


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


class _Quiet:
    """A sink for a peer that sends nothing."""

    def on_invoke(self, *_args: Any) -> None: ...
    def on_chunk(self, *_args: Any) -> None: ...
    def on_choke(self, *_args: Any) -> None: ...
    def on_event(self, *_args: Any) -> None: ...


async def connected() -> tuple[WorkerTransport, list[bytes], asyncio.Future[bytes], asyncio.AbstractServer]:
    """A channel to a peer that collects everything until the channel closes."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[bytes] = loop.create_future()

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        received.set_result(await r.read())
        w.close()

    path = os.path.join(tempfile.mkdtemp(prefix="obx"), "rt.sock")
    server = await asyncio.start_unix_server(peer, path)
    channel = WorkerTransport(Generation.A, WorkerProtocol(Generation.A, "u"), _Quiet())
    await channel.connect(path)
    sends: list[bytes] = []
    send = channel.send

    def recording_send(session: int, data: bytes) -> None:
        sends.append(bytes(data))
        send(session, data)

    channel.send = recording_send  # type: ignore[method-assign]
    return channel, sends, received, server


async def close(
    channel: WorkerTransport, received: asyncio.Future[bytes], server: asyncio.AbstractServer
) -> bytes:
    """Close the channel; everything the peer received."""
    channel.close()
    try:
        return await received
    finally:
        server.close()


def test_frames_of_one_turn_go_out_in_one_write_at_its_end() -> None:
    async def main() -> None:
        channel, sends, received, server = await connected()
        outbox = Outbox(channel, asyncio.get_running_loop())
        seen: list[list[bytes]] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(outbox.write, b"one|")
        loop.call_soon(outbox.write, b"two|")
        loop.call_soon(lambda: seen.append(list(sends)))  # queued with the writes: nothing sent yet
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert seen == [[]]
        assert sends == [b"one|two|"]
        assert await close(channel, received, server) == b"one|two|"

    run(main())


def test_flush_soon_sends_writes_queued_behind_it_in_their_own_turn() -> None:
    """What handler tasks queued to take their first step write leaves right behind them."""

    async def main() -> None:
        channel, sends, received, server = await connected()
        loop = asyncio.get_running_loop()
        outbox = Outbox(channel, loop)
        seen: list[list[bytes]] = []

        def read_end() -> None:  # as the worker's read end does: steps first, then the flush
            loop.call_soon(outbox.write, b"a|")
            loop.call_soon(outbox.write, b"b|")
            outbox.flush_soon()
            outbox.flush_soon()  # once is enough, however often asked

        loop.call_soon(read_end)
        await asyncio.sleep(0)  # read_end ran; the writes and the flush are queued
        loop.call_soon(lambda: seen.append(list(sends)))  # runs in the turn after theirs
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert seen == [[b"a|b|"]]  # sent in the writes' own turn, in one piece
        assert await close(channel, received, server) == b"a|b|"

    run(main())


def test_writes_during_a_read_wait_for_the_owners_flush() -> None:
    async def main() -> None:
        channel, sends, received, server = await connected()
        outbox = Outbox(channel, asyncio.get_running_loop())
        channel.dispatching = True  # as while the channel delivers a read
        outbox.write(b"x|")
        outbox.write(b"y|")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sends == []  # nothing scheduled: the read's end flushes
        channel.dispatching = False
        outbox.flush()
        assert sends == [b"x|y|"]
        assert await close(channel, received, server) == b"x|y|"

    run(main())


def test_a_full_outbox_is_sent_at_once() -> None:
    async def main() -> None:
        channel, sends, received, server = await connected()
        outbox = Outbox(channel, asyncio.get_running_loop(), limit=8)
        outbox.write(b"1234")
        assert sends == []
        outbox.write(b"5678")  # reaches the limit
        assert sends == [b"12345678"]
        assert await close(channel, received, server) == b"12345678"

    run(main())
