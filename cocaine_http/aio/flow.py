"""How bytes move between the shared socket and the streams of many sessions.

Both ends of a worker connection multiplex many sessions over one socket, and
both need the same two mechanisms:

* :class:`ChunkBuffer` holds the chunks a session received until its reader
  takes them, counted on an :class:`InboundFlow`, which pauses reading the
  socket when one session or all of them together hold too much unread data
  and resumes it once they have caught up. The worker's
  :class:`~cocaine_http.aio.streams.Request` and the runtime's
  :class:`~cocaine_http.runtime.invocation.Invocation` are chunk buffers.
* :class:`Outbox` coalesces the small frames written while one read is
  delivered, or during one loop iteration, into one socket write.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker_transport import WorkerTransport

__all__ = ["ChunkBuffer", "Data", "InboundFlow", "Outbox"]

Data = bytes | bytearray | memoryview


class ChunkBuffer:
    """Received chunks waiting for their reader, their bytes counted on an :class:`InboundFlow`.

    The worker's :class:`Request` and the runtime's
    :class:`~cocaine_http.runtime.invocation.Invocation` (its reply side)
    both hold what arrived on a shared socket until a reader takes it, and
    both must keep the flow's count exact so reading pauses and resumes at the
    marks. They differ only in how a stream ends, which each decides.
    """

    __slots__ = ("_buffered", "_chunks", "_discarding", "_flow", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, flow: InboundFlow | None) -> None:
        self._loop = loop
        self._flow = flow
        self._chunks: deque[bytes] = deque()
        self._buffered = 0  # read by InboundFlow
        self._waiter: asyncio.Future[None] | None = None
        self._discarding = False  # the reader is gone: take nothing more

    def _push(self, data: bytes) -> bool:
        """Buffer *data*; True if that woke a waiting reader."""
        self._chunks.append(data)
        n = len(data)
        self._buffered += n
        if self._flow is not None:
            self._flow.added(self, n)
        # Usually nobody waits yet (the chunk came with its invoke): no call then.
        return self._waiter is not None and self._wake()

    def _pop(self) -> bytes:
        data = self._chunks.popleft()
        n = len(data)
        self._buffered -= n
        if self._flow is not None:
            self._flow.removed(self, n)
        return data

    def discard(self) -> None:
        """The reader is gone: release every buffered byte, and take nothing more."""
        self._discarding = True
        if self._chunks:
            n = self._buffered
            self._chunks.clear()
            self._buffered = 0
            if self._flow is not None:
                self._flow.removed(self, n)

    def _wake(self) -> bool:
        """Wake the waiting reader, if any (True if there was one)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            return True
        return False

    async def _wait(self) -> None:
        """Until the next :meth:`_wake` (a chunk, the end, an error)."""
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class InboundFlow:
    """Accounts unread bytes of many streams sharing one socket, and pauses/resumes
    reading around the marks (the worker's requests; the engine's replies)."""

    __slots__ = ("_over", "_pause", "_resume", "high", "low", "paused", "pauses", "session_high", "total")

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        *,
        session_high: int,
        high: int,
        low: int,
    ) -> None:
        self._pause = pause
        self._resume = resume
        self.session_high = session_high
        self.high = high
        self.low = low
        self.total = 0
        self.paused = False
        self.pauses = 0  # how often reading was paused (for tests and stats)
        self._over: set[ChunkBuffer] = set()

    # (A stream is only ever over its mark while reading is paused.)
    def added(self, request: ChunkBuffer, n: int) -> None:
        self.total += n
        if request._buffered > self.session_high:
            self._over.add(request)
        if not self.paused and (self._over or self.total > self.high):
            self.paused = True
            self.pauses += 1
            self._pause()

    def removed(self, request: ChunkBuffer, n: int) -> None:
        self.total -= n
        if self._over and request in self._over and request._buffered <= self.session_high // 2:
            self._over.discard(request)
        if self.paused and not self._over and self.total <= self.low:
            self.paused = False
            self._resume()


class Outbox:
    """Coalesces the small frames written during one loop iteration into one socket write.

    Many sessions answering in the same iteration (a burst of invocations)
    would otherwise cost a ``send`` system call per frame. Frames are kept in
    order and flushed at the end of the iteration, or at once when
    ``limit`` bytes are pending or a large payload follows (payloads over
    ``direct`` bytes go to the socket as their own part, not copied).
    While the channel is delivering a read (``channel.dispatching``) nothing
    is scheduled: the owner flushes from the channel's ``on_read_end``.
    """

    __slots__ = ("_loop", "_parts", "_scheduled", "_size", "channel", "direct", "limit")

    def __init__(
        self,
        channel: WorkerTransport,
        loop: asyncio.AbstractEventLoop,
        *,
        limit: int = 65536,
        direct: int = 16384,
    ) -> None:
        self.channel = channel
        self._loop = loop
        self.limit = limit
        self.direct = direct
        self._parts: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, frame: bytes) -> None:
        self._parts.append(frame)
        self._size += len(frame)
        if self._size >= self.limit:
            self.flush()
        elif not self._scheduled and not self.channel.dispatching:
            self.flush_soon()

    def write_parts(self, header: bytes, payload: Data) -> None:
        self.flush()
        if not self.channel.closed:
            self.channel.send_parts(0, header, payload)

    def flush(self) -> None:
        """Hand everything pending to the socket now (before a control frame, say)."""
        parts = self._parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._size = 0
        if not self.channel.closed:
            self.channel.send(0, data)

    def flush_soon(self) -> None:
        """Flush after the callbacks already queued on the loop (once, however often called).

        Called ahead of writes that are known to come, such as those of
        handler tasks just queued to take their first step, it saves the
        loop iteration that a flush queued behind them would cost.
        """
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()
