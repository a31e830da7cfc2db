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
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes

from .. import __version__
from ..accesslog import AccessFormat
from ..aio.blocking import blocking_pair
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
from ..protocol.wire import packb
from .common import (
    TOO_LARGE,
    SetCookieWarning,
    WebSocketRefusal,
    access_line,
    forwarded,
    host_and_port,
    lowered,
)

__all__ = ["InlineWSGIHandler", "WSGIHandler", "WSGIInput", "build_environ"]

log = logging.getLogger("cocaine_http.wsgi")
access_log = logging.getLogger("cocaine_http.access")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_SERVER_SOFTWARE = f"cocaine-http/{__version__}"


class WSGIInput(io.RawIOBase):
    """``wsgi.input``: the envelope's body, then later chunks pulled on demand.

    ``pull`` returns the next chunk of the session, ``b""`` at its end; it
    blocks the app's thread, never the loop. All reads of PEP 3333 are here
    (``read(n)``, ``read()``, ``readline(n)``, ``readlines``, iteration) plus
    ``readinto`` for ``io.BufferedReader`` users.

    Every read is linear in what it returns, and copies each byte at most
    once: only the current chunk is kept (with an offset into it, never
    rebuilt), a read within it is one slice, a read that spans chunks writes
    memoryviews of them into one :class:`io.BytesIO` as they are pulled
    (each chunk is released once written) and returns its value, which
    ``getvalue()`` hands over without a copy; a read of exactly one whole
    chunk returns that chunk. So ``read()`` of a streamed body peaks at about
    the body's size, not twice it (``bench/upload.py``).
    """

    def __init__(self, first: bytes, pull: Callable[[], bytes] | None) -> None:
        super().__init__()
        self._buf = first
        self._pos = 0
        self._pull = pull
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make the next non-empty chunk current; False at the end of the request."""
        chunk = self._pull() if self._pull is not None else b""
        if chunk:
            self._buf = chunk
            self._pos = 0
            return True
        self._pull = None
        self._buf = b""
        self._pos = 0
        return False

    def _piece(self, n: int) -> bytes | memoryview:
        """The next *n* unread bytes of the current chunk (n <= what it has left), uncopied."""
        buf, pos = self._buf, self._pos
        self._pos = pos + n
        if pos == 0 and n == len(buf):
            return buf
        return memoryview(buf)[pos : pos + n]

    def _gather(self, limit: int, line: bool) -> bytes:
        """Up to *limit* bytes (to the first newline included when *line*)."""
        first: bytes | memoryview | None = None
        sink: io.BytesIO | None = None
        got = 0
        while got < limit:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail == 0:
                if not self._fill():
                    break
                continue
            room = min(avail, limit - got)
            end = buf.find(b"\n", pos, pos + room) if line else -1
            n = room if end < 0 else end + 1 - pos
            if got == 0 and (end >= 0 or n == limit):
                # all of it from the current chunk: one slice (or the chunk itself)
                data = buf if pos == 0 and n == len(buf) else buf[pos : pos + n]
                self._pos = pos + n
                self.bytes_read += n
                return data
            piece = self._piece(n)
            got += n
            if sink is not None:
                sink.write(piece)
            elif first is None:
                first = piece
            else:
                sink = io.BytesIO()
                sink.write(first)
                sink.write(piece)
                first = None
            if end >= 0:
                break
        if sink is not None:
            data = sink.getvalue()  # the BytesIO's own buffer, not a copy
        elif first is None:
            return b""
        else:
            data = first if type(first) is bytes else bytes(first)
        self.bytes_read += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._gather(sys.maxsize, False)
        buf, pos = self._buf, self._pos
        if size <= len(buf) - pos:  # the usual case: within the current chunk
            self._pos = pos + size
            self.bytes_read += size
            return buf[pos : pos + size]
        return self._gather(size, False)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= len(self._buf) and not self._fill():
            return 0
        n = min(len(view), len(self._buf) - self._pos)
        view[:n] = self._piece(n)
        self.bytes_read += n
        return n

    def readline(self, size: int | None = -1) -> bytes:
        return self._gather(sys.maxsize if size is None or size < 0 else size, True)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> WSGIInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _ErrorStream:
    """``wsgi.errors``: text lines to the ``cocaine_http.wsgi`` logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._pending = ""

    def write(self, text: str) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line:
                self._log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._log.error("%s", self._pending)
            self._pending = ""


def _latin1(text: str) -> str:
    """A native string in PEP 3333's sense: UTF-8 bytes shown as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def build_environ(
    req: HttpRequest,
    wsgi_input: Any,
    *,
    root_path: str = "",
    errors: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The PEP 3333 environ for one request (no IO; *wsgi_input* is given)."""
    script_name = _latin1(root_path.rstrip("/"))
    path_info = unquote_to_bytes(req.path).decode("latin-1")
    if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
        path_info = path_info[len(script_name) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": req.query.decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{req.version}",
        "SERVER_SOFTWARE": _SERVER_SOFTWARE,
        "RAW_URI": req.uri.decode("latin-1"),
        "wsgi.version": (1, 0),
        "wsgi.input": wsgi_input,
        "wsgi.errors": errors if errors is not None else _ErrorStream(log),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    joined: dict[str, list[bytes]] = {}
    for name, value in req.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:
            # gunicorn's default: X_Forwarded and X-Forwarded would both map to
            # HTTP_X_FORWARDED; drop the ambiguous spelling rather than let it spoof.
            continue
        joined.setdefault(key.replace("-", "_"), []).append(value)
    for key, values in joined.items():
        sep = b"; " if key == "COOKIE" else b","
        value = (values[0] if len(values) == 1 else sep.join(values)).decode("latin-1")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    if "CONTENT_LENGTH" not in environ and req.body:
        # Proxies buffer the body; without a length (a chunked client request)
        # say how much arrived, for frameworks that ignore wsgi.input_terminated.
        environ["CONTENT_LENGTH"] = str(len(req.body))
    headers = lowered(req.headers)
    remote, scheme = forwarded(headers)
    environ["wsgi.url_scheme"] = scheme
    host, port = host_and_port(headers, scheme)
    environ["SERVER_NAME"] = host
    environ["SERVER_PORT"] = str(port)
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
        environ["REMOTE_PORT"] = "0"
    if extra:
        environ.update(extra)
    return environ


class _Exchange:
    """One request's response state on the app's thread: start_response, write, head."""

    __slots__ = (
        "body_ok",
        "bytes_sent",
        "code",
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
        self.code = 0  # the code actually sent (A may map it)
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
        code, pairs = self.encoder.head_pairs(status, headers)
        self.status = parse_status_line(status)
        self.code = code
        self.pairs = pairs
        self.head = packb([code, pairs])
        self.body_ok = body_allowed(self.method, self.status)
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
        self.send_head()
        if self.body_ok:
            payload = self.encoder.body(data)
            if payload is not None:
                waiter = self.response.write(payload)
                self.bytes_sent += len(data)
                return waiter
        return None


class WSGIHandler:
    """A WSGI app as a worker handler (register with ``worker.on(event, handler)``).

    Runs on a pool thread: ``request``/``response`` are the worker's blocking
    streams (``read()``, ``write()``, ``error()``).
    """

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
        self._errors = _ErrorStream(log)

    def __repr__(self) -> str:
        return f"<WSGIHandler {self.app!r}>"

    def __call__(self, request: Any, response: Any) -> None:
        started = time.perf_counter()
        try:
            blob = request.read()
        except CocaineError as exc:
            log.info("session %s failed before its request arrived: %s", request.session, exc)
            if type(exc) is RequestTooLargeError:
                self._answer(response, self.encoder, 413, TOO_LARGE)
            return
        self._serve(request, response, blob, started)

    def _prepare(
        self, request: Any, response: Any, blob: bytes, pull: Callable[[], bytes] | None
    ) -> tuple[HttpRequest, dict[str, Any], _Exchange] | None:
        """The request, its environ and its exchange; ``None`` once a bad envelope got its 400."""
        try:
            req = parse_request(blob, drop_cookies=self.drop_cookie_pairs)
        except EnvelopeError as exc:
            log.error("bad HTTP request on session %s (event %r): %s", request.session, request.event, exc)
            self._answer(response, self.encoder, 400, f"Bad Request: {exc}")
            return None
        if self.websocket.refuse(req):
            self._answer(response, self.encoder, self.websocket.status, self.websocket.message)
            return None
        wsgi_input = WSGIInput(req.body, pull)
        extra = {
            "cocaine.event": request.event,
            "cocaine.session": request.session,
            "cocaine.headers": request.headers,
        }
        environ = build_environ(req, wsgi_input, root_path=self.root_path, errors=self._errors, extra=extra)
        return req, environ, _Exchange(response, self.encoder, req.method)

    def _serve(self, request: Any, response: Any, blob: bytes, started: float) -> None:
        """Run the app for one request whose envelope is *blob*, on this (pool) thread."""
        prepared = self._prepare(request, response, blob, request.read)
        if prepared is None:
            return
        req, environ, ex = prepared
        result: Any = None
        try:
            result = self.app(environ, ex.start_response)
            for data in result:
                ex.write(data)
            if ex.head is None:
                raise AssertionError("the app returned before calling start_response")
            ex.send_head()
            self.cookie_warning.check(ex.pairs, req)
        except Exception as exc:
            self._failed(request, response, req, ex, exc)
        finally:
            self._finish(req, ex, result, started)

    def _failed(self, request: Any, response: Any, req: HttpRequest, ex: _Exchange, exc: Exception) -> None:
        # Decided by the session, not by the exception's type: an app may well
        # let a ServiceError of its own escape, and that deserves a 500.
        if response.closed:
            log.info("%s: session %s ended before the response: %r", req.request_line, request.session, exc)
            return
        self._fail(req, ex, exc)

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

    def _fail(self, req: HttpRequest, ex: _Exchange, exc: BaseException) -> None:
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

    @staticmethod
    def _answer(response: Any, encoder: ResponseEncoder, status: int, message: str) -> None:
        head, body = encoder.error_response(status, message)
        try:
            response.write(head)
            if body is not None:
                response.write(body)
        except CocaineError as exc:
            log.debug("could not answer %d: %s", status, exc)



#: Inline mode waits on the loop for the rest of a request while it has
#: buffered less than this (and reading is not paused); past it, a thread.
INLINE_WAIT_LIMIT = 64 * 1024
#: Threads serving, in inline mode, the requests whose body was still arriving.
FALLBACK_THREADS = 8


def _pull_buffered(request: Any) -> Callable[[], bytes]:
    """``wsgi.input``'s source in inline mode: chunks already buffered, never a wait."""

    def pull() -> bytes:
        if request._chunks:
            return request._pop()
        if request._exc is not None:
            raise request._exc
        return b""

    return pull


class InlineWSGIHandler(WSGIHandler):
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

    def __init__(self, app: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._fallback: HandlerThreads | None = None

    def __repr__(self) -> str:
        return f"<InlineWSGIHandler {self.app!r}>"

    async def __call__(self, request: Any, response: Any) -> None:
        started = time.perf_counter()
        try:
            blob = await request.read()
        except CocaineError as exc:
            log.info("session %s failed before its request arrived: %s", request.session, exc)
            if type(exc) is RequestTooLargeError:
                self._answer(response, self.encoder, 413, TOO_LARGE)
            return
        if not request._eof and request._exc is None:
            # Not whole yet (often only its end is in the next read): wait on the
            # loop while little is buffered, else serve it as the threaded mode does.
            flow = request._flow
            while (
                not request._eof
                and request._exc is None
                and request._buffered < INLINE_WAIT_LIMIT
                and (flow is None or not flow.paused)
            ):
                await request._wait()
            if not request._eof and request._exc is None:
                await self._in_thread(request, response, blob, started)
                return
        prepared = self._prepare(request, response, blob, _pull_buffered(request))
        if prepared is None:
            return
        req, environ, ex = prepared
        environ["wsgi.multithread"] = False
        ready = response._ready
        result: Any = None
        try:
            result = self.app(environ, ex.start_response)
            for data in result:
                waiter = ex.write(data)
                if waiter is not None and waiter is not ready:
                    await waiter  # the socket is over its mark: the loop drains it meanwhile
            if ex.head is None:
                raise AssertionError("the app returned before calling start_response")
            ex.send_head()
            self.cookie_warning.check(ex.pairs, req)
        except Exception as exc:
            self._failed(request, response, req, ex, exc)
        finally:
            self._finish(req, ex, result, started)

    async def _in_thread(self, request: Any, response: Any, blob: bytes, started: float) -> None:
        """A body still arriving: serve it from a fallback thread."""
        if self._fallback is None:
            self._fallback = HandlerThreads(FALLBACK_THREADS, name="cocaine-wsgi-stream")
        breq, bresp, abort = blocking_pair(request, response, asyncio.get_running_loop())
        done = self._fallback.submit(self._serve, breq, bresp, blob, started)
        try:
            await asyncio.wrap_future(done)
        except asyncio.CancelledError:  # the session was aborted: fail the thread's next call
            abort(ChannelClosedError("the session was aborted"))
            raise
