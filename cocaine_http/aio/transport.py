"""What every cocaine connection does, whoever reads it: the socket's lifecycle and writing.

A :class:`Transport` owns one socket (UNIX or TCP) and its frame decoder
(:mod:`cocaine_http.protocol.codec`, native when built). It connects, or is
made by a server's protocol factory (:meth:`Transport.make_protocol`), and
then writes, drains, pauses reading and closes. What the bytes read mean
is the role's business: each role is a subclass with one dispatch, given
every read by :meth:`Transport.reader`:

* :class:`~cocaine_http.aio.worker_transport.WorkerTransport`, the
  worker's: records to the worker protocol, which tells the sessions;
* :class:`~cocaine_http.aio.frame_transport.FrameTransport`, the service
  clients' and the local runtime's: every frame to one callable;
* :class:`~cocaine_http.aio.channel.Channel`, the seed's, with a callback
  per message.

Lifecycle hooks, plain attributes that default to no-ops (as in the seed)::

    on_connect()               the connection is up
    on_socket_error(errno)     an OS error on the socket (also the first
                               error before the connection is up)
    on_protocol_error(exc)     undecodable input; the transport then closes
    on_close(exc)              the connection is gone (None after a clean EOF)

Writing: :meth:`Transport.send` puts a ready frame on the wire; when the
socket's transport buffers more than ``write_high_water`` bytes,
:attr:`Transport.write_paused` turns true and :meth:`Transport.drain` waits
until the peer has read enough, so a fast producer is slowed instead of
buffering without bound. On Python 3.12 and later, while asyncio's transport
has a backlog, the messages sent are held and handed to it together once
per loop iteration (asyncio recounts its backlog on every write there).
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConnectError, DecodeError, DisconnectedError
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE, new_decoder
from ..protocol.endpoints import Endpoint, parse_endpoint
from ..protocol.frames import Frame, Generation, Record
from .reads import read_buffer

if TYPE_CHECKING:
    from ..protocol.events import SessionSink
    from ..protocol.worker import WorkerProtocol

__all__ = ["DEFAULT_WRITE_HIGH_WATER", "Transport"]

log = logging.getLogger("cocaine_http.channel")

#: Bytes the socket's transport may buffer before writers must :meth:`Transport.drain`.
DEFAULT_WRITE_HIGH_WATER = 1 << 20

#: From 3.12 asyncio's socket transport keeps its backlog as a deque of the
#: buffers written, and recounts all of them on every write
#: (``get_write_buffer_size()``, python/cpython#146507): while a peer does
#: not keep up, sending frame by frame is quadratic. There the transport holds
#: frames back while asyncio's has a backlog (see :meth:`Transport.send`).
#: Before 3.12 the backlog is one bytearray, and writing to it is cheap.
_HOLD_ON_BACKLOG = sys.version_info >= (3, 12)
#: Held bytes that go to the transport at once, without waiting for the
#: loop: a writer that never yields (its drain() does not wait while the
#: transport has not seen the data) is still paused by the transport.
_HOLD_LIMIT = 1 << 16

Buffer = bytes | bytearray | memoryview


def _noop(*_args: Any) -> None:
    return None


def _no_clock() -> float:
    return 0.0


class _Held:
    """Messages held back behind the socket's backlog, their size, and
    whether their release is queued on the loop."""

    __slots__ = ("parts", "queued", "size")

    def __init__(self) -> None:
        self.parts: list[Buffer] = []
        self.size = 0
        self.queued = False


class Transport:
    """One cocaine connection: lifecycle, writing and flow control (see the module docstring).

    Subclasses say what a read means by :meth:`reader`.
    """

    #: Hold messages back while the socket has a backlog: on where asyncio's
    #: transport needs it (3.12+); an instance may turn it on or off.
    hold_on_backlog = _HOLD_ON_BACKLOG

    def __init__(
        self,
        generation: Generation | str = Generation.B,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        backend: str | None = None,
        skip_oversize: bool = False,
        split_payloads: bool = False,
    ) -> None:
        self.generation = Generation.parse(generation)
        self.max_frame_size = max_frame_size
        self.write_high_water = write_high_water
        # skip_oversize: a frame over max_frame_size becomes an Oversize record
        # of its session instead of a decode error (the worker's, issue #16).
        # split_payloads: a large envelope's body may come apart (the worker's,
        # protocol/payloads.py).
        self._decoder = new_decoder(
            self.generation,
            max_frame_size=max_frame_size,
            backend=backend,
            skip_oversize=skip_oversize,
            split_payloads=split_payloads,
        )
        self._transport: asyncio.Transport | None = None
        # Messages held back while the socket has a backlog (see send).
        # (Up to 30 attributes an instance keeps its values inline, where
        # CPython reads them fastest: the send path is the hot one.)
        self._held: _Held | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        #: True while the socket's buffer is over the high-water mark
        #: (:meth:`drain` waits); a plain attribute, read on every write.
        self.write_paused = False
        #: True once the connection is closed, whichever side closed it
        #: (set here only; a plain attribute, read on every write).
        self.closed = False
        self._clock: Callable[[], float] = _no_clock  # the loop's time(), once attached
        self.endpoint: Endpoint | None = None
        self.on_connect: Callable[[], Any] = _noop
        self.on_socket_error: Callable[[int], Any] = _noop
        self.on_protocol_error: Callable[[DecodeError], Any] = _noop
        self.on_close: Callable[[BaseException | None], Any] = _noop

    def reader(self) -> Callable[[bytes], None]:
        """What each read's bytes go to: the role's one dispatch, asked once per connection."""
        raise NotImplementedError

    # -- connection ----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None and not self.closed

    @property
    def peername(self) -> Any:
        """The socket's peer address as asyncio reports it (``None`` before the connection)."""
        return self._transport.get_extra_info("peername") if self._transport is not None else None

    async def connect(self, endpoint: Endpoint | Any, *, unix: bool = False) -> None:
        """Connect to a UNIX path, ``(host, port)``, ``"host:port"`` or ``"[v6]:port"``.

        ``unix=True`` takes *endpoint* as a socket path whatever it looks like
        (the runtime's ``--endpoint`` may be relative, e.g. ``web.4242``).
        """
        try:
            ep = parse_endpoint(endpoint, unix=unix)
        except ValueError as exc:
            raise ConnectError(f"bad endpoint {endpoint!r}: {exc}") from exc
        self.endpoint = ep
        loop = asyncio.get_running_loop()
        try:
            if isinstance(ep, str):
                await loop.create_unix_connection(self.make_protocol, ep)
            else:
                await loop.create_connection(self.make_protocol, ep[0], ep[1])
        except OSError as exc:
            code = exc.errno or errno_mod.ECONNREFUSED
            self.on_socket_error(code)
            raise ConnectError(f"cannot connect to {ep}: {exc.strerror or exc}", errno=code) from exc

    def make_protocol(self) -> asyncio.BufferedProtocol:
        """An asyncio protocol bound to this transport (for servers: one transport per connection)."""
        return _SocketProtocol(self)

    def _attached(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._clock = asyncio.get_running_loop().time
        if self.endpoint is None:  # accepted by a server: name the peer in logs
            peer = transport.get_extra_info("peername")
            self.endpoint = (
                (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else str(peer or "unix peer")
            )
        transport.set_write_buffer_limits(high=self.write_high_water)
        self.on_connect()

    def close(self) -> None:
        """Close the socket and detach from the loop; unsent data is discarded."""
        if self._transport is not None and not self.closed:
            self._transport.abort()
        self._mark_closed(None)

    def close_gracefully(self) -> None:
        """Close after what was already written has been flushed."""
        if self._transport is not None and not self.closed:
            self._release_held()
            self._transport.close()

    def _mark_closed(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._held = None  # as the socket's own backlog: lost with the connection
        self._writable.set()  # wake drainers; they see the closed state
        self.write_paused = False
        self.on_close(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if isinstance(exc, OSError) and exc.errno:
            self.on_socket_error(exc.errno)
        pending = self._decoder.pending
        if exc is None and pending:
            log.warning(
                "connection to %s closed in the middle of a frame (%d bytes pending)", self.endpoint, pending
            )
        self._mark_closed(exc)

    # -- writing -------------------------------------------------------------
    def send(self, session: int, data: Buffer) -> None:
        """Write one ready-encoded message of *session*. Raises if the connection is closed.

        The message goes to the socket's transport at once, unless (3.12+)
        it still had a backlog after an earlier write: then messages are
        held and handed over together, once per loop iteration or per
        64 KiB, in order. asyncio then recounts its backlog once per batch
        instead of once per message.
        """
        if self.closed or self._transport is None:
            raise DisconnectedError(f"channel closed; cannot send on session {session}")
        held = self._held
        if held is not None:
            self._hold(held, (data,))
            return
        self._transport.write(data)
        if self.hold_on_backlog and self._transport.get_write_buffer_size():
            self._held = _Held()

    def send_parts(self, session: int, *parts: Buffer) -> None:
        """Like :meth:`send` for a frame given as pieces (header, payload)."""
        if self.closed or self._transport is None:
            raise DisconnectedError(f"channel closed; cannot send on session {session}")
        held = self._held
        if held is not None:
            self._hold(held, parts)
            return
        for part in parts:
            self._transport.write(part)
        if self.hold_on_backlog and self._transport.get_write_buffer_size():
            self._held = _Held()

    def _hold(self, held: _Held, parts: tuple[Buffer, ...]) -> None:
        held.parts.extend(parts)
        for part in parts:
            held.size += len(part)
        if held.size >= _HOLD_LIMIT:
            self._release_held()
        elif not held.queued:
            held.queued = True
            asyncio.get_running_loop().call_soon(self._queued_release, held)

    def _queued_release(self, held: _Held) -> None:
        held.queued = False
        if held is self._held:
            self._release_held()

    def _release_held(self) -> None:
        """Hand the held messages to the socket's transport; keep holding the
        next ones while it still has a backlog."""
        held = self._held
        if held is None or self._transport is None or self.closed:
            return
        parts = held.parts
        if len(parts) > 2:
            # One write, not writelines(): before 3.12.9 and 3.13.2 writelines()
            # did not pause the protocol at the high-water mark (python/cpython#127655).
            self._transport.write(b"".join(parts))
        else:  # a message, or a header and its payload: not worth a copy
            for part in parts:
                self._transport.write(part)
        parts.clear()
        held.size = 0
        if not self._transport.get_write_buffer_size():
            self._held = None

    @property
    def write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the socket (held ones included)."""
        if self._transport is None:
            return 0
        held = self._held
        return self._transport.get_write_buffer_size() + (held.size if held is not None else 0)

    async def drain(self) -> None:
        """Wait until the socket's buffer is below the high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self.closed:
            raise DisconnectedError("channel closed while waiting to write")

    def _pause_writing(self) -> None:
        self.write_paused = True
        self._writable.clear()

    def _resume_writing(self) -> None:
        self.write_paused = False
        self._writable.set()

    # -- reading -------------------------------------------------------------
    def pause_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    # -- delivering one read: each role's reader is one of these ----------------
    def _deliver_frames(self, data: bytes, tell: Callable[[Frame], Any]) -> None:
        """Each complete frame of one read's *data* to *tell*, in order."""
        try:
            for frame in self._decoder.frames(data):
                try:
                    tell(frame)
                except Exception:
                    self._callback_failed(frame.type, frame.session)
                if self.closed:
                    return
        except DecodeError as exc:
            self._decode_failed(exc)

    def _deliver_records(self, data: bytes, protocol: WorkerProtocol, sink: SessionSink) -> None:
        """The worker's end: the frames of *data* as records (plain tuples, no
        :class:`Frame`) to the worker protocol, in one call per read, which
        tells *sink* what each means (and this transport, a record that failed)."""
        try:
            protocol.read_records(self._decoder.records(data), self._clock(), sink, self)
        except DecodeError as exc:
            self._decode_failed(exc)

    def record_failed(self, record: Record) -> None:
        """A record whose reading raised (:class:`~cocaine_http.protocol.events.RecordReader`)."""
        self._callback_failed(record[1], record[0])

    def _decode_failed(self, exc: DecodeError) -> None:
        """Undecodable input: the stream cannot be resynchronised, so the connection ends."""
        log.error("closing connection to %s: %s (code %d)", self.endpoint, exc, exc.code)
        self.on_protocol_error(exc)
        if self._transport is not None:
            self._transport.abort()
        self._mark_closed(exc)

    def _callback_failed(self, type_id: int, session: int) -> None:
        # A callback's bug must not take the connection (and every other
        # session on it) down: log it and keep reading.
        log.exception(
            "callback failed on message type %d of session %d from %s", type_id, session, self.endpoint
        )


class _SocketProtocol(asyncio.BufferedProtocol):
    """The asyncio side of a :class:`Transport`.

    A buffered protocol: asyncio reads into the loop's read buffer
    (:mod:`.reads`) and each read is copied out as ``bytes`` of its own size,
    to the role's reader.
    """

    __slots__ = ("_buffer", "_read", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._read = transport.reader()
        self._buffer = memoryview(b"")  # the loop's read buffer, from connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._buffer = read_buffer(asyncio.get_running_loop())
        self.transport._attached(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self._read(self._buffer[:nbytes].tobytes())

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport._connection_lost(exc)

    def pause_writing(self) -> None:
        self.transport._pause_writing()

    def resume_writing(self) -> None:
        self.transport._resume_writing()
