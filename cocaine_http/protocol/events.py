"""What the frames of a worker connection mean, as events, and who is told them.

Both ends of a worker connection read the same session messages: the
worker (:class:`~.worker.WorkerProtocol`) and the local runtime
(:mod:`cocaine_http.runtime.side`). This module holds what they share: the
event types, :func:`stream_event` (a chunk, error or choke applied to the
session table of :mod:`.session`), and :class:`SessionSink`, the object the
worker's reader tells each frame to instead of returning an event (and
:class:`RecordReader`, whose read it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import FrameFormatError, RemoteProtocolError, UnexpectedMessageError
from .frames import Record
from .payloads import SplitPayload
from .session import Msg, SessionState
from .wire import as_text

__all__ = [
    "Choke",
    "Chunk",
    "Error",
    "Event",
    "Headers",
    "Heartbeat",
    "Ignored",
    "Invoke",
    "Oversize",
    "RecordReader",
    "SessionSink",
    "StreamEvent",
    "Terminate",
    "error_event",
    "stream_event",
    "tell",
    "terminate_event",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Invoke:
    session: int
    event: str
    headers: Headers = field(default_factory=list)


@dataclass(slots=True)
class Chunk:
    session: int
    #: ``bytes``; from the worker's decoder, a large payload may be a
    #: :class:`~.payloads.SplitPayload` (aio/sessions.py decides who gets it so).
    data: bytes | SplitPayload
    headers: Headers = field(default_factory=list)


@dataclass(slots=True)
class Choke:
    session: int


@dataclass(slots=True)
class Error:
    session: int
    code: int
    message: str
    category: int | None = None


@dataclass(slots=True)
class Heartbeat:
    pass


@dataclass(slots=True)
class Terminate:
    code: int
    reason: str


@dataclass(slots=True)
class Ignored:
    """A frame that was dropped; ``error`` says why (log it, keep serving)."""

    session: int
    error: RemoteProtocolError


@dataclass(slots=True)
class Oversize:
    """A frame of *session* over ``max_frame_size``, skipped by the decoder
    (native/README.md, rule 5c): message *type*, a raw of *size* bytes."""

    session: int
    type: int
    size: int


Event = Invoke | Chunk | Choke | Error | Heartbeat | Terminate | Ignored | Oversize
#: What a chunk, error or choke on a session can mean.
StreamEvent = Chunk | Choke | Error | Ignored

_CHUNK, _CHOKE = Msg.CHUNK, Msg.CHOKE

class SessionSink(Protocol):
    """What :attr:`~.worker.WorkerProtocol.read_records` tells as it reads.

    The three messages every session carries get a method each, called
    with plain values; every other event (an error from the runtime, a
    heartbeat, terminate, a dropped message) arrives whole at
    :meth:`on_event`. Chunk *headers* are the decoded pairs (B) or ``None``
    (A, which has none).
    """

    def on_invoke(self, session: int, event: str, headers: Headers) -> None: ...

    def on_chunk(self, session: int, data: bytes | SplitPayload, headers: Headers | None) -> None: ...

    def on_choke(self, session: int) -> None: ...

    def on_event(self, event: Event) -> None: ...


class RecordReader(Protocol):
    """Who a read's records come from (the worker's transport), as
    :meth:`~.worker.WorkerProtocol.read_records` sees it: the read stops once
    it is ``closed``; a record whose reading raised is handed to
    :meth:`record_failed` from inside the ``except`` (log it, or re-raise)."""

    closed: bool

    def record_failed(self, record: Record) -> None: ...


def tell(sink: SessionSink, event: Event) -> None:
    """Hand an event to the *sink* method it belongs to (the opposite of ``receive``'s collector)."""
    if type(event) is Chunk:
        sink.on_chunk(event.session, event.data, event.headers)
    elif type(event) is Choke:
        sink.on_choke(event.session)
    elif type(event) is Invoke:
        sink.on_invoke(event.session, event.event, event.headers)
    else:
        sink.on_event(event)


def stream_event(
    sessions: dict[int, SessionState], s: int, msg: Msg, args: list[Any], headers: Headers | None = None
) -> StreamEvent:
    """Apply an inbound session message to its table and turn it into an event.

    Shared by both ends of a worker connection (the worker's protocol and
    the local runtime's :mod:`cocaine_http.runtime.side`): the rules for a
    chunk, an error or a choke on a session are the same whoever receives
    them. A session whose directions have both finished is forgotten.
    """
    state = sessions.get(s)
    if state is None:
        return Ignored(s, UnexpectedMessageError(f"{msg.label} for unknown session {s}"))
    try:
        state.recv(msg)
    except UnexpectedMessageError as exc:
        return Ignored(s, exc)
    if state.finished:
        sessions.pop(s, None)
    if msg is _CHUNK:
        if len(args) != 1 or not isinstance(args[0], (bytes, str, SplitPayload)):
            return Ignored(s, FrameFormatError(f"chunk on session {s} is not [data]"))
        data = args[0]
        return Chunk(s, data.encode() if isinstance(data, str) else data, headers or [])
    if msg is _CHOKE:
        return Choke(s)
    return error_event(s, args)


def error_event(s: int, args: list[Any]) -> Error | Ignored:
    """``[code, message]`` (A) or ``[[category, code], message]`` (B) as an :class:`Error`."""
    code: Any = args[0] if args else 0
    message = as_text(args[1], "message") if len(args) > 1 and isinstance(args[1], (bytes, str)) else ""
    category = None
    if isinstance(code, list) and len(code) == 2:
        category, code = code
    if type(code) is not int or (category is not None and type(category) is not int):
        return Ignored(s, FrameFormatError(f"error on session {s} has a malformed code {code!r}"))
    return Error(s, code, message, category)


def terminate_event(args: list[Any], default_code: int) -> Terminate:
    """``[code, reason]`` of a terminate, tolerating a missing or odd reason."""
    code = args[0] if args and type(args[0]) is int else default_code
    reason = as_text(args[1], "reason") if len(args) > 1 and isinstance(args[1], (bytes, str)) else ""
    return Terminate(code, reason)
