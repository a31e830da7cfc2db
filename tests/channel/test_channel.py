"""The seed's Channel over real sockets on loopback, against peers written here."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cocaine_http import Channel
from cocaine_http.errors import ConnectError, DisconnectedError, FrameFormatError, MalformedMessageError
from cocaine_http.protocol.catalog import MessageEncoder
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.worker import WorkerProtocol

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


class Recorder:
    """Attaches every seed callback of a channel and records the calls in order."""

    NAMES = ("on_connect", "on_socket_error", "on_chunk", "on_choke", "on_error", "on_terminate",
             "on_heartbeat", "on_invoke", "on_protocol_error", "on_close")

    def __init__(self, channel: Channel) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.closed = asyncio.Event()
        for name in self.NAMES:
            setattr(channel, name, self._make(name))

    def _make(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.calls.append((name, *args))
            if name == "on_close":
                self.closed.set()
        return record

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


async def unix_peer(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    path = os.path.join(tempfile.mkdtemp(prefix="chan"), "rt.sock")
    return await asyncio.start_unix_server(handler, path), path


@pytest.mark.parametrize("gen", list(Generation))
def test_worker_role_over_unix_socket(gen: Generation) -> None:
    enc = MessageEncoder(gen)
    received = bytearray()

    async def runtime(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        received.extend(await r.readexactly(len(enc.handshake("u1")) + 4))
        burst = (enc.heartbeat() + enc.invoke(2, "http") + enc.chunk(2, b"\x00\xff" * 1000)
                 + enc.choke(2) + enc.terminate(1, "slave is idle"))
        for i in range(0, len(burst), 7):  # arbitrary splits on the wire
            w.write(burst[i:i + 7])
            await w.drain()
        await asyncio.sleep(0.05)
        w.close()

    async def main() -> list[tuple[Any, ...]]:
        server, path = await unix_peer(runtime)
        ch = Channel(gen, worker=WorkerProtocol(gen, "u1"))
        rec = Recorder(ch)
        await ch.connect(path)
        ch.send(0, ch.worker.start(0.0))  # type: ignore[union-attr]
        await rec.closed.wait()
        server.close()
        return rec.calls

    calls = run(main())
    assert bytes(received) == enc.handshake("u1") + enc.heartbeat()
    control = 0 if gen is Generation.A else 1
    assert calls == [
        ("on_connect",),
        ("on_heartbeat",),
        ("on_invoke", 2, "http"),
        ("on_chunk", 2, b"\x00\xff" * 1000),
        ("on_choke", 2),
        ("on_terminate", control, 1, "slave is idle"),
        ("on_close", None),
    ]


@pytest.mark.parametrize("gen", list(Generation))
@pytest.mark.parametrize("family", ["ipv4", "ipv6", "hostport-string"])
def test_client_role_over_tcp(gen: Generation, family: str) -> None:
    if family == "ipv6" and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    enc = MessageEncoder(gen)
    code: Any = 1 if gen is Generation.A else (10, 1)

    async def service(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readexactly(12)
        w.write(enc.chunk(1, b"blob") + enc.error(1, code, "service nosuch is not available") + enc.choke(1))
        await w.drain()
        await r.read()  # until the client closes
        w.close()

    async def main() -> list[tuple[Any, ...]]:
        host = "::1" if family == "ipv6" else "127.0.0.1"
        try:
            server = await asyncio.start_server(service, host, 0)
        except OSError:
            pytest.skip(f"cannot listen on {host}")
        port = server.sockets[0].getsockname()[1]
        endpoint: Any = {
            "ipv4": (host, port),
            "ipv6": f"[{host}]:{port}",
            "hostport-string": f"{host}:{port}",
        }[family]
        ch = Channel(gen)
        rec = Recorder(ch)
        await ch.connect(endpoint)
        ch.send(1, enc.frame(1, 0, ["storage"]))
        while len(rec.calls) < 3 + (gen is Generation.A):  # noqa: ASYNC110 - polls a plain recorder list
            await asyncio.sleep(0.01)
        ch.close()
        assert ch.closed
        with pytest.raises(DisconnectedError):
            ch.send(2, b"x")
        server.close()
        return rec.calls

    calls = run(main())
    expected_error = ("on_error", 1, code, "service nosuch is not available")
    assert calls[:3] == [("on_connect",), ("on_chunk", 1, b"blob"), expected_error]
    if gen is Generation.A:
        assert calls[3] == ("on_choke", 1)


def test_connect_failure_reports_errno_once() -> None:
    async def main() -> tuple[Recorder, ConnectError]:
        ch = Channel(Generation.B)
        rec = Recorder(ch)
        with pytest.raises(ConnectError) as info:
            await ch.connect(os.path.join(tempfile.mkdtemp(), "nobody-listens"))
        return rec, info.value

    rec, exc = run(main())
    assert rec.calls == [("on_socket_error", errno.ENOENT)]
    assert exc.errno == errno.ENOENT

    async def refused() -> list[tuple[Any, ...]]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        ch = Channel(Generation.A)
        rec = Recorder(ch)
        with pytest.raises(ConnectError):
            await ch.connect(("127.0.0.1", port))
        return rec.calls

    assert run(refused()) == [("on_socket_error", errno.ECONNREFUSED)]


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"\x93\x04\x01\x91\xa1x" + b"\xc1", MalformedMessageError),  # reserved byte after a good frame
        (b"\x05", FrameFormatError),  # not an array
        (b"\x94\x04\x01\x90\x90", FrameFormatError),  # four elements in A
        (b"\x93\xc3\x01\x90", FrameFormatError),  # bool as a type id
        (b"\x93\x04\x01\xd4\x01\x02", MalformedMessageError),  # ext
    ],
)
def test_bad_input_closes_cleanly_with_a_typed_error(garbage: bytes, error: type) -> None:
    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(garbage)
        await w.drain()
        await r.read()
        w.close()

    async def main() -> list[tuple[Any, ...]]:
        server, path = await unix_peer(peer)
        ch = Channel(Generation.A)
        rec = Recorder(ch)
        await ch.connect(path)
        await rec.closed.wait()
        server.close()
        assert ch.closed
        return rec.calls

    calls = run(main())
    names = [c[0] for c in calls]
    assert names[-2:] == ["on_protocol_error", "on_close"]
    assert isinstance(calls[-2][1], error) and calls[-1][1] is calls[-2][1]
    assert calls[-2][1].code == error.code
    if garbage.startswith(b"\x93\x04\x01\x91"):
        assert ("on_chunk", 1, b"x") in calls  # frames before the garbage were delivered


def test_write_backpressure_exposes_drain() -> None:
    """A peer that does not read: the channel pauses at the high-water mark and drain waits."""
    release = asyncio.Event()
    total = 0

    async def slow_peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal total
        await release.wait()
        while data := await r.read(1 << 16):
            total += len(data)
        w.close()

    async def main() -> tuple[bool, bool, int]:
        server, path = await unix_peer(slow_peer)
        ch = Channel(Generation.B, write_high_water=64 * 1024)
        await ch.connect(path)
        enc = MessageEncoder(Generation.B)
        frame = enc.chunk(2, b"x" * 16384)
        sent = 0
        # Fill the kernel's socket buffer too: only then does the pause stick.
        while sent < 4000:
            while not ch.write_paused:
                ch.send(2, frame)
                sent += 1
            await asyncio.sleep(0.05)
            if ch.write_paused:
                break
        paused = ch.write_paused
        drain = asyncio.ensure_future(ch.drain())
        await asyncio.sleep(0.1)
        blocked = not drain.done()
        release.set()
        await drain
        ch.close_gracefully()
        await asyncio.sleep(0.2)
        server.close()
        return paused, blocked, sent * len(frame)

    paused, blocked, sent_bytes = run(main())
    assert paused and blocked
    assert sent_bytes < 64 * 1024 * 100  # bounded by the mark, not by the loop count
    assert total == sent_bytes  # nothing lost once the peer reads


def test_a_failing_callback_is_logged_and_the_connection_survives(caplog: pytest.LogCaptureFixture) -> None:
    enc = MessageEncoder(Generation.A)

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(enc.chunk(1, b"boom") + enc.chunk(1, b"fine") + enc.choke(1))
        await w.drain()
        await r.read()
        w.close()

    async def main() -> list[bytes]:
        server, path = await unix_peer(peer)
        ch = Channel(Generation.A)
        got: list[bytes] = []
        done = asyncio.Event()

        def on_chunk(session: int, data: bytes) -> None:
            if data == b"boom":
                raise RuntimeError("bug in a callback")
            got.append(data)

        ch.on_chunk = on_chunk
        ch.on_choke = lambda session: done.set()
        await ch.connect(path)
        await done.wait()
        assert ch.connected
        ch.close()
        server.close()
        return got

    assert run(main()) == [b"fine"]
    assert "callback failed on message type 4 of session 1" in caplog.text


def test_service_error_keeps_an_explicit_none_category() -> None:
    from cocaine_http.errors import ErrorCategory, ServiceError

    assert ServiceError("x", code=1, category=None).category is None  # generation A
    assert ServiceError("x", code=1).category == ErrorCategory.WORKER
    assert "[10, 1]" in str(ServiceError("gone", code=1, category=10, service="locator", method="resolve"))


def test_relative_unix_endpoint_and_bad_endpoint() -> None:
    accepted = asyncio.Event()

    async def peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set()
        await r.read()  # until the channel closes
        w.close()

    async def main() -> None:
        server, path = await unix_peer(peer)
        cwd = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            ch = Channel(Generation.B)
            await ch.connect(os.path.basename(path), unix=True)  # "rt.sock" relative to cwd
            assert ch.connected
            # The connect returns once the kernel took the connection; closing the
            # server before asyncio accepts it would leak the server's transport.
            await asyncio.wait_for(accepted.wait(), 5)
            ch.close()
        finally:
            os.chdir(cwd)
        with pytest.raises(ConnectError, match="bad endpoint"):
            await Channel(Generation.B).connect("no-port-here")
        server.close()
        await server.wait_closed()  # the peer has seen the channel close and closed its side

    run(main())


def test_channels_on_one_loop_share_a_read_buffer_but_never_each_others_bytes() -> None:
    """Every channel of a loop reads into one buffer (:mod:`cocaine_http.aio.reads`):
    what a callback received must stay intact while other reads reuse it."""
    from cocaine_http.aio.reads import READ_SIZE

    enc = MessageEncoder(Generation.A)
    big = bytes(range(256)) * (3 * READ_SIZE // 256 + 7)  # a frame over several reads

    async def runtime_for(tag: bytes) -> Handler:
        async def runtime(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            for i in range(20):
                w.write(enc.chunk(1, tag * (i + 1)))
                await w.drain()
                await asyncio.sleep(0)
            w.write(enc.chunk(1, big) + enc.choke(1))
            await w.drain()
            w.close()
        return runtime

    async def body() -> None:
        channels, recorders, servers = [], [], []
        for tag in (b"a", b"b"):
            server, path = await unix_peer(await runtime_for(tag))
            servers.append(server)
            channel = Channel(Generation.A)
            recorders.append(Recorder(channel))
            channels.append(channel)
            await channel.connect(path, unix=True)
        for rec in recorders:
            await asyncio.wait_for(rec.closed.wait(), 10)
        for tag, rec in zip((b"a", b"b"), recorders, strict=True):
            chunks = [c[2] for c in rec.calls if c[0] == "on_chunk"]
            assert chunks == [tag * (i + 1) for i in range(20)] + [big]
            assert all(type(c) is bytes for c in chunks)
        for server in servers:
            server.close()

    run(body())
