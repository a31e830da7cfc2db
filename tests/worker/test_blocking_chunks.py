"""BlockingResponse.write_chunks: several chunks handed to the loop at once
arrive as the writes of each would, in order; a failure raises at the next call."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from worker_helpers import finish, make_engine, run, serve_in_process

from cocaine_http.aio.worker import Worker
from cocaine_http.errors import ChannelClosedError


def serve(gen: str, runtime_dir: str, setup: Any, scenario: Any) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            _, slave, task = await serve_in_process(engine, gen, setup)
            await scenario(engine)
            assert await finish(engine, slave, task) == 0

    run(body())


def test_chunks_written_together_arrive_in_order(gen: str, runtime_dir: str) -> None:
    def setup(w: Worker) -> None:
        @w.on("chunks")
        def chunks(request: Any, response: Any) -> None:
            request.read()
            response.write_chunks(b"head", b"", b"body")
            response.write(b"tail")
            response.write_chunks()

    async def scenario(engine: Any) -> None:
        reply = await engine.invoke("chunks", [b"x"])
        assert reply.chunks == [b"head", b"", b"body", b"tail"] and reply.closed

    serve(gen, runtime_dir, setup, scenario)


@pytest.mark.parametrize("first", [True, False])
def test_a_failed_chunk_fails_the_next_call(gen: str, runtime_dir: str, first: bool) -> None:
    raised: list[BaseException] = []
    done = threading.Event()

    def setup(w: Worker) -> None:
        @w.on("late")
        def late(request: Any, response: Any) -> None:
            request.read()
            response.close()
            try:
                if first:
                    response.write_chunks(b"a", b"b")
                else:
                    response.write(b"a")
                response.flush(5)
            except ChannelClosedError as exc:
                raised.append(exc)
            finally:
                done.set()

    async def scenario(engine: Any) -> None:
        reply = await engine.invoke("late", [b"x"])
        assert reply.chunks == [] and reply.closed
        assert await asyncio.to_thread(done.wait, 5)
        assert len(raised) == 1

    serve(gen, runtime_dir, setup, scenario)
