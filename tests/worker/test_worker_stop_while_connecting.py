"""A stop asked for while the worker is still connecting is kept, not lost.

SIGINT/SIGTERM (or ``Worker.stop``) during the connect used to be forgotten:
the worker came up RUNNING once the connection opened and served on. It
must instead say who it is, then at once send the terminate it owes, with
the code and reason it was stopped with, and exit 0.
"""

from __future__ import annotations

import asyncio

from worker_helpers import expected_worker, make_engine, run

from cocaine_http.aio.worker import WorkerState


def test_a_stop_during_the_connect_ends_the_worker_once_connected(gen: str, runtime_dir: str) -> None:
    seen: list[object] = []

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, slave = expected_worker(engine, gen)
            loop = asyncio.get_running_loop()

            async def last_hook() -> None:
                # Runs on the loop's next turn: the worker is inside its
                # connect by then (the hook returns, the connect starts and
                # waits for the socket, and only then does the loop turn).
                loop.call_soon(seen.append, worker.state)  # STARTING: not connected yet
                loop.call_soon(worker.stop, 3, "stopped while connecting")

            worker.on_startup.append(last_hook)
            worker.events.on("connect", lambda: seen.append("connect"))
            code = await asyncio.wait_for(worker.serve(), 10)
            assert code == 0
            assert slave.terminate_reply == (3, "stopped while connecting")
            assert worker.state is WorkerState.DONE

    run(body())
    assert seen == [WorkerState.STARTING, "connect"]
