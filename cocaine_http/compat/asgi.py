"""ASGI 3: serve an ASGI app (FastAPI, Starlette, Django's ASGIHandler) as a worker handler.

:class:`ASGIHandler` is an ``async def`` handler: the app runs as a task on
the worker's event loop, one per session. ASGI 2 apps (a class taking the
scope) are turned into ASGI 3 by
:func:`asgiref.compatibility.guarantee_single_callable`.

``receive()`` gives ``http.request`` messages: the envelope's body first,
then every further chunk of the session, ``more_body`` false on the last;
once the body is done it waits and then returns ``http.disconnect`` when
the response has been sent, the runtime failed the session (B error frame,
or the worker aborted it) or the worker started to terminate.

``send()`` takes ``http.response.start`` (the head is validated at once and
sent with the first body) and ``http.response.body`` (written as it comes;
``await`` waits while the runtime socket is backed up). Bodies are dropped
for HEAD, 1xx, 204 and 304. Error handling mirrors uvicorn: an exception or
a return before the response started gets ``500``; after it started, the
session ends with an error frame; either way the error is logged with the
request line.

:class:`Lifespan` (:mod:`.lifespan`, re-exported here) runs the
``lifespan`` protocol once per worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

from asgiref.compatibility import guarantee_single_callable

from ..accesslog import AccessFormat
from ..errors import CocaineError, ErrorCode, RequestTooLargeError
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
from ..protocol.payloads import SplitPayload
from .common import (
    TOO_LARGE,
    SetCookieWarning,
    WebSocketRefusal,
    access_line,
    answered,
    first_value,
    forwarded,
    forwarded_fields,
    lowered,
    server_name,
)
from .lifespan import ASGI_VERSION, ASGIApp, Lifespan, Message

__all__ = ["ASGIHandler", "Lifespan", "build_scope"]

log = logging.getLogger("cocaine_http.asgi")
access_log = logging.getLogger("cocaine_http.access")


def build_scope(
    req: HttpRequest, *, root_path: str = "", state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``http`` scope of one request (ASGI HTTP spec 2.3)."""
    root = root_path.rstrip("/")
    raw_path = req.path
    path = (unquote_to_bytes(raw_path) if 37 in raw_path else raw_path).decode("utf-8", "replace")  # 37: "%"
    if root and not (path == root or path.startswith(root + "/")):
        # uvicorn's reading of root_path: ``path`` is the full path, root included
        path = root + path
        raw_path = root.encode("utf-8") + raw_path
    fields = req.fields
    if fields is not None:  # every name single: the lowercase pairs and the lookups, in C
        headers = list(fields.items())
        client, scheme = forwarded_fields(fields)
        host = fields.get(b"host")
    else:
        headers = lowered(req.headers)
        client, scheme = forwarded(headers)
        host = first_value(headers, b"host")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": req.version,
        "method": req.method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": req.query,
        "root_path": root,
        "headers": headers,
        "client": (client, 0) if client is not None else None,
        "server": server_name(host.decode("latin-1"), scheme) if host is not None else None,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


class _Exchange:
    """The receive/send pair of one request."""

    __slots__ = (
        "_body_left",
        "_body_ok",
        "_head",
        "_method",
        "_request_done",
        "_waiters",
        "bytes_sent",
        "complete",
        "disconnected",
        "encoder",
        "pairs",
        "request",
        "response",
        "started",
        "status",
    )

    def __init__(self, request: Any, response: Any, req: HttpRequest, encoder: ResponseEncoder) -> None:
        self.request = request
        self.response = response
        self.encoder = encoder
        self._method = req.method
        # (bytes: the ASGI adapter does not ask parse_request for a body in place)
        self._body_left: bytes | None = bytes(req.body) if type(req.body) is memoryview else req.body
        self._request_done = False
        #: Set once the request is over for the app (``http.disconnect``).
        self.disconnected = False
        #: One future per receive() waiting (_wait), resolved by disconnect().
        self._waiters: list[asyncio.Future[None]] = []
        self._head: bytes | None = None
        self.pairs: list[list[bytes]] | None = None
        self._body_ok = True
        self.started = False
        self.complete = False
        self.status = 0
        self.bytes_sent = 0

    def disconnect(self) -> None:
        self.disconnected = True
        for waiter in self._waiters:
            _resolve(waiter)

    async def _wait(self, reader: asyncio.Future[Any] | None = None) -> None:
        """Until disconnect(), or until *reader* is done."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if reader is not None:
            reader.add_done_callback(partial(_resolve, waiter))
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)

    async def _read(self) -> bytes | None:
        """The next chunk, ``b""`` at the end, ``None`` on disconnect."""
        request = self.request
        if request.buffered or request.at_eof:
            try:
                data: bytes = await request.read()
            except CocaineError:
                self.disconnect()
                return None
            return data
        reader: asyncio.Future[bytes] = asyncio.ensure_future(request.read())
        await self._wait(reader)
        if not reader.done():
            reader.cancel()
            return None
        if reader.exception() is not None:
            self.disconnect()
            return None
        return reader.result()

    async def receive(self) -> Message:
        if not self._request_done and not self.disconnected:
            if self._body_left is not None:
                # the envelope's body; an empty one does not mean the request ended
                data: bytes | None = self._body_left
                self._body_left = None
                more = not self.request.at_eof
            else:
                data = await self._read()
                if isinstance(data, SplitPayload):  # a later chunk shaped like a large envelope
                    data = bytes(data)
                more = not (data == b"" or self.request.at_eof)
            if data is not None:
                if not more:
                    self._request_done = True
                return {"type": "http.request", "body": data, "more_body": more}
        if not self.disconnected:
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            # Parsed once: the app's code (A's status fallback may send another).
            app_code = parse_status_line(message.get("status"))
            self.pairs, self._head = self.encoder.encode_head(app_code, message.get("headers") or ())
            self.status = app_code
            self._body_ok = body_allowed(self._method, app_code)
            self.started = True
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.complete:
                raise RuntimeError("http.response.body sent after the response completed")
            if self.response.closed:
                return  # the session is gone (as uvicorn: sends after a disconnect are dropped)
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"http.response.body 'body' must be bytes, got {type(body).__name__}")
            if self._head is not None:
                head, self._head = self._head, None
                self.response.write(head)
            if body and self._body_ok:
                payload = self.encoder.body(body)
                if payload is not None:
                    self.bytes_sent += len(body)
                    await self.response.write(payload)
            if not more:
                self.complete = True
                self.response.close()
                self.disconnect()
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} on an http connection")


class ASGIHandler:
    """An ASGI app as a worker handler (``worker.on(event, handler)``)."""

    #: A large envelope may come with its body apart (aio/sessions.py): the
    #: body is the first ``http.request``'s, never copied out of the envelope.
    takes_split_payloads = True

    def __init__(
        self,
        app: Any,
        *,
        generation: Generation | str = Generation.B,
        root_path: str = "",
        access_log: bool = False,
        access_log_format: str | None = None,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
        drop_cookie_pairs: bool = True,
        lifespan: Lifespan | None = None,
        app_name: str = "",
    ) -> None:
        self.app: ASGIApp = guarantee_single_callable(app)  # type: ignore[no-untyped-call]  # asgiref's is unannotated
        self.generation = Generation.parse(generation)
        self.cookie_warning = SetCookieWarning(self.generation, app_name, log)
        self.websocket = WebSocketRefusal(app_name, log)
        self.root_path = root_path
        self.access_log = access_log
        self.access_format = AccessFormat(access_log_format) if access_log_format else None
        self.drop_cookie_pairs = drop_cookie_pairs
        self.encoder = ResponseEncoder(self.generation, max_head_size=max_head_size)
        self.lifespan = lifespan
        self._live: set[_Exchange] = set()

    def __repr__(self) -> str:
        return f"<ASGIHandler {self.app!r}>"

    def shutting_down(self, *_args: Any) -> None:
        """Tell every request still waiting in ``receive()`` that it is over
        (connect it to the worker's ``terminate`` event)."""
        for ex in list(self._live):
            ex.disconnect()

    async def __call__(self, request: Any, response: Any) -> None:
        started = time.perf_counter() if self.access_log else 0.0
        try:
            blob = await request.read()
        except CocaineError as exc:
            log.info("session %s failed before its request arrived: %s", request.session, exc)
            if type(exc) is RequestTooLargeError:
                self._answer(response, 413, TOO_LARGE)
            return
        staged = self._request_stage(request, response, blob)
        if staged is not None:
            await self._run(*staged, started)

    def prepare_whole(self, request: Any, response: Any) -> Coroutine[Any, Any, None] | None:
        """The request stage of a request that came whole (aio/handlers.py): its
        envelope parsed and its scope built now, with the read's others;
        returns what runs the app."""
        if not request.buffered:  # its end came first (its failure, say): __call__ answers
            return None
        started = time.perf_counter() if self.access_log else 0.0
        staged = self._request_stage(request, response, request.read_buffered())
        return self._run(*staged, started) if staged is not None else answered()

    def _request_stage(
        self, request: Any, response: Any, blob: bytes
    ) -> tuple[HttpRequest, dict[str, Any], _Exchange] | None:
        """The request whose envelope is *blob*, its scope and exchange; ``None``
        once answered instead (a bad envelope, a WebSocket handshake)."""
        try:
            req = parse_request(blob, drop_cookies=self.drop_cookie_pairs)
        except EnvelopeError as exc:
            log.error("bad HTTP request on session %s (event %r): %s", request.session, request.event, exc)
            self._answer(response, 400, f"Bad Request: {exc}")
            return None
        if self.websocket.refuse(req):
            self._answer(response, self.websocket.status, self.websocket.message)
            return None
        state = self.lifespan.state if self.lifespan is not None else None
        scope = build_scope(req, root_path=self.root_path, state=state)
        scope["extensions"] = {
            "cocaine": {"event": request.event, "session": request.session, "headers": request.headers}
        }
        return req, scope, _Exchange(request, response, req, self.encoder)

    async def _run(self, req: HttpRequest, scope: dict[str, Any], ex: _Exchange, started: float) -> None:
        """The app on *scope*, through *ex*; its failures answered."""
        self._live.add(ex)
        try:
            await self.app(scope, ex.receive, ex.send)
        except asyncio.CancelledError:
            ex.disconnect()
            raise
        except Exception as exc:
            bad_head = isinstance(exc, ResponseHeadError)
            self._fail(
                req, ex, exc, f"invalid response head from the app: {exc}" if bad_head else "the app failed"
            )
        else:
            if not ex.started:
                self._fail(req, ex, None, "the app returned without starting a response")
            elif not ex.complete:
                self._fail(req, ex, None, "the app returned without completing its response")
            else:
                self.cookie_warning.check(ex.pairs, req)
        finally:
            if not ex.disconnected:  # (a complete response did it)
                ex.disconnect()
            self._live.discard(ex)
            if self.access_log:
                took = time.perf_counter() - started
                access_log.info(
                    "%s", access_line(req, ex.status or 500, ex.bytes_sent, took, self.access_format)
                )

    def _fail(self, req: HttpRequest, ex: _Exchange, exc: BaseException | None, what: str) -> None:
        if ex.complete:
            log.error("%s: %s after its response was sent", req.request_line, what, exc_info=exc)
            return
        if ex.response.closed:
            log.info("%s: %s; the session had already ended", req.request_line, what, exc_info=exc)
            return
        if _too_large(ex.request):
            log.warning("%s: %s", req.request_line, ex.request.failure)
        elif ex.disconnected and exc is None:
            # told http.disconnect (terminate, or the runtime failed the session) and gave up
            log.info("%s: %s after http.disconnect", req.request_line, what)
        else:
            log.error("%s: %s", req.request_line, what, exc_info=exc)
        if not ex.started or ex._head is not None:
            if _too_large(ex.request):  # refused: see Sessions._oversize
                ex.status = 413
                self._answer(ex.response, 413, TOO_LARGE)
                ex.complete = True
                return
            ex.status = 500
            self._answer(ex.response, 500, "Internal Server Error")
            ex.complete = True
            return
        with contextlib.suppress(CocaineError):
            ex.response.error(ErrorCode.UNCAUGHT_EXCEPTION, f"{what}: {exc!r}"[:512] if exc else what)

    def _answer(self, response: Any, status: int, message: str) -> None:
        head, body = self.encoder.error_response(status, message)
        try:
            response.write(head)
            if body is not None:
                response.write(body)
            response.close()
        except CocaineError as exc:
            log.debug("could not answer %d: %s", status, exc)


def _resolve(future: asyncio.Future[Any], *_: Any) -> None:
    if not future.done():
        future.set_result(None)


def _too_large(request: Any) -> bool:
    """Whether *request* failed because its frame was over max_frame_size (Sessions._oversize)."""
    return type(getattr(request, "failure", None)) is RequestTooLargeError
