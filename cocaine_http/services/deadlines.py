"""Call timeouts with one timer per 5 ms, not one per call.

Shared by unary calls (:mod:`.base`) and by the waits of a stream for its
next item (:mod:`.stream`), hence a module of its own. A deadline does not
raise anything itself: it gives the waiting future the result
:data:`TIMED_OUT`, and the waiter, which knows the call's method and
timeout, raises :class:`~cocaine_http.errors.CallTimeoutError`. So nothing
is allocated per call for its timeout beyond one set entry, and an answered
call costs one clock read and one set insertion and removal.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["DEADLINE_RESOLUTION", "TIMED_OUT", "Deadlines"]

#: Call deadlines are grouped in buckets this wide (seconds): one timer per
#: bucket rather than one per call, so thousands of calls in flight cost a
#: set entry each instead of a heap entry each.
DEADLINE_RESOLUTION = 0.005
_PER_SECOND = 1 / DEADLINE_RESOLUTION
#: The result a deadline gives the future it expires.
TIMED_OUT: Any = object()


class Deadlines:
    """Timeouts for many futures with few timer handles (expiry may be late by one bucket).

    At one call in flight every call of a 5 ms stretch lands in the same
    bucket: the last one is remembered, so the common case is one clock read,
    one comparison and one set insertion.
    """

    __slots__ = ("_buckets", "_last", "_last_key", "_time", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: The loop whose clock and timers the deadlines use (a waiter on another loop needs its own).
        self.loop = loop
        self._time = loop.time
        self._buckets: dict[int, set[asyncio.Future[Any]]] = {}
        self._last_key = -1
        self._last: set[asyncio.Future[Any]] = set()

    @property
    def waiting(self) -> int:
        """Futures under a deadline that has not expired yet."""
        return sum(len(bucket) for bucket in self._buckets.values())

    @property
    def timers(self) -> int:
        """Buckets whose timer has not fired yet."""
        return len(self._buckets)

    def add(self, fut: asyncio.Future[Any], timeout: float) -> set[asyncio.Future[Any]]:
        """Give *fut* the result :data:`TIMED_OUT` after *timeout*; returns the set to discard it from."""
        key = int((self._time() + timeout) * _PER_SECOND) + 1
        if key == self._last_key:
            bucket = self._last
        else:
            bucket = self._buckets.get(key)  # type: ignore[assignment]
            if bucket is None:
                bucket = self._buckets[key] = set()
                self.loop.call_at(key * DEADLINE_RESOLUTION, self._fire, key)
            self._last_key, self._last = key, bucket
        bucket.add(fut)
        return bucket

    def _fire(self, key: int) -> None:
        if key == self._last_key:  # the loop may run a timer a hair early: never reuse a fired bucket
            self._last_key = -1
        for fut in self._buckets.pop(key, ()):
            if not fut.done():
                fut.set_result(TIMED_OUT)
