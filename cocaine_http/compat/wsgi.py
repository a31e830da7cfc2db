"""PEP 3333: serve a WSGI app (Flask, Django, ...) as a worker handler.

:class:`WSGIHandler` is a plain ``def`` handler, so the
:class:`~cocaine_http.aio.worker.Worker` runs it in its bounded thread pool with
blocking streams; the event loop never runs app code and heartbeats keep
flowing while a view blocks. Per session::

    request.read()            first chunk = the HTTP envelope (envelope.parse_request)
    environ                   built here (build_environ)
    app(environ, start_response)
    head                      sent with the first non-empty body chunk, or at the end
    body chunks               written one by one; response.write blocks past the
                              worker's write budget, so a streaming app runs at
                              the pace of the runtime (backpressure)
    iterable.close()          always, also on errors
    response.close()          by the worker when the handler returns

``wsgi.input`` is a real stream (:class:`WSGIInput`): the envelope's body
first, then every further chunk of the session as the app reads, never a
pre-buffered copy of a streamed request. ``wsgi.errors`` writes to the
``cocaine_http.wsgi`` logger.

Failures: a malformed envelope gets ``400``; an app that raises before its
head is sent, returns a non-iterable, yields ``str``, or produces an invalid
head gets ``500`` (the error is logged with the request line); after the
head was sent the session ends with an error frame instead (proxies then
answer 502/500 rather than pass a truncated body off as complete). The
worker keeps serving in every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any

from ..accesslog import AccessFormat
from ..aio.blocking import blocking_pair
from ..aio.streams import Drain
from ..aio.threads import HandlerThreads
from ..errors import ChannelClosedError, CocaineError, ErrorCode, RequestTooLargeError
from ..http.envelope import (
    DEFAULT_MAX_HEAD_SIZE,
    EnvelopeError,
    HttpRequest,
    ResponseEncoder,
    ResponseHeadError,
    body_allowed,
    parse_request,
    parse_status_line,
)
from ..protocol.frames import Generation
from .common import TOO_LARGE, SetCookieWarning, WebSocketRefusal, access_line, answered
from .wsgi_environ import ErrorStream, build_environ
from .wsgi_input import WSGIInput

__all__ = ["InlineWSGIHandler", "WSGIHandler", "WSGIInput", "build_environ"]

log = logging.getLogger("cocaine_http.wsgi")
access_log = logging.getLogger("cocaine_http.access")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class _Exchange:
    """One request's response state on the app's thread: start_response, write, head."""

    __slots__ = (
        "body_ok",
        "bytes_sent",
        "encoder",
        "head",
        "head_sent",
        "method",
        "pairs",
        "response",
        "status",
    )

    def __init__(self, response: Any, encoder: ResponseEncoder, method: str) -> None:
        self.response = response
        self.encoder = encoder
        self.method = method
        self.status: int | None = None
        self.head: bytes | None = None
        self.pairs: list[list[bytes]] | None = None
        self.head_sent = False
        self.body_ok = True
        self.bytes_sent = 0

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle (PEP 3333)
        elif self.head is not None:
            raise AssertionError("start_response called a second time without exc_info")
        # Checked now, so the app sees the error while it can still react (PEP 3333).
        app_code = parse_status_line(status)
        self.pairs, self.head = self.encoder.encode_head(app_code, headers)
        self.status = app_code
        self.body_ok = body_allowed(self.method, app_code)
        return self.write

    def send_head(self) -> None:
        if self.head is None:
            raise AssertionError("the app returned before calling start_response")
        if not self.head_sent:
            self.head_sent = True
            self.response.write(self.head)

    def write(self, data: bytes) -> Any:
        """Send a body chunk; returns what the response's ``write`` returned (inline: its drain)."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI body chunks must be bytes, got {type(data).__name__}")
            data = bytes(data)
        if self.head is None:
            raise AssertionError("write() before start_response()")
        if not data:
            return None
        payload = self.encoder.body(data) if self.body_ok else None
        if self.head_sent:
            if payload is None:
                return None
            waiter = self.response.write(payload)
        else:
            self.head_sent = True
            if payload is None:
                self.response.write(self.head)
                return None
            self.response.write(self.head)
            waiter = self.response.write(payload)
        self.bytes_sent += len(data)
        return waiter


class _WSGIServing:
    """What both modes share: the envelope to an environ, the serve loop, its failures.

    :class:`WSGIHandler` (a thread per request) and :class:`InlineWSGIHandler`
    (the loop's thread) differ only in how they get the request and how they
    wait while the socket drains: :meth:`_request_stage` then
    :meth:`_app_stage` is the one serve loop.
    """

    #: A large envelope may come with its body apart (aio/sessions.py): the
    #: body is ``wsgi.input``'s first chunk, and ``read()`` returns it as it is.
    takes_split_payloads = True

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        generation: Generation | str = Generation.B,
        root_path: str = "",
        access_log: bool = False,
        access_log_format: str | None = None,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
        drop_cookie_pairs: bool = True,
        app_name: str = "",
    ) -> None:
        self.app = app
        self.generation = Generation.parse(generation)
        self.cookie_warning = SetCookieWarning(self.generation, app_name, log)
        self.websocket = WebSocketRefusal(app_name, log)
        self.root_path = root_path
        self.access_log = access_log
        self.access_format = AccessFormat(access_log_format) if access_log_format else None
        self.drop_cookie_pairs = drop_cookie_pairs
        self.encoder = ResponseEncoder(self.generation, max_head_size=max_head_size)
        self._errors = ErrorStream(log)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.app!r}>"

    def _no_request(self, request: Any, response: Any, exc: CocaineError) -> None:
        """The session failed before its envelope arrived (an oversize one gets its 413)."""
        log.info("session %s failed before its request arrived: %s", request.session, exc)
        if type(exc) is RequestTooLargeError:
            self._answer(response, self.encoder, 413, TOO_LARGE)

    def _request_stage(
        self, request: Any, response: Any, blob: bytes, pull: Callable[[], bytes] | None, multithread: bool
    ) -> tuple[HttpRequest, dict[str, Any]] | None:
        """The request whose envelope is *blob* and its environ; ``None`` once
        answered instead (a bad envelope, a WebSocket handshake)."""
        try:
            req = parse_request(blob, drop_cookies=self.drop_cookie_pairs, body_in_place=True)
        except EnvelopeError as exc:
            log.error("bad HTTP request on session %s (event %r): %s", request.session, request.event, exc)
            self._answer(response, self.encoder, 400, f"Bad Request: {exc}")
            return None
        environ = build_environ(
            req,
            WSGIInput(req.body, pull),
            root_path=self.root_path,
            errors=self._errors,
            multithread=multithread,
        )
        # Only a request with an Upgrade header (one pass over the headers fewer for the rest).
        if "HTTP_UPGRADE" in environ and self.websocket.refuse(req):
            self._answer(response, self.encoder, self.websocket.status, self.websocket.message)
            return None
        environ["cocaine.event"] = request.event
        environ["cocaine.session"] = request.session
        environ["cocaine.headers"] = request.headers
        return req, environ

    def _app_stage(
        self,
        request: Any,
        response: Any,
        req: HttpRequest,
        environ: dict[str, Any],
        started: float,
    ) -> Generator[Awaitable[None] | None, None, None]:
        """The app on *environ* and its response, yielding what each body write
        returned.

        The threaded mode's writes block, so it ignores what they return; the
        inline mode awaits a :class:`~cocaine_http.aio.streams.Drain` and
        throws what that raises back in here, as if the write had raised.
        """
        ex = _Exchange(response, self.encoder, req.method)
        result: Any = None
        try:
            result = self.app(environ, ex.start_response)
            for data in result:
                yield ex.write(data)
            ex.send_head()  # raises if the app never called start_response
            self.cookie_warning.check(ex.pairs, req)
        except Exception as exc:
            self._failed(request, req, ex, exc)
        finally:
            self._finish(req, ex, result, started)

    def _serve_blocking(self, request: Any, response: Any, blob: bytes, started: float) -> None:
        """Serve one request whose envelope is *blob* with blocking streams, on this (pool) thread."""
        staged = self._request_stage(request, response, blob, request.read, True)
        if staged is not None:  # (else answered: a bad envelope, a WebSocket handshake)
            for _ in self._app_stage(request, response, *staged, started):
                pass

    def _failed(self, request: Any, req: HttpRequest, ex: _Exchange, exc: Exception) -> None:
        # Decided by the session, not by the exception's type: an app may well
        # let a ServiceError of its own escape, and that deserves a 500.
        if ex.response.closed:
            log.info("%s: session %s ended before the response: %r", req.request_line, request.session, exc)
            return
        if isinstance(exc, RequestTooLargeError):
            log.warning("%s: %s", req.request_line, exc)
        elif isinstance(exc, ResponseHeadError):
            log.error("%s: invalid response head from the app: %s", req.request_line, exc)
        else:
            log.error("%s: the app failed", req.request_line, exc_info=exc)
        if not ex.head_sent:
            if isinstance(exc, RequestTooLargeError):  # the request, not the app: see Sessions._oversize
                ex.status = 413
                self._answer(ex.response, self.encoder, 413, TOO_LARGE)
                return
            ex.status = 500
            self._answer(ex.response, self.encoder, 500, "Internal Server Error")
            return
        with contextlib.suppress(CocaineError):
            ex.response.error(
                ErrorCode.UNCAUGHT_EXCEPTION, f"the app failed after its response started: {exc!r}"[:512]
            )

    def _finish(self, req: HttpRequest, ex: _Exchange, result: Any, started: float) -> None:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("%s: the response iterable's close() failed", req.request_line)
        if self.access_log:
            took = time.perf_counter() - started
            access_log.info("%s", access_line(req, ex.status or 500, ex.bytes_sent, took, self.access_format))

    @staticmethod
    def _answer(response: Any, encoder: ResponseEncoder, status: int, message: str) -> None:
        head, body = encoder.error_response(status, message)
        try:
            response.write(head)
            if body is not None:
                response.write(body)
        except CocaineError as exc:
            log.debug("could not answer %d: %s", status, exc)


class WSGIHandler(_WSGIServing):
    """A WSGI app as a worker handler (register with ``worker.on(event, handler)``).

    Runs on a pool thread: ``request``/``response`` are the worker's blocking
    streams (``read()``, ``write()``, ``error()``).
    """

    def __call__(self, request: Any, response: Any) -> None:
        started = time.perf_counter() if self.access_log else 0.0  # for the access line only
        try:
            blob = request.read()
        except CocaineError as exc:
            self._no_request(request, response, exc)
            return
        self._serve_blocking(request, response, blob, started)


#: Inline mode waits on the loop for the rest of a request while it has
#: buffered less than this (and reading is not paused); past it, a thread.
INLINE_WAIT_LIMIT = 64 * 1024
#: Threads serving, in inline mode, the requests whose body was still arriving.
FALLBACK_THREADS = 8


class InlineWSGIHandler(_WSGIServing):
    """A WSGI app run on the worker's loop thread (``--threads 0``).

    One request at a time, as gunicorn's sync worker runs an app: no thread
    hand-off, so a request that arrived whole is answered in the loop turn
    that read it. Invocations that arrive meanwhile wait in the worker's
    read buffer and queue up in order (concurrency comes from the runtime's
    pool of worker processes). While a view runs, the loop does not: no
    heartbeats, so a view must return well within the runtime's heartbeat
    timeout (30 s by default), and a view must not wait for the worker
    itself (a :class:`~cocaine_http.services.SyncClient` call from a view
    needs ``--threads N``).

    ``wsgi.input`` never blocks the loop: the app runs inline only once the
    whole request (envelope, body chunks and end) has arrived. The rest of a
    request that came in more than one read is awaited on the loop (other
    requests go on meanwhile) while the session has buffered less than
    :data:`INLINE_WAIT_LIMIT` and reading is not paused; a request past that
    is served as in the threaded mode, by a pool of up to
    :data:`FALLBACK_THREADS` threads with blocking streams, so the app reads
    its body as it arrives and the worker's flow control holds as there.
    """

    #: The app is synchronous code with no use for a current task: the worker
    #: runs this handler's first step without one (see aio.sessions).
    needs_task = False

    def __init__(self, app: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._fallback: HandlerThreads | None = None

    async def __call__(self, request: Any, response: Any) -> None:
        started = time.perf_counter() if self.access_log else 0.0  # for the access line only
        try:
            blob = await request.read()
        except CocaineError as exc:
            self._no_request(request, response, exc)
            return
        # Often only its end is in the next read: wait on the loop while little
        # is buffered, else serve it as the threaded mode does.
        if not request.complete and not await request.wait_complete(INLINE_WAIT_LIMIT):
            await self._in_thread(request, response, blob, started)
            return
        staged = self._request_stage(request, response, blob, request.read_buffered, False)
        if staged is not None:
            await self._respond(request, response, *staged, started)

    def prepare_whole(self, request: Any, response: Any) -> Coroutine[Any, Any, None] | None:
        """The request stage of a request that came whole (aio/handlers.py): its
        envelope parsed and its environ built now, with the read's others;
        returns what runs the app."""
        if not request.buffered:  # its end came first (its failure, say): __call__ answers
            return None
        started = time.perf_counter() if self.access_log else 0.0
        staged = self._request_stage(request, response, request.read_buffered(), request.read_buffered, False)
        return self._respond(request, response, *staged, started) if staged is not None else answered()

    async def _respond(
        self, request: Any, response: Any, req: HttpRequest, environ: dict[str, Any], started: float
    ) -> None:
        """Run the app on the loop; while the socket drains, wait for it."""
        respond = self._app_stage(request, response, req, environ, started)
        try:
            for waiter in respond:
                if type(waiter) is Drain:  # the socket is over its mark: the loop drains it meanwhile
                    try:
                        await waiter
                    except Exception as exc:  # as if the write had raised: the serve loop fails the response
                        with contextlib.suppress(StopIteration):
                            respond.throw(exc)
                        return
        finally:
            respond.close()  # cancelled while draining: the app's iterable is closed all the same

    async def _in_thread(self, request: Any, response: Any, blob: bytes, started: float) -> None:
        """A body still arriving: serve it from a fallback thread."""
        if self._fallback is None:
            self._fallback = HandlerThreads(FALLBACK_THREADS, name="cocaine-wsgi-stream")
        breq, bresp, abort = blocking_pair(request, response, asyncio.get_running_loop())
        done = self._fallback.submit(self._serve_blocking, breq, bresp, blob, started)
        try:
            await asyncio.wrap_future(done)
        except asyncio.CancelledError:  # the session was aborted: fail the thread's next call
            abort(ChannelClosedError("the session was aborted"))
            raise
