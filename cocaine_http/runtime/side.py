"""The runtime's end of one worker connection, sans-IO.

This module exists so that what the runtime *says* to a worker, and what it
makes of the worker's frames, can be read and tested without processes,
sockets or a loop. :class:`RuntimeSide` turns decoded frames into the events
of :mod:`cocaine_http.protocol.worker` (plus :class:`Handshake`) and encodes
the runtime's messages. Per-session state uses the shared tables of
:mod:`cocaine_http.protocol.session`, "send" meaning runtime to worker.

The IO around it (spawning, the socket, timers) is in
:mod:`~cocaine_http.runtime.slave` and :mod:`~cocaine_http.runtime.engine`.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from typing import Any

from ..errors import (
    B_CLIENT_GONE,
    B_REQUEST_TIMEOUT,
    ChannelClosedError,
    ErrorCategory,
    ErrorCodeA,
    FrameFormatError,
    OverseerCode,
    UnexpectedMessageError,
    UnknownMessageError,
)
from ..protocol.catalog import B_CONTROL, B_CONTROL_CHANNEL, B_STREAM, A, MessageEncoder, raw_header, uint
from ..protocol.frames import Frame, Generation
from ..protocol.headers import HeaderTable, tracing_headers
from ..protocol.session import Msg, SessionState
from ..protocol.wire import as_text, packb
from ..protocol.worker import (
    A_SESSION_MESSAGES,
    B_SESSION_MESSAGES,
    Event,
    Heartbeat,
    Ignored,
    Terminate,
    stream_event,
    terminate_event,
)

__all__ = [
    "A_RESOURCE",
    "B_OVERSEER",
    "B_REQUEST_TIMEOUT",
    "B_SLAVE",
    "CLIENT_GONE_B",
    "Handshake",
    "HeaderFlavour",
    "LateFrame",
    "RuntimeSide",
    "refusal",
]

#: The 0.12.3.x runtime's headers: static indices 80, 81, 82 forced to 8-byte uints (§3.11).
_INDEXED_H0 = b"\x93" + b"".join(b"\xcf" + i.to_bytes(8, "big") for i in (80, 81, 82))
_TRACING = frozenset((b"trace_id", b"span_id", b"parent_id"))

# Error codes the runtime itself uses towards clients (A: bare int; B: category of (category, code)).
A_RESOURCE = ErrorCodeA.RESOURCE_ERROR.value
B_OVERSEER = ErrorCategory.OVERSEER.value
B_SLAVE = ErrorCategory.SLAVE.value
#: B error sent to a worker whose client went away.
CLIENT_GONE_B = B_CLIENT_GONE


def refusal(generation: Generation, what: str, *, queue_full: bool = False) -> tuple[Any, str]:
    """The runtime's error for an event it will not run: A ``(2, what)``
    (resource_error), B ``((0x52FF, 1 | 2), what)`` (overseer: queue full | other)."""
    if generation is Generation.A:
        return (A_RESOURCE, what)
    code = OverseerCode.QUEUE_FULL if queue_full else OverseerCode.POOL_FULL
    return ((B_OVERSEER, code.value), what)


class HeaderFlavour(str, enum.Enum):
    """What a B engine appends to every frame it sends (§3.2.3, §3.11)."""

    NONE = "none"  #: 3-element frames (0.12.0.x)
    INDEXED = "indexed"  #: ``[80, 81, 82]`` packed as ``cf`` uint64s (observed 0.12.3.12)
    LITERAL = "literal"  #: ``[[false, "trace_id", 8x00], ...]`` (0.12.14)


@dataclass(slots=True)
class Handshake:
    uuid: str


class LateFrame(UnexpectedMessageError):
    """B: a frame on a channel that has already ended, typically one the worker sent
    before it saw the runtime's error. Dropped quietly."""


class RuntimeSide:
    """Decodes what a worker sends and encodes what the runtime sends, for one connection."""

    def __init__(
        self, generation: Generation | str, headers: HeaderFlavour | str = HeaderFlavour.NONE
    ) -> None:
        self.generation = Generation.parse(generation)
        self.flavour = HeaderFlavour(headers)
        self.encoder = MessageEncoder(self.generation)
        self.sessions: dict[int, SessionState] = {}
        self.handshaken = False
        self.rx_headers = HeaderTable()
        self._max_channel = B_CONTROL_CHANNEL
        if self.generation is Generation.A or self.flavour is HeaderFlavour.NONE:
            self._h: bytes | None = None
        elif self.flavour is HeaderFlavour.INDEXED:
            self._h = _INDEXED_H0
        else:
            self._h = packb(tracing_headers())

    # -- inbound ---------------------------------------------------------------
    def receive(self, f: Frame) -> Handshake | Event:
        """The worker's next message as an event: the handshake, a control message, or a
        session's chunk, choke or error (:func:`~cocaine_http.protocol.worker.stream_event`),
        or :class:`Ignored` with the reason."""
        a = self.generation is Generation.A
        if not a:
            with contextlib.suppress(FrameFormatError):  # headers are informational
                self.rx_headers.decode(f.headers)
        if not self.handshaken:
            # The runtime reads the first message as the handshake (A does not even check its id).
            if (a or (f.session == B_CONTROL_CHANNEL and f.type == B_CONTROL.HANDSHAKE)) and (
                len(f.args) >= 1 and isinstance(f.args[0], (bytes, str))
            ):
                self.handshaken = True
                return Handshake(as_text(f.args[0], "uuid"))
            return Ignored(f.session, FrameFormatError("the first message is not a handshake"))
        t, s = f.type, f.session
        if a:
            if s == 0 and t == A.HEARTBEAT:
                return Heartbeat()
            if s == 0 and t == A.TERMINATE:
                return self._terminate(f.args)
            kinds = A_SESSION_MESSAGES
        else:
            if s == B_CONTROL_CHANNEL:
                if t == B_CONTROL.HEARTBEAT:
                    return Heartbeat()
                if t == B_CONTROL.TERMINATE:
                    return self._terminate(f.args)
                return Ignored(s, UnknownMessageError(f"unknown control message {t}"))
            kinds = B_SESSION_MESSAGES
        msg = kinds.get(t)
        if msg is None:
            return Ignored(s, UnknownMessageError(f"unknown message type {t} on session {s}"))
        if s not in self.sessions and not a and B_CONTROL_CHANNEL < s <= self._max_channel:
            return Ignored(s, LateFrame(f"{msg.label} on channel {s}, which has ended"))
        return stream_event(self.sessions, s, msg, f.args)

    def _terminate(self, args: list[Any]) -> Terminate:
        return terminate_event(args, default_code=0)

    def _forget_if_done(self, state: SessionState) -> None:
        if state.finished:
            self.sessions.pop(state.session, None)

    # -- outbound --------------------------------------------------------------
    def _frame(self, session: int, type_id: int, args: list[Any]) -> bytes:
        if self._h is None:
            return self.encoder.frame(session, type_id, args)
        return b"\x94" + uint(session) + uint(type_id) + packb(args) + self._h

    def _headers(self, extra: list[tuple[bytes, bytes]] | None) -> bytes | None:
        """The headers element: this flavour's tracing headers, plus *extra* (a
        caller's, forwarded) as ``[false, name, value]`` literals, which never
        touch the worker's dynamic table. The caller's tracing replaces ours."""
        if not extra or self.generation is Generation.A:
            return self._h
        literals = [packb([False, name, value]) for name, value in extra]
        own = self._h
        if own is None or any(name in _TRACING for name, _ in extra):
            return _array_header(len(literals)) + b"".join(literals)
        # own is a fixarray of three entries (H0 literal or indexed): extend it
        return _array_header(3 + len(literals)) + own[1:] + b"".join(literals)

    def heartbeat(self) -> bytes:
        """The echo of a worker heartbeat (B: the primitive ``value`` of the control channel)."""
        if self.generation is Generation.A:
            return self.encoder.heartbeat()
        return self._frame(B_CONTROL_CHANNEL, B_CONTROL.HEARTBEAT, [])

    def terminate(self, code: int, reason: str) -> bytes:
        if self.generation is Generation.A:
            return self.encoder.terminate(code, reason)
        return self._frame(B_CONTROL_CHANNEL, B_CONTROL.TERMINATE, [int(code), reason])

    def next_channel(self) -> int:
        """B: the next invocation channel on this connection (2, 3, ...)."""
        self._max_channel += 1
        return self._max_channel

    def invoke(self, session: int, event: str, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
        """Open *session*; B sends *headers* (a caller's) with the invoke."""
        if session in self.sessions:
            raise ValueError(f"session {session} is already open")
        self.sessions[session] = SessionState(self.generation, session)
        if self.generation is Generation.A:
            return self.encoder.invoke(session, event)
        self._max_channel = max(self._max_channel, session)
        h = self._headers(headers)
        if h is not self._h and h is not None:
            return b"\x94" + uint(session) + uint(B_STREAM.INVOKE) + packb([event]) + h
        return self._frame(session, B_STREAM.INVOKE, [event])

    def _state(self, session: int) -> SessionState:
        state = self.sessions.get(session)
        if state is None:
            raise ChannelClosedError(f"session {session} is finished")
        return state

    def is_open(self, session: int) -> bool:
        """Whether *session* still has a direction open (the worker's or ours)."""
        return session in self.sessions

    def chunk(
        self,
        session: int,
        data: bytes | bytearray | memoryview,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> list[bytes | bytearray | memoryview]:
        """A chunk as parts (header, payload[, headers]) so a large payload is not
        copied; B sends *headers* (a caller's) with it."""
        self._state(session).send(Msg.CHUNK)
        h = self._headers(headers) if headers else self._h
        if h is None:
            return [self.encoder.frame_header(session, len(data)), data]
        return [b"\x94" + uint(session) + b"\x00\x91" + raw_header(len(data)), data, h]

    def choke(self, session: int) -> bytes:
        state = self._state(session)
        state.send(Msg.CHOKE)
        self._forget_if_done(state)
        if self._h is None:
            return self.encoder.choke(session)
        return self._frame(session, B_STREAM.CLOSE, [])

    def error(self, session: int, code: int | tuple[int, int], message: str) -> bytes:
        """An error to the worker: A error + choke; B the terminal error, which ends the
        channel for both sides.

        In A the worker still owes its choke, and the session lives until it
        comes (§2.4.4). In B the runtime's error is what it sends "to both
        sides" on a client error or timeout (§3.3); the worker sends nothing
        more on the channel (docs/worker.md), so it is forgotten here and now:
        whatever the worker had already sent is dropped as a :class:`LateFrame`.
        """
        state = self._state(session)
        state.send(Msg.ERROR)
        if self.generation is Generation.A:
            out = self.encoder.error(session, code, message)
            state.send(Msg.CHOKE)
            out += self.encoder.choke(session)
            self._forget_if_done(state)
            return out
        if self._h is None:
            out = self.encoder.error(session, code, message)
        else:
            cat, c = code if isinstance(code, tuple) else (42, code)
            out = self._frame(session, B_STREAM.ERROR, [[int(cat), int(c)], message])
        self.sessions.pop(session, None)
        return out

    def can_send(self, session: int) -> bool:
        state = self.sessions.get(session)
        return state is not None and state.can_send(Msg.CHUNK)

    def close_if_open(self, session: int) -> bytes:
        """A: the choke the runtime sends back when the worker choked first (§2.4.4)."""
        state = self.sessions.get(session)
        if state is not None and state.can_send(Msg.CHOKE):
            return self.choke(session)
        return b""


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
