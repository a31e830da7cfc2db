"""The client side of a service connection, sans IO (PROTOCOL.md §2.5, §3.2, §3.6).

:class:`ServiceProtocol` is one connection's worth of call state: it
allocates session (A) / channel (B) ids from 1, strictly increasing, never
reused; encodes calls in the connection's generation (B: 3-element frames,
or literal headers only); and interprets each reply by the method's
upstream protocol:

* **A** -- every reply is ``chunk* (error choke | choke)`` (ids 4/5/6).
  Chunk blobs of the built-in services are msgpack *inside* the frame
  (double encoding) and are decoded once more; app ``enqueue`` chunks are
  the worker's bytes and are passed through untouched (``decode=False``).
* **B** -- the reply walks the method's upstream graph: ``{}`` terminal,
  ``nil`` stay, a map switch. Primitive methods end with one ``value`` or
  ``error``; streaming ones with ``write*`` then ``close``/``error``; mute
  methods (``logging.emit``) expect nothing, so no state is kept for them.
  Every frame's headers are decoded (the HPACK table must see them all),
  even frames of calls we have abandoned.

What the caller may send next (``write``/``close``/``error`` on app
``enqueue``) follows the dispatch graph the same way: :meth:`ServiceProtocol.send`
refuses anything the graph does not allow *now*, and after a terminal
message nothing at all, so no message ever follows a terminal one.

The methods themselves -- graphs, :class:`MethodSpec`, resolve replies --
are described by :mod:`.methods`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack

from ..errors import (
    ChannelClosedError,
    ErrorCategory,
    LocalProtocolError,
    ProtocolCode,
    RemoteProtocolError,
    ServiceError,
    UnexpectedMessageError,
)
from .frames import Frame, Generation
from .headers import HeaderTable, literal
from .methods import TERMINAL, Kind, MalformedReplyError, MethodSpec, Node
from .wire import MAX_MAP_LEN, PACKER_OPTIONS, as_text, reject_ext

__all__ = [
    "CallMode",
    "CallState",
    "Reply",
    "ServiceProtocol",
    "error_from_args",
]


# -- calls -------------------------------------------------------------------


class CallMode(enum.IntEnum):
    UNARY = 0  # collect, deliver one value (or the error) at the end
    STREAM = 1  # deliver every message
    DISCARD = 2  # keep the bookkeeping, deliver nothing (A logging.emit)


class Reply(enum.IntEnum):
    """What :meth:`ServiceProtocol.receive` asks the IO layer to deliver."""

    DATA = 0  # one stream item
    ERROR = 1  # an exception (ServiceError, or a RemoteProtocolError about the reply)
    END = 2  # the stream ended normally
    VALUE = 3  # the unary result


_UNARY, _STREAM, _DISCARD = CallMode.UNARY, CallMode.STREAM, CallMode.DISCARD
_R_DATA, _R_ERROR, _R_END, _R_VALUE = Reply.DATA, Reply.ERROR, Reply.END, Reply.VALUE
_DATA, _ERROR = Kind.DATA, Kind.ERROR
_unpack_blob = functools.partial(
    msgpack.unpackb, raw=True, strict_map_key=False, ext_hook=reject_ext, max_map_len=MAX_MAP_LEN
)


class CallState:
    """One open call: where each direction is in its graph, and what it collected."""

    __slots__ = ("delivered", "id", "method", "mode", "recv", "send", "sink", "values")

    def __init__(self, cid: int, method: MethodSpec, mode: CallMode) -> None:
        self.id = cid
        self.method = method
        self.mode = mode
        self.recv: Node = method.upstream
        self.send: Node = method.dispatch
        self.values: list[Any] | None = None  # UNARY: earlier data messages, when there are several
        self.delivered = False  # the final outcome (value or error) has been handed out
        #: Owned by the IO layer (a future, a stream); opaque here.
        self.sink: Any = None

    def __repr__(self) -> str:
        return (
            f"<CallState {self.id} {self.method.name} {self.mode.name} recv={self.recv!r} send={self.send!r}>"
        )


def error_from_args(generation: Generation, args: Any, service: str, method: str) -> CocaineErrorLike:
    """``[code, message]`` (A, B0) or ``[[category, code], message]`` (B) -> ServiceError."""
    category: int | None = None
    code: Any = None
    message: Any = b""
    if isinstance(args, list) and args:
        head = args[0]
        if isinstance(head, list) and generation is Generation.B and len(head) == 2:
            category, code = head
        else:
            code = head
        if len(args) > 1:
            message = args[1]
    if type(code) is not int or (category is not None and type(category) is not int):
        return MalformedReplyError(
            f"{service}.{method}: malformed error payload {args!r:.80}", service=service, method=method
        )
    try:
        text = as_text(message, "message")
    except TypeError:
        text = repr(message)
    return ServiceError(text, code=code, category=category, service=service, method=method)


CocaineErrorLike = ServiceError | RemoteProtocolError


class ServiceProtocol:
    """Call state of one connection to one service (see the module docstring).

    Ids start at 1 per connection: make a new instance for every connection.
    ``calls`` maps open ids to :class:`CallState`; a call leaves it when both
    directions have finished or when it is abandoned, so an empty map means
    no leaked session state.
    """

    __slots__ = ("_is_a", "_pack", "_rx_headers", "calls", "generation", "ignored", "last_id", "service")

    def __init__(self, generation: Generation, service: str = "service") -> None:
        self.generation = generation
        self.service = service
        self.last_id = 0
        self.calls: dict[int, CallState] = {}
        self.ignored = 0  # frames for calls no longer (or never) open
        self._rx_headers = HeaderTable() if generation is Generation.B else None
        self._is_a = generation is Generation.A
        # one packer per connection (the dialect of wire.packb): reused, never shared across threads
        self._pack: Callable[[Any], bytes] = msgpack.Packer(**PACKER_OPTIONS).pack

    def __repr__(self) -> str:
        return (
            f"<ServiceProtocol {self.service} {self.generation.value} "
            f"last_id={self.last_id} open={len(self.calls)}>"
        )

    # -- sending -------------------------------------------------------------
    def _encode(self, cid: int, type_id: int, args: Sequence[Any], headers: Iterable[tuple[Any, Any]] | None,
                what: str) -> bytes:
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"{what}: arguments must be a list, got {type(args).__name__}")
        try:
            if self._is_a:
                if headers:
                    raise LocalProtocolError(f"{what}: generation A frames cannot carry headers")
                return self._pack([type_id, cid, args])
            if headers:
                return self._pack([cid, type_id, args, [literal(n, v) for n, v in headers]])
            return self._pack([cid, type_id, args])
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"{what}: cannot encode arguments: {exc}") from None

    def open(
        self,
        method: MethodSpec,
        args: Sequence[Any],
        *,
        mode: CallMode | None = None,
        headers: Iterable[tuple[Any, Any]] | None = None,
    ) -> tuple[CallState | None, bytes]:
        """Start a call: ``(state, frame bytes)``. ``state`` is ``None`` for a mute method
        with nothing more to send (B ``logging.emit``): no reply will ever come."""
        cid = self.last_id + 1
        if headers is None and type(args) in (list, tuple):  # the common case, kept short
            try:
                data = self._pack([method.index, cid, args] if self._is_a else [cid, method.index, args])
            except (TypeError, ValueError, OverflowError) as exc:
                raise LocalProtocolError(
                    f"{self.service}.{method.name}: cannot encode arguments: {exc}"
                ) from None
        else:
            data = self._encode(cid, method.index, args, headers, f"{self.service}.{method.name}")
        self.last_id = cid  # only consumed once the frame exists
        if method.upstream is TERMINAL and method.dispatch is TERMINAL:
            return None, data
        if mode is None:
            mode = _STREAM if method.streaming else _UNARY
        st = CallState(cid, method, mode)
        self.calls[cid] = st
        return st, data

    def send(self, st: CallState, name: str, args: Sequence[Any] = (),
             headers: Iterable[tuple[Any, Any]] | None = None) -> bytes:
        """The next dispatch message of an open call, by name (``write``, ``close``, ``error``)."""
        what = f"{self.service}.{st.method.name}"
        if self.calls.get(st.id) is not st or st.send is TERMINAL:
            raise ChannelClosedError(f"{what}: the call accepts no more messages (session {st.id})")
        t = st.send.by_name.get(name)
        if t is None:
            allowed = ", ".join(st.send.by_name) or "nothing"
            raise LocalProtocolError(f"{what}: cannot send {name!r} now (allowed: {allowed})")
        data = self._encode(st.id, t.type_id, args, headers, what)
        if t.next is not None:
            st.send = t.next
        if st.send is TERMINAL and st.recv is TERMINAL:
            del self.calls[st.id]
        return data

    def can_send(self, st: CallState, name: str) -> bool:
        return self.calls.get(st.id) is st and name in st.send.by_name

    def abandon(self, st: CallState, reason: str = "cancelled by the client") -> bytes | None:
        """Forget a call (cancelled, timed out, dropped by its owner).

        Returns the frame that ends our side cleanly when the dispatch graph
        still expects something from us (B): ``close`` if the reply already
        ended, else ``error``; ``None`` when nothing may or need be sent.
        Late replies for the id are ignored afterwards; the id is never reused.
        """
        if self.calls.pop(st.id, None) is None:
            return None
        out = None
        if st.send is not TERMINAL:
            t = None
            if st.recv is TERMINAL:
                t = st.send.by_name.get("close")
            if t is None:
                t = st.send.by_name.get("error")
            if t is not None:
                gave_up = [ErrorCategory.PROTOCOL.value, ProtocolCode.CLOSED_UPSTREAM.value]
                args: list[Any] = [] if t.kind is Kind.END else [gave_up, reason]
                out = self._encode(st.id, t.type_id, args, None, self.service)
            st.send = TERMINAL
        st.delivered = True
        return out

    def lost(self) -> list[CallState]:
        """The connection is gone: every open call, removed from the map."""
        calls = list(self.calls.values())
        self.calls.clear()
        return calls

    # -- receiving -----------------------------------------------------------
    def receive(self, frame: Frame) -> tuple[CallState, Reply, Any] | None:
        """Interpret one frame. Returns ``(call, what, payload)`` to deliver, or ``None``.

        Raises :class:`~cocaine_http.errors.FrameFormatError` only for broken
        headers (the connection must go: the header table is out of sync).
        Everything wrong with one call is delivered to that call as an error.
        """
        if frame.headers is not None and self._rx_headers is not None:
            self._rx_headers.decode(frame.headers)
        st = self.calls.get(frame.session)
        if st is None:
            self.ignored += 1
            return None
        t = st.recv.by_type.get(frame.type)
        if t is None:
            del self.calls[st.id]
            st.send = TERMINAL
            if st.delivered:
                return None
            st.delivered = True
            exc = UnexpectedMessageError(
                f"{self.service}.{st.method.name}: unexpected message type {frame.type} on session {st.id}"
            )
            return st, Reply.ERROR, exc
        nxt = t.next
        if nxt is not None:
            st.recv = nxt
            if nxt is TERMINAL and st.send is TERMINAL:
                del self.calls[st.id]
        if st.delivered:
            return None
        kind = t.kind
        mode = st.mode
        if kind is _DATA:
            args = frame.args
            if self._is_a:
                payload = self._chunk_a(st, args)
                if type(payload) is MalformedReplyError:
                    st.delivered = True
                    return st, _R_ERROR, payload
            else:
                payload = args[0] if len(args) == 1 else (None if not args else tuple(args))
            if mode is _UNARY:
                if st.recv is TERMINAL:
                    st.delivered = True
                    values = st.values
                    if not values:  # the common case: one value message
                        st.values = None
                        return st, _R_VALUE, payload
                    values.append(payload)
                    return st, _R_VALUE, self._collected(st)
                if st.values is None:
                    st.values = [payload]
                else:
                    st.values.append(payload)
                return None
            if mode is _STREAM:
                if st.recv is TERMINAL:
                    st.delivered = True  # a terminal data message (primitive value): item, then end
                return st, _R_DATA, payload
            return None
        if kind is _ERROR:
            st.delivered = True
            if mode is _DISCARD:
                return None
            return st, _R_ERROR, error_from_args(self.generation, frame.args, self.service, st.method.name)
        # END
        st.delivered = True
        if mode is _UNARY:
            return st, _R_VALUE, self._collected(st)
        if mode is _STREAM:
            return st, _R_END, None
        return None

    @staticmethod
    def _collected(st: CallState) -> Any:
        values = st.values
        st.values = None
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def _chunk_a(self, st: CallState, args: list[Any]) -> Any:
        blob = args[0] if len(args) == 1 else None
        if not isinstance(blob, bytes):
            return MalformedReplyError(
                f"{self.service}.{st.method.name}: chunk must carry one raw, got {args!r:.60}",
                service=self.service, method=st.method.name,
            )
        if not st.method.decode:
            return blob
        try:
            return _unpack_blob(blob)
        except (ValueError, TypeError) as exc:  # msgpack's errors subclass ValueError
            return MalformedReplyError(
                f"{self.service}.{st.method.name}: chunk is not msgpack ({exc})",
                service=self.service, method=st.method.name,
            )
