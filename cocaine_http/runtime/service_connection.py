"""One caller's connection to a hosted service: method calls dispatched by index, and their answers.

Every connection a :class:`~.server.ServiceServer` accepts gets its own
:class:`~cocaine_http.aio.frame_transport.FrameTransport` (frame decoding) and a
:class:`ServiceConnection` that dispatches method calls by index, many per
connection, each in its own task (a :class:`Call`).

How calls are answered (PROTOCOL.md §2.5.1, §3.6.1):

=============  ==========================================  ==========================================
reply kind     generation A                                generation B
=============  ==========================================  ==========================================
``VALUE``      ``[4,s,[msgpack(v)]]`` + ``[6,s,[]]``       ``[ch,0,[v]]``
``TUPLE``      ``[4,s,[msgpack([v...])]]`` + choke          ``[ch,0,[v...]]``
``VOID``       ``[6,s,[]]``                                ``[ch,0,[]]``
``MUTE``       ``[6,s,[]]`` (A has no mute methods)         nothing at all
``STREAM``     the handler writes chunks (verbatim) itself  the handler writes ``[ch,0,[x]]`` itself
``Fault``      ``[5,s,[code,msg]]`` + choke                 ``[ch,1,[[cat,code],msg]]``
=============  ==========================================  ==========================================

Protocol violations:

* A: an unknown method index answers ``[5,s,[1,"unknown message type"]]`` +
  choke, a wrong argument count or type ``[5,s,[1,what]]`` + choke; the
  connection stays open (§2.5.1).
* B: a channel id that is not above the highest seen and not open
  (``revoked_channel``), an unknown type (``slot_not_found``) or arguments
  that do not fit the method (``invalid_argument``) drop the whole
  connection, as the real runtime does (§3.2.1).
* Both: bytes that are not a frame drop that connection only.

Replies may interleave between calls of one connection; each carries its
request's session/channel id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from ..aio.frame_transport import FrameTransport
from ..errors import DecodeError, DisconnectedError, DispatchCode, ErrorCategory, ErrorCodeA, FrameFormatError
from ..protocol.catalog import MessageEncoder
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.definitions import STREAMING
from ..protocol.frames import Frame, Generation
from ..protocol.headers import HeaderTable, tracing_headers
from ..protocol.wire import as_text, packb
from .converters import ArgError
from .service import Drop, Fault, Method, Reply, Service

__all__ = ["INBOUND_HIGH_WATER", "UNCAUGHT_B", "Call", "ServiceConnection"]

log = logging.getLogger("cocaine_http.runtime.server")

#: B category/code for an exception a handler did not expect: cocaine.rpc.dispatch / uncaught error (§3.8).
UNCAUGHT_B = (ErrorCategory.DISPATCH.value, DispatchCode.UNCAUGHT_ERROR.value)
#: A's code for a call the service cannot run (unknown method, bad arguments).
_A_INVOCATION_ERROR = ErrorCodeA.INVOCATION_ERROR.value
#: Caller writes queued for a streaming-in call before the connection stops being read.
INBOUND_HIGH_WATER = 64


@dataclass(eq=False, slots=True)
class Call:
    """One method call in progress: what the handler may use to answer.

    ``write``/``error``/``close`` are for ``STREAM`` methods; the others are
    answered from the handler's return value. ``inbound`` (B, streaming
    dispatch only) yields ``("write", data, headers)``, ``("error", code,
    message)`` or ``("close",)``; ``("disconnect",)`` when the connection
    dropped.
    """

    conn: ServiceConnection
    session: int
    method: Method
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    inbound: asyncio.Queue[tuple[Any, ...]] | None = None
    finished: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def generation(self) -> Generation:
        return self.conn.generation

    @property
    def disconnected(self) -> bool:
        return self.conn.channel.closed

    def write(self, data: Any) -> None:
        """A: one chunk carrying *data* verbatim (bytes); B: ``[ch,0,[data]]``."""
        if self.finished:
            return
        self.conn.send_write(self.session, data)

    def error(self, code: int | tuple[int, int], message: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.conn.send_error(self.session, code, message)

    def close(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.conn.send_close(self.session)

    async def receive(self) -> tuple[Any, ...]:
        """The caller's next message on a streaming-in channel (see the class doc)."""
        assert self.inbound is not None, f"{self.method.name} does not take a stream"
        item = await self.inbound.get()
        if self.inbound.qsize() < INBOUND_HIGH_WATER // 2:
            self.conn.channel.resume_reading()
        return item

    async def drain(self) -> None:
        """Wait until the peer has read enough of what was written."""
        with contextlib.suppress(DisconnectedError):
            await self.conn.channel.drain()

    @property
    def peer(self) -> Any:
        return self.conn.peer


class ServiceConnection:
    """The per-connection dispatcher.

    *registry* is the host's set of open connections: this one is in it from
    its connect to its close (the host closes them all when it stops).
    """

    def __init__(
        self,
        service: Service,
        registry: set[ServiceConnection],
        send_headers: bool = False,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.registry = registry
        self.service = service
        self.generation = service.generation
        self.channel = FrameTransport(self.generation, self.on_frame, max_frame_size=max_frame_size)
        self.channel.on_connect = self.on_connect
        self.channel.on_close = self.on_close
        self.channel.on_protocol_error = self.log_decode_error
        self.encoder = MessageEncoder(self.generation)
        self.rx_headers = HeaderTable()
        self.max_channel = 0
        self.inbound_open: dict[int, Call] = {}
        self.calls: set[Call] = set()
        self.peer: Any = None
        self._h0 = tracing_headers() if send_headers and self.generation is Generation.B else None

    # -- lifecycle ------------------------------------------------------------
    def on_connect(self) -> None:
        self.peer = self.channel.peername
        self.registry.add(self)
        self.service.connections += 1

    def on_close(self, exc: BaseException | None) -> None:
        if self in self.registry:
            self.registry.discard(self)
            self.service.connections -= 1
        for call in list(self.calls):
            if call.inbound is not None:
                call.inbound.put_nowait(("disconnect",))
            if call.task is not None and not call.task.done():
                call.task.cancel()
        self.inbound_open.clear()

    def drop(self, why: str) -> None:
        log.warning("%s: dropping connection from %s: %s", self.service.name, self.peer, why)
        self.channel.close()

    # -- inbound --------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        try:
            if self.generation is Generation.A:
                self._frame_a(frame)
            else:
                self._frame_b(frame)
        except Exception as exc:  # a bug must cost one connection, not the host
            log.exception("%s: internal error handling a frame", self.service.name)
            self.drop(f"internal error: {exc}")

    def _frame_a(self, f: Frame) -> None:
        method = self.service.methods.get(f.type)
        if method is None:
            self._refuse_a(f.session, "unknown message type")
            return
        try:
            args = self._convert(method, f.args)
        except ArgError as exc:
            self._refuse_a(f.session, str(exc))
            return
        self._start(Call(self, f.session, method), args)

    def _refuse_a(self, session: int, message: str) -> None:
        """A: the call cannot run; an invocation error and a choke end it."""
        self._send(self.encoder.error(session, _A_INVOCATION_ERROR, message) + self.encoder.choke(session))

    def _frame_b(self, f: Frame) -> None:
        try:
            headers = self.rx_headers.decode(f.headers)
        except FrameFormatError as exc:
            self.drop(f"bad headers: {exc}")
            return
        ch = f.session
        if ch > self.max_channel:
            self.max_channel = ch
            method = self.service.methods.get(f.type)
            if method is None:
                self.drop(f"slot not found: no method {f.type} on channel {ch}")
                return
            try:
                args = self._convert(method, f.args)
            except ArgError as exc:
                self.drop(f"invalid argument for {method.name}: {exc}")
                return
            call = Call(self, ch, method, headers)
            if method.streaming_in:
                call.inbound = asyncio.Queue()
                self.inbound_open[ch] = call
            self._start(call, args)
            return
        open_call = self.inbound_open.get(ch)
        if open_call is None:
            self.drop(f"revoked channel {ch}")
            return
        call = open_call
        if f.type not in STREAMING:
            self.drop(f"slot not found: type {f.type} on channel {ch}")
            return
        assert call.inbound is not None
        # Once the handler is done the caller may still legally write until it
        # closes its side; such messages are accepted and discarded.
        listening = call.task is not None and not call.task.done()
        if f.type == 0:
            if len(f.args) != 1:
                self.drop(f"invalid argument: write on channel {ch} is not [data]")
                return
            if listening:
                call.inbound.put_nowait(("write", f.args[0], headers))
                if call.inbound.qsize() >= INBOUND_HIGH_WATER:
                    self.channel.pause_reading()  # resumed by Call.receive
            return
        del self.inbound_open[ch]
        if not listening:
            return
        if f.type == 2:
            call.inbound.put_nowait(("close",))
            return
        code: Any = f.args[0] if f.args else (ErrorCategory.UNKNOWN.value, 0)
        if isinstance(code, list):
            code = tuple(code)
        message = as_text(f.args[1]) if len(f.args) > 1 and isinstance(f.args[1], bytes | str) else ""
        call.inbound.put_nowait(("error", code, message))

    def _convert(self, method: Method, args: list[Any]) -> list[Any]:
        need, extra = len(method.args), len(method.optional)
        if len(args) < need:
            raise ArgError(f"argument sequence length mismatch - expected at least {need}, got {len(args)}")
        if len(args) > need + extra:
            raise ArgError(
                f"argument sequence length mismatch - expected at most {need + extra}, got {len(args)}"
            )
        out = []
        for i, (conv, arg) in enumerate(zip((*method.args, *method.optional), args, strict=False)):
            try:
                out.append(conv(arg))
            except ArgError as exc:
                raise ArgError(f"argument {i + 1} of {method.name}: {exc}") from None
        return out

    def _start(self, call: Call, args: list[Any]) -> None:
        self.calls.add(call)
        call.task = asyncio.get_running_loop().create_task(self._run(call, args))

    async def _run(self, call: Call, args: list[Any]) -> None:
        method = call.method
        try:
            result = await method.handler(call, *args)
        except Fault as fault:
            call.error(fault.code, fault.message)
        except Drop as exc:
            self.drop(str(exc))
        except asyncio.CancelledError:
            call.finished = True
            raise
        except Exception as exc:
            log.exception("%s.%s failed", self.service.name, method.name)
            call.error(1 if self.generation is Generation.A else UNCAUGHT_B, f"{type(exc).__name__}: {exc}")
        else:
            self._answer(call, result)
        finally:
            self.calls.discard(call)

    def _answer(self, call: Call, result: Any) -> None:
        if call.finished:
            return
        kind = call.method.reply
        s = call.session
        if kind is Reply.STREAM:
            call.close()
            return
        call.finished = True
        if self.generation is Generation.A:
            if kind is Reply.VALUE:
                self._send(self.encoder.chunk(s, packb(result)) + self.encoder.choke(s))
            elif kind is Reply.TUPLE:
                self._send(self.encoder.chunk(s, packb(list(result))) + self.encoder.choke(s))
            else:
                self._send(self.encoder.choke(s))
            return
        if kind is Reply.VALUE:
            self._send(self.encoder.frame(s, 0, [result], self._h0))
        elif kind is Reply.TUPLE:
            self._send(self.encoder.frame(s, 0, list(result), self._h0))
        elif kind is Reply.VOID:
            self._send(self.encoder.frame(s, 0, [], self._h0))
        # MUTE: nothing

    # -- outbound -------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.channel.closed:
            return
        with contextlib.suppress(DisconnectedError):
            self.channel.send(0, data)

    def send_write(self, session: int, data: Any) -> None:
        if self.generation is Generation.A:
            self._send(self.encoder.chunk(session, data))
        else:
            self._send(self.encoder.frame(session, 0, [data], self._h0))

    def send_error(self, session: int, code: int | tuple[int, int], message: str) -> None:
        if self.generation is Generation.A:
            self._send(self.encoder.error(session, code, message) + self.encoder.choke(session))
            return
        if not isinstance(code, tuple):
            code = (0xFF, int(code))
        self._send(self.encoder.frame(session, 1, [[int(code[0]), int(code[1])], message], self._h0))

    def send_close(self, session: int) -> None:
        if self.generation is Generation.A:
            self._send(self.encoder.choke(session))
        else:
            self._send(self.encoder.frame(session, 2, [], self._h0))

    def log_decode_error(self, exc: DecodeError) -> None:
        """The channel's report of bytes that are not a frame (it drops the connection)."""
        log.warning("%s: malformed frame from %s, connection dropped: %s", self.service.name, self.peer, exc)
