"""Tasks whose first step runs at once, in the caller's turn of the loop.

Python 3.12 added eager tasks (``asyncio.Task(..., eager_start=True)``): the
task's first step runs inside the constructor, with ``current_task()`` set to
the task, and a coroutine that does not wait is finished before the caller
goes on. The worker starts handlers that way so that a request which arrived
whole is answered in the loop turn that read it (see :mod:`.sessions`).

Before 3.12 a task's constructor hands its first step to ``loop.call_soon``
as the last thing it does. :func:`start_task` receives that step instead:
for the length of the constructor call it shadows ``call_soon`` on the loop
instance with a function that keeps the new task's own step (and passes any
other call on to the loop), then runs the step in the task's context. The
task steps exactly as asyncio would run it one loop iteration later, with
``current_task()`` set by asyncio, only earlier; a handler that does not wait
is finished, and its task done, before the caller goes on. The loop neither
wakes up again for it nor builds the :class:`asyncio.Handle` it would have
queued: on 3.11 that handle and the loop's Python around it were a quarter
of what starting a task costs.

Only a loop that keeps asyncio's own ``call_soon`` and has no task factory is
treated so; any other loop (uvloop, one that wraps its callbacks, a task
factory) gets its tasks queued, which is correct, one iteration later.

What the 3.10/3.11 path trades for speed (shadowing ``call_soon``, reading
asyncio's private registry of current tasks) is measured:
``bench/worker_floor.py --callgrind`` at W256 16 B, Python 3.11, with every
task queued by ``loop.create_task`` instead: 89.4K -> 98.1K instr/req on
the A wire, 92.4K -> 101.1K on B (this path saves 9 %).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["TASKLESS", "TaskStarter", "start_task", "start_taskless"]

_EAGER = sys.version_info >= (3, 12)
#: Whether :func:`start_taskless` can be used: the task that carries a coroutine
#: on after its first step runs in that step's context (create_task's context=, 3.11+).
TASKLESS = sys.version_info >= (3, 11)
if not _EAGER:
    # asyncio's own registry (private, not in the stubs): a task being current
    # here means the caller is inside a task, where the claimed step cannot run.
    _current_tasks = asyncio.tasks._current_tasks  # type: ignore[attr-defined]
    _Task = asyncio.Task
    _STOCK_CALL_SOON = asyncio.BaseEventLoop.call_soon


class TaskStarter:
    """Starts tasks on one loop with :func:`start_task`'s rules; holds what
    every start would otherwise build again (the ``call_soon`` stand-in)."""

    __slots__ = ("_callback", "_claim", "_context", "_loop", "_stock")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._callback: Any = None  # the claimed step (None: none claimed)
        self._context: Any = None  # and the context it runs in
        #: asyncio's own call_soon, on a loop that has not replaced it (nor shadowed it itself)
        self._stock = (
            not _EAGER
            and isinstance(loop, asyncio.BaseEventLoop)
            and getattr(type(loop), "call_soon", None) is _STOCK_CALL_SOON
            and "call_soon" not in getattr(loop, "__dict__", ("call_soon",))
        )
        self._claim = self._call_soon

    def start(
        self, coro: Coroutine[Any, Any, Any], name: str | None = None
    ) -> tuple[asyncio.Future[Any], bool]:
        """A task for *coro* (named *name*), and whether its first step has run already."""
        loop = self._loop
        plain = self._stock and loop.get_task_factory() is None
        if not plain or _current_tasks.get(loop) is not None:
            if loop.get_task_factory() is not None:
                return loop.create_task(coro, name=name), False
            if _EAGER:
                # eager_start is 3.12+; mypy checks against the oldest Python we support
                return asyncio.Task(coro, loop=loop, name=name, eager_start=True), True  # type: ignore[call-arg, unused-ignore]
            # On a loop that is not asyncio's own, or inside a task (which
            # stays the current one: asyncio would refuse to enter another),
            # the new task takes its first step queued, as usual.
            return _Task(coro, loop=loop, name=name), False
        self._callback = None  # (left over if a constructor failed after handing its step over)
        # Shadowed on the instance for one constructor call (the module docstring);
        # the stand-in takes any callback, hence not call_soon's generic signature.
        loop.call_soon = self._claim  # type: ignore[method-assign, assignment]
        try:
            task = _Task(coro, loop=loop, name=name)
        finally:
            del loop.call_soon
        callback = self._callback
        if callback is None:  # pragma: no cover - the step went to the loop: a start nested in a finalizer
            return task, False
        self._callback = None
        if callback.__self__ is not task:  # another task's, built by a finalizer (see _call_soon)
            # (typed for a BaseEventLoop, which self._stock checked loop is)
            _STOCK_CALL_SOON(loop, callback, context=self._context)  # type: ignore[arg-type]
            return task, False
        self._context.run(callback)
        return task, True

    def _call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle | None:
        """``loop.call_soon`` while a task is built: keeps the first step a
        task's constructor schedules, passes any other call to the loop.

        The garbage collector may run a finalizer inside the constructor,
        which may call ``call_soon`` too, or even build a task: a step claimed
        that is not the new task's own is queued by :meth:`start` instead.
        """
        if self._callback is None and not args and type(getattr(callback, "__self__", None)) is _Task:
            self._callback = callback
            self._context = context
            return None  # a task's constructor drops the handle
        # (typed for a BaseEventLoop, which self._stock checked the loop is)
        return _STOCK_CALL_SOON(self._loop, callback, *args, context=context)  # type: ignore[arg-type]


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str | None = None
) -> tuple[asyncio.Future[Any], bool]:
    """A task for *coro* on *loop* (named *name*), and whether its first step has run already.

    A loop with its own task factory gets what the factory makes, queued.
    (:class:`TaskStarter` does the same with less work per task.)
    """
    return TaskStarter(loop).start(coro, name)


def start_taskless(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], name: str | None = None
) -> asyncio.Task[Any] | None:
    """Run *coro*'s first step now, with no current task, in a copy of the
    caller's context (as a task's first step would run in one): ``None`` if
    that step finished it, else the task that runs the rest, in that same
    context. Needs :data:`TASKLESS`.

    Only for a coroutine that does not need a task in its first step: there,
    ``current_task()`` is ``None`` and ``asyncio.timeout()`` refuses to start.
    A cancel can only come once it waits, and then reaches it as in a task.
    """
    context = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration:
        return None
    # (context= is 3.11+, which TASKLESS checks; mypy checks against 3.10)
    return loop.create_task(_carry_on(coro, waiting), name=name, context=context)  # type: ignore[call-arg, unused-ignore]


async def _carry_on(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    """The rest of *coro*, which waits on *waiting* (what its first step
    yielded), as the body of a task: the task waits on it, then resumes *coro*."""
    return await _Resumed(coro, waiting)


class _Resumed:
    """A coroutine suspended on *waiting*, as an awaitable (a task takes only
    coroutines from 3.12 on, so :func:`_carry_on` wraps this one)."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                yield waiting
            except GeneratorExit:  # the task was dropped unfinished
                coro.close()
                raise
            except BaseException as exc:  # a cancel while it waited: the coroutine's to handle
                try:
                    waiting = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                return (yield from coro.__await__())  # where it waited, as await would
