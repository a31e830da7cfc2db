"""An invocation still queued in the engine holds a bounded part of a streamed request."""

from __future__ import annotations

import asyncio

from worker_helpers import make_engine, run, until

from cocaine_http.runtime.invocation import HOLD_BEFORE_BIND


def test_a_queued_invocation_holds_at_most_a_mark_then_the_writer_waits(runtime_dir: str, gen: str) -> None:
    async def body() -> None:
        engine = make_engine(gen, runtime_dir)
        await engine.listen()  # no worker yet: the event waits in the queue
        try:
            inv = await engine.open("count")
            piece = b"p" * 65536
            total = 4 * HOLD_BEFORE_BIND
            written = 0

            async def writer() -> None:
                nonlocal written
                while written < total:
                    await inv.write(piece)
                    written += len(piece)
                await inv.close()

            task = asyncio.get_running_loop().create_task(writer())
            await until(lambda: written >= HOLD_BEFORE_BIND, what="the writer filled the hold")
            # the writer stays blocked: what is held never goes past the mark by more than a piece
            for _ in range(20):
                await asyncio.sleep(0)
            assert not task.done() and written <= HOLD_BEFORE_BIND + len(piece)
            assert inv.slave is None
            slave = await engine.spawn()
            await slave.wait_active(10)
            await asyncio.wait_for(task, 20)
            reply = await inv.reply(20)
            assert reply.error is None and reply.data == str(total).encode()
        finally:
            await engine.stop()

    run(body())
