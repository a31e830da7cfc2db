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
limits (:mod:`.refusals`), each an
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

:class:`HttpFront` is the listener and what its connections share (limits,
the envelope, a graceful stop). Its parts: :mod:`.http_connection` (one
client connection, h11), :mod:`.exchange` (one request through an app),
:mod:`.routing`, :mod:`.refusals` and :mod:`.replies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Container
from email.utils import formatdate

import h11

from ..accesslog import AccessFormat
from ..http.envelope import encode_request
from ..protocol.frames import Generation
from .exchange import Exchange
from .http_connection import FrontHost, HttpConnection
from .routing import Route, route, title_case

__all__ = [
    "DEFAULT_BODY_CHUNK_SIZE",
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_TIMEOUT",
    "FrontHost",
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


class HttpFront:
    """Serves HTTP on ``bind`` for the apps of *runtime*."""

    def __init__(
        self,
        runtime: FrontHost,
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
        self.connections: set[HttpConnection] = set()
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
            self._server = await loop.create_unix_server(lambda: HttpConnection(self), path, backlog=4096)
            return
        self._server = await loop.create_server(
            lambda: HttpConnection(self), self.host, self.requested_port, reuse_address=True, backlog=4096
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

    # -- its connections --------------------------------------------------------------
    def track(self, conn: HttpConnection) -> None:
        """*conn* is open: a stop waits for it."""
        self.connections.add(conn)

    def forget(self, conn: HttpConnection) -> None:
        """*conn* closed; the last one to close ends a stop's wait."""
        self.connections.discard(conn)
        if self._drained is not None and not self.connections:
            self._drained.set()

    async def serve(self, conn: HttpConnection, request: h11.Request, body: bytes) -> None:
        """Answer *request*, which came in on *conn* (its whole *body*, or the start of a streamed one)."""
        self.requests += 1
        await Exchange(self, conn, request, body).run()

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
