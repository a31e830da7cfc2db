"""What a service offers, sans IO: protocol graphs, method specs, resolve replies.

A service is described once, when it is resolved (or, for the locator, from
the built-in tables of :mod:`.definitions`), and that description is then
read by every call. This module builds and checks the description; how a
call runs on a connection is :mod:`.service`'s business. The two change for
different reasons (a new resolve format or graph shape here; call, header
and cancellation rules there), hence two modules.

* **Graphs** (B, PROTOCOL.md §3.2.2): ``{id: [name, subgraph]}`` compiled to
  :class:`Node` objects; ``{}`` is :data:`TERMINAL`, ``nil`` means "stay".
  Generation A has no graphs: every reply follows :data:`A_UPSTREAM`
  (``chunk*`` then ``choke``, or ``error`` then ``choke``).
* **Methods**: :class:`MethodSpec` per method, from an A ``{index: name}``
  table (:func:`build_methods_a`) or a B root graph (:func:`build_methods_b`).
* **Resolve replies** (§2.5.2, §3.6.2): :func:`parse_resolve` checks every
  key and type before anything is used and raises :class:`ResolveFormatError`,
  naming the service, on garbage; :func:`resolve_error` maps the locator's
  "not found" codes to :class:`~cocaine_http.errors.ServiceNotFoundError`.

Names come from the wire, so they are only ever dictionary keys.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ErrorCategory,
    LocatorCode,
    MethodNotFoundError,
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
)
from .catalog import A
from .definitions import GRAPHS_B, TABLES_A
from .frames import Generation

__all__ = [
    "A_STREAMING_DEFAULT",
    "A_UPSTREAM",
    "CONTROL_IDS_START",
    "MAX_GRAPH_DEPTH",
    "TERMINAL",
    "Kind",
    "MalformedReplyError",
    "MethodNotFound",
    "MethodSpec",
    "Node",
    "ResolveFormatError",
    "Resolved",
    "Transition",
    "build_methods_a",
    "build_methods_b",
    "compile_graph",
    "method_not_found",
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
        nxt = None if sub is None else compile_graph(sub, what=f"{what}/{name}", _depth=_depth + 1)
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


def build_methods_b(
    graph: Any, *, streaming: Collection[str] = (), what: str = "protocol graph"
) -> dict[str, MethodSpec]:
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
            return build_methods_a(
                self.table, streaming=A_STREAMING_DEFAULT if streaming is None else streaming, raw=raw
            )
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
        endpoints: tuple[tuple[str, int], ...]
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
            f"locator returned a malformed resolve reply for service {name!r}: {exc}",
            service=name,
            method="resolve",
        ) from None
    return Resolved(name, endpoints, version, table)


def resolve_error(exc: ServiceError, name: str) -> ServiceError:
    """The locator's error for *name*, as :class:`ServiceNotFoundError` when it means "unknown".

    A: code 1 (invocation error: "service X is not available"); B: category
    0x0A code 1. Other errors stay :class:`ServiceError`. Matches codes, never text.
    """
    not_found = int(exc.code) == LocatorCode.SERVICE_NOT_AVAILABLE and exc.category in (
        None,
        ErrorCategory.LOCATOR,
    )
    cls = ServiceNotFoundError if not_found else ServiceError
    return cls(exc.message, code=exc.code, category=exc.category, service=name, method="resolve")


def method_not_found(service: str, name: str, known: Mapping[str, Any]) -> MethodNotFound:
    names = ", ".join(sorted(known)) or "none"
    return MethodNotFound(f"service {service!r} has no method {name!r} (it has: {names})",
                          service=service, method=name)
