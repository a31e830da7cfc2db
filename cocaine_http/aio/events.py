"""The seed's ``Worker.events``: a small synchronous event emitter.

Kept apart from the worker because it knows nothing of sessions or the
runtime: it only calls listeners, and schedules the awaitables they return.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EventEmitter"]

log = logging.getLogger("cocaine_http.worker")

F = TypeVar("F", bound=Callable[..., Any])


class EventEmitter:
    """The seed's ``Worker.events``: ``on(name, fn)`` then ``emit(name, *args)``.

    Listeners run synchronously, in registration order; a listener that
    returns an awaitable gets it scheduled on the running loop. A failing
    listener is logged and does not stop the others.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def on(self, event: str, listener: Callable[..., Any] | None = None) -> Any:
        """Add a listener; without one, a decorator."""
        if listener is None:

            def decorator(fn: F) -> F:
                self.on(event, fn)
                return fn

            return decorator
        self._listeners.setdefault(event, []).append(listener)
        return listener

    def off(self, event: str, listener: Callable[..., Any]) -> None:
        listeners = self._listeners.get(event, [])
        if listener in listeners:
            listeners.remove(listener)

    def listeners(self, event: str) -> list[Callable[..., Any]]:
        return list(self._listeners.get(event, ()))

    def emit(self, event: str, *args: Any) -> bool:
        """Call every listener of *event*; True if there was any."""
        listeners = self._listeners.get(event)
        if not listeners:
            return False
        for listener in list(listeners):
            try:
                result = listener(*args)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._listener_done)
            except Exception:
                log.exception("%r listener %r failed", event, listener)
        return True

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async listener failed", exc_info=task.exception())
