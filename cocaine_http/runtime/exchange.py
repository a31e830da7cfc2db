"""One HTTP request answered through an app: route, envelope, invocation, the response streamed back.

See :mod:`.front` for the envelope, the reply and the failures. An
:class:`Exchange` lives for one request of an
:class:`~.http_connection.HttpConnection` and writes through it; what the
front answers itself (routing errors, 502/503/504) is a :class:`Failure`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11

from ..accesslog import AccessRecord
from ..http.envelope import decode_head
from ..protocol.frames import Generation
from ..protocol.wire import unpackb
from .app import AppCall
from .http_connection import BadBody, Front, HttpConnection
from .replies import plain_headers, reason, response_headers
from .routing import Route, RouteError, route

__all__ = ["Exchange", "Failure"]

log = logging.getLogger("cocaine_http.runtime.front")


class Failure(Exception):
    """A request the front answers itself, with *status* and a one-line *body*."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


class Exchange:
    """One request of *conn* and its response."""

    def __init__(self, front: Front, conn: HttpConnection, req: h11.Request, body: bytes) -> None:
        self.front = front
        self.conn = conn
        self.req = req
        self.body = body
        self.app = ""  # the app the request was routed to
        self.answered = False  # the worker's response head went out

    async def run(self) -> None:
        """Answer the request; whatever happens, write its access line."""
        req, body, conn = self.req, self.body, self.conn
        method = req.method.decode()
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await self._invoke(req, body, method)
        except asyncio.CancelledError:
            raise
        except BadBody as bad:
            log.info("%s %s: %s", method, req.target.decode("latin-1"), bad)
            conn.refuse(bad.status, str(bad))
        except Failure as fail:
            await self._error_response(fail.status, fail.body, method)
        except (ConnectionError, h11.LocalProtocolError) as exc:
            log.debug("response aborted: %s", exc)
            conn.shutdown()
        except Exception:
            log.exception("front: unexpected error")
            if conn.h11.our_state is h11.SEND_RESPONSE:
                await self._error_response(500, "Internal error", method)
            else:
                conn.shutdown()
        finally:
            self._access_line(req, loop.time() - began)

    def _access_line(self, req: h11.Request, seconds: float) -> None:
        fmt = self.front.access_format
        if fmt is None:
            return
        theirs = self.front.workers_log_access
        if self.answered and (theirs is True or (not isinstance(theirs, bool) and self.app in theirs)):
            return
        record = AccessRecord(
            req.method.decode("latin-1"),
            req.target,
            req.http_version.decode("latin-1"),
            req.headers.raw_items(),
            self.conn.status,
            self.conn.sent,
            seconds,
            client=self.conn.peer,
        )
        line = fmt.line(record) + ("" if self.conn.status else "  (aborted)")
        self.front.runtime.console.emit("info", self.app or "http", "access: " + line)

    async def _error_response(self, status: int, text: str, method: str) -> None:
        if self.conn.h11.our_state is not h11.SEND_RESPONSE:
            self.conn.shutdown()
            return
        body = (text + "\n").encode()
        try:
            headers = self.front.stamp(plain_headers(body))
            await self.conn.write(h11.Response(status_code=status, headers=headers, reason=reason(status)))
            if method != "HEAD":
                await self.conn.write(h11.Data(data=body))
            await self.conn.write(h11.EndOfMessage())
        except (ConnectionError, h11.LocalProtocolError):
            self.conn.shutdown()

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
            raise Failure(exc.status, text) from None
        self.app = where.app
        app = rt.apps.get(where.app)
        if app is None:
            raise Failure(503, f"Current application {where.app} is unavailable")
        blob = front.envelope(req, body, where, self.conn.peer)
        try:
            inv = await app.open(where.event)
        except Exception as exc:  # refused: queue full, pool full, engine not active
            raise Failure(503, f"Application {where.app} is unavailable: {exc}") from None
        gen = front.generation
        try:
            await inv.write(blob)
            first = self.conn.take_first_piece()
            if first is not None:  # a large body: it follows the envelope
                await self._stream_body(inv, first)
            await inv.close()
            head = await self._next(inv, where)
            if head[0] != "chunk":
                self._worker_failed(head, where)
            try:
                code, pairs = decode_head(head[1])
            except ValueError as exc:
                raise Failure(502, f"Application {where.app} error: bad response head: {exc}") from None
            out_headers, lingering = response_headers(pairs, gen)
            if front.stopping:
                out_headers.append((b"Connection", b"close"))
            out_headers = front.stamp(out_headers)
            try:
                response = h11.Response(status_code=code, headers=out_headers, reason=reason(code))
            except h11.LocalProtocolError as exc:
                raise Failure(502, f"Application {where.app} error: bad response head: {exc}") from None
            await self.conn.write(response)
            self.answered = True
            no_body = method == "HEAD" or code < 200 or code in (204, 304)
            while True:
                item = await self._next(inv, where, head_sent=True)
                if item[0] == "close":
                    break
                if item[0] != "chunk":
                    log.warning("%s: %s after the response head; connection cut", where.app, item)
                    self.conn.shutdown()
                    return
                data = item[1]
                if gen is Generation.A:
                    try:
                        data = unpackb(data)
                    except (ValueError, TypeError):
                        data = None
                    if not isinstance(data, bytes):
                        log.warning("%s: body chunk is not a msgpack raw; connection cut", where.app)
                        self.conn.shutdown()
                        return
                elif not data:
                    if lingering:
                        break
                    continue
                if data and not no_body:
                    await self.conn.write(h11.Data(data=data))
            await self.conn.write(h11.EndOfMessage())
        finally:
            if not inv.done:
                inv.abort("client disconnected" if self.conn.closed else "response abandoned")

    async def _next(self, inv: AppCall, where: Route, head_sent: bool = False) -> tuple[Any, ...]:
        try:
            return await asyncio.wait_for(inv.next(), self.front.timeout)
        except asyncio.TimeoutError:
            if head_sent:
                log.warning("%s: no body chunk in %.3fs; connection cut", where.app, self.front.timeout)
                self.conn.shutdown()
                raise ConnectionResetError("timeout mid-body") from None
            raise Failure(
                504, f"Application {where.app} timeout: timeout ({self.front.timeout:.3f}s)"
            ) from None

    def _worker_failed(self, item: tuple[Any, ...], where: Route) -> None:
        if item[0] == "error":
            code, message = item[1], item[2]
            if isinstance(code, tuple):
                code = f"{code[0]}, {code[1]}"
            raise Failure(502, f"Application {where.app} error: {message} [{code}]")
        raise Failure(502, f"Application {where.app} error: the worker closed the session without a response")

    async def _stream_body(self, inv: AppCall, first: bytes) -> None:
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
            piece = await self.conn.body_piece()
