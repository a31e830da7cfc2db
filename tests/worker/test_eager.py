"""Handler tasks whose first step runs at once (:mod:`cocaine_http.aio.eager`).

The worker starts handlers from the channel's read callback, outside any
task, as these tests do. On Python 3.12+ the stdlib's eager tasks do the
work; before, the step the new task queued is taken back and run at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from worker_helpers import run

from cocaine_http.aio.eager import start_task

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def from_callback(fn: Callable[[], Any]) -> Any:
    """Call *fn* from a plain loop callback (no current task), as a protocol's data_received is."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def callback() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed to the test
            done.set_exception(exc)

    loop.call_soon(callback)
    return await done


def start(coro: Coroutine[Any, Any, Any]) -> Callable[[], tuple[asyncio.Future[Any], bool]]:
    return lambda: start_task(asyncio.get_running_loop(), coro)


def test_the_first_step_runs_before_start_task_returns_with_the_task_current() -> None:
    seen: dict[str, Any] = {}

    async def handler() -> str:
        seen["task"] = asyncio.current_task()
        await asyncio.sleep(0)
        return "done"

    async def body() -> None:
        task, started = await from_callback(start(handler()))
        assert started is True
        assert seen["task"] is task  # ran already, inside its own task
        assert await task == "done"

    run(body())


def test_the_task_gets_the_name_it_is_given() -> None:
    async def handler() -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    async def body() -> None:
        loop = asyncio.get_running_loop()
        task, started = await from_callback(lambda: start_task(loop, handler(), "echo"))
        assert started is True and task.done()
        assert await task == "echo" and task.get_name() == "echo"

    run(body())


def test_a_coroutine_that_does_not_wait_is_finished_in_the_callers_turn() -> None:
    steps: list[str] = []

    async def handler() -> int:
        steps.append("ran")
        return 42

    async def body() -> None:
        def go() -> asyncio.Future[Any]:
            task, _ = start_task(asyncio.get_running_loop(), handler())
            steps.append("returned")
            return task

        task = await from_callback(go)
        assert steps == ["ran", "returned"]
        assert await task == 42

    run(body())


def test_an_exception_of_the_first_step_is_the_tasks() -> None:
    async def handler() -> None:
        raise ValueError("bad request")

    async def body() -> None:
        task, _ = await from_callback(start(handler()))
        with pytest.raises(ValueError, match="bad request"):
            await task

    run(body())


def test_contextvars_set_in_the_first_step_last_for_the_task_and_stay_in_it() -> None:
    async def handler() -> str:
        request_id.set("r-1")
        await asyncio.sleep(0)  # the rest runs as the task's own steps
        return request_id.get()

    async def body() -> None:
        task, _ = await from_callback(start(handler()))
        assert await task == "r-1"
        assert request_id.get() == "none"  # the caller's context is untouched

    run(body())


def test_a_cancel_before_the_tasks_own_step_reaches_the_coroutine_where_it_waits() -> None:
    seen: dict[str, Any] = {}

    async def handler() -> None:
        seen["waiting"] = waiting = asyncio.get_running_loop().create_future()
        try:
            await waiting
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    async def body() -> None:
        def go() -> asyncio.Future[Any]:
            task, _ = start_task(asyncio.get_running_loop(), handler())
            task.cancel()  # in the same turn: the task has not stepped on its own yet
            return task

        task = await from_callback(go)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen["cancelled"] is True
        assert seen["waiting"].cancelled()  # as if the task had been waiting on it

    run(body())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in Python 3.11")
def test_asyncio_timeout_works_from_the_first_step() -> None:
    async def handler() -> str:
        try:
            async with asyncio.timeout(0.01):  # type: ignore[attr-defined, unused-ignore]
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "slept"

    async def body() -> None:
        task, _ = await from_callback(start(handler()))
        assert await task == "timed out"

    run(body())


def test_a_loop_with_a_task_factory_gets_queued_tasks_from_it() -> None:
    made: list[Any] = []
    steps: list[str] = []

    async def handler() -> None:
        steps.append("ran")

    async def body() -> None:
        loop = asyncio.get_running_loop()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            made.append(coro)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)

        def go() -> tuple[asyncio.Future[Any], bool, list[str]]:
            task, started = start_task(loop, handler())
            return task, started, list(steps)

        task, started, steps_then = await from_callback(go)
        assert started is False and steps_then == []  # queued, as the factory's tasks are
        await task
        assert steps == ["ran"] and len(made) == 1

    run(body())


def test_started_from_inside_a_task_it_still_runs_to_its_end() -> None:
    async def handler() -> str:
        await asyncio.sleep(0)
        return "ok"

    async def body() -> None:
        task, started = start_task(asyncio.get_running_loop(), handler())
        # 3.12+ can start eagerly inside another task; before, asyncio allows one current task
        assert started is (sys.version_info >= (3, 12))
        assert await task == "ok"

    run(body())


def test_a_loop_that_wraps_its_callbacks_gets_queued_tasks_that_still_run() -> None:
    """Before 3.12 the start takes back the handle the task queued only if it is
    the task's own step; a loop that queues something else is left alone."""

    class WrappingLoop(asyncio.SelectorEventLoop):
        def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
            return super().call_soon(lambda: callback(*args), context=context)

    steps: list[str] = []

    async def handler() -> str:
        steps.append("ran")
        return "ok"

    async def body() -> None:
        def go() -> tuple[asyncio.Future[Any], bool, list[str]]:
            task, started = start_task(asyncio.get_running_loop(), handler())
            return task, started, list(steps)

        task, started, steps_then = await from_callback(go)
        eager = sys.version_info >= (3, 12)  # the stdlib's eager start does not queue the step
        assert started is eager and steps_then == (["ran"] if eager else [])
        assert await task == "ok" and steps == ["ran"]

    loop = WrappingLoop()
    try:
        loop.run_until_complete(body())
    finally:
        loop.close()


def test_the_loop_keeps_its_own_call_soon_after_a_start() -> None:
    async def handler() -> None:
        await asyncio.sleep(0)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        task, _ = await from_callback(start(handler()))
        assert "call_soon" not in vars(loop)  # the stand-in lived for the constructor call only
        assert isinstance(loop.call_soon(lambda: None), asyncio.Handle)
        await task

    run(body())


class MeddlingLoop(asyncio.SelectorEventLoop):
    """Runs *meddle* inside the next task's constructor, as a finalizer run by
    the garbage collector could: asyncio's Task asks the loop ``get_debug()``
    before it schedules its first step."""

    meddle: Callable[[asyncio.AbstractEventLoop], None] | None = None

    def get_debug(self) -> bool:
        meddle, self.meddle = self.meddle, None
        if meddle is not None:
            meddle(self)
        return super().get_debug()


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


def test_a_call_soon_made_inside_the_constructor_reaches_the_loop() -> None:
    steps: list[str] = []
    handles: list[Any] = []

    async def handler() -> None:
        steps.append("handler")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, MeddlingLoop)

        def go() -> tuple[asyncio.Future[Any], bool]:
            loop.meddle = lambda loop: handles.append(loop.call_soon(steps.append, "other"))
            return start_task(loop, handler())

        task, started = await from_callback(go)
        assert started is True and steps[0] == "handler"
        assert isinstance(handles[0], asyncio.Handle)  # a real handle, queued on the loop
        await task
        await asyncio.sleep(0)
        assert steps == ["handler", "other"]

    run_on(MeddlingLoop(), body())


def test_a_task_built_inside_the_constructor_keeps_its_step_and_the_new_task_is_queued() -> None:
    steps: list[str] = []
    others: list[asyncio.Task[Any]] = []

    async def other() -> str:
        steps.append("other")
        return "other done"

    async def handler() -> str:
        steps.append("handler")
        return "handler done"

    async def body() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, MeddlingLoop)

        def go() -> tuple[asyncio.Future[Any], bool]:
            loop.meddle = lambda loop: others.append(asyncio.Task(other(), loop=loop))
            return start_task(loop, handler())

        task, started = await from_callback(go)
        # Before 3.12 the step handed over first was the other task's: each is queued.
        assert started is (sys.version_info >= (3, 12))
        assert await task == "handler done" and await others[0] == "other done"
        assert sorted(steps) == ["handler", "other"]

    run_on(MeddlingLoop(), body())


def test_a_loop_with_its_own_call_soon_attribute_keeps_it_and_gets_queued_tasks() -> None:
    steps: list[str] = []

    async def handler() -> None:
        steps.append("ran")

    async def body() -> None:
        loop = asyncio.get_running_loop()
        stock = loop.call_soon
        loop.call_soon = lambda *args, **kwargs: stock(*args, **kwargs)  # type: ignore[method-assign]
        try:
            mine = loop.call_soon

            def go() -> tuple[asyncio.Future[Any], bool, list[str]]:
                task, started = start_task(loop, handler())
                return task, started, list(steps)

            task, started, steps_then = await from_callback(go)
            assert loop.call_soon is mine  # not replaced, not deleted
            assert started is (sys.version_info >= (3, 12)) and steps_then == ([] if not started else ["ran"])
            await task
            assert steps == ["ran"]
        finally:
            del loop.call_soon

    run(body())
