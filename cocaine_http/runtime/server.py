"""A generic TCP host for the local runtime's services.

One :class:`ServiceServer` listens for one :class:`Service` (locator,
logging, storage, node, each app). Every accepted connection gets its own
:class:`~cocaine_http.aio.frame_transport.FrameTransport` (frame decoding) and a
:class:`_Connection` that dispatches method calls by index, many per
connection, each in its own task.

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
import enum
import errno
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..aio.frame_transport import FrameTransport
from ..errors import DecodeError, DisconnectedError, FrameFormatError
from ..protocol.catalog import MessageEncoder
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.definitions import STREAMING
from ..protocol.frames import Frame, Generation
from ..protocol.headers import HeaderTable, tracing_headers
from ..protocol.wire import as_text, packb

__all__ = [
    "ArgError",
    "Call",
    "Drop",
    "Fault",
    "Method",
    "PortAllocator",
    "Reply",
    "Service",
    "ServiceServer",
    "integer",
    "raw",
    "text",
    "text_list",
    "value",
]

log = logging.getLogger("cocaine_http.runtime.server")

#: B category/code for an exception a handler did not expect: cocaine.rpc.dispatch / uncaught error (§3.8).
UNCAUGHT_B = (0x07, 7)
#: Caller writes queued for a streaming-in call before the connection stops being read.
INBOUND_HIGH_WATER = 64


class Reply(enum.Enum):
    VALUE = "value"
    TUPLE = "tuple"
    VOID = "void"
    MUTE = "mute"
    STREAM = "stream"


class Fault(Exception):
    """Raised by a handler to answer with an error frame.

    ``code`` is an int in generation A and ``(category, code)`` in B; an int
    given in B is sent with category 0xFF (unknown), a pair given in A keeps
    only the code.
    """

    def __init__(self, code: int | tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Drop(Exception):
    """Raised by a handler (B) when the peer broke the protocol: the connection is dropped."""


class ArgError(Exception):
    """An argument converter refused a value."""


# -- argument converters ------------------------------------------------------
def text(v: Any) -> str:
    if isinstance(v, bytes | str):
        return as_text(v)
    raise ArgError(f"expected a string, got {type(v).__name__}")


def raw(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise ArgError(f"expected a raw string, got {type(v).__name__}")


def integer(v: Any) -> int:
    if type(v) is int:
        return v
    raise ArgError(f"expected an integer, got {type(v).__name__}")


def text_list(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise ArgError(f"expected an array of strings, got {type(v).__name__}")
    return [text(item) for item in v]


def value(v: Any) -> Any:
    return v


Converter = Callable[[Any], Any]
Handler = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class Method:
    """One method of a service, as the host dispatches it.

    ``args`` are required converters, ``optional`` trailing ones that may be
    omitted (the handler gets its own defaults). ``streaming_in`` (B) opens
    the channel for the caller's writes (dispatch graph ``STREAMING``); the
    handler reads them from :attr:`Call.inbound`.
    """

    name: str
    handler: Handler
    reply: Reply = Reply.VALUE
    args: tuple[Converter, ...] = ()
    optional: tuple[Converter, ...] = ()
    streaming_in: bool = False


class Service:
    """Base of every hosted service. Subclasses fill :attr:`methods` per generation.

    ``kind`` names the protocol in :mod:`cocaine_http.protocol.definitions`
    (``app`` for applications); ``name`` is what the locator resolves.
    """

    kind: str = ""

    def __init__(self, name: str, generation: Generation | str) -> None:
        self.name = name
        self.generation = Generation.parse(generation)
        self.methods: dict[int, Method] = {}
        self.connections = 0

    @property
    def is_a(self) -> bool:
        return self.generation is Generation.A

    def fault(self, a_code: int, b_code: tuple[int, int], message: str) -> Fault:
        """A :class:`Fault` with the code spelled for this service's generation."""
        return Fault(a_code if self.is_a else b_code, message)

    async def close(self) -> None:
        """Called when the host stops; release what the service holds."""


@dataclass(eq=False, slots=True)
class Call:
    """One method call in progress: what the handler may use to answer.

    ``write``/``error``/``close`` are for ``STREAM`` methods; the others are
    answered from the handler's return value. ``inbound`` (B, streaming
    dispatch only) yields ``("write", data, headers)``, ``("error", code,
    message)`` or ``("close",)``; ``("disconnect",)`` when the connection
    dropped.
    """

    conn: _Connection
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


class _Connection:
    """The per-connection dispatcher."""

    def __init__(self, server: ServiceServer) -> None:
        self.server = server
        self.service = server.service
        self.generation = server.generation
        self.channel = FrameTransport(server.generation, self.on_frame, max_frame_size=server.max_frame_size)
        self.encoder = MessageEncoder(self.generation)
        self.rx_headers = HeaderTable()
        self.max_channel = 0
        self.inbound_open: dict[int, Call] = {}
        self.calls: set[Call] = set()
        self.peer: Any = None
        self._h0 = tracing_headers() if server.send_headers and self.generation is Generation.B else None

    # -- lifecycle ------------------------------------------------------------
    def on_connect(self) -> None:
        self.peer = self.channel.peername
        self.server.connections.add(self)
        self.service.connections += 1

    def on_close(self, exc: BaseException | None) -> None:
        if self in self.server.connections:
            self.server.connections.discard(self)
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
            self._send(
                self.encoder.error(f.session, 1, "unknown message type") + self.encoder.choke(f.session)
            )
            return
        try:
            args = self._convert(method, f.args)
        except ArgError as exc:
            self._send(self.encoder.error(f.session, 1, str(exc)) + self.encoder.choke(f.session))
            return
        self._start(Call(self, f.session, method), args)

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
        code: Any = f.args[0] if f.args else (0xFF, 0)
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


class ServiceServer:
    """Listens for one service on TCP and serves every connection."""

    def __init__(
        self,
        service: Service,
        *,
        host: str = "127.0.0.1",
        send_headers: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.service = service
        self.generation = service.generation
        self.host = host
        self.send_headers = send_headers
        self.max_frame_size = max_frame_size
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def _factory(self) -> asyncio.BaseProtocol:
        conn = _Connection(self)
        channel = conn.channel
        channel.on_connect = conn.on_connect
        channel.on_close = conn.on_close
        channel.on_protocol_error = lambda exc: _log_decode(self.service.name, conn, exc)
        return channel.make_protocol()

    async def start(self, port: int = 0) -> int:
        """Bind *port* (0 = ephemeral) and start serving; returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop_listening(self) -> None:
        """Accept no more connections; the open ones go on (see :meth:`stop`)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.channel.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await self.service.close()


def _log_decode(name: str, conn: _Connection, exc: DecodeError) -> None:
    log.warning("%s: malformed frame from %s, connection dropped: %s", name, conn.peer, exc)


class PortAllocator:
    """Ports for services and apps: lowest free first from a range, else ephemeral.

    ``port_range`` is ``(first, last_exclusive)``; ``None`` asks the OS for
    an ephemeral port each time (the real runtime's default, §2.5.2).
    """

    def __init__(self, port_range: Sequence[int] | None = None) -> None:
        if port_range is not None:
            lo, hi = int(port_range[0]), int(port_range[1])
            if not 0 < lo < hi <= 65536:
                raise ValueError(f"bad port range {port_range!r}")
            self.port_range: tuple[int, int] | None = (lo, hi)
        else:
            self.port_range = None

    async def bind(self, server: ServiceServer) -> int:
        if self.port_range is None:
            return await server.start(0)
        lo, hi = self.port_range
        for port in range(lo, hi):
            try:
                return await server.start(port)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port in [{lo}, {hi}) for {server.service.name}")
