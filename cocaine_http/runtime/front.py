"""The HTTP front: HTTP/1.1 in (h11 on asyncio), cocaine ``http`` invocations out.

It plays the part of the cloud's HTTP proxy (PROTOCOL.md §2.8, §3.9, §3.11)
for the apps of a :class:`~.local.LocalRuntime`.

Routing, first match wins:

1. ``X-Cocaine-Service`` **and** ``X-Cocaine-Event`` present: app and event
   from them, the URI passed unchanged (one of them alone is ignored);
2. ``/<app>/<event><rest>`` where ``<app>`` is a running app: the worker gets
   ``/<rest>`` (a ``/`` prepended if missing, query kept), like the proxies;
3. anything else goes to the default app, if there is one (``dev``: its
   app; ``runtime``: only the one named by ``--default-app``), as event
   ``http`` with the URI unchanged;
4. no default app: ``/<app>`` → 404 ``Invalid url``, ``/<app>/`` → 404
   ``Invalid request``, an unknown app → 503, and ``/`` → 404 ``Invalid url``
   followed by the list of apps (``apps: /a/http/ /b/http/``). Nothing goes
   to an app that was not addressed.

Request: one invocation per HTTP request, one chunk with
``msgpack([method, uri, version, [[name, value]...], body])`` (old-spec raws),
then close. ``version`` is ``"HTTP/1.1"`` in A and ``"1.1"`` in B; header
names are Title-Cased, repeats joined with ``,``; like the Tornado proxies,
one ``[name, value]`` pair per cookie comes first (``cookie_pairs``), and in
B a URL-routed request gets ``X-Cocaine-Service``/``X-Cocaine-Event`` added.

Bodies: one of up to ``body_chunk_size`` bytes is read whole and sent inside
the envelope, as the proxies do. A larger one is streamed: the envelope goes
out with an empty body, then the body follows as further request chunks of
at most ``body_chunk_size`` bytes (raw bytes in both generations; workers
append extra request chunks to the body, PROTOCOL.md §6 item 8), then close.
While the worker's socket is backed up (or the invocation waits in the
engine's queue) the front stops reading the client, so memory per request
stays near one chunk whatever the body's size. ``body_chunk_size=0`` reads
every body whole into the envelope, for workers of frameworks that take
exactly one request chunk (PROTOCOL.md §9). Over ``max_body_size``:
``413`` at once when ``Content-Length`` says so, else when the running total
passes it (a streamed request is then aborted on the worker).

Reply: the first chunk is ``msgpack([code, headers])``; body chunks are
msgpack raws in A and raw bytes in B (an empty B write ends the body when
the head carries ``X-Cocaine-HTTP-Proto-Version: 1.1`` and is skipped
otherwise). The response streams: ``Content-Length`` from the app is
honoured, otherwise HTTP/1.1 clients get a chunked body (HTTP/1.0 ones a
close-delimited one); HEAD, 1xx, 204 and 304 carry no body; hop-by-hop
headers from the app are dropped; connections are kept alive.

Failures: a worker error, a dead worker, a bare close or an unreadable
head → ``502``; queue or pool full, engine not active, unknown app → ``503``;
no head (or no next body chunk) within ``timeout`` seconds → ``504``. After
the head has gone out a failure can only cut the connection. A client that
disconnects mid-request cancels its invocation (B: an error to the worker;
A: a choke). Malformed HTTP → 400 (431 for an oversized head) and close.

Refused before any worker sees them, as gunicorn does with its default
limits (:class:`HeadScan`, :func:`_refuse_early`), each an
:class:`~cocaine_http.errors.HttpRequestRefused` answered with
``Connection: close`` and logged: Content-Length with Transfer-Encoding,
bare LF line ends, HTTP/2 (preface or version), obsolete line folding, a
chunk size of 2**64 or more → 400; a chunk size beyond ``max_body_size`` →
413; a request line over 4094 bytes → 414; over 100 header fields or a
header line over 8190 bytes → 431; ``Upgrade: websocket`` → 501 (the
proxies carry no WebSockets).

The front sets ``X-Real-IP`` to the peer's address (replacing the
client's) and adds ``Date`` and ``Server: cocaine-http`` to every response
unless the app set them (``date_header``/``server_header`` switch them off).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Container
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import h11

from ..accesslog import AccessFormat, AccessRecord
from ..aio.reads import read_buffer
from ..errors import HttpRequestRefused
from ..http.envelope import HOP_BY_HOP, decode_head, encode_request
from ..protocol.frames import Generation
from ..protocol.wire import unpackb

if TYPE_CHECKING:
    from .local import LocalRuntime

__all__ = [
    "DEFAULT_BODY_CHUNK_SIZE",
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_TIMEOUT",
    "HttpFront",
    "parse_bind",
    "route",
]

log = logging.getLogger("cocaine_http.runtime.front")

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_HEADER_SIZE = 64 * 1024
DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
#: Bodies up to this size go inside the envelope; larger ones stream in chunks of it (0: never).
DEFAULT_BODY_CHUNK_SIZE = 256 * 1024
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
#: How long a stop waits for in-flight requests: gunicorn's --graceful-timeout.
DEFAULT_GRACEFUL_TIMEOUT = 30.0
# gunicorn's defaults (limit_request_line, limit_request_fields, limit_request_field_size)
DEFAULT_MAX_REQUEST_LINE = 4094
DEFAULT_MAX_HEADER_FIELDS = 100
DEFAULT_MAX_HEADER_LINE = 8190
SERVER = b"cocaine-http"
_PROTO_VERSION = b"x-cocaine-http-proto-version"
_ROUTE = re.compile(rb"/([^/]*)/([^/?]*)(.*)", re.DOTALL)
_LF = re.compile(b"\n")
_MAX_CHUNK = 1 << 64


def parse_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``":8080"``, ``"8080"``, ``"[::1]:8080"`` → ``(host, port)``;
    ``"unix:PATH"`` → ``("unix:PATH", 0)`` (a Unix socket, as gunicorn/uvicorn's ``--bind``/``--uds``)."""
    text = bind.strip()
    if text.startswith("unix:"):
        if not text[5:]:
            raise ValueError(f"--bind unix: needs a path, got {bind!r}")
        return text, 0
    try:
        if text.isdigit():
            return "127.0.0.1", int(text)
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            return host, int(rest.lstrip(":"))
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ValueError(f"--bind needs HOST:PORT or unix:PATH, got {bind!r}") from None


def title_case(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


class Route:
    __slots__ = ("app", "by_url", "event", "uri")

    def __init__(self, app: str, event: str, uri: bytes, by_url: bool) -> None:
        self.app, self.event, self.uri, self.by_url = app, event, uri, by_url


class RouteError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def route(
    target: bytes, headers: dict[bytes, bytes], running: Callable[[str], bool], default_app: str | None
) -> Route:
    """Pick app, event and the URI the worker sees (see the module docstring)."""
    service = headers.get(b"x-cocaine-service")
    event = headers.get(b"x-cocaine-event")
    if service and event:
        return Route(service.decode("latin-1"), event.decode("latin-1"), target, False)
    match = _ROUTE.match(target)
    if match is not None:
        app = match.group(1).decode("latin-1")
        if running(app) or default_app is None:
            if not match.group(2):
                raise RouteError(404, "Invalid request")
            rest = match.group(3)
            if not rest.startswith(b"/"):
                rest = b"/" + rest
            return Route(app, match.group(2).decode("latin-1"), rest, True)
    if default_app is not None:
        return Route(default_app, "http", target, False)
    raise RouteError(404, "Invalid url")


class _BadBody(Exception):
    """The request body broke off or went over ``max_body_size`` while it streamed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
class HeadScan:
    """Checks the raw lines of a request head before h11 parses them.

    h11 takes a bare LF as a line end and has no limit on the request line,
    on one header line or on the number of fields (only on the whole head).
    This scan refuses, as gunicorn does with its default limits: a bare LF
    (400, RFC 9112 §2.2), a request line over ``max_line`` bytes (414), more
    than ``max_fields`` header fields or one over ``max_field`` bytes with its
    CRLF (431), and obsolete line folding (400, RFC 9112 §5.2). An over-long
    line is refused as soon as it is too long, without waiting for its end.
    It looks at each piece as it arrives (one regex search per line, no copy)
    and stops at the blank line that ends the head.
    """

    __slots__ = (
        "active",
        "fields",
        "first",
        "last",
        "length",
        "max_field",
        "max_fields",
        "max_line",
        "started",
    )

    def __init__(self, max_line: int, max_fields: int, max_field: int) -> None:
        self.max_line, self.max_fields, self.max_field = max_line, max_fields, max_field
        self.reset()

    def reset(self) -> None:
        self.active = True
        self.started = False  # the request line has been seen
        self.fields = 0
        self.length = 0  # bytes of the current line so far, its CR included
        self.first = -1  # the current line's first byte
        self.last = -1  # the last byte seen

    def feed(self, data: bytes | memoryview) -> None:
        """Scan *data*, the next bytes of the stream; raises :class:`HttpRequestRefused`."""
        pos, size = 0, len(data)
        while self.active and pos < size:
            match = _LF.search(data, pos)
            end = size if match is None else match.start()
            if end > pos:
                if self.length == 0:
                    self.first = data[pos]
                self.length += end - pos
                self.last = data[end - 1]
            if match is None:
                self._check_length(self.length - 1)  # it ends at least this long
                return
            if self.last != 13:
                raise HttpRequestRefused("bare LF line ending (RFC 9112 section 2.2)")
            length, first = self.length - 1, self.first
            self.length, self.first, self.last = 0, -1, 10
            pos = end + 1
            if length == 0:
                if self.started:
                    self.active = False  # the blank line: the head is complete
                continue  # empty lines before the request line are ignored (RFC 9112 §2.2)
            self._check_length(length)
            if not self.started:
                self.started = True
                continue
            if first in (32, 9):
                raise HttpRequestRefused("obsolete line folding in a header (RFC 9112 section 5.2)")
            self.fields += 1
            if self.fields > self.max_fields:
                raise HttpRequestRefused(f"more than {self.max_fields} header fields", status=431)

    def _check_length(self, length: int) -> None:
        if not self.started:
            if length > self.max_line:
                raise HttpRequestRefused(f"request line is too long (over {self.max_line} bytes)", status=414)
        elif length + 2 > self.max_field:
            raise HttpRequestRefused(f"a header line is too long (over {self.max_field} bytes)", status=431)


class _Failure(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


class HttpFront:
    """Serves HTTP on ``bind`` for the apps of *runtime*."""

    def __init__(
        self,
        runtime: LocalRuntime,
        bind: str,
        *,
        default_app: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        cookie_pairs: bool = True,
        access_log: bool = True,
        access_log_format: str | None = None,
        workers_log_access: bool | Container[str] = False,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        body_chunk_size: int = DEFAULT_BODY_CHUNK_SIZE,
        max_request_line: int = DEFAULT_MAX_REQUEST_LINE,
        max_header_fields: int = DEFAULT_MAX_HEADER_FIELDS,
        max_header_line: int = DEFAULT_MAX_HEADER_LINE,
        date_header: bool = True,
        server_header: bool = True,
    ) -> None:
        if body_chunk_size < 0:
            raise ValueError(f"body_chunk_size must not be negative, got {body_chunk_size}")
        self.runtime = runtime
        self.generation = runtime.generation
        self.host, self.requested_port = parse_bind(bind)
        self.default_app = default_app
        self.timeout = timeout
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.keepalive_timeout = keepalive_timeout
        self.cookie_pairs = cookie_pairs
        #: One access line per request, to the runtime's console, source = the app.
        self.access_format = AccessFormat(access_log_format) if access_log else None
        #: The workers (of all apps, or of the apps named) log their own access lines
        #: (``--access-log``): only the requests the front answers itself (routing
        #: errors, 502/503/504) get one from here.
        self.workers_log_access = workers_log_access
        self.graceful_timeout = graceful_timeout
        #: Set by stop(): no new requests; each connection closes after its response.
        self.stopping = False
        self._drained: asyncio.Event | None = None
        self.body_chunk_size = body_chunk_size
        self.max_request_line = max_request_line
        self.max_header_fields = max_header_fields
        self.max_header_line = max_header_line
        self.date_header = date_header
        self.server_header = server_header
        self._date = (0, b"")
        self.connections: set[_HttpConnection] = set()
        self.port = 0
        self.requests = 0
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        if self.host.startswith("unix:"):
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.host.startswith("unix:"):
            path = self.host[5:]
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(path).st_mode):  # a stale socket of an earlier run
                    os.unlink(path)
            self._server = await loop.create_unix_server(lambda: _HttpConnection(self), path, backlog=4096)
            return
        self._server = await loop.create_server(
            lambda: _HttpConnection(self), self.host, self.requested_port, reuse_address=True, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, graceful_timeout: float | None = None) -> None:
        """Stop accepting, let the requests in flight finish (up to
        ``graceful_timeout`` seconds, the constructor's by default), then cut
        whatever is left. Idle keep-alive connections close at once, busy ones
        right after their response (which says ``Connection: close``)."""
        grace = self.graceful_timeout if graceful_timeout is None else graceful_timeout
        self.stopping = True
        if self._server is not None:
            self._server.close()
        busy = sum(not conn.close_if_idle() for conn in list(self.connections))
        if busy and grace > 0:
            log.info("stopping: waiting up to %.1f s for %d connection(s) in flight", grace, busy)
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), grace)
            except asyncio.TimeoutError:
                log.warning(
                    "stopping: %d connection(s) still busy after %.1f s; cut", len(self.connections), grace
                )
        for conn in list(self.connections):
            conn.shutdown()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def stamp(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """*headers* with ``Date`` and ``Server`` in front (unless switched off or the app set them)."""
        ours = []
        if self.date_header or self.server_header:
            names = {name.lower() for name, _ in headers}
            if self.date_header and b"date" not in names:
                now = int(time.time())
                if self._date[0] != now:
                    self._date = (now, formatdate(now, usegmt=True).encode())
                ours.append((b"Date", self._date[1]))
            if self.server_header and b"server" not in names:
                ours.append((b"Server", SERVER))
        return [*ours, *headers] if ours else headers

    # -- the request envelope --------------------------------------------------------
    def envelope(self, req: h11.Request, body: bytes, rt: Route, peer: str | None = None) -> bytes:
        merged: dict[bytes, list[bytes]] = {}
        cookies: list[tuple[bytes, bytes]] = []
        if peer is not None:  # the front is the proxy: X-Real-IP is the peer, never the client's claim
            merged[b"X-Real-Ip"] = [peer.encode("latin-1")]
        for name, value in req.headers.raw_items():
            key = title_case(name)
            if peer is not None and key == b"X-Real-Ip":
                continue
            merged.setdefault(key, []).append(value)
            if self.cookie_pairs and name.lower() == b"cookie":
                for part in value.split(b";"):
                    cname, eq, cval = part.strip().partition(b"=")
                    if eq and cname:
                        cookies.append((cname, cval))
        if rt.by_url and self.generation is Generation.B:
            merged.setdefault(b"X-Cocaine-Service", [rt.app.encode()])
            merged.setdefault(b"X-Cocaine-Event", [rt.event.encode()])
        headers = [*cookies, *((k, b",".join(v)) for k, v in merged.items())]
        version = req.http_version.decode()
        return encode_request(
            req.method.decode(), rt.uri, headers, body, generation=self.generation, version=version
        )


class _HttpConnection(asyncio.BufferedProtocol):
    """One client connection: parse with h11, one request at a time.

    Reads go into the loop's read buffer (:mod:`..reads`); h11 copies each
    into its own buffer, so nothing else is copied.
    """

    def __init__(self, front: HttpFront) -> None:
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
        self.status = 0
        self.sent = 0  # response body bytes of the current request
        self.app = ""  # the app the current request was routed to
        self.answered = False  # the worker's response head went out
        self.peer: str | None = None
        self.scan = HeadScan(front.max_request_line, front.max_header_fields, front.max_header_line)

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self._buffer = read_buffer(asyncio.get_running_loop())
        self.front.connections.add(self)
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
        self.h11.receive_data(data)
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
        front = self.front
        front.connections.discard(self)
        if front._drained is not None and not front.connections:
            front._drained.set()
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
            self._bad_request(exc.status, exc.message)
            return False
        return True

    def _process(self) -> None:
        if self.task is not None or self.closed:
            return  # one request at a time; the rest waits in h11's buffer
        try:
            self._events()
        except HttpRequestRefused as exc:
            self._bad_request(exc.status, exc.message)

    def _events(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc.error_status_hint, str(exc))
                return
            if type(event) is h11.Data or event is h11.NEED_DATA:
                self._check_chunk()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue and self.request is not None:
                    self._send(h11.InformationalResponse(status_code=100, headers=[]))
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                _refuse_early(event)
                self.request = event
                self.body = bytearray()
                self.body_seen = 0
                self.body_ended = False
                head_size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers.raw_items())
                if head_size > self.front.max_header_size:
                    # h11 bounds only an incomplete head; a complete one arriving at once is checked here
                    self._bad_request(431, "request header fields too large")
                    return
                if _declared_length(event) > self.front.max_body_size:
                    self._bad_request(413, "request body too large")
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                self.body_seen += len(event.data)
                if self.body_seen > self.front.max_body_size:
                    self._bad_request(413, "request body too large")
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
        self.task = asyncio.get_running_loop().create_task(self._respond(request, body))

    async def _body_piece(self) -> bytes | bytearray | None:
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
                raise _BadBody(exc.error_status_hint, str(exc)) from None
            if type(event) is h11.Data or event is h11.NEED_DATA:
                try:
                    self._check_chunk()  # a streamed body's chunk sizes, as _events checks the first
                except HttpRequestRefused as exc:
                    raise _BadBody(exc.status, exc.message) from None
            if isinstance(event, h11.Data):
                data = event.data
                self.body_seen += len(data)
                if self.body_seen > front.max_body_size:
                    raise _BadBody(413, "request body too large")
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

    async def _stream_body(self, inv: Any, first: bytes) -> None:
        """Send *first* and the rest of the body as request chunks, at the worker's pace."""
        size = self.front.body_chunk_size
        piece: bytes | bytearray | None = first
        while piece is not None:
            if inv.done:
                pass  # the worker answered without the rest: read it off, so the reply can go out
            elif len(piece) <= size:
                await inv.write(piece)  # waits while the worker's socket is backed up
            else:  # what one read brought in may exceed a chunk: cut it, uncopied
                view = memoryview(piece)
                for at in range(0, len(view), size):
                    if inv.done:  # it can end while a write waits for the drain: a write now would raise
                        break
                    await inv.write(view[at : at + size])
            piece = await self._body_piece()

    def _check_chunk(self) -> None:
        """Refuse a chunk whose declared size cannot be accepted, as soon as its size line is in.

        h11 reads sizes of up to 20 hex digits and then waits for that many
        bytes; ``_bytes_in_chunk`` (private to h11's ChunkedReader, read as of
        h11 0.16; tests/runtime/test_rt_front_edge.py notices if it goes) is
        what is left of the current chunk. Without it, the body limit still
        applies as the data comes.
        """
        pending = getattr(getattr(self.h11, "_reader", None), "_bytes_in_chunk", 0)
        if not pending:
            return
        if pending >= _MAX_CHUNK:
            raise HttpRequestRefused("chunk size does not fit in 64 bits")
        if self.body_seen + pending > self.front.max_body_size:
            raise HttpRequestRefused("request body too large", status=413)

    def _bad_request(self, status: int, message: str) -> None:
        log.warning("refused a request from %s: %d %s", self.peer or "?", status, message)
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = f"{http.HTTPStatus(status).phrase}: {message}\n".encode()
            with contextlib.suppress(h11.LocalProtocolError):
                headers = self.front.stamp(_plain(body, close=True))
                self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
                self._send(h11.Data(data=body))
                self._send(h11.EndOfMessage())
        if self.transport is not None:
            self.transport.close()

    def _send(self, event: Any) -> None:
        if type(event) is h11.Response:
            self.status = event.status_code
        elif type(event) is h11.Data:
            self.sent += len(event.data)
        data = self.h11.send(event)
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    async def _write(self, event: Any) -> None:
        self._send(event)
        if not self.writable.is_set():
            await self.writable.wait()
        if self.closed:
            raise ConnectionResetError("client went away")

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> bool:
        """For a stop: close unless a request is being received or answered; whether it closed."""
        if self.task is None and self.h11.their_state is h11.IDLE and self.transport is not None:
            self.transport.close()
            return True
        return self.closed

    # -- one request --------------------------------------------------------------------
    async def _respond(self, req: h11.Request, body: bytes) -> None:
        front = self.front
        front.requests += 1
        method = req.method.decode()
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.status = self.sent = 0
        self.app, self.answered = "", False
        try:
            await self._invoke(req, body, method)
        except asyncio.CancelledError:
            raise
        except _BadBody as bad:
            log.info("%s %s: %s", method, req.target.decode("latin-1"), bad)
            self._bad_request(bad.status, str(bad))
        except _Failure as fail:
            await self._error_response(fail.status, fail.body, method)
        except (ConnectionError, h11.LocalProtocolError) as exc:
            log.debug("response aborted: %s", exc)
            self.shutdown()
        except Exception:
            log.exception("front: unexpected error")
            if self.h11.our_state is h11.SEND_RESPONSE:
                await self._error_response(500, "Internal error", method)
            else:
                self.shutdown()
        finally:
            self.task = None
            self._access_line(req, loop.time() - began)
        self._next_cycle()

    def _access_line(self, req: h11.Request, seconds: float) -> None:
        fmt = self.front.access_format
        if fmt is None:
            return
        theirs = self.front.workers_log_access
        if self.answered and (theirs is True or (not isinstance(theirs, bool) and self.app in theirs)):
            return
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        record = AccessRecord(
            req.method.decode("latin-1"),
            req.target,
            req.http_version.decode("latin-1"),
            req.headers.raw_items(),
            self.status,
            self.sent,
            seconds,
            client=peer[0] if isinstance(peer, tuple) else None,
        )
        line = fmt.line(record) + ("" if self.status else "  (aborted)")
        self.front.runtime.console.emit("info", self.app or "http", "access: " + line)

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

    async def _error_response(self, status: int, text: str, method: str) -> None:
        if self.h11.our_state is not h11.SEND_RESPONSE:
            self.shutdown()
            return
        body = (text + "\n").encode()
        try:
            headers = self.front.stamp(_plain(body))
            await self._write(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
            if method != "HEAD":
                await self._write(h11.Data(data=body))
            await self._write(h11.EndOfMessage())
        except (ConnectionError, h11.LocalProtocolError):
            self.shutdown()

    async def _invoke(self, req: h11.Request, body: bytes, method: str) -> None:
        front = self.front
        rt = front.runtime
        headers = {k: v for k, v in req.headers}
        try:
            where = route(req.target, headers, lambda name: name in rt.apps, front.default_app)
        except RouteError as exc:
            text = exc.body
            if req.target.partition(b"?")[0] == b"/" and rt.apps:  # say where the apps are
                text += "\napps: " + " ".join(f"/{name}/http/" for name in sorted(rt.apps))
            raise _Failure(exc.status, text) from None
        self.app = where.app
        app = rt.apps.get(where.app)
        if app is None:
            raise _Failure(503, f"Current application {where.app} is unavailable")
        blob = front.envelope(req, body, where, self.peer)
        try:
            inv = await app.open(where.event)
        except Exception as exc:  # refused: queue full, pool full, engine not active
            raise _Failure(503, f"Application {where.app} is unavailable: {exc}") from None
        gen = front.generation
        try:
            await inv.write(blob)
            first, self.first_piece = self.first_piece, None
            if first is not None:  # a large body: it follows the envelope
                await self._stream_body(inv, first)
            await inv.close()
            head = await self._next(inv, where)
            if head[0] != "chunk":
                self._worker_failed(head, where)
            try:
                code, pairs = decode_head(head[1])
            except ValueError as exc:
                raise _Failure(502, f"Application {where.app} error: bad response head: {exc}") from None
            out_headers, lingering = _response_headers(pairs, gen)
            if front.stopping:
                out_headers.append((b"Connection", b"close"))
            out_headers = front.stamp(out_headers)
            try:
                response = h11.Response(status_code=code, headers=out_headers, reason=_reason(code))
            except h11.LocalProtocolError as exc:
                raise _Failure(502, f"Application {where.app} error: bad response head: {exc}") from None
            await self._write(response)
            self.answered = True
            no_body = method == "HEAD" or code < 200 or code in (204, 304)
            while True:
                item = await self._next(inv, where, head_sent=True)
                if item[0] == "close":
                    break
                if item[0] != "chunk":
                    log.warning("%s: %s after the response head; connection cut", where.app, item)
                    self.shutdown()
                    return
                data = item[1]
                if gen is Generation.A:
                    try:
                        data = unpackb(data)
                    except (ValueError, TypeError):
                        data = None
                    if not isinstance(data, bytes):
                        log.warning("%s: body chunk is not a msgpack raw; connection cut", where.app)
                        self.shutdown()
                        return
                elif not data:
                    if lingering:
                        break
                    continue
                if data and not no_body:
                    await self._write(h11.Data(data=data))
            await self._write(h11.EndOfMessage())
        finally:
            if not inv.done:
                inv.abort("client disconnected" if self.closed else "response abandoned")

    async def _next(self, inv: Any, where: Route, head_sent: bool = False) -> tuple[Any, ...]:
        try:
            return await asyncio.wait_for(inv.next(), self.front.timeout)
        except asyncio.TimeoutError:
            if head_sent:
                log.warning("%s: no body chunk in %.3fs; connection cut", where.app, self.front.timeout)
                self.shutdown()
                raise ConnectionResetError("timeout mid-body") from None
            raise _Failure(
                504, f"Application {where.app} timeout: timeout ({self.front.timeout:.3f}s)"
            ) from None

    def _worker_failed(self, item: tuple[Any, ...], where: Route) -> None:
        if item[0] == "error":
            code, message = item[1], item[2]
            if isinstance(code, tuple):
                code = f"{code[0]}, {code[1]}"
            raise _Failure(502, f"Application {where.app} error: {message} [{code}]")
        raise _Failure(
            502, f"Application {where.app} error: the worker closed the session without a response"
        )


def _refuse_early(req: h11.Request) -> None:
    """Requests refused as soon as their head is in, before any body is read."""
    if req.http_version not in (b"1.1", b"1.0"):
        if req.method == b"PRI":
            raise HttpRequestRefused("an HTTP/2 connection preface: this server speaks HTTP/1.1")
        raise HttpRequestRefused(f"HTTP/{req.http_version.decode('latin-1')} is not supported")
    length = chunked = websocket = False
    # raw_items(): one list, where iterating h11's Headers calls __getitem__ per field
    for name, value in req.headers.raw_items():
        lname = name.lower()
        if lname == b"content-length":
            length = True
        elif lname == b"transfer-encoding":
            chunked = True
        elif lname == b"upgrade" and b"websocket" in value.lower():
            websocket = True
    if length and chunked:
        # RFC 9112 §6.1: a request smuggling vector; answering it and closing
        # keeps a request hidden in its body from ever running (gunicorn: 400)
        raise HttpRequestRefused("both Content-Length and Transfer-Encoding")
    if websocket:
        # 501 Not Implemented: the request is valid, but the feature is not
        # there: Cocaine's HTTP proxies (and this front, which plays them)
        # carry request/response HTTP only, so no WebSocket reaches a worker.
        # Not 426 (no other protocol would do) nor 400 (nothing is malformed).
        raise HttpRequestRefused(
            "WebSocket is not supported: Cocaine's HTTP proxies do not carry WebSocket "
            "connections, so this request was not passed to the app",
            status=501,
        )


def _declared_length(req: h11.Request) -> int:
    for name, value in req.headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _plain(body: bytes, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", str(len(body)).encode())]
    if close:
        headers.append((b"Connection", b"close"))
    return headers


def _response_headers(
    pairs: list[tuple[bytes, bytes]], gen: Generation
) -> tuple[list[tuple[bytes, bytes]], bool]:
    out = []
    lingering = False
    seen_length = False
    for name, value in pairs:
        lname = name.lower()
        if lname == _PROTO_VERSION:
            lingering = gen is Generation.B and value.strip() == b"1.1"
            continue
        if lname in HOP_BY_HOP:
            continue
        if lname == b"content-length":
            if seen_length:
                continue  # duplicated by an app behind the A proxy's habits
            seen_length = True
        out.append((name, value))
    return out, lingering
