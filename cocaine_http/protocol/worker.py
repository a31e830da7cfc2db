"""The worker side of the runtime connection, without IO.

:class:`WorkerProtocol` turns decoded frames into events and events we want
to send into bytes, keeping the per-session tables of :mod:`.session` and
the heartbeat/disown deadlines. Inbound, :meth:`~WorkerProtocol.receive`
returns each frame's event (h11's style); :attr:`~WorkerProtocol.read_records`
tells a :class:`SessionSink` instead, a whole read's records in one call,
calling a method per invoke, chunk and choke with plain values: the
worker's per-request path builds no event object for them. Time comes in
as numbers (``now``), bytes go out as return values; the asyncio
:class:`~cocaine_http.aio.worker.Worker` owns the socket, the clock and the
handlers.

Lifecycle (PROTOCOL.md §2.4, §3.4)::

    start()       -> handshake + first heartbeat
    A: active after the first heartbeat echo; B: active after the handshake
    tick(now)     -> a heartbeat every ``heartbeat_interval``
    disowned(now) -> True once no frame arrived for ``disown_timeout`` after
                     the runtime had answered a heartbeat at least once
                     (the observed precaution of §3.4.2); EOF ends the worker
                     regardless
    idle_sessions(now) -> the sessions whose request is still open but that
                     moved in neither direction for ``request_idle_timeout``
    Terminate     -> stop taking sessions, finish, ``send_terminate`` echo

Messages that cannot be honoured (orphan sessions, data after the end, a
type the catalog does not know) become :class:`Ignored` events carrying a
typed error, so the IO layer logs them and keeps serving: the runtime drops
such messages with a warning too (§2.4.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import FrameFormatError, UnexpectedMessageError, UnknownMessageError
from .catalog import B_CONTROL, B_CONTROL_CHANNEL, B_STREAM, A, MessageEncoder

# The events are this module's vocabulary, defined with the runtime's end in
# .events and importable from here too (both ends read the same messages).
from .events import (
    Choke,
    Chunk,
    Error,
    Event,
    Headers,
    Heartbeat,
    Ignored,
    Invoke,
    Oversize,
    RecordReader,
    SessionSink,
    Terminate,
    error_event,
    stream_event,
    tell,
    terminate_event,
)
from .frames import OVERSIZE, Frame, Generation, Record
from .headers import HeaderTable
from .payloads import SplitPayload
from .session import Half, Msg, SessionState
from .wire import as_text

__all__ = [
    "A_SESSION_MESSAGES",
    "B_SESSION_MESSAGES",
    "Choke",
    "Chunk",
    "Error",
    "Event",
    "Headers",
    "Heartbeat",
    "Ignored",
    "Invoke",
    "Oversize",
    "SessionSink",
    "Terminate",
    "WorkerProtocol",
    "error_event",
    "stream_event",
    "tell",
    "terminate_event",
]

#: Session message ids -> the session table's inputs, per generation.
_A_STREAM: dict[int, Msg] = {A.CHUNK: Msg.CHUNK, A.ERROR: Msg.ERROR, A.CHOKE: Msg.CHOKE}
_B_STREAM: dict[int, Msg] = {B_STREAM.WRITE: Msg.CHUNK, B_STREAM.ERROR: Msg.ERROR, B_STREAM.CLOSE: Msg.CHOKE}
#: Public names of the two maps, for the runtime's end of the connection.
A_SESSION_MESSAGES = _A_STREAM
B_SESSION_MESSAGES = _B_STREAM

# Enum members read per message, as module constants (see protocol.session:
# before Python 3.12 each ``Msg.CHUNK`` costs a metaclass __getattr__ call).
_CHUNK, _CHOKE = Msg.CHUNK, Msg.CHOKE
_OPEN, _CLOSED = Half.OPEN, Half.CLOSED
_GEN_B = Generation.B
_A_INVOKE, _A_HEARTBEAT, _A_TERMINATE = int(A.INVOKE), int(A.HEARTBEAT), int(A.TERMINATE)
_A_CHUNK, _A_CHOKE = int(A.CHUNK), int(A.CHOKE)
_B_HEARTBEAT, _B_TERMINATE = int(B_CONTROL.HEARTBEAT), int(B_CONTROL.TERMINATE)
_B_INVOKE, _B_WRITE, _B_CLOSE = int(B_STREAM.INVOKE), int(B_STREAM.WRITE), int(B_STREAM.CLOSE)
#: idle_sessions sweeps this many times per request_idle_timeout.
_SWEEPS = 4
#: Event names kept decoded (an app has a few): a bound, so a runtime that
#: sends ever new names cannot grow the table without end.
_EVENT_NAMES = 256


class _Collector:
    """The sink behind :meth:`WorkerProtocol.receive`: keeps the one event a record means."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: Event | None = None

    def on_invoke(self, session: int, event: str, headers: Headers) -> None:
        self.event = Invoke(session, event, headers)

    def on_chunk(self, session: int, data: bytes | SplitPayload, headers: Headers | None) -> None:
        self.event = Chunk(session, data, headers or [])

    def on_choke(self, session: int) -> None:
        self.event = Choke(session)

    def on_event(self, event: Event) -> None:
        self.event = event


class _Raise:
    """The reader of :meth:`WorkerProtocol.read_record`: a record that failed raises."""

    closed = False

    def record_failed(self, record: Record) -> None:
        raise  # the exception being handled (called from its except)


_RAISE = _Raise()


class WorkerProtocol:
    """State of one worker's connection to its runtime."""

    def __init__(
        self,
        generation: Generation | str,
        uuid: str,
        *,
        heartbeat_interval: float = 5.0,
        disown_timeout: float = 30.0,
        request_idle_timeout: float = 0.0,
    ) -> None:
        self.generation = Generation.parse(generation)
        self.uuid = uuid
        self.heartbeat_interval = heartbeat_interval
        self.disown_timeout = disown_timeout
        #: 0: never. Otherwise a session is idle once nothing moved on it in this
        #: many seconds; it is found within 1.25 times that (see idle_sessions).
        self.request_idle_timeout = request_idle_timeout
        self._sweep_every = request_idle_timeout / _SWEEPS if request_idle_timeout > 0 else 0.0
        self._next_sweep = float("inf")
        self._epoch = 0  # sweeps done; a session's ``seen`` is the epoch it last moved in
        self.encoder = MessageEncoder(self.generation)
        self.sessions: dict[int, SessionState] = {}
        self.active = False
        self.terminating = False
        self.rx_headers = HeaderTable()
        #: Each invoke names its event as raw bytes: decoded once per name, not per invoke.
        self._event_names: dict[bytes | str, str] = {}
        self._max_channel = B_CONTROL_CHANNEL  # B: the handshake opened channel 1
        self._next_heartbeat = 0.0
        self._last_seen = 0.0
        self._armed = False  # disown timer armed once the runtime answered a heartbeat
        #: ``read_records(records, now, sink, owner)``: apply every record of
        #: one read (a decoder's ``records()``) and tell *sink* what each
        #: means. The worker's own path: one call per read, not per frame, and
        #: the session messages go to the sink's methods without an event
        #: object in between (:meth:`receive` is this with a sink that keeps
        #: the event). *owner* (:class:`~.events.RecordReader`) stops the read
        #: and is told a record that raised. Bound to the generation's reader
        #: once, here.
        self.read_records: Callable[[Iterable[Record], float, SessionSink, RecordReader], None] = (
            self._read_a if self.generation is Generation.A else self._read_b
        )

    # -- lifecycle -----------------------------------------------------------
    def start(self, now: float) -> bytes:
        """Handshake, then a heartbeat at once (A activates on it)."""
        self._next_heartbeat = now + self.heartbeat_interval
        self._last_seen = now
        if self._sweep_every:
            self._next_sweep = now + self._sweep_every
        if self.generation is Generation.B:
            self.active = True
        return self.encoder.handshake(self.uuid) + self.encoder.heartbeat()

    def tick(self, now: float) -> bytes:
        """A heartbeat if one is due, else ``b""``."""
        if now < self._next_heartbeat:
            return b""
        self._next_heartbeat = now + self.heartbeat_interval
        return self.encoder.heartbeat()

    def disowned(self, now: float) -> bool:
        return self._armed and now - self._last_seen >= self.disown_timeout

    def next_deadline(self) -> float:
        """When :meth:`tick`, :meth:`disowned` or :meth:`idle_sessions` next has something to say."""
        if self._armed:
            return min(self._next_heartbeat, self._last_seen + self.disown_timeout, self._next_sweep)
        return min(self._next_heartbeat, self._next_sweep)

    def idle_sessions(self, now: float, *, paused: bool = False) -> list[int]:
        """Sessions whose request has not ended and on which nothing moved, in
        either direction, for ``request_idle_timeout`` seconds, for the caller
        to fail; ``[]`` between sweeps. A reported session's clock restarts:
        what the runtime still sends for it is taken quietly, and if it stays
        idle for another period after its answer it is forgotten here.

        Time is counted in sweeps, every quarter of the limit: a session is
        stamped with the sweep count whenever it moves (one integer store on
        the per-chunk path, no clock), and is idle once five sweeps passed
        without a stamp, i.e. after between 1 and 1.25 times the limit.
        *paused*: the caller is holding reading back, so silence proves
        nothing; the sweep is put off and nobody ages.
        """
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self._sweep_every
        if paused:
            return []
        self._epoch = epoch = self._epoch + 1
        stale = epoch - _SWEEPS - 1
        idle = []
        sessions = self.sessions
        for s, state in list(sessions.items()):
            if state.seen > stale or state.recv_half is not _OPEN:
                continue
            if state.send_half is _CLOSED:  # answered (or failed) already: nothing to tell
                del sessions[s]
            else:
                state.seen = epoch
                idle.append(s)
        return idle

    # -- inbound -------------------------------------------------------------
    def receive(self, frame: Frame, now: float) -> Event:
        """The event a decoded frame means; *now* is when it arrived."""
        return self.receive_record((frame.session, frame.type, frame.args, frame.headers), now)

    def receive_record(self, record: Record, now: float) -> Event:
        """:meth:`receive` for a frame as a record (a decoder's ``records()``)."""
        collector = _Collector()
        self.read_record(record, now, collector)
        event = collector.event
        assert event is not None, "every record is told as exactly one event"
        return event

    def read_record(self, record: Record, now: float, sink: SessionSink) -> None:
        """:attr:`read_records` for one record, whose errors are raised."""
        self.read_records((record,), now, sink, _RAISE)

    def _read_a(self, records: Iterable[Record], now: float, sink: SessionSink, owner: RecordReader) -> None:
        sessions = self.sessions
        for record in records:
            self._last_seen = now
            try:
                s, t, args, _ = record
                # The hot paths, inline: a chunk on an open session, then the
                # end of one. The table keeps an open half open on a chunk and
                # closes it on a choke (both generations); anything else goes
                # through the table (_other_a). bench/worker_floor.py
                # --callgrind, A, W256 16B: 89.4K instr/req with these two
                # branches; 100.2K through stream_event, 93.9K through one
                # table-driven method shared with _read_b (no event object either).
                if (
                    t == _A_CHUNK
                    and (state := sessions.get(s)) is not None
                    and state.recv_half is _OPEN
                    and len(args) == 1
                    and type(args[0]) is bytes
                ):
                    state.seen = self._epoch
                    sink.on_chunk(s, args[0], None)
                elif t == _A_CHOKE and (state := sessions.get(s)) is not None and state.recv_half is _OPEN:
                    state.recv_half = _CLOSED
                    if state.send_half is _CLOSED:
                        del sessions[s]
                    sink.on_choke(s)
                elif t == _A_INVOKE:
                    self._invoke(s, args, [], sink)
                else:
                    self._other_a(s, t, args, sink)
            except Exception:
                owner.record_failed(record)
            if owner.closed:
                return

    def _other_a(self, s: int, t: int, args: list[Any], sink: SessionSink) -> None:
        msg = _A_STREAM.get(t)  # chunk, choke, error
        if msg is not None:
            self._touch(s)
            tell(sink, stream_event(self.sessions, s, msg, args))
        elif t == _A_HEARTBEAT and s == 0:
            self._armed = True
            self.active = True
            sink.on_event(Heartbeat())
        elif t == _A_TERMINATE and s == 0:
            sink.on_event(self._terminate(args))
        elif t == OVERSIZE:
            self._touch(s)
            sink.on_event(Oversize(s, args[0], args[1]))
        else:
            sink.on_event(Ignored(s, UnknownMessageError(f"unknown message type {t} on session {s}")))

    def _read_b(self, records: Iterable[Record], now: float, sink: SessionSink, owner: RecordReader) -> None:
        sessions = self.sessions
        for record in records:
            self._last_seen = now
            try:
                ch, t, args, entries = record
                if entries is None:  # most frames carry no headers
                    headers: Headers = []
                else:
                    try:
                        headers = self.rx_headers.decode(entries)
                    except FrameFormatError:
                        headers = []  # informational; a bad one must not end the session
                # The hot paths, inline, as in _read_a. bench/worker_floor.py
                # --callgrind, B, W256 16B: 92.4K instr/req with these two
                # branches; 103.6K through stream_event, 97.2K through one
                # table-driven method.
                if ch <= self._max_channel and ch != B_CONTROL_CHANNEL:
                    if (
                        t == _B_WRITE
                        and (state := sessions.get(ch)) is not None
                        and state.recv_half is _OPEN
                        and len(args) == 1
                        and type(args[0]) is bytes
                    ):
                        state.seen = self._epoch
                        sink.on_chunk(ch, args[0], headers)
                    elif (
                        t == _B_CLOSE and (state := sessions.get(ch)) is not None and state.recv_half is _OPEN
                    ):
                        state.recv_half = _CLOSED
                        if state.send_half is _CLOSED:
                            del sessions[ch]
                        sink.on_choke(ch)
                    else:
                        self._stream_b(ch, t, args, headers, sink)
                elif t == _B_INVOKE and ch > self._max_channel:
                    self._max_channel = ch
                    self._invoke(ch, args, headers, sink)
                else:
                    self._control_b(ch, t, args, sink)
            except Exception:
                owner.record_failed(record)
            if owner.closed:
                return

    def _control_b(self, ch: int, t: int, args: list[Any], sink: SessionSink) -> None:
        """A message on the control channel, or one that opens a channel but is no invoke."""
        if ch == B_CONTROL_CHANNEL:
            if t == _B_HEARTBEAT:
                self._armed = True
                sink.on_event(Heartbeat())
            elif t == _B_TERMINATE:
                sink.on_event(self._terminate(args))
            else:
                sink.on_event(Ignored(ch, UnknownMessageError(f"unknown control message type {t}")))
        else:
            self._max_channel = ch
            sink.on_event(Ignored(ch, UnknownMessageError(f"channel {ch} opened with type {t}, not invoke")))

    def _stream_b(self, ch: int, t: int, args: list[Any], headers: Headers, sink: SessionSink) -> None:
        msg = _B_STREAM.get(t)
        if t == OVERSIZE:
            self._touch(ch)
            sink.on_event(Oversize(ch, args[0], args[1]))
        elif msg is None:
            sink.on_event(Ignored(ch, UnknownMessageError(f"unknown message type {t} on channel {ch}")))
        else:
            self._touch(ch)
            tell(sink, stream_event(self.sessions, ch, msg, args, headers))

    def _terminate(self, args: list[Any]) -> Event:
        self.terminating = True
        return terminate_event(args, default_code=1)

    def _invoke(self, s: int, args: list[Any], headers: Headers, sink: SessionSink) -> None:
        if s == 0 or (s == B_CONTROL_CHANNEL and self.generation is _GEN_B):
            sink.on_event(Ignored(s, UnexpectedMessageError(f"invoke on the control session {s}")))
        elif s in self.sessions:
            already = UnexpectedMessageError(f"invoke for session {s}, which is already open")
            sink.on_event(Ignored(s, already))
        elif len(args) < 1 or not isinstance(args[0], (bytes, str)):
            sink.on_event(Ignored(s, FrameFormatError(f"invoke on session {s} has no event name")))
        else:
            state = self.sessions[s] = SessionState(self.generation, s)
            state.seen = self._epoch
            raw = args[0]
            name = self._event_names.get(raw)
            if name is None:
                name = as_text(raw)
                if len(self._event_names) < _EVENT_NAMES:
                    self._event_names[raw] = name
            sink.on_invoke(s, name, headers)

    def _touch(self, s: int) -> None:
        state = self.sessions.get(s)
        if state is not None:
            state.seen = self._epoch

    # -- outbound ------------------------------------------------------------
    def _state(self, session: int) -> SessionState:
        state = self.sessions.get(session)
        if state is None:
            # A session we never saw (or already finished both ways): as in
            # the table, sending on it is a local error, nothing goes out.
            state = SessionState(self.generation, session)
            state.send_half = state.recv_half = _CLOSED
        return state

    def chunk_header(self, session: int, length: int) -> bytes:
        """State-check a chunk and return its frame header; the payload follows it."""
        state = self._state(session)
        state.send(_CHUNK)
        state.seen = self._epoch  # a session that answers is not idle
        return self.encoder.frame_header(session, length)

    def send_chunk(self, session: int, data: bytes) -> bytes:
        return self.chunk_header(session, len(data)) + data

    def send_choke(self, session: int) -> bytes:
        state = self.sessions.get(session)
        if state is not None and state.send_half is _OPEN and state.recv_half is _CLOSED:
            # The usual end of a session, whose request has ended: the table
            # closes the open half (both generations), and both halves are done.
            # bench/worker_pipeline.py --callgrind, A, 64 per read, 16 B:
            # 83.6K instr/req with this shortcut, 86.2K through the table.
            del self.sessions[session]
            state.send_half = _CLOSED
            return self.encoder.choke(session)
        state = self._state(session)
        state.send(_CHOKE)
        self._forget_if_done(state)
        return self.encoder.choke(session)

    def send_error(self, session: int, code: int | tuple[int, int], message: str) -> bytes:
        """An error that ends our direction: A sends error + the owed choke, B the error alone."""
        state = self._state(session)
        state.send(Msg.ERROR)
        out = self.encoder.error(session, code, message)
        if self.generation is Generation.A:
            state.send(Msg.CHOKE)
            out += self.encoder.choke(session)
        self._forget_if_done(state)
        return out

    def send_terminate(self, code: int, reason: str) -> bytes:
        self.terminating = True
        return self.encoder.terminate(code, reason)

    def can_send(self, session: int) -> bool:
        state = self.sessions.get(session)
        return state is not None and state.can_send(Msg.CHUNK)

    def forget(self, session: int) -> None:
        """Drop *session* whatever its state: nothing more is sent on it, and what
        the runtime still sends on it is an unknown session's."""
        self.sessions.pop(session, None)

    def _forget_if_done(self, state: SessionState) -> None:
        if state.finished:
            self.sessions.pop(state.session, None)
