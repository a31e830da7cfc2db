"""One client connection of the HTTP front: HTTP/1.1 parsed by h11, one request at a time.

The connection reads, checks (:mod:`.refusals`) and parses requests, hands
each complete head (and a body small enough for the envelope) to its
:class:`Front`, which answers it (:class:`~.exchange.Exchange`), and gives
a larger body out piece by piece, at the pace the worker takes it
(:meth:`HttpConnection.body_piece`). Keep-alive, pipelining, the idle
timeout and the stop's "close after this response" are its business too.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Container, Mapping
from typing import Any, Protocol

import h11

from ..accesslog import AccessFormat
from ..aio.reads import read_buffer
from ..errors import HttpRequestRefused
from ..protocol.frames import Generation
from .app import AppService
from .logging import Console
from .refusals import HeadScan, check_chunk, declared_length, refuse_early
from .replies import plain_headers, reason
from .routing import Route

__all__ = ["BadBody", "Front", "FrontHost", "HttpConnection"]

log = logging.getLogger("cocaine_http.runtime.front")


class FrontHost(Protocol):
    """What the HTTP front needs of the runtime whose apps it serves (:class:`~.local.LocalRuntime`)."""

    @property
    def generation(self) -> Generation: ...

    @property
    def apps(self) -> Mapping[str, AppService]: ...

    @property
    def console(self) -> Console: ...


class Front(Protocol):
    """What a connection, and the exchanges on it, need of the :class:`~.front.HttpFront` that accepted it."""

    runtime: FrontHost
    generation: Generation
    default_app: str | None
    timeout: float
    max_header_size: int
    max_body_size: int
    keepalive_timeout: float
    body_chunk_size: int
    max_request_line: int
    max_header_fields: int
    max_header_line: int
    access_format: AccessFormat | None
    workers_log_access: bool | Container[str]
    stopping: bool

    def stamp(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]: ...

    def envelope(self, req: h11.Request, body: bytes, rt: Route, peer: str | None = None) -> bytes: ...

    def track(self, conn: HttpConnection) -> None: ...

    def forget(self, conn: HttpConnection) -> None: ...

    async def serve(self, conn: HttpConnection, request: h11.Request, body: bytes) -> None: ...


class BadBody(Exception):
    """The request body broke off or went over ``max_body_size`` while it streamed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpConnection(asyncio.BufferedProtocol):
    """One client connection: parse with h11, one request at a time.

    Reads go into the loop's shared read buffer (:mod:`cocaine_http.aio.reads`, which
    says what that spares); each read is copied out of it for h11 at once.
    """

    def __init__(self, front: Front) -> None:
        self.front = front
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=front.max_header_size)
        self.transport: asyncio.Transport | None = None
        self._buffer = memoryview(b"")  # the loop's read buffer, from connection_made
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.body_seen = 0  # bytes of the current request's body received so far
        self.body_ended = False  # a streamed body's EndOfMessage was seen
        self.first_piece: bytes | None = None  # what a streamed body starts with
        self.body_waiter: asyncio.Future[None] | None = None  # a streaming task waits for data
        self.task: asyncio.Task[None] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.status = 0  # the status of the current request's response, once its head went out
        self.sent = 0  # response body bytes of the current request
        self.peer: str | None = None
        self.scan = HeadScan(front.max_request_line, front.max_header_fields, front.max_header_line)

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self._buffer = read_buffer(asyncio.get_running_loop())
        self.front.track(self)
        self._arm_idle()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.closed or self.h11.their_state is h11.ERROR:
            return
        if self.scan.active and not self._scanned(data):
            return
        # h11 is typed for bytes; handing it the view instead saved nothing measurable
        # (h11 fed a 64 MiB body in 256 KiB reads: 152-194 ms either way)
        self.h11.receive_data(bytes(data))
        if self.task is not None:
            waiter = self.body_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            # Keep reading while a request is in flight, so a client that goes
            # away is noticed at once; stop once a body chunk (and a head) is
            # waiting: the streaming task reads on when the worker took the last
            # one (flow control), a pipelining client waits for its turn.
            if len(self.h11.trailing_data[0]) > self.front.max_header_size + self.front.body_chunk_size:
                assert self.transport is not None
                self.transport.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        # EOF while a request is in flight means the client is gone (as uvicorn
        # treats it); the transport closes and connection_lost cancels it.
        if self.task is None:
            self.h11.receive_data(b"")
            self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        if self.body_waiter is not None and not self.body_waiter.done():
            self.body_waiter.set_result(None)
        self.front.forget(self)
        if self.idle is not None:
            self.idle.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the handler's finally cancels the invocation

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # -- parsing ----------------------------------------------------------------------
    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.front.keepalive_timeout, self._idle_timeout)

    def _idle_timeout(self) -> None:
        if self.task is None and self.transport is not None:
            self.transport.close()

    def _scanned(self, data: bytes | memoryview) -> bool:
        """Run the head scan over *data*; on a refusal answer it and return False."""
        try:
            self.scan.feed(data)
        except HttpRequestRefused as exc:
            self.refuse(exc.status, exc.message)
            return False
        return True

    def _process(self) -> None:
        if self.task is not None or self.closed:
            return  # one request at a time; the rest waits in h11's buffer
        try:
            self._events()
        except HttpRequestRefused as exc:
            self.refuse(exc.status, exc.message)

    def _events(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self.refuse(exc.error_status_hint, str(exc))
                return
            if type(event) is h11.Data or event is h11.NEED_DATA:
                self._check_chunk()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue and self.request is not None:
                    self.send(h11.InformationalResponse(status_code=100, headers=[]))
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                refuse_early(event)
                self.request = event
                self.body = bytearray()
                self.body_seen = 0
                self.body_ended = False
                head_size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers.raw_items())
                if head_size > self.front.max_header_size:
                    # h11 bounds only an incomplete head; a complete one arriving at once is checked here
                    self.refuse(431, "request header fields too large")
                    return
                if declared_length(event) > self.front.max_body_size:
                    self.refuse(413, "request body too large")
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                self.body_seen += len(event.data)
                if self.body_seen > self.front.max_body_size:
                    self.refuse(413, "request body too large")
                    return
                if 0 < self.front.body_chunk_size <= len(self.body):
                    # too large for the envelope: stream it (see the module docstring)
                    assert self.request is not None
                    request, first = self.request, bytes(self.body)
                    self.request, self.body = None, bytearray()
                    self._start(request, b"", first)
                    return
            elif isinstance(event, h11.EndOfMessage):
                assert self.request is not None
                request, body = self.request, bytes(self.body)
                self.request, self.body = None, bytearray()
                self._start(request, body)
                return
            elif isinstance(event, h11.ConnectionClosed):
                if self.transport is not None:
                    self.transport.close()
                return

    def _start(self, request: h11.Request, body: bytes, first: bytes | None = None) -> None:
        """Answer *request*: its whole *body*, or (*first* given) a body streamed after
        the envelope, starting with *first*."""
        if self.idle is not None:  # the keep-alive timer also bounds a slow request
            self.idle.cancel()  # (and, once it streams, each wait for the next piece)
            self.idle = None
        self.first_piece = first
        self.task = asyncio.get_running_loop().create_task(self._serve(request, body))

    async def body_piece(self) -> bytes | bytearray | None:
        """The next piece of a streamed body (up to ``body_chunk_size`` bytes), None at its end.

        Reads the client only while asked to: when the worker is backed up
        nobody asks, h11's buffer fills to a chunk and reading pauses.
        """
        front = self.front
        if self.body_ended:
            return None
        parts: list[bytes | bytearray] = []
        size = 0
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadBody(exc.error_status_hint, str(exc)) from None
            if type(event) is h11.Data or event is h11.NEED_DATA:
                try:
                    self._check_chunk()  # a streamed body's chunk sizes, as _events checks the first
                except HttpRequestRefused as exc:
                    raise BadBody(exc.status, exc.message) from None
            if isinstance(event, h11.Data):
                data = event.data
                self.body_seen += len(data)
                if self.body_seen > front.max_body_size:
                    raise BadBody(413, "request body too large")
                parts.append(data)
                size += len(data)
                if size >= front.body_chunk_size:
                    break
            elif isinstance(event, h11.EndOfMessage):
                self.body_ended = True
                if not parts:
                    return None
                break
            elif event is h11.NEED_DATA and not parts:
                if self.closed:
                    raise ConnectionResetError("client went away")
                assert self.transport is not None
                self.transport.resume_reading()
                self.body_waiter = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(self.body_waiter, front.keepalive_timeout)
                except asyncio.TimeoutError:
                    raise ConnectionResetError("client stalled mid-body") from None
                finally:
                    self.body_waiter = None
            elif event is h11.NEED_DATA:
                break  # send what there is rather than wait with it
            else:  # ConnectionClosed: the body ended early
                raise ConnectionResetError("client went away mid-body")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def take_first_piece(self) -> bytes | None:
        """What a streamed body starts with (None: the body was whole); the exchange takes it once."""
        first, self.first_piece = self.first_piece, None
        return first

    def _check_chunk(self) -> None:
        """The next chunk size of a chunked body, checked at once (:func:`.refusals.check_chunk`)."""
        check_chunk(self.h11, self.body_seen, self.front.max_body_size)

    def refuse(self, status: int, message: str) -> None:
        """Answer *status* with *message* (if no response has begun) and close: the request is refused."""
        log.warning("refused a request from %s: %d %s", self.peer or "?", status, message)
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{http.HTTPStatus(status).phrase}: {message}\n".encode()
            with contextlib.suppress(h11.LocalProtocolError):
                headers = self.front.stamp(plain_headers(body, close=True))
                self.send(h11.Response(status_code=status, headers=headers, reason=reason(status)))
                self.send(h11.Data(data=body))
                self.send(h11.EndOfMessage())
        if self.transport is not None:
            self.transport.close()

    def send(self, event: Any) -> None:
        """Write *event* now, counting its status and body bytes for the access line."""
        if type(event) is h11.Response:
            self.status = event.status_code
        elif type(event) is h11.Data:
            self.sent += len(event.data)
        data = self.h11.send(event)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    async def write(self, event: Any) -> None:
        """Send *event*, then wait while the client is slow to read; ConnectionResetError if it is gone."""
        self.send(event)
        if not self.writable.is_set():
            await self.writable.wait()
        if self.closed:
            raise ConnectionResetError("client went away")

    def shutdown(self) -> None:
        """Cut the connection at once: nothing more can be said on it (e.g. after a response head)."""
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> bool:
        """For a stop: close unless a request is being received or answered; whether it closed."""
        if self.task is None and self.h11.their_state is h11.IDLE and self.transport is not None:
            self.transport.close()
            return True
        return self.closed

    async def _serve(self, request: h11.Request, body: bytes) -> None:
        """Have the front answer *request*, then go on to the next one (or close)."""
        self.status = self.sent = 0
        try:
            await self.front.serve(self, request, body)
        finally:
            self.task = None
        self._next_cycle()

    def _next_cycle(self) -> None:
        if self.closed or self.transport is None:
            return
        if self.front.stopping:
            self.transport.close()
            return
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                self.transport.close()
                return
            self._arm_idle()
            self.scan.reset()
            pipelined = self.h11.trailing_data[0]
            if pipelined and not self._scanned(pipelined):
                return
            self.transport.resume_reading()
            self._process()
        else:
            self.transport.close()
