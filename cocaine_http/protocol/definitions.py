"""The standard services' method tables (A) and protocol graphs (B), as data.

A service in generation A publishes ``{index: name}`` (PROTOCOL.md §2.6);
in generation B a graph ``{index: [name, dispatch, upstream]}`` (§3.2.2,
§3.7), where ``dispatch`` is what the caller may send next on the channel
and ``upstream`` what comes back: ``{}`` terminal, ``None`` recursive, a
non-empty map a sub-protocol. The local runtime serves these; the client
reads whatever the locator returns and uses these only for the locator
itself, which is never resolved.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EMPTY",
    "GRAPHS_B",
    "LOCATOR_VERSION_B",
    "LOG_LEVELS_A",
    "LOG_LEVELS_B",
    "PRIMITIVE",
    "STREAMING",
    "TABLES_A",
    "VERSIONS_B",
    "graph_for",
    "method_names",
]

#: One value or one error: ``{0: value, 1: error}``.
PRIMITIVE: dict[int, list[Any]] = {0: ["value", {}], 1: ["error", {}]}
#: Any number of writes, then close or error.
STREAMING: dict[int, list[Any]] = {0: ["write", None], 1: ["error", {}], 2: ["close", {}]}
#: Terminal: nothing may be sent (as dispatch) / nothing comes back (as upstream: a mute method).
EMPTY: dict[int, list[Any]] = {}


def _m(name: str, dispatch: dict[int, list[Any]] | None, upstream: dict[int, list[Any]] | None) -> list[Any]:
    return [name, dispatch, upstream]


TABLES_A: dict[str, dict[int, str]] = {
    # Only what a single node registers: synchronize is cluster-only (§2.5.2).
    "locator": {0: "resolve", 2: "reports", 3: "refresh"},
    "logging": {0: "emit", 1: "verbosity"},
    "storage": {0: "read", 1: "write", 2: "remove", 3: "find"},
    "node": {0: "start_app", 1: "pause_app", 2: "list"},
    "app": {0: "enqueue", 1: "info"},
}

_DISCARD: dict[int, list[Any]] = {0: ["discard", {}]}

GRAPHS_B: dict[str, dict[int, list[Any]]] = {
    "locator": {
        0: _m("resolve", EMPTY, PRIMITIVE),
        1: _m("connect", EMPTY, STREAMING),
        2: _m("refresh", EMPTY, PRIMITIVE),
        3: _m("cluster", EMPTY, PRIMITIVE),
        4: _m("publish", _DISCARD, PRIMITIVE),
        5: _m("routing", _DISCARD, STREAMING),
    },
    "logging": {
        0: _m("emit", EMPTY, EMPTY),  # mute: no reply at all
        1: _m("verbosity", EMPTY, PRIMITIVE),
        2: _m("set_verbosity", EMPTY, PRIMITIVE),
    },
    "storage": {
        0: _m("read", EMPTY, PRIMITIVE),
        1: _m("write", EMPTY, PRIMITIVE),
        2: _m("remove", EMPTY, PRIMITIVE),
        3: _m("find", EMPTY, PRIMITIVE),
    },
    "node": {
        0: _m("start_app", EMPTY, PRIMITIVE),
        1: _m("pause_app", EMPTY, PRIMITIVE),
        2: _m("list", EMPTY, PRIMITIVE),
        3: _m("info", EMPTY, PRIMITIVE),
        4: _m("control", STREAMING, PRIMITIVE),
        5: _m("enqueue", STREAMING, STREAMING),
    },
    "app": {
        0: _m("enqueue", STREAMING, STREAMING),
        1: _m("info", EMPTY, PRIMITIVE),
        2: _m("control", STREAMING, PRIMITIVE),
    },
}

#: Wire numbers of the logging service's levels. They are reversed between
#: the generations (PROTOCOL.md §2.6: "0 ignore ... 4 debug"; §3.7: "0 debug
#: ... 3 error"), so both the client and the local runtime read them here.
LOG_LEVELS_A: dict[str, int] = {"ignore": 0, "error": 1, "warning": 2, "info": 3, "debug": 4}
LOG_LEVELS_B: dict[str, int] = {"debug": 0, "info": 1, "warning": 2, "error": 3}

#: Protocol versions published by resolve in B (the locator is version 3 on
#: 0.12.3+ runtimes; the others 1 except logging, 2).
VERSIONS_B: dict[str, int] = {"locator": 3, "logging": 2, "storage": 1, "node": 1, "app": 1}
LOCATOR_VERSION_B = VERSIONS_B["locator"]


def graph_for(kind: str) -> dict[int, list[Any]]:
    """The B graph of a standard service kind (``app`` for every application)."""
    return GRAPHS_B[kind]


def method_names(kind: str, generation_is_a: bool) -> dict[str, int]:
    """``{method name: index}`` for a standard service kind."""
    if generation_is_a:
        return {name: idx for idx, name in TABLES_A[kind].items()}
    return {entry[0]: idx for idx, entry in GRAPHS_B[kind].items()}
