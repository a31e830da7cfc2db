"""Handlers that need no task: the first step runs without one (:func:`start_taskless`).

The inline WSGI handler runs a synchronous app, which has no use for a
current task, so the worker takes its first step with no task at all; only
a handler that then waits gets one, carrying on in the first step's context.
These tests drive :func:`start_taskless` from a plain loop callback, as the
worker's read callback does, and then a real worker over a raw socket.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest
from test_eager import from_callback
from test_worker_reads import one_read_session, raw_peer, session_of
from worker_helpers import run

from cocaine_http.aio.eager import start_taskless
from cocaine_http.aio.handlers import FIRST_STEP, IN_TASK, IN_THREAD, how_it_runs
from cocaine_http.compat.wsgi import InlineWSGIHandler, WSGIHandler

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="create_task(context=) is 3.11+")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_a_coroutine_that_does_not_wait_finishes_with_no_task_and_no_trace_in_the_callers_context() -> None:
    seen: dict[str, Any] = {}

    async def handler() -> None:
        seen["task"] = asyncio.current_task()
        request_id.set("r-1")
        seen["id"] = request_id.get()

    async def body() -> None:
        result = await from_callback(lambda: start_taskless(asyncio.get_running_loop(), handler(), "h"))
        assert result is None  # finished in its first step
        assert seen == {"task": None, "id": "r-1"}
        assert request_id.get() == "none"  # its context was a copy

    run(body())


def test_a_coroutine_that_waits_carries_on_in_a_task_in_the_same_context() -> None:
    seen: dict[str, Any] = {}

    async def handler() -> str:
        seen["first"] = asyncio.current_task()
        request_id.set("r-2")
        await asyncio.sleep(0)
        seen["after"] = asyncio.current_task()
        await asyncio.sleep(0.001)  # and waits again, on a timer this time
        return request_id.get()

    async def body() -> None:
        task = await from_callback(lambda: start_taskless(asyncio.get_running_loop(), handler(), "h"))
        assert isinstance(task, asyncio.Task) and task.get_name() == "h"
        assert seen["first"] is None
        assert await task == "r-2"  # what the first step set, seen after the waits
        assert seen["after"] is task
        assert request_id.get() == "none"

    run(body())


def test_a_cancel_while_it_waits_reaches_the_coroutine_which_may_handle_it() -> None:
    seen: dict[str, Any] = {}

    async def handler() -> str:
        seen["waiting"] = waiting = asyncio.get_running_loop().create_future()
        try:
            await waiting
        except asyncio.CancelledError:
            seen["cancelled"] = True
            await asyncio.sleep(0)  # it may still wait, in its task
            return "cleaned up"
        return "not cancelled"

    async def body() -> None:
        task = await from_callback(lambda: start_taskless(asyncio.get_running_loop(), handler()))
        assert task is not None
        task.cancel()
        assert await task == "cleaned up"
        assert seen["cancelled"] is True and seen["waiting"].cancelled()

    run(body())


def test_a_cancel_in_the_same_turn_and_a_later_error_are_the_tasks() -> None:
    async def waits_forever() -> None:
        await asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad request")

    async def body() -> None:
        loop = asyncio.get_running_loop()

        def go() -> asyncio.Task[Any] | None:
            task = start_taskless(loop, waits_forever())
            assert task is not None
            task.cancel()  # before the task's own first step ran
            return task

        cancelled = await from_callback(go)
        assert cancelled is not None
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        failing = await from_callback(lambda: start_taskless(loop, fails_later()))
        assert failing is not None
        with pytest.raises(ValueError, match="bad request"):
            await failing

    run(body())


def test_an_error_of_the_first_step_is_raised_to_the_caller() -> None:
    async def handler() -> None:
        raise ValueError("at once")

    async def body() -> None:
        with pytest.raises(ValueError, match="at once"):
            await from_callback(lambda: start_taskless(asyncio.get_running_loop(), handler()))

    run(body())


def test_how_a_handler_runs_is_decided_when_it_is_registered() -> None:
    async def coroutine(request: Any, response: Any) -> None:
        pass

    def blocking(request: Any, response: Any) -> None:
        pass

    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    assert how_it_runs(blocking) == IN_THREAD
    assert how_it_runs(coroutine) == IN_TASK
    assert how_it_runs(WSGIHandler(app)) == IN_THREAD
    assert how_it_runs(InlineWSGIHandler(app)) == FIRST_STEP


class _NoTask:
    """An async handler object that says it needs no task."""

    needs_task = False

    def __init__(self, wait: bool) -> None:
        self.wait = wait
        self.seen: list[Any] = []

    async def __call__(self, request: Any, response: Any) -> None:
        self.seen.append(asyncio.current_task())
        if self.wait:
            await asyncio.sleep(0.001)
            self.seen.append(asyncio.current_task())
        await response.write(await request.read_all())


def test_through_the_worker_a_whole_request_is_answered_in_its_read_without_a_task(
    gen: str, runtime_dir: str
) -> None:
    handler = _NoTask(wait=False)
    in_flight = run(one_read_session(gen, runtime_dir, handler, [b"abcd"]))
    assert handler.seen == [None]
    assert in_flight and max(in_flight) == 0


def test_through_the_worker_a_handler_that_waits_finishes_in_a_task(gen: str, runtime_dir: str) -> None:
    handler = _NoTask(wait=True)
    in_flight = run(one_read_session(gen, runtime_dir, handler, [b"abcd"]))
    assert handler.seen[0] is None and isinstance(handler.seen[1], asyncio.Task)
    assert 1 in in_flight  # still running when its read ended


def test_through_the_worker_a_waiting_handler_is_cancelled_when_its_session_fails(
    gen: str, runtime_dir: str
) -> None:
    """A request that sends nothing more fails (request_idle_timeout): the task
    that carries the waiting handler on is cancelled."""
    events: list[str] = []

    class Stuck:
        needs_task = False

        def __init__(self) -> None:
            self.cancelled = asyncio.Event()

        async def __call__(self, request: Any, response: Any) -> None:
            events.append(f"started in {asyncio.current_task()}")
            try:
                await request.read_all()  # the request never ends
            except BaseException as exc:
                events.append(f"{type(exc).__name__} in a {type(asyncio.current_task()).__name__}")
                self.cancelled.set()
                raise

    async def body() -> None:
        handler = Stuck()
        async with raw_peer(gen, runtime_dir, handler, request_idle_timeout=0.2) as peer:
            enc, s = peer.enc, session_of(gen)
            peer.writer.write(enc.invoke(s, "echo") + enc.chunk(s, b"ab"))
            await asyncio.wait_for(handler.cancelled.wait(), 10)
            peer.writer.write(enc.terminate(1, "done"))
            assert await asyncio.wait_for(peer.serving, 5) == 0

    run(body())
    assert events == ["started in None", "CancelledError in a Task"]
