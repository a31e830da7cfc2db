"""The bounded pool of daemon threads that runs plain ``def`` handlers.

Kept apart from the worker: it is a general executor whose only cocaine
concern is that its threads never receive the signals the loop handles.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["HandlerThreads", "LoopInbox"]

log = logging.getLogger("cocaine_http.worker")


class LoopInbox:
    """Calls from handler threads to the loop, run in batches: one wake-up per batch.

    ``loop.call_soon_threadsafe`` writes to the loop's self-pipe on every
    call; a threaded WSGI request made four of them (its body read's
    accounting, its head, its body, its end). :meth:`post` only appends to
    a deque, and wakes the loop when no run is pending already, so calls
    posted while the loop is busy (or before it wakes) share one wake-up
    and run in one callback, in the order they were posted
    (``bench/wsgi_callgrind.py --threads 8``: 762.0K instr/req with a
    ``call_soon_threadsafe`` per call, 704.2K with this).
    """

    __slots__ = ("_calls", "_loop", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._pending = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop (from any thread). Raises ``RuntimeError``
        when the loop is closed, as ``call_soon_threadsafe`` does."""
        self._calls.append((fn, args))
        # Unlocked: two threads may both see False and wake the loop twice (the
        # second run finds nothing); a call appended after a run's last pop
        # sees the flag that run cleared first, so it is never left behind.
        if not self._pending:
            self._pending = True
            try:
                self._loop.call_soon_threadsafe(self._run)
            except RuntimeError:
                self._pending = False
                raise

    def _run(self) -> None:
        self._pending = False
        calls = self._calls
        while calls:
            fn, args = calls.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("a call posted from a handler thread failed: %r", fn)


class HandlerThreads:
    """A bounded pool of daemon threads for plain ``def`` handlers.

    Like :class:`concurrent.futures.ThreadPoolExecutor`, but its threads are
    daemons: a handler stuck in user code cannot hold the process after the
    worker has said goodbye to the runtime (the pool in the stdlib is
    joined at interpreter exit). Threads start on demand, up to ``size``.
    """

    def __init__(self, size: int, name: str = "cocaine-handler") -> None:
        self.size = size
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0
        self._pending = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on a pool thread; its future says how it ended."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(future, fn, args)
        return future

    def call(
        self, done: Callable[[Any, BaseException | None], Any], fn: Callable[..., Any], *args: Any
    ) -> None:
        """Run ``fn(*args)`` on a pool thread, then ``done(result, None)`` or
        ``done(None, exc)`` on that same thread.

        :meth:`submit` without its future, for the worker's sessions, which
        only want to hear the end: a future's making, running and result cost
        23.7K instructions (it locks a condition of its own for each step).
        """
        self._put(done, fn, args)

    def _put(self, done: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._closed:
            raise RuntimeError("the handler pool is shut down")
        ctx = contextvars.copy_context()
        with self._lock:
            self._pending += 1
            spawn = self._pending > self._idle and len(self._threads) < self.size
            if spawn:
                thread = threading.Thread(
                    target=self._run, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
        self._queue.put((done, ctx, fn, args))
        if spawn:
            thread.start()

    def _run(self) -> None:
        # Signals are the main thread's business (the loop handles SIGTERM/SIGINT).
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._pending -= 1
            if item is None:
                return
            done, ctx, fn, args = item
            if type(done) is concurrent.futures.Future:
                if done.set_running_or_notify_cancel():
                    try:
                        result = ctx.run(fn, *args)
                    except BaseException as exc:
                        done.set_exception(exc)
                    else:
                        done.set_result(result)
            else:
                try:
                    result = ctx.run(fn, *args)
                except BaseException as exc:
                    self._tell(done, None, exc)
                else:
                    self._tell(done, result, None)
            result = None  # nothing of this call stays referenced while the thread waits
            del item, done, fn, args

    @staticmethod
    def _tell(
        done: Callable[[Any, BaseException | None], Any], result: Any, exc: BaseException | None
    ) -> None:
        try:
            done(result, exc)
        except Exception:
            log.exception("the end of a handler thread's call could not be told: %r", done)

    def shutdown(self) -> None:
        """Stop the idle threads; busy ones finish their handler first (never joined)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._threads) - self._idle
