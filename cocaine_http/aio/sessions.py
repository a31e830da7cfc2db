"""The worker's sessions in flight: one handler per invocation, from its invoke to its end.

:class:`Sessions` receives the session events of the runtime connection (an
invoke, chunks, the end, an error) and runs the registered handler of each
invocation with a :class:`~cocaine_http.aio.streams.Request` and a
:class:`~cocaine_http.aio.streams.Response`: ``async def`` handlers as tasks on
the loop, plain ``def`` handlers in the worker's thread pool. It answers what
it will not run (no handler, too busy, shutting down) with the codes the
runtime and the proxies understand, turns a handler's exception into an error
reply, and aborts whatever is left when the worker goes.

The :class:`~cocaine_http.aio.worker.Worker` owns the process's lifecycle (the
connection, heartbeats, terminate, signals) and hands everything that concerns
a session to this class, the channel's
:class:`~cocaine_http.protocol.worker.SessionSink`; other events come back to
it through ``control``.

When handlers start: an ``async def`` handler starts once its request has
ended (its choke or close) and either :data:`START_BATCH` such whole
requests are waiting or every frame of the socket read that carried its end
has been delivered (the channel's ``on_read_end``), which also starts the
read's handlers whose requests have not ended. So a request that arrived
whole is buffered before it runs, and a read's handlers start together,
after the read's protocol work rather than interleaved with it: the app's
code runs back to back, which the processor rewards. bench/http_apps.py
(node driver, per-request CPU, three runs each) against starting each at its
request's end: Flask ``--threads 0`` 73.3-76.7 -> 68.3-70.0 us, FastAPI
65.0-66.7 -> 61.7-63.3 us, at the same instruction counts. Handlers' request
stages are grouped the same way: all of a batch's run before any of its
handlers starts (:meth:`Sessions.prepare_whole`). The batch is bounded
because the sessions that wait are live objects the collector walks:
bench/worker_floor.py --callgrind, A 16 B x 256, 75.0K instr/request
starting each at its end, 78.9K with whole reads of 256 sessions, 76.0K with
batches of 64 (wall clock the same as the first).
Its task starts eagerly (:mod:`.eager`), so a handler that does not wait is
answered in that same loop turn, in one write with the rest of the read's
answers. A handler that says it needs no task (``needs_task = False``: the
inline WSGI handler, whose app is synchronous code) takes that first step with
no task at all (:func:`~.eager.start_taskless`), and gets one only if it waits:
bench/http_apps.py --only flask --driver node, ``--threads 0``, 68.3-75.0 ->
66.7-70.0 us CPU/request (three interleaved runs); bench/wsgi_callgrind.py
--threads 0, 498.2K -> 488.5K instructions.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

from ..errors import (
    ChannelClosedError,
    CocaineError,
    DisconnectedError,
    RequestIdleError,
    RequestTooLargeError,
    ServiceError,
)
from ..errors.codes import WORKER_CODES_A, WORKER_CODES_B, Code
from ..protocol.frames import Generation
from ..protocol.payloads import SplitPayload
from ..protocol.worker import Choke, Chunk, Error, Event, Headers, Invoke, Oversize, WorkerProtocol, tell
from .blocking import blocking_pair
from .eager import TaskStarter, start_taskless
from .flow import InboundFlow, Outbox
from .handlers import FIRST_STEP, IN_THREAD, Handler, Prepare, Registered
from .streams import Request, Response
from .threads import HandlerThreads, LoopInbox

__all__ = ["START_BATCH", "Handler", "Sessions"]

log = logging.getLogger("cocaine_http.worker")

#: How many whole requests of a read wait for their handlers to start together
#: (the module docstring: "When handlers start").
START_BATCH = 64


class _Session(Request):
    """A session as the worker keeps it: its request (what the handler is
    given as ``request``), with the session's response, handler and task
    beside the chunks, one object per session rather than a request and a
    record pointing at it. Made only by :meth:`Sessions.on_invoke`, which
    sets the fields below (no ``__init__`` of its own: a frame less per session).
    """

    # Private names: the handler is given this object as its request, and
    # sees no more of it than of a Request.
    __slots__ = (
        "_abort_threads",
        "_aborted",
        "_handler",
        "_prepare",
        "_response",
        "_run",
        "_task",
        "_taskless",
    )

    _handler: Handler
    #: The handler's request stage (handlers.py), and the coroutine it left to run.
    _prepare: Prepare | None
    _run: Coroutine[Any, Any, None] | None
    _response: Response
    #: The handler's task (async), or the future set once no handler thread runs (sync).
    _task: asyncio.Future[Any] | None
    _abort_threads: Callable[[BaseException], None] | None
    _aborted: bool
    #: Its handler runs as FIRST_STEP (a task only if it waits).
    _taskless: bool


class Sessions:
    """The sessions of one runtime connection (see the module docstring).

    *find_handler* maps an event name to what the worker registered for it
    (:func:`~.handlers.registered`) or ``None``;
    *control* receives every event that is not about a session (heartbeat,
    terminate, a dropped message).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: WorkerProtocol,
        outbox: Outbox,
        flow: InboundFlow,
        threads: HandlerThreads,
        *,
        find_handler: Callable[[str], Registered | None],
        control: Callable[[Event], Any],
        max_sessions: int,
        sync_write_budget: int,
    ) -> None:
        self._loop = loop
        self._tasks = TaskStarter(loop)
        self._protocol = protocol
        self._outbox = outbox
        self._flow = flow
        self._threads = threads
        #: Handler threads' calls to the loop (writes, ends), batched: one wake-up per batch.
        self._inbox = LoopInbox(loop)
        self._find_handler = find_handler
        self._control = control
        self.max_sessions = max_sessions
        self.sync_write_budget = sync_write_budget
        self._gen_b = protocol.generation is Generation.B
        self._codes = WORKER_CODES_B if self._gen_b else WORKER_CODES_A
        #: False once the worker drains: new invokes are refused with a code proxies retry.
        self.accepting = True
        self._sessions: dict[int, _Session] = {}
        self._starting: dict[int, _Session] = {}  # async sessions invoked in the read being delivered
        self._whole: list[_Session] = []  # of those, the ones whose request has ended, in that order
        self._woken = False  # this read woke a handler waiting for its request
        self._queued = False  # this read queued a handler's first step
        self._idle: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    # -- from the connection (a SessionSink of the worker protocol) -----------
    def on_invoke(self, s: int, event: str, headers: Headers) -> None:
        """A new session: run its handler, or answer why not."""
        if not self.accepting:
            self._refuse(s, "the worker is shutting down")
            return
        if len(self._sessions) >= self.max_sessions:
            self._refuse(s, f"the worker is busy ({len(self._sessions)} sessions)", busy=True)
            return
        entry = self._find_handler(event)
        if entry is None:
            self._no_handler(s, event)
            return
        handler, runs, prepare = entry
        loop = self._loop
        session = self._sessions[s] = _Session(event, s, headers, self._flow, loop)
        session._handler = handler
        session._prepare = prepare
        response = session._response = Response(s, self._protocol, self._outbox)
        session._task = session._abort_threads = session._run = None
        session._aborted = False
        if runs != IN_THREAD:
            session._taskless = runs == FIRST_STEP
            # Started with the read's other whole requests (on_choke), or at the read's end.
            self._starting[s] = session
        else:
            inbox = self._inbox
            breq, bresp, abort = blocking_pair(
                session, response, loop, budget=self.sync_write_budget, inbox=inbox
            )
            session._abort_threads = abort
            session._task = loop.create_future()  # done with its thread (what settle() waits for)
            self._threads.call(inbox, self._sync_done, session, handler, breq, bresp)

    def on_chunk(self, s: int, data: bytes | SplitPayload, headers: Headers | None) -> None:
        session = self._sessions.get(s)
        if session is None:
            return
        if type(data) is not bytes:  # a large envelope, its body apart (protocol/payloads.py)
            takes = getattr(session._handler, "takes_split_payloads", False)  # the HTTP adapters
            data = cast(bytes, data) if takes else bytes(data)  # (their Request holds it as bytes)
        if session.feed(data):
            self._woken = True

    def on_choke(self, s: int) -> None:
        session = self._sessions.get(s)
        if session is None:
            return
        if session.feed_eof():
            self._woken = True
        elif session._task is None and not session._aborted:
            del self._starting[s]
            self._whole.append(session)  # its whole request is here
            if len(self._whole) >= START_BATCH:
                self._start_whole()

    def on_event(self, event: Event) -> None:
        """Every other event of the connection: the runtime's error on a session
        here, the rest to ``control`` (a session event given whole goes to the
        methods above)."""
        if type(event) is Error:
            self._remote_error(event)
        elif type(event) is Oversize:
            self._oversize(event)
        elif type(event) is Chunk or type(event) is Invoke or type(event) is Choke:
            tell(self, event)
        else:
            self._control(event)

    def on_read_end(self) -> None:
        """Start the handlers of this read's invocations not started yet (on_choke
        starts them by batches), then send what every handler wrote.

        Starting them here rather than at the invoke means a handler sees the
        chunks that arrived in the same read; it runs eagerly
        up to its first real wait, so a request that came
        whole is answered in this same loop turn and in one write.
        """
        if self._whole:
            self._start_whole()
        if self._starting:
            starting, self._starting = self._starting, {}
            self._start_all(starting.values())
        self._outbox.flush()
        if self._queued or self._woken:
            self._queued = False
            # Handler steps are queued (first steps, or readers this read
            # woke): have what they write sent right behind them, in their
            # loop iteration, and not from a flush one iteration later.
            self._woken = False
            self._outbox.flush_soon()

    def _start_whole(self) -> None:
        """Start the handlers of the whole requests waiting (see the module docstring),
        after the request stages of those that have one (:meth:`prepare_whole`)."""
        whole, self._whole = self._whole, []
        for session in whole:
            prepare = session._prepare
            if prepare is not None and not session._aborted:
                self.prepare_whole(session, prepare)
        self._start_all(whole)

    @staticmethod
    def prepare_whole(session: _Session, prepare: Prepare) -> None:
        """Run the request stage of *session*'s handler (handlers.py), before any
        handler of the batch starts.

        The HTTP adapters parse the envelope and build the environ or scope
        there, so the read's requests go through that code one after the
        other, then through the apps. Node engine (``-w 64 -n 60000``, worker
        CPU per request, interleaved runs): Flask ``--threads 0`` 64.2-65.0 ->
        60.8-63.7 us, FastAPI 58.7-60.0 -> 56.3-58.5 us (Python 3.12: 63.7-64.3
        -> 60.3-60.8 and 57.2-57.3 -> 54.2-55.3); bench/http_apps.py python
        driver, Flask ``--headers browser`` 73.2-74.1 -> 68.3-68.9 us. About
        1 % more instructions (bench/wsgi_callgrind.py).
        """
        try:
            session._run = prepare(session, session._response)
        except Exception as exc:  # the handler's failure, as if it had raised it
            session._run = _raise(exc)

    def _start_all(self, sessions: Iterable[_Session]) -> None:
        """Start the handlers of *sessions*, in order; end those failed while they
        waited (the connection during this read, an idle timeout) instead."""
        for session in sessions:
            if session._aborted:
                if session._run is not None:
                    session._run.close()  # a request stage's, never to run
                self._done(session)
            else:
                self._start(session)

    def _start(self, session: _Session) -> None:
        # Named after its event: Task-<n> would be formatted per task
        # on 3.11 (eagerly, 1.4K instructions per request).
        coro = self._run_async(session)
        if session._taskless:
            task = session._task = start_taskless(self._loop, coro, session.event)
            if task is not None and session._aborted:  # by its own first step (the worker stopping)
                task.cancel()
            return
        session._task, started = self._tasks.start(coro, session.event)
        if not started:
            self._queued = True

    def _remote_error(self, event: Error) -> None:
        session = self._sessions.get(event.session)
        if session is None:
            return
        exc = ServiceError(event.message, code=event.code, category=event.category)
        session.feed_error(exc)
        if self._gen_b:
            # B: the runtime failed the channel (client error or request timeout).
            # Sending on it now could be a revoked channel to the runtime, which
            # drops the whole connection (PROTOCOL.md §3.2.1): send nothing more.
            session._response.abandon()
            self._protocol.forget(event.session)

    def _oversize(self, event: Oversize) -> None:
        """A request frame over max_frame_size, skipped by the decoder: fail
        this session only. Its reader gets :class:`RequestTooLargeError` (the
        HTTP handlers answer 413 with it); a handler that lets it escape gets
        the runtime an error reply (see _handler_failed)."""
        s = event.session
        limit = self._outbox.channel.max_frame_size
        message = (
            f"request body too large: a frame of {event.size} bytes on session {s} (max_frame_size {limit})"
        )
        session = self._sessions.get(s)
        if session is None:
            log.warning("%s; no handler is reading it", message)
            self._send_error(s, self._codes.too_large, message)
            return
        log.warning("%s (event %r); the session fails", message, session.event)
        session.feed_error(RequestTooLargeError(message))

    # -- a handler's end -------------------------------------------------------
    async def _run_async(self, session: _Session) -> None:
        try:
            run = session._run
            await (session._handler(session, session._response) if run is None else run)
        except asyncio.CancelledError:
            if not session._aborted:
                raise
        except Exception as exc:
            self._handler_failed(session, exc)
        finally:
            self._done(session)

    def _sync_done(self, session: _Session, result: Any, exc: BaseException | None) -> None:
        if exc is None and result is not None and inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            exc = TypeError(f"handler of {session.event!r} returned an awaitable: declare it with async def")
        if exc is not None:
            if isinstance(exc, Exception):
                self._handler_failed(session, exc)
            else:
                log.error("handler of session %d raised %r", session.session, exc)
        task = session._task
        if task is not None and not task.done():
            task.set_result(None)
        self._done(session)

    def _handler_failed(self, session: _Session, exc: BaseException) -> None:
        s = session.session
        if session._aborted or self._outbox.channel.closed:
            log.debug("aborted handler of session %d ended with %r", s, exc)
            return
        if exc is session.failure and type(exc) is RequestTooLargeError:
            # An oversize request frame (_oversize), re-raised by a read.
            _reply_error(session._response, self._codes.too_large, exc.message)
            return
        if exc is session.failure:
            # The runtime's own error on this session, re-raised by a read: not a bug here.
            log.info("session %d failed on the runtime side: %s", s, exc)
            if not session._response.closed:
                session._response.close()
            return
        log.error("handler of event %r (session %d) failed", session.event, s, exc_info=exc)
        _reply_error(session._response, self._codes.uncaught, str(exc) or type(exc).__name__)

    def _done(self, session: _Session) -> None:
        s = session.session
        if self._sessions.get(s) is session:
            del self._sessions[s]
        response = session._response
        if not response.closed:
            response.close()  # which does not raise once the session or the connection ended
        if not self._sessions:
            # Nothing else in flight will add to this iteration's batch: send now
            # rather than one loop iteration later (latency of lone requests).
            # (Within a read, its end flushes: what follows may be answered too.)
            if not self._outbox.channel.dispatching:
                self._outbox.flush()
            if self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
        session.discard()  # after the answer is out: off the request's critical path

    # -- answers to invokes that will not run ----------------------------------
    def _send_error(self, s: int, code: Code, message: str) -> None:
        try:
            frame = self._protocol.send_error(s, code, message)
            if not self._outbox.channel.closed:
                self._outbox.write(frame)
        except CocaineError as exc:
            log.debug("could not answer session %d: %s", s, exc)

    def _no_handler(self, s: int, event: str) -> None:
        # PROTOCOL.md §5 item 6: the codes (and words) the official frameworks use.
        message = f"no handler for event {event}" if self._gen_b else f"there is no handler for event {event}"
        self._send_error(s, self._codes.no_handler, message)
        log.warning("no handler for event %r (session %d)", event, s)

    def _refuse(self, s: int, message: str, *, busy: bool = False) -> None:
        """An invoke we will not run. A: resource_error (2). B: a code proxies retry:
        EPIPE in the generic category ("app stopped") when shutting down, the
        overseer's "queue is full" when over ``max_sessions``."""
        self._send_error(s, self._codes.busy if busy else self._codes.stopping, message)

    # -- the worker's end --------------------------------------------------------
    def idle(self) -> asyncio.Future[None]:
        """A future done once no session is left (done already if none is)."""
        if self._idle is None or self._idle.done():
            self._idle = self._loop.create_future()
        if not self._sessions:
            self._idle.set_result(None)
        return self._idle

    def abort(self, reason: str) -> None:
        """End every session now (see :meth:`_fail`): the worker is leaving."""
        for session in list(self._sessions.values()):
            if not session._aborted:
                exc = ChannelClosedError(f"session aborted: {reason}")
                self._fail(session, exc, self._codes.aborted, reason)

    def expire(self, s: int, limit: float) -> None:
        """Fail session *s*, whose request sent nothing for *limit* seconds
        (:meth:`WorkerProtocol.idle_sessions`): its reader gets
        :class:`RequestIdleError`, the runtime an error reply, its handler is
        cancelled (or its thread told to stop), and its slot is free at once.
        What the runtime still sends for it is dropped quietly."""
        message = f"the request sent nothing for {limit:g} s"
        session = self._sessions.pop(s, None)
        if session is None:  # no handler behind it: nothing to fail, only to forget
            self._protocol.forget(s)
            log.info("session %d: %s; forgotten", s, message)
            return
        log.warning("session %d (event %r): %s; failed", s, session.event, message)
        self._fail(session, RequestIdleError(message), self._codes.idle, message)
        if not self._sessions and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _fail(self, session: _Session, exc: CocaineError, code: Code, message: str) -> None:
        """End *session* now: its reader gets *exc*, the runtime an error reply
        (while the connection lasts), its task is cancelled or its thread told to stop."""
        session._aborted = True
        session.feed_error(exc)
        if self._outbox.channel.closed:
            session._response.mark_closed()
        else:
            _reply_error(session._response, code, message)
        if session._abort_threads is not None:
            session._abort_threads(exc)
        elif session._task is not None:
            session._task.cancel()

    async def settle(self, timeout: float) -> None:
        """Wait up to *timeout* for the handlers still running to return."""
        tasks = [s._task for s in self._sessions.values() if s._task is not None and not s._task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def _reply_error(response: Response, code: Code, message: str) -> None:
    """Answer with an error, unless the response is closed, or the session or the connection ended."""
    if not response.closed:
        with contextlib.suppress(DisconnectedError, ChannelClosedError):
            response.error(code, message)


async def _raise(exc: Exception) -> None:
    """A request stage's failure, raised where the handler's would be."""
    raise exc
