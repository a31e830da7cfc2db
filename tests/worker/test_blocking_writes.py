"""BlockingResponse.write: a write the loop could not make fails the thread's next call."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

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


def test_a_failed_write_fails_the_next_call(gen: str, runtime_dir: str) -> None:
    raised: list[BaseException] = []
    done = threading.Event()

    def setup(w: Worker) -> None:
        @w.on("late")
        def late(request: Any, response: Any) -> None:
            request.read()
            response.close()
            try:
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
