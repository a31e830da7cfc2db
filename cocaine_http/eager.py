"""Tasks whose first step runs at once, in the caller's turn of the loop.

Python 3.12 added eager tasks (``asyncio.Task(..., eager_start=True)``): the
task's first step runs inside the constructor, with ``current_task()`` set to
the task, and a coroutine that does not wait is finished before the caller
goes on. The worker starts handlers that way so that a request which arrived
whole is answered in the loop turn that read it (see :mod:`.sessions`).

Before 3.12 a task's constructor queues its first step with
``loop.call_soon``, as the last thing it does. :func:`start_task` then takes
that handle back off the end of the loop's ready queue and runs it at once:
the task steps exactly as it would have one loop iteration later (its own
step, its own context, ``current_task()`` set by asyncio), only earlier. A
handler that does not wait is finished, and its task done, before the caller
goes on; the loop does not wake up again for it.

That reaches into the standard event loop (``loop._ready``, a deque of
handles, and ``Handle._run``). Both have kept their shape since Python 3.4,
and 3.10 and 3.11 only get security fixes now; the handle is checked to be
the new task's own step before it is taken. Any other loop (uvloop, a task
factory) gets its tasks queued, which is correct, one iteration later.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_task"]

_EAGER = sys.version_info >= (3, 12)
if not _EAGER:
    _current_tasks = asyncio.tasks._current_tasks  # type: ignore[attr-defined]


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> tuple[asyncio.Future[Any], bool]:
    """A task for *coro*, and whether its first step has run already.

    A loop with its own task factory gets what the factory makes, queued.
    """
    if loop.get_task_factory() is not None:
        return loop.create_task(coro), False
    if _EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True), True  # type: ignore[call-arg, unused-ignore]
    task = asyncio.Task(coro, loop=loop)
    if _current_tasks.get(loop) is not None:  # asyncio.current_task(loop), without its Python frame
        # Inside a task, which stays the current one: asyncio would refuse to
        # enter another. The new task takes its first step queued, as usual.
        return task, False
    ready = getattr(loop, "_ready", None)
    if type(ready) is not collections.deque or not ready:
        return task, False  # not asyncio's own loop
    step = ready[-1]
    if type(step) is not asyncio.Handle or getattr(step._callback, "__self__", None) is not task:
        return task, False  # a call_soon that did something else: leave it alone
    ready.pop()
    step._run()
    return task, True
