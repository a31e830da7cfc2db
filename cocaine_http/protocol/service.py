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

The resolve reply parsers (:func:`parse_resolve`) check every key and type
and raise :class:`ResolveFormatError`, naming the service, on garbage.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import (
    ChannelClosedError,
    LocalProtocolError,
    MethodNotFoundError,
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
    UnexpectedMessageError,
)
from .catalog import A
from .definitions import GRAPHS_B, TABLES_A
from .frames import Frame, Generation
from .headers import HeaderTable, literal
from .wire import MAX_MAP_LEN, PACKER_OPTIONS, as_text, reject_ext

__all__ = [
    "A_STREAMING_DEFAULT",
    "CONTROL_IDS_START",
    "TERMINAL",
    "CallMode",
    "CallState",
    "MalformedReplyError",
    "MethodNotFound",
    "MethodSpec",
    "Node",
    "Reply",
    "ResolveFormatError",
    "Resolved",
    "ServiceProtocol",
    "Transition",
    "build_methods_a",
    "build_methods_b",
    "compile_graph",
    "error_from_args",
    "parse_resolve",
    "resolve_error",
    "static_methods",
]

#: B 0.12.14 numbers its transport control messages (revoke, settings, ping,
#: goaway) down from 65535 (§3.2.2). They are not methods: skipped.
CONTROL_IDS_START = 0xFFFC
#: Graphs from the wire deeper than this are refused (they are 2-3 deep in practice).
MAX_GRAPH_DEPTH = 16
#: In A the method table says nothing about reply shapes. App ``enqueue`` is
#: the one streaming method of the standard services; its chunks are the
#: worker's own bytes (§2.5.1), so they are not msgpack-decoded.
A_STREAMING_DEFAULT = frozenset({"enqueue"})


class MalformedReplyError(RemoteProtocolError):
    """A reply whose payload does not have the shape its method promises."""

    def __init__(self, message: str = "", *, service: str | None = None, method: str | None = None) -> None:
        super().__init__(message)
        self.service = service
        self.method = method


class ResolveFormatError(MalformedReplyError):
    """The locator answered a resolve with something that is not a resolve result."""


class MethodNotFound(MethodNotFoundError, AttributeError):
    """:class:`~cocaine_http.errors.MethodNotFoundError` that is also an ``AttributeError``,
    so ``getattr(service, "nosuch", None)`` and ``hasattr`` behave."""


# -- graphs ------------------------------------------------------------------


class Kind(enum.IntEnum):
    DATA = 0  # value / write / chunk: carries a payload
    ERROR = 1
    END = 2  # close / choke: no payload


@dataclass(slots=True, eq=False)
class Transition:
    type_id: int
    name: str
    kind: Kind
    next: Node | None  # None: stay in the same node (``nil`` in the graph)


class Node:
    """One state of a protocol graph: what may arrive (or be sent) next."""

    __slots__ = ("by_name", "by_type")

    def __init__(self) -> None:
        self.by_type: dict[int, Transition] = {}
        self.by_name: dict[str, Transition] = {}

    @property
    def terminal(self) -> bool:
        return not self.by_type

    def __repr__(self) -> str:
        return "<Node " + ", ".join(f"{t.type_id}:{t.name}" for t in self.by_type.values()) + ">"


#: The shared terminal node: nothing more in this direction.
TERMINAL = Node()


def _kind(name: str, terminal: bool) -> Kind:
    if name == "error":
        return Kind.ERROR
    if terminal and name in ("close", "choke"):
        return Kind.END
    return Kind.DATA


def compile_graph(graph: Any, *, what: str = "graph", _depth: int = 0) -> Node:
    """``{type: [name, subgraph]}`` (or ``[name, dispatch, upstream]`` entries
    at the root) -> :class:`Node`. ``{}``/``None`` -> :data:`TERMINAL`.

    Raises :class:`ValueError` with a description on malformed input; the
    resolve parser turns that into :class:`ResolveFormatError`.
    """
    if graph is None or (isinstance(graph, dict) and not graph):
        return TERMINAL
    if not isinstance(graph, dict):
        raise ValueError(f"{what} must be a map, got {type(graph).__name__}")
    if _depth > MAX_GRAPH_DEPTH:
        raise ValueError(f"{what} is nested deeper than {MAX_GRAPH_DEPTH}")
    node = Node()
    for key, entry in graph.items():
        if type(key) is not int or key < 0:
            raise ValueError(f"{what} key {key!r:.40} is not a message id")
        if key >= CONTROL_IDS_START:
            continue
        if not isinstance(entry, list) or len(entry) < 2:
            raise ValueError(f"{what} entry {key} must be [name, subgraph]")
        name = _name(entry[0], f"{what} entry {key}")
        sub = entry[1]
        nxt: Node | None
        if sub is None:
            nxt = None
        else:
            nxt = compile_graph(sub, what=f"{what}/{name}", _depth=_depth + 1)
        t = Transition(key, name, _kind(name, nxt is TERMINAL), nxt)
        node.by_type[key] = t
        node.by_name.setdefault(name, t)
    return node


def _name(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: name is not UTF-8") from None
    if isinstance(value, str):
        return value
    raise ValueError(f"{what}: name must be a string, got {type(value).__name__}")


def _a_upstream() -> Node:
    errored = Node()
    choke = Transition(A.CHOKE, "choke", Kind.END, TERMINAL)
    errored.by_type[A.CHOKE] = choke
    errored.by_name["choke"] = choke
    node = Node()
    for t in (
        Transition(A.CHUNK, "chunk", Kind.DATA, None),
        Transition(A.ERROR, "error", Kind.ERROR, errored),
        Transition(A.CHOKE, "choke", Kind.END, TERMINAL),
    ):
        node.by_type[t.type_id] = t
        node.by_name[t.name] = t
    return node


#: Every A reply: ``chunk*`` then ``choke``, or ``error`` then ``choke``.
A_UPSTREAM = _a_upstream()


def _primitive_like(node: Node) -> bool:
    """One message ends the reply (B ``value``/``error``)."""
    return not node.terminal and all(t.next is TERMINAL for t in node.by_type.values())


# -- methods -----------------------------------------------------------------


@dataclass(slots=True, eq=False)
class MethodSpec:
    """One callable method of a resolved service."""

    name: str
    index: int
    dispatch: Node  # what the caller may send after the call (TERMINAL: nothing)
    upstream: Node  # what comes back (TERMINAL: mute)
    streaming: bool  # the caller gets a stream rather than one value
    decode: bool = True  # A only: msgpack-decode chunk blobs

    @property
    def mute(self) -> bool:
        return self.upstream is TERMINAL

    def __repr__(self) -> str:
        shape = "mute" if self.mute else "streaming" if self.streaming else "unary"
        return f"<MethodSpec {self.index}:{self.name} {shape}>"


def build_methods_a(
    table: Any,
    *,
    streaming: Collection[str] = A_STREAMING_DEFAULT,
    raw: Collection[str] | None = None,
    what: str = "method table",
) -> dict[str, MethodSpec]:
    """An A ``{index: name}`` table -> ``{name: MethodSpec}``.

    *streaming* names methods whose callers get a stream; *raw* methods keep
    their chunk blobs undecoded (default: app ``enqueue``, whose chunks are
    the worker's bytes; every other method's chunks are msgpack).
    """
    if not isinstance(table, dict):
        raise ValueError(f"{what} must be a map, got {type(table).__name__}")
    raw = A_STREAMING_DEFAULT if raw is None else raw
    out: dict[str, MethodSpec] = {}
    for key, value in table.items():
        if type(key) is not int or key < 0:
            raise ValueError(f"{what} key {key!r:.40} is not a method index")
        name = _name(value, f"{what} entry {key}")
        if name in out:
            raise ValueError(f"{what} lists method {name!r} twice")
        out[name] = MethodSpec(name, key, TERMINAL, A_UPSTREAM, name in streaming, name not in raw)
    return out


def build_methods_b(graph: Any, *, streaming: Collection[str] = (), what: str = "protocol graph") -> dict[str, MethodSpec]:
    """A B root graph ``{index: [name, dispatch, upstream]}`` -> ``{name: MethodSpec}``.

    A method is streaming when the caller may keep sending (non-empty
    dispatch) or the reply is more than one message; *streaming* forces it.
    Ids from :data:`CONTROL_IDS_START` up are transport control, not methods.
    """
    if not isinstance(graph, dict):
        raise ValueError(f"{what} must be a map, got {type(graph).__name__}")
    out: dict[str, MethodSpec] = {}
    for key, entry in graph.items():
        if type(key) is not int or key < 0:
            raise ValueError(f"{what} key {key!r:.40} is not a method index")
        if key >= CONTROL_IDS_START:
            continue
        if not isinstance(entry, list) or len(entry) != 3:
            raise ValueError(f"{what} entry {key} must be [name, dispatch, upstream]")
        name = _name(entry[0], f"{what} entry {key}")
        if name in out:
            raise ValueError(f"{what} lists method {name!r} twice")
        dispatch = compile_graph(entry[1], what=f"{name} dispatch")
        upstream = compile_graph(entry[2], what=f"{name} upstream")
        is_stream = (
            name in streaming
            or not dispatch.terminal
            or (not upstream.terminal and not _primitive_like(upstream))
        )
        out[name] = MethodSpec(name, key, dispatch, upstream, is_stream)
    return out


def static_methods(generation: Generation, kind: str) -> dict[str, MethodSpec]:
    """The tables of :mod:`.definitions` (used for the locator, which is never resolved)."""
    if generation is Generation.A:
        return build_methods_a(TABLES_A[kind])
    return build_methods_b(GRAPHS_B[kind])


# -- resolve -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the locator said about a service."""

    name: str
    endpoints: tuple[tuple[str, int], ...]
    version: int
    #: The published table: ``{index: name}`` (A) or the root graph (B), as decoded.
    table: Any

    def methods(self, generation: Generation, *, streaming: Collection[str] | None = None,
                raw: Collection[str] | None = None) -> dict[str, MethodSpec]:
        """Method specs (the table was already checked by :func:`parse_resolve`)."""
        if generation is Generation.A:
            return build_methods_a(self.table, streaming=A_STREAMING_DEFAULT if streaming is None else streaming,
                                   raw=raw)
        return build_methods_b(self.table, streaming=streaming or ())


def _endpoint(value: Any, what: str) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{what} must be [host, port]")
    host, port = value
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: host is not ASCII") from None
    if not isinstance(host, str) or not host:
        raise ValueError(f"{what}: host must be a non-empty string")
    if type(port) is not int or not 0 < port <= 65535:
        raise ValueError(f"{what}: port {port!r:.20} out of range")
    return host, port


def parse_resolve(generation: Generation, value: Any, name: str) -> Resolved:
    """Check and convert a resolve result (the decoded reply value).

    A: ``[[host, port], version, {index: name}]`` (the chunk blob, decoded).
    B: ``([[ip, port], ...], version, graph)`` (the ``value`` arguments).
    Raises :class:`ResolveFormatError` naming *name* on anything else.
    """
    try:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise ValueError("expected [endpoints, version, methods]")
        endpoints_raw, version, table = value
        if type(version) is not int or version < 0:
            raise ValueError(f"version {version!r:.20} is not a non-negative integer")
        if generation is Generation.A:
            endpoints = (_endpoint(endpoints_raw, "endpoint"),)
            build_methods_a(table)
        else:
            if not isinstance(endpoints_raw, list) or not endpoints_raw:
                raise ValueError("endpoints must be a non-empty array")
            endpoints = tuple(_endpoint(ep, f"endpoint {i}") for i, ep in enumerate(endpoints_raw))
            build_methods_b(table)
    except ValueError as exc:
        raise ResolveFormatError(
            f"locator returned a malformed resolve reply for service {name!r}: {exc}", service=name, method="resolve"
        ) from None
    return Resolved(name, endpoints, version, table)


def resolve_error(exc: ServiceError, name: str) -> ServiceError:
    """The locator's error for *name*, as :class:`ServiceNotFoundError` when it means "unknown".

    A: code 1 (invocation error: "service X is not available"); B: category
    0x0A code 1. Other errors stay :class:`ServiceError`. Matches codes, never text.
    """
    not_found = (exc.category is None and exc.code == 1) or (exc.category == 0x0A and exc.code == 1)
    cls = ServiceNotFoundError if not_found else ServiceError
    out = cls(exc.message, code=exc.code, service=name, method="resolve")
    out.category = exc.category
    return out


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
        return f"<CallState {self.id} {self.method.name} {self.mode.name} recv={self.recv!r} send={self.send!r}>"


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
    exc = ServiceError(text, code=code, service=service, method=method)
    exc.category = category  # None in A: the constructor cannot unset the class default
    return exc


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
        self._pack = msgpack.Packer(**PACKER_OPTIONS).pack

    def __repr__(self) -> str:
        return f"<ServiceProtocol {self.service} {self.generation.value} last_id={self.last_id} open={len(self.calls)}>"

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
                raise LocalProtocolError(f"{self.service}.{method.name}: cannot encode arguments: {exc}") from None
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
                args: list[Any] = [] if t.kind is Kind.END else [[0x0D, 1], reason]
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
                    values.append(payload)  # type: ignore[union-attr]
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


def method_not_found(service: str, name: str, known: Mapping[str, Any]) -> MethodNotFound:
    names = ", ".join(sorted(known)) or "none"
    return MethodNotFound(f"service {service!r} has no method {name!r} (it has: {names})",
                          service=service, method=name)


__all__ += ["method_not_found"]
