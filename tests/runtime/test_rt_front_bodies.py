"""The HTTP front's request bodies against in-process fake apps: inside the envelope or
streamed in bounded chunks, the client read at the app's pace, and every way a body breaks off."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import msgpack
import pytest
from rt_helpers import FakeApp, FakeCall, run, tcp

from cocaine_http.protocol.wire import packb
from cocaine_http.runtime.local import LocalRuntime
from cocaine_http.runtime.logging import Console

CHUNK = 4096


async def started(gen: str, app: Any, **front: Any) -> LocalRuntime:
    front.setdefault("body_chunk_size", CHUNK)
    rt = LocalRuntime(
        gen, locator_port=0, bind="127.0.0.1:0", console=Console(io.StringIO()), front_options=front
    )
    await rt.start()
    rt.apps[app.name] = app
    rt.front.default_app = app.name
    return rt


async def answer_after_close(inv: Any, sunk: list[Any]) -> None:
    """Waits for the whole request, answers the number of request chunks."""
    while not sunk or sunk[-1][0] not in ("close", "abort"):  # noqa: ASYNC110 - the fake records, it does not signal
        await asyncio.sleep(0.001)
    if sunk[-1][0] == "close":
        inv.feed_chunk(packb([200, [["Content-Type", "text/plain"]]]))
        inv.feed_close()


def body_of(sunk: list[Any]) -> tuple[dict[str, Any], bytes, list[int]]:
    """The envelope (decoded), the body as the worker would assemble it, the chunk sizes after it."""
    chunks = [bytes(item[1]) for item in sunk if item[0] == "chunk"]
    method, _uri, _version, headers, inside = msgpack.unpackb(chunks[0], raw=True)
    rest = chunks[1:]
    envelope = {"method": method, "headers": [tuple(h) for h in headers], "body": inside}
    return envelope, inside + b"".join(rest), [len(c) for c in rest]


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_small_bodies_ride_in_the_envelope_large_ones_stream(gen: str, chunked: bool) -> None:
    async def main() -> None:
        app = FakeApp("web", answer_after_close)
        rt = await started(gen, app)
        try:
            small = b"s" * (CHUNK - 1)
            large = bytes(range(256)) * 400 + b"tail"  # 102404 bytes, 25 chunks and a bit

            async def pieces(data: bytes) -> Any:
                for at in range(0, len(data), 1000):
                    yield data[at : at + 1000]

            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                for data in (small, large):
                    content = pieces(data) if chunked else data
                    r = await client.post("/up", content=content)
                    assert r.status_code == 200
            envelope, whole, sizes = body_of(app.sunk[0])
            assert (envelope["body"], whole, sizes) == (small, small, [])
            envelope, whole, sizes = body_of(app.sunk[1])
            assert envelope["body"] == b""  # streamed: nothing in the envelope, so no length is implied
            assert whole == large
            assert sizes and max(sizes) <= CHUNK and len(sizes) >= len(large) // CHUNK
            assert app.sunk[1][-1] == ("close",)
        finally:
            await rt.stop()

    run(main())


class GatedApp(FakeApp):
    """Its invocations take request chunks only while ``gate`` is set (a backed-up worker)."""

    def __init__(self, name: str, script: Any) -> None:
        super().__init__(name, script)
        self.gate = asyncio.Event()
        self.blocked = asyncio.Event()

    async def open(self, event: str, tag: str | None = None) -> FakeCall:
        call = await super().open(event, tag)
        app = self
        plain_write = call.write

        async def write(data: bytes) -> None:
            if not app.gate.is_set():
                app.blocked.set()
                await app.gate.wait()
            await plain_write(data)

        call.write = write  # type: ignore[method-assign]
        return call


def test_the_client_is_not_read_while_the_worker_is_backed_up() -> None:
    async def main() -> None:
        app = GatedApp("web", answer_after_close)
        app.gate.set()
        rt = await started("0.12", app, max_body_size=64 << 20)
        try:
            reader, writer = await tcp(rt.front.port)
            size = 32 << 20
            writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            block = b"b" * (1 << 20)
            # let the first chunk through, then back the "worker" up
            while not app.sunk or len(app.sunk[0]) < 2:
                writer.write(block)
                sent += len(block)
                await writer.drain()
            app.gate.clear()
            await asyncio.wait_for(app.blocked.wait(), 10)
            conn = next(iter(rt.front.connections))
            assert conn.transport is not None
            # the client keeps sending; the front must stop reading and the client's buffers fill
            while conn.transport.is_reading() and sent < size:
                writer.write(block)
                sent += len(block)
                await asyncio.sleep(0)  # not drain(): that would wait for the front
            assert not conn.transport.is_reading()
            held = len(conn.h11.trailing_data[0])
            assert held <= rt.front.max_header_size + CHUNK + (256 << 10)  # a head, a chunk and one read
            app.gate.set()
            writer.write(b"b" * (size - sent))
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 30)
            assert status.startswith(b"HTTP/1.1 200 ")
            _, whole, sizes = body_of(app.sunk[0])
            assert len(whole) == size and max(sizes) <= CHUNK
        finally:
            await rt.stop()

    run(main(), timeout=60)


def test_an_upload_broken_off_or_stalled_aborts_its_invocation() -> None:
    async def main() -> None:
        app = FakeApp("web", answer_after_close)
        rt = await started("0.12", app, keepalive_timeout=0.5)
        try:
            head = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            # the client goes away mid-body
            reader, writer = await tcp(rt.front.port)
            writer.write(head + b"x" * 3 * CHUNK)
            await writer.drain()
            while not app.sunk or len(app.sunk[0]) < 2:  # noqa: ASYNC110 - the fake records, it does not signal
                await asyncio.sleep(0.005)
            writer.close()
            while app.sunk[0][-1][0] != "abort":  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            assert app.sunk[0][-1] == ("abort", "client disconnected")
            # the client stalls mid-body: cut after the keep-alive timeout
            reader, writer = await tcp(rt.front.port)
            writer.write(head + b"x" * 3 * CHUNK)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            while len(app.sunk) < 2 or app.sunk[1][-1][0] != "abort":  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            assert app.sunk[1][-1][0] == "abort"
            # an invalid chunked body mid-stream: 400, and the invocation is aborted
            reader, writer = await tcp(rt.front.port)
            writer.write(
                b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n" % (2 * CHUNK, b"y" * 2 * CHUNK)
                + b"zz-not-hex\r\n"
            )
            out = await asyncio.wait_for(reader.read(), 10)
            assert out.startswith(b"HTTP/1.1 400 "), out[:100]
            while len(app.sunk) < 3 or app.sunk[2][-1][0] != "abort":  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            # and the front still serves
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                assert (await client.post("/", content=b"fine")).status_code == 200
        finally:
            await rt.stop()

    run(main())


def test_body_chunk_size_zero_sends_every_body_in_the_envelope() -> None:
    async def main() -> None:
        app = FakeApp("web", answer_after_close)
        rt = await started("0.11", app, body_chunk_size=0)
        try:
            large = b"L" * (300 * 1024)
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                assert (await client.post("/up", content=large)).status_code == 200
            envelope, _whole, sizes = body_of(app.sunk[0])
            assert (envelope["body"], sizes) == (large, [])  # one request chunk, as the proxies send
        finally:
            await rt.stop()

    run(main())
