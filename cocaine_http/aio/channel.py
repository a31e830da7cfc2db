"""The seed's ``Channel``: one connection, C-decoded, dispatched to callbacks.

A :class:`Channel` owns a socket (UNIX or TCP), feeds what arrives to the
frame decoder (:mod:`cocaine_http.protocol.codec`, native when built) and
calls one callback per complete message. Callbacks are plain attributes, as
in the seed, and default to no-ops::

    on_connect()                         the connection is up
    on_socket_error(errno)               an OS error on the socket (also the
                                         first error before the connection is up)
    on_chunk(session, data)              A chunk / B write (B client: also a primitive value)
    on_choke(session)                    A choke / B close
    on_error(session, code, message)     code is an int (A) or (category, code) (B)
    on_terminate(session, code, reason)  worker side
    on_heartbeat()                       worker side
    on_invoke(session, event)            worker side
    on_protocol_error(exc)               undecodable input; the channel then closes
    on_close(exc)                        the connection is gone (None after a clean EOF)

The worker uses richer hooks instead of the seed callbacks when they are
set: ``sink``, a :class:`~cocaine_http.protocol.worker.SessionSink` told
each frame by the worker protocol with no event object in between (the
worker's sessions), or ``on_event(event)``, called with each frame's event
(events of :mod:`cocaine_http.protocol.worker`, with B headers).

Writing: :meth:`send` puts a ready frame on the wire; when the transport
buffers more than ``write_high_water`` bytes,
:attr:`write_paused` turns true and :meth:`drain` waits until the peer has
read enough, so a fast producer is slowed instead of buffering without
bound. On Python 3.12 and later, while the transport has a backlog, the
messages sent are held and handed to it together once per loop iteration
(asyncio recounts its backlog on every write there). Reading can be paused
by the owner (:meth:`pause_reading`) when what it buffered for handlers
passes its own mark.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConnectError, DecodeError, DisconnectedError
from ..protocol.catalog import B_STREAM, A
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE, new_decoder
from ..protocol.endpoints import Endpoint, parse_endpoint
from ..protocol.frames import Frame, Generation
from ..protocol.wire import as_text
from ..protocol.worker import (
    Choke,
    Chunk,
    Error,
    Event,
    Heartbeat,
    Ignored,
    Invoke,
    SessionSink,
    Terminate,
    WorkerProtocol,
)
from .reads import read_buffer

__all__ = ["DEFAULT_WRITE_HIGH_WATER", "Channel"]

log = logging.getLogger("cocaine_http.channel")

#: Bytes the transport may buffer before writers must :meth:`Channel.drain`.
DEFAULT_WRITE_HIGH_WATER = 1 << 20

#: From 3.12 asyncio's socket transport keeps its backlog as a deque of the
#: buffers written, and recounts all of them on every write
#: (``get_write_buffer_size()``, python/cpython#146507): while a peer does
#: not keep up, sending frame by frame is quadratic. There the channel holds
#: frames back while the transport has a backlog (see :meth:`Channel.send`).
#: Before 3.12 the backlog is one bytearray, and writing to it is cheap.
_HOLD_ON_BACKLOG = sys.version_info >= (3, 12)
#: Held bytes that go to the transport at once, without waiting for the
#: loop: a writer that never yields (its drain() does not wait while the
#: transport has not seen the data) is still paused by the transport.
_HOLD_LIMIT = 1 << 16


def _noop(*_args: Any) -> None:
    return None


def _no_clock() -> float:
    return 0.0


class _Held:
    """Messages a channel holds back behind its transport's backlog, their
    size, and whether their release is queued on the loop."""

    __slots__ = ("parts", "queued", "size")

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []
        self.size = 0
        self.queued = False


class Channel:
    """A cocaine connection with seed-style callbacks (see the module docstring)."""

    #: Hold messages back while the transport has a backlog: on where asyncio's
    #: transport needs it (3.12+); an instance may turn it on or off.
    hold_on_backlog = _HOLD_ON_BACKLOG

    def __init__(
        self,
        generation: Generation | str = Generation.B,
        *,
        worker: WorkerProtocol | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        backend: str | None = None,
    ) -> None:
        self.generation = Generation.parse(generation)
        self.worker = worker
        self.max_frame_size = max_frame_size
        self.write_high_water = write_high_water
        self._backend = backend
        # A worker's channel fails only the session of a request frame over
        # max_frame_size (an Oversize event), not the channel (issue #16).
        self._decoder = new_decoder(
            self.generation, max_frame_size=max_frame_size, backend=backend, skip_oversize=worker is not None
        )
        self._transport: asyncio.Transport | None = None
        # Messages held back while the transport has a backlog (see send).
        # (Up to 30 attributes an instance keeps its values inline, where
        # CPython reads them fastest: the send path is the hot one.)
        self._held: _Held | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        #: True while the transport's buffer is over the high-water mark
        #: (:meth:`drain` waits); a plain attribute, read on every write.
        self.write_paused = False
        #: True once the connection is closed, whichever side closed it
        #: (set here only; a plain attribute, read on every write).
        self.closed = False
        self._close_exc: BaseException | None = None
        self._clock: Callable[[], float] = _no_clock  # the loop's time(), once attached
        self.endpoint: Endpoint | None = None
        # seed callbacks
        self.on_connect: Callable[[], Any] = _noop
        self.on_socket_error: Callable[[int], Any] = _noop
        self.on_chunk: Callable[[int, Any], Any] = _noop
        self.on_choke: Callable[[int], Any] = _noop
        self.on_error: Callable[[int, Any, str], Any] = _noop
        self.on_terminate: Callable[[int, int, str], Any] = _noop
        self.on_heartbeat: Callable[[], Any] = _noop
        self.on_invoke: Callable[[int, str], Any] = _noop
        self.on_protocol_error: Callable[[DecodeError], Any] = _noop
        self.on_close: Callable[[BaseException | None], Any] = _noop
        self.on_event: Callable[[Event], Any] | None = None
        #: Worker side: told every frame by ``worker.read_record`` when set
        #: (before ``on_event`` and the seed callbacks).
        self.sink: SessionSink | None = None
        #: Client side, B: called with every raw frame instead of the seed
        #: callbacks when set (services interpret types through their graph).
        self.on_frame: Callable[[Frame], Any] | None = None
        #: Called once every frame of a read has been delivered (also after one
        #: of them closed the channel). A writer that holds back what it sends
        #: while :attr:`dispatching` (the worker's outbox) flushes here: the
        #: answers to one read leave in one write, with no extra loop turn.
        self.on_read_end: Callable[[], Any] | None = None
        #: True while the frames of one read are being delivered.
        self.dispatching = False

    # -- connection ----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._transport is not None and not self.closed

    @property
    def peername(self) -> Any:
        """The peer's address as the transport gives it (``None`` before connecting)."""
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
        """An asyncio protocol bound to this channel (for servers: one channel per connection)."""
        return _ChannelProtocol(self)

    def _attached(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        # asyncio's own loops tell time with time.monotonic(): call it directly
        # (loop.time() is a Python method, and this runs once per read).
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
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
        self._held = None  # as the transport's own backlog: lost with the connection
        self._close_exc = exc
        self._writable.set()  # wake drainers; they see the closed state
        self.write_paused = False
        self.on_close(exc)

    # -- writing -------------------------------------------------------------
    def send(self, session: int, data: bytes | bytearray | memoryview) -> None:
        """Write one ready-encoded message of *session*. Raises if the channel is closed.

        The message goes to the transport at once, unless (3.12+) the
        transport still had a backlog after an earlier write: then messages
        are held and handed over together, once per loop iteration or per
        64 KiB, in order. The transport then recounts its backlog once per
        batch instead of once per message.
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

    def send_parts(self, session: int, *parts: bytes | bytearray | memoryview) -> None:
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

    def _hold(self, held: _Held, parts: tuple[bytes | bytearray | memoryview, ...]) -> None:
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
        """Hand the held messages to the transport; keep holding the next ones
        while the transport still has a backlog."""
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
        """Wait until the transport's buffer is below the high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self.closed:
            raise DisconnectedError("channel closed while waiting to write")

    # -- reading -------------------------------------------------------------
    def pause_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _data_received(self, data: bytes) -> None:
        self.dispatching = True
        try:
            self._deliver(data)
        finally:
            try:
                if self.on_read_end is not None:
                    self.on_read_end()
            finally:
                self.dispatching = False

    def _deliver(self, data: bytes) -> None:
        try:
            now = self._clock()  # once per read, not per frame
            worker, sink = self.worker, self.sink
            if worker is not None and sink is not None:
                # The worker's path: each frame as a record, straight to its
                # protocol, which tells the sessions: no Frame, no event.
                read = worker.read_record
                for record in self._decoder.records(data):
                    try:
                        read(record, now, sink)
                    except Exception:
                        self._callback_failed(record[1], record[0])
                    if self.closed:
                        return
                return
            for frame in self._decoder.frames(data):
                try:
                    self._dispatch(frame, now)
                except Exception:
                    self._callback_failed(frame.type, frame.session)
                if self.closed:
                    return
        except DecodeError as exc:
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

    def _dispatch(self, frame: Frame, now: float) -> None:
        if self.worker is not None:
            event = self.worker.receive(frame, now)
            if self.on_event is not None:
                self.on_event(event)
            else:
                self._seed_callbacks(event)
            return
        if self.on_frame is not None:
            self.on_frame(frame)
            return
        self._client_callbacks(frame)

    def _seed_callbacks(self, event: Event) -> None:
        if isinstance(event, Chunk):
            self.on_chunk(event.session, event.data)
        elif isinstance(event, Choke):
            self.on_choke(event.session)
        elif isinstance(event, Invoke):
            self.on_invoke(event.session, event.event)
        elif isinstance(event, Error):
            code: Any = (event.category, event.code) if event.category is not None else event.code
            self.on_error(event.session, code, event.message)
        elif isinstance(event, Heartbeat):
            self.on_heartbeat()
        elif isinstance(event, Terminate):
            self.on_terminate(0 if self.generation is Generation.A else 1, event.code, event.reason)
        elif isinstance(event, Ignored):
            log.warning("dropped a message: %s", event.error)

    def _client_callbacks(self, f: Frame) -> None:
        if self.generation is Generation.A:
            chunk, error, choke = A.CHUNK, A.ERROR, A.CHOKE
        else:
            chunk, error, choke = B_STREAM.WRITE, B_STREAM.ERROR, B_STREAM.CLOSE
        if f.type == chunk:
            self.on_chunk(f.session, f.args[0] if len(f.args) == 1 else f.args)
        elif f.type == choke:
            self.on_choke(f.session)
        elif f.type == error:
            code: Any = f.args[0] if f.args else 0
            if isinstance(code, list):
                code = tuple(code)
            message = as_text(f.args[1], "message") if len(f.args) > 1 else ""
            self.on_error(f.session, code, message)
        else:
            log.warning("dropped message of unknown type %d on session %d", f.type, f.session)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if isinstance(exc, OSError) and exc.errno:
            self.on_socket_error(exc.errno)
        pending = self._decoder.pending
        if exc is None and pending:
            log.warning(
                "connection to %s closed in the middle of a frame (%d bytes pending)", self.endpoint, pending
            )
        self._mark_closed(exc)


class _ChannelProtocol(asyncio.BufferedProtocol):
    """The asyncio side of a :class:`Channel`.

    A buffered protocol: asyncio reads into the loop's read buffer
    (:mod:`.reads`) and each read is copied out as ``bytes`` of its own size.
    """

    __slots__ = ("_buffer", "channel")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._buffer = memoryview(b"")  # the loop's read buffer, from connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._buffer = read_buffer(asyncio.get_running_loop())
        self.channel._attached(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.channel._data_received(self._buffer[:nbytes].tobytes())

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel._connection_lost(exc)

    def pause_writing(self) -> None:
        self.channel.write_paused = True
        self.channel._writable.clear()

    def resume_writing(self) -> None:
        self.channel.write_paused = False
        self.channel._writable.set()
