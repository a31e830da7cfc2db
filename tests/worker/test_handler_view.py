"""What a handler is given: a Request and a Response, and no more of the worker's session."""

from __future__ import annotations

import asyncio
from typing import Any

from worker_helpers import expected_worker, make_engine, run

from cocaine_http.aio import Request, Response

PUBLIC_REQUEST = {name for name in dir(Request) if not name.startswith("_")}
PUBLIC_RESPONSE = {name for name in dir(Response) if not name.startswith("_")}


def test_a_handler_sees_the_public_request_and_response_only(gen: str, runtime_dir: str) -> None:
    """The worker keeps its session's fields (handler, task, response) on the
    request it hands out; none of them is part of what the handler sees."""
    seen: list[Any] = []

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, slave = expected_worker(engine, gen, app="echo")

            @worker.on("look")
            async def look(request: Any, response: Any) -> None:
                seen.append((request, response, asyncio.current_task()))
                await response.write(await request.read_all())

            task = asyncio.ensure_future(worker.serve())
            await slave.wait_active(5)
            reply = await engine.invoke("look", [b"a", b"b"])
            assert reply.data == b"ab"
            await engine.terminate(slave)
            assert await asyncio.wait_for(task, 5) == 0

    run(body())
    [(request, response, current)] = seen
    assert isinstance(request, Request) and isinstance(response, Response)
    assert {n for n in dir(request) if not n.startswith("_")} == PUBLIC_REQUEST
    assert {n for n in dir(response) if not n.startswith("_")} == PUBLIC_RESPONSE
    assert current is not None  # the handler ran in its own task
    assert request.event == "look" and request.session == response.session
