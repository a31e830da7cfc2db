"""Sending while the transport has a backlog: messages are held and leave together.

From Python 3.12 asyncio's socket transport recounts its whole backlog on
every write (python/cpython#146507), so a channel that sent frame by frame to
a peer that does not keep up did quadratic work. The channel holds messages
back while the transport has a backlog and hands them over together. These
tests switch the holding on whatever the interpreter (``hold_on_backlog``),
over a real UNIX socket whose peer reads only when told to; the asyncio
transport's ``write`` is wrapped to count what reaches it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

import msgpack

from cocaine_http import Channel
from cocaine_http.aio.transport import _HOLD_LIMIT as HOLD_LIMIT
from cocaine_http.errors import DisconnectedError
from cocaine_http.protocol.catalog import MessageEncoder
from cocaine_http.protocol.frames import Generation

ENC = MessageEncoder(Generation.A)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


class Peer:
    """The far end: reads nothing until ``release()``, then everything until EOF."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.data: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await self.released.wait()
        self.data.set_result(await r.read())
        w.close()

    def release(self) -> None:
        self.released.set()


async def connected(**kwargs: Any) -> tuple[Channel, Peer, list[int], asyncio.AbstractServer]:
    """A holding channel to a :class:`Peer`, and the sizes of the writes its transport gets."""
    peer = Peer()
    path = os.path.join(tempfile.mkdtemp(prefix="blg"), "rt.sock")
    server = await asyncio.start_unix_server(peer.handle, path)
    channel = Channel(Generation.A, **kwargs)
    channel.hold_on_backlog = True
    await channel.connect(path)
    transport = channel._transport  # asyncio's transport: count what reaches it
    assert transport is not None
    writes: list[int] = []
    write = transport.write

    def counting_write(data: Any) -> None:
        writes.append(len(data))
        write(data)

    transport.write = counting_write  # type: ignore[method-assign]
    return channel, peer, writes, server


async def fill(channel: Channel) -> bytes:
    """Send large chunks until the kernel's buffer is full and the transport keeps a backlog."""
    sent = bytearray()
    frame = ENC.chunk(1, b"f" * 65536)
    while channel._transport.get_write_buffer_size() == 0:  # type: ignore[union-attr]
        channel.send(1, frame)
        sent += frame
        await asyncio.sleep(0)
    return bytes(sent)


def frames(data: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(data)
    return list(unpacker)


def test_holding_is_on_where_asyncio_recounts_its_backlog() -> None:
    assert Channel(Generation.A).hold_on_backlog is (sys.version_info >= (3, 12))


def test_frames_sent_behind_a_backlog_reach_the_transport_together_and_in_order() -> None:
    count = 20000
    small = [ENC.chunk(2, b"%06d" % i) for i in range(count)]

    async def main() -> tuple[bytes, bytes, list[int]]:
        channel, peer, writes, server = await connected(write_high_water=1 << 24)
        head = await fill(channel)
        before = len(writes)
        for frame in small:  # one loop iteration: held, handed over by 64 KiB
            channel.send(2, frame)
        await asyncio.sleep(0)  # the queued release: the rest, in one write
        batch = writes[before:]
        peer.release()
        channel.close_gracefully()
        got = await peer.data
        server.close()
        return got, head, batch

    got, head, batch = run(main())
    assert got == head + b"".join(small)  # every byte, in order
    total = sum(batch)
    assert total == sum(map(len, small))
    # 20000 sends became a handful of writes: one per 64 KiB held, and the rest.
    assert len(batch) <= total // HOLD_LIMIT + 1
    assert [f[2][0] for f in frames(got[len(head):])] == [b"%06d" % i for i in range(count)]


def test_a_writer_that_never_yields_is_still_paused_at_the_mark() -> None:
    """send + drain in a loop never yields while drain has nothing to wait for:
    held messages must reach the transport by themselves, or it never pauses."""

    async def main() -> tuple[bool, int, int, bytes]:
        channel, peer, _writes, server = await connected(write_high_water=256 * 1024)
        head = await fill(channel)
        frame = ENC.chunk(2, b"y" * 1000)
        sent = bytearray()
        most_held = 0
        while not channel.write_paused and len(sent) < 64 << 20:
            channel.send(2, frame)
            sent += frame
            held = channel.write_buffer_size - channel._transport.get_write_buffer_size()  # type: ignore[union-attr]
            most_held = max(most_held, held)
            if not channel.write_paused:
                await channel.drain()  # returns at once, without yielding to the loop
        paused = channel.write_paused
        peer.release()
        await channel.drain()
        channel.close_gracefully()
        got = await peer.data
        server.close()
        return paused, most_held, len(sent), got[len(head):]

    paused, most_held, sent, tail = run(main())
    assert paused
    assert most_held < HOLD_LIMIT + 1100
    assert sent < 8 << 20  # stopped by the mark, not by the guard
    assert len(tail) == sent and all(f[2][0] == b"y" * 1000 for f in frames(tail))


def test_a_graceful_close_sends_what_is_held_and_an_abort_drops_it() -> None:
    async def main() -> tuple[bytes, bytes, bytes, bool]:
        # graceful: held frames go out before the EOF
        channel, peer, _writes, server = await connected()
        head = await fill(channel)
        tail = ENC.chunk(3, b"last words") + ENC.choke(3)
        channel.send(3, tail[:10])
        channel.send(3, tail[10:])
        channel.close_gracefully()
        peer.release()
        graceful = await peer.data
        server.close()
        # abort: nothing more, and sending afterwards is an error
        channel, peer, _writes, server = await connected()
        await fill(channel)
        channel.send(3, tail)
        channel.close()
        peer.release()
        aborted = await peer.data
        server.close()
        try:
            channel.send(3, tail)
        except DisconnectedError:
            refused = True
        else:
            refused = False
        return graceful, head + tail, aborted, refused

    graceful, expected, aborted, refused = run(main())
    assert graceful == expected
    assert not aborted.endswith(ENC.chunk(3, b"last words") + ENC.choke(3))
    assert refused


def test_sends_go_straight_to_the_socket_again_once_the_backlog_is_gone() -> None:
    async def main() -> tuple[bool, int, bytes]:
        channel, peer, writes, server = await connected()
        await fill(channel)
        n = len(writes)
        channel.send(4, ENC.choke(4))
        held = len(writes) == n  # behind the backlog: not written yet
        peer.release()
        await channel.drain()
        for _ in range(1000):  # the peer reads: the transport's backlog goes (no event tells)
            if not channel._transport.get_write_buffer_size():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        channel.send(5, ENC.choke(5))  # held once more at most, then released:
        await asyncio.sleep(0)  # the release finds no backlog
        n = len(writes)
        channel.send(6, ENC.choke(6))
        direct = len(writes) - n  # written within send
        channel.close_gracefully()
        got = await peer.data
        server.close()
        return held, direct, got

    held, direct, got = run(main())
    assert held
    assert direct == 1
    tail = ENC.choke(4) + ENC.choke(5) + ENC.choke(6)
    assert got.endswith(tail)
