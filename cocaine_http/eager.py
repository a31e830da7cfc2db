"""Tasks whose first step runs at once, in the caller's turn of the loop.

Python 3.12 added eager tasks (``asyncio.Task(..., eager_start=True)``): the
task's first step runs inside the constructor, with ``current_task()`` set to
the task, and a coroutine that does not wait is finished before the caller
goes on. The worker starts handlers that way so that a request which arrived
whole is answered in the loop turn that read it (see :mod:`.sessions`).

Python 3.11 has no eager start, but it has what one needs to build it: a task
can be given the context it runs in, and ``asyncio.tasks._enter_task`` /
``_leave_task`` (the functions every task step calls, in C) make a task the
current one. :func:`start_task` on 3.11 creates the task around a
:class:`_Resume` wrapper, runs the coroutine's first step in the task's
context with the task current, and lets the wrapper hand the task whatever
that step left: a future to wait for, a result, an exception. The task's own
first step, queued by its constructor, then goes on from there; for a
handler that finished, it only completes the task, after the answer is out.

Python 3.10 cannot give a task its context, so a step run beforehand could
not share contextvars with the rest of the task: tasks start queued there.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_task"]


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> tuple[asyncio.Future[Any], bool]:
    """A task for *coro*, and whether its first step has run already.

    A loop with its own task factory gets what the factory makes, queued.
    """
    if loop.get_task_factory() is not None:
        return loop.create_task(coro), False
    return _start(loop, coro)


def _start_eager(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> tuple[asyncio.Future[Any], bool]:
    return asyncio.Task(coro, loop=loop, eager_start=True), True  # type: ignore[call-arg, unused-ignore]


def _start_queued(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> tuple[asyncio.Future[Any], bool]:
    return asyncio.Task(coro, loop=loop), False


class _Resume(Coroutine[Any, Any, Any]):
    """What a 3.11 task runs when its coroutine's first step was taken outside it.

    Until the task's own first step, :attr:`first` holds the outcome of the
    step taken (``("yield", value)``, ``("return", value)`` or
    ``("raise", exc)``); after it, every call goes to the coroutine.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.first: tuple[str, Any] | None = None

    def send(self, value: Any) -> Any:
        first = self.first
        if first is None:
            return self.coro.send(value)
        self.first = None
        how, what = first
        if how == "yield":
            return what
        if how == "return":
            raise StopIteration(what)
        raise what

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:  # type: ignore[override]
        # A cancellation before the task's own first step. The coroutine is
        # suspended where its first step left it (or has finished); as in an
        # eager task, the future it waits for is cancelled and it gets the
        # exception where it waits.
        first, self.first = self.first, None
        # A task throws an instance (one argument); the old three-argument form is accepted too.
        exc = val if val is not None else typ if isinstance(typ, BaseException) else typ()
        if first is not None:
            how, what = first
            if how != "yield":
                raise exc
            if isinstance(exc, asyncio.CancelledError) and asyncio.isfuture(what):
                what.cancel()
        return self.coro.throw(exc)

    def close(self) -> None:
        self.first = None
        self.coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        raise TypeError("_Resume is run by a task only")  # pragma: no cover


def _start_emulated(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> tuple[asyncio.Future[Any], bool]:
    if _current(loop) is not None:
        # Called from inside a task, which stays the current one: this task
        # takes its first step on its own, queued, as any other. (Checked
        # first: _enter_task would refuse, but only after formatting the
        # reprs of both tasks for its message.)
        return asyncio.Task(coro, loop=loop), False
    context = contextvars.copy_context()
    resume = _Resume(coro)
    task = asyncio.Task(resume, loop=loop, context=context)  # type: ignore[call-arg, unused-ignore]
    _enter(loop, task)
    try:
        resume.first = ("yield", context.run(coro.send, None))
    except StopIteration as stop:
        resume.first = ("return", stop.value)
    except BaseException as exc:
        resume.first = ("raise", exc)
    finally:
        _leave(loop, task)
    return task, True


if sys.version_info >= (3, 12):
    _start = _start_eager
elif sys.version_info >= (3, 11):
    _enter, _leave = asyncio.tasks._enter_task, asyncio.tasks._leave_task  # type: ignore[attr-defined]
    _current = asyncio.current_task
    _start = _start_emulated
else:  # pragma: no cover - 3.10
    _start = _start_queued
