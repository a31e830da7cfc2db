"""How a registered handler runs, decided once when it is registered.

``worker.on(event, handler)`` keeps ``(handler, how_it_runs(handler))``; the
worker's :class:`~cocaine_http.aio.sessions.Sessions` reads the second item for
every invocation of that event:

* a plain ``def`` handler runs in the handler thread pool, with blocking streams;
* an ``async def`` handler (or an object with an async ``__call__``) runs as a
  task of its own, started eagerly (:class:`~.eager.TaskStarter`);
* an async handler that says it needs no task (``needs_task = False``, as the
  inline WSGI handler does: the app it runs is synchronous code) takes its
  first step with no task, and gets one only if it waits
  (:func:`~.eager.start_taskless`; from Python 3.11, before which it gets a task).

An async handler may also have a request stage, ``prepare_whole(request,
response)``: a synchronous method the worker calls for a request that has
arrived whole (its end is in), with the other whole requests of the same
read, before it starts any of their handlers. It returns the coroutine to
run in place of ``handler(request, response)`` (what is left of the work),
or ``None`` to be called as usual, having taken nothing from the request.
The HTTP adapters parse the envelope and build the environ or scope there:
each stage's code then runs back to back for the read's requests, which the
processor runs faster than the two interleaved (see
:meth:`~cocaine_http.aio.sessions.Sessions.prepare_whole`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from .eager import TASKLESS

__all__ = [
    "FIRST_STEP",
    "IN_TASK",
    "IN_THREAD",
    "Handler",
    "Prepare",
    "Registered",
    "how_it_runs",
    "registered",
]

Handler = Callable[[Any, Any], Any]
#: A handler's request stage (``prepare_whole``): the coroutine left to run, or None.
Prepare = Callable[[Any, Any], "Coroutine[Any, Any, None] | None"]
#: What the worker keeps per event: the handler, how it runs, its request stage.
Registered = tuple[Handler, int, Prepare | None]

#: A plain ``def``: in the handler thread pool, with blocking streams.
IN_THREAD = 0
#: An ``async def``: as a task of its own, started eagerly.
IN_TASK = 1
#: An ``async def`` that needs no task: its first step without one.
FIRST_STEP = 2


def how_it_runs(handler: Handler) -> int:
    """:data:`IN_THREAD`, :data:`IN_TASK` or :data:`FIRST_STEP`, for *handler*."""
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects
    if not (inspect.iscoroutinefunction(handler) or (call is not None and inspect.iscoroutinefunction(call))):
        return IN_THREAD
    if TASKLESS and getattr(handler, "needs_task", True) is False:
        return FIRST_STEP
    return IN_TASK


def registered(handler: Handler) -> Registered:
    """What the worker keeps for *handler*: it, :func:`how_it_runs`, and its
    ``prepare_whole`` (only an async handler's: a thread's runs elsewhere)."""
    runs = how_it_runs(handler)
    prepare = getattr(handler, "prepare_whole", None) if runs != IN_THREAD else None
    return handler, runs, prepare if callable(prepare) else None
