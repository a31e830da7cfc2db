"""Flow control through a real worker: 100 MiB each way with bounded memory."""

from __future__ import annotations

import asyncio
import time

import pytest
from worker_helpers import make_engine, rss_kib, run

from cocaine_http.protocol import codec

TOTAL = 100 * 1024 * 1024
CHUNK = 64 * 1024


async def stream_through(engine, event: str, send: int, timeout: float = 30.0) -> tuple[int, list[bytes]]:
    inv = await engine.open(event)

    async def writer() -> None:
        block = b"\xa5" * CHUNK
        left = send
        while left > 0:
            n = min(left, CHUNK)
            await inv.write(block[:n])
            left -= n
        await inv.close()

    received = 0
    tail: list[bytes] = []
    task = asyncio.ensure_future(writer())
    async for chunk in inv:
        received += len(chunk)
        tail = [chunk]
    await asyncio.wait_for(task, timeout)
    assert inv.error is None and inv.closed
    return received, tail


@pytest.mark.slow
@pytest.mark.parametrize("event", ["echo", "echo_sync"])
def test_100_mib_streamed_request_and_response_in_bounded_memory(
    gen: str, runtime_dir: str, event: str
) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            assert (await engine.invoke(event, [b"warm-up"])).data == b"warm-up"
            before = rss_kib(slave.pid)
            t0 = time.monotonic()
            received, _ = await stream_through(engine, event, TOTAL)
            elapsed = time.monotonic() - t0
            peak = rss_kib(slave.pid, "VmHWM")
            growth_mib = (peak - before) / 1024
            print(
                f"\n[{gen} {event} decoder={codec.BACKEND}] 100 MiB echoed in {elapsed:.2f} s "
                f"({2 * TOTAL / elapsed / 2**20:.0f} MiB/s both ways); worker RSS {before / 1024:.1f} MiB, "
                f"peak {peak / 1024:.1f} MiB, growth {growth_mib:.1f} MiB"
            )
            assert received == TOTAL
            assert growth_mib < 64

    run(body(), timeout=60)


def test_one_way_streams(gen: str, runtime_dir: str) -> None:
    size = 8 * 1024 * 1024 + 5

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            _, tail = await stream_through(engine, "count", size)
            assert tail == [str(size).encode()]
            reply = await engine.invoke("generate", [str(size).encode()])
            assert sum(map(len, reply.chunks)) == size and reply.closed

    run(body())
