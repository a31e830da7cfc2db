"""The blocking ends of a session, for plain ``def`` handlers run in threads.

:class:`BlockingRequest` and :class:`BlockingResponse` have the methods of
:class:`~cocaine_http.aio.streams.Request` and
:class:`~cocaine_http.aio.streams.Response` without ``await``: a handler
thread reads chunks the loop hands it and writes through the loop, never
with more than ``sync_write_budget`` bytes queued for it
(docs/worker.md, "Flow control").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ..errors import ChannelClosedError, DisconnectedError
from .flow import Data
from .streams import Drain, Headers, Request, Response
from .threads import LoopInbox

__all__ = ["BlockingRequest", "BlockingResponse", "blocking_pair"]

T = TypeVar("T")


class BlockingRequest:
    """:class:`Request` for a handler running in a worker thread: same methods, blocking."""

    __slots__ = ("_inbox", "_loop", "_request", "_state")

    def __init__(
        self,
        request: Request,
        loop: asyncio.AbstractEventLoop,
        state: _ThreadState,
        inbox: LoopInbox | None = None,
    ) -> None:
        self._request = request
        self._loop = loop
        self._state = state
        self._inbox = inbox if inbox is not None else LoopInbox(loop)

    def __repr__(self) -> str:
        return f"<BlockingRequest {self.event!r} session={self.session}>"

    @property
    def event(self) -> str:
        return self._request.event

    @property
    def session(self) -> int:
        return self._request.session

    @property
    def headers(self) -> Headers:
        return self._request.headers

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk, ``b""`` at the end; blocks the calling thread."""
        self._state.check()
        request = self._request
        # What is buffered, without a round trip through the loop:
        # bench/wsgi_callgrind.py --threads 8, 850.1K -> 704.2K instr/req.
        data = request.take_from_thread()
        if data is not None:
            if data:
                try:
                    self._inbox.post(request.consumed, len(data))
                except RuntimeError:  # the loop is closed: the worker is gone
                    raise DisconnectedError("the worker's event loop has stopped") from None
            return data
        try:
            future = asyncio.run_coroutine_threadsafe(request.read(), self._loop)
        except RuntimeError:  # the loop is closed: the worker is gone
            raise DisconnectedError("the worker's event loop has stopped") from None
        return self._state.wait(future, timeout)

    def read_all(self, limit: int | None = None) -> bytes:
        parts = []
        size = 0
        while chunk := self.read():
            size += len(chunk)
            if limit is not None and size > limit:
                raise ValueError(f"request body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read():
            yield chunk


class _ThreadState:
    """What a thread-side stream pair shares with the loop: the abort flag and waiters.

    The base of :class:`BlockingResponse`: a pair's response is its state, one
    object fewer per request (with the abort a bound method, not a closure).
    """

    __slots__ = ("aborted", "waiting")

    aborted: BaseException | None
    #: Made by the first wait (most requests never wait on the loop).
    waiting: set[concurrent.futures.Future[Any]] | None

    def check(self) -> None:
        if self.aborted is not None:
            raise self.aborted

    def wait(self, future: concurrent.futures.Future[T], timeout: float | None) -> T:
        """The result of a call run on the loop; an abort turns into its exception."""
        if self.waiting is None:
            self.waiting = set()
        self.waiting.add(future)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            self.check()
            raise ChannelClosedError("the session was aborted") from None
        finally:
            self.waiting.discard(future)

    def abort(self, exc: BaseException) -> None:
        """Called on the loop when the session is aborted: wake and fail blocked calls."""
        self.aborted = exc
        for future in list(self.waiting or ()):
            future.cancel()


class BlockingResponse(_ThreadState):
    """:class:`Response` for a handler running in a worker thread.

    ``write`` queues the frame for the loop and returns; it blocks while more
    than ``budget`` bytes are queued or waiting for the socket to drain, so a
    fast producer is held at the pace of the runtime. ``close`` and ``error``
    wait until the frame was handed to the socket. A failure on the loop side
    (connection gone, write after the end) is raised by the next call.
    """

    __slots__ = ("_cond", "_failed", "_inbox", "_inflight", "_lock", "_loop", "_response", "budget")

    def __init__(
        self,
        response: Response,
        loop: asyncio.AbstractEventLoop,
        budget: int = 256 * 1024,
        inbox: LoopInbox | None = None,
    ) -> None:
        self.aborted = None  # the fields of _ThreadState, set here: a call less per request
        self.waiting = None
        self._response = response
        self._loop = loop
        self._inbox = inbox if inbox is not None else LoopInbox(loop)
        self.budget = budget
        # A plain lock; the condition on it only once a writer must wait (most
        # responses never do): a Condition costs 8.4K instructions to make, a
        # Lock 1.2K (with HandlerThreads.call: bench/wsgi_callgrind.py
        # --threads 8, 659.8K -> 599.9K instr/req).
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._inflight = 0
        self._failed: BaseException | None = None

    def __repr__(self) -> str:
        return f"<BlockingResponse session={self.session}>"

    @property
    def session(self) -> int:
        return self._response.session

    @property
    def closed(self) -> bool:
        return self._response.closed

    def write(self, data: Data | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._send(data)

    def _send(self, data: Data) -> None:
        n = len(data)
        with self._lock:
            while (
                self._inflight > 0
                and self._inflight + n > self.budget
                and self._failed is None
                and self.aborted is None
            ):
                self._condition().wait(0.5)
            if self._failed is not None or self.aborted is not None:
                self._raise_if_failed()
            self._inflight += n
        try:
            self._inbox.post(self._write_on_loop, data)
        except RuntimeError:  # the loop is closed: the worker is gone
            raise DisconnectedError("the worker's event loop has stopped") from None

    def close(self) -> None:
        self._call(self._response.close)

    def error(self, code: int | tuple[int, int], message: str) -> None:
        self._call(lambda: self._response.error(code, message))

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued write has been handed to the socket and drained."""
        with self._lock:
            while self._inflight > 0 and self._failed is None and self.aborted is None:
                self._condition().wait(timeout if timeout is not None else 0.5)
                if timeout is not None:
                    break
            self._raise_if_failed()

    # -- internals -------------------------------------------------------------
    def _condition(self) -> threading.Condition:
        """The condition writers wait on (made by the first; called with the lock held)."""
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return self._cond

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed
        self.check()

    def _call(self, fn: Callable[[], Any]) -> None:
        self._raise_if_failed()
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                fn()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

        try:
            # Through the inbox, not a call of its own: it then runs after the
            # writes this thread posted before it, whatever the loop's queue holds.
            self._inbox.post(run)
        except RuntimeError:
            raise DisconnectedError("the worker's event loop has stopped") from None
        self.wait(future, None)

    def _write_on_loop(self, data: Data) -> None:
        n = len(data)
        try:
            waiter = self._response.write(data)
        except BaseException as exc:
            self._release(n, exc)
            return
        if isinstance(waiter, Drain):
            task = self._loop.create_task(self._release_after(waiter, n))
            task.add_done_callback(_silence)
        else:
            self._release(n, None)

    async def _release_after(self, waiter: Awaitable[None], n: int) -> None:
        try:
            await waiter
        except BaseException as exc:
            self._release(n, exc)
            raise
        self._release(n, None)

    def _release(self, n: int, exc: BaseException | None) -> None:
        with self._lock:
            self._inflight -= n
            if exc is not None and self._failed is None:
                self._failed = exc
            if self._cond is not None:
                self._cond.notify_all()

    def abort(self, exc: BaseException) -> None:
        """Called on the loop when the session is aborted: wake and fail blocked calls
        of both ends (a writer waiting for the budget too)."""
        super().abort(exc)
        with self._lock:
            if self._cond is not None:
                self._cond.notify_all()


def _silence(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def blocking_pair(
    request: Request,
    response: Response,
    loop: asyncio.AbstractEventLoop,
    *,
    budget: int = 256 * 1024,
    inbox: LoopInbox | None = None,
) -> tuple[BlockingRequest, BlockingResponse, Callable[[BaseException], None]]:
    """Thread-side twins of *request*/*response*, and the loop-side ``abort(exc)``
    that fails their blocked and future calls with *exc*. Their calls to the
    loop go through *inbox* (the worker shares one among its sessions)."""
    if inbox is None:
        inbox = LoopInbox(loop)
    blocking_response = BlockingResponse(response, loop, budget, inbox)
    # The response is the pair's state: its abort fails the calls of both ends.
    blocking_request = BlockingRequest(request, loop, blocking_response, inbox)
    return blocking_request, blocking_response, blocking_response.abort
