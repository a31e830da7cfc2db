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
        self._lock = threading.Lock()  # taken only to start a thread
        #: One entry per thread that will wait for work no call has claimed yet.
        #: A call claims one, or else starts a thread; once the pool is full,
        #: the queue alone (see :meth:`_put`).
        self._idle: list[None] = []
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on a pool thread; its future says how it ended."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(None, future, None, fn, args)
        return future

    def call(
        self,
        inbox: LoopInbox,
        done: Callable[[Any, Any, BaseException | None], Any],
        token: Any,
        fn: Callable[..., Any],
        *args: Any,
    ) -> None:
        """Run ``fn(*args)`` on a pool thread, then ``done(token, result, None)``
        or ``done(token, None, exc)`` on the loop, posted to *inbox* (not at all
        once the loop is closed).

        :meth:`submit` without its future, for the worker's sessions, which
        only want to hear the end, on the loop: a future's making, running and
        result cost 23.7K instructions (it locks a condition of its own for
        each step); *token* (the session) spares the caller a closure per call.
        """
        self._put(inbox, done, token, fn, args)

    def _put(
        self, inbox: LoopInbox | None, done: Any, token: Any, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        # No lock and no counts per call: a thread adds its entry to _idle
        # (list appends and pops are atomic) before it waits again, and a
        # call takes one, so each call put while the pool can grow has a
        # thread bound to take it, one already there or one started for it.
        if self._closed:
            raise RuntimeError("the handler pool is shut down")
        item = (inbox, done, token, contextvars.copy_context(), fn, args)
        if len(self._threads) < self.size:
            try:
                self._idle.pop()
            except IndexError:
                self._spawn()
        self._queue.put(item)

    def _spawn(self) -> None:
        with self._lock:
            if len(self._threads) >= self.size:
                return  # started by another caller meanwhile: the queue waits for one of them
            thread = threading.Thread(target=self._run, name=f"{self.name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _run(self) -> None:
        # Signals are the main thread's business (the loop handles SIGTERM/SIGINT).
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        get = self._queue.get
        idle = self._idle
        threads = self._threads
        while True:
            # The first call of a thread is the one that started it: no entry in _idle.
            item = get()
            if item is None:
                return
            inbox, done, token, ctx, fn, args = item
            if inbox is None:  # submit: done is the call's future
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
                    _tell(inbox, done, token, None, exc)
                else:
                    _tell(inbox, done, token, result, None)
            result = None  # nothing of this call stays referenced while the thread waits
            del item, inbox, done, token, ctx, fn, args
            if len(threads) < self.size:
                idle.append(None)

    def shutdown(self) -> None:
        """Stop the idle threads; busy ones finish their handler first (never joined)."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)


def _tell(
    inbox: LoopInbox, done: Callable[..., Any], token: Any, result: Any, exc: BaseException | None
) -> None:
    """Post the end of a :meth:`HandlerThreads.call` to the loop, unless the loop is closed."""
    try:
        inbox.post(done, token, result, exc)
    except RuntimeError:
        log.debug("the end of a handler thread's call after the loop closed: %r", done)
