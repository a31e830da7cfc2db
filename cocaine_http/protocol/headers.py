"""The HPACK-like headers of generation B (PROTOCOL.md §3.2.3).

Element 3 of a B frame is a list whose entries are either an index into the
header table, ``[store, name, value]`` or ``[store, index, value]`` (name
from the table). ``store`` appends the header to the receiver's dynamic
table, so one :class:`HeaderTable` per direction per connection must see
*every* frame's headers, in order, or indices drift.

We always decode (0.12.3 runtimes index ``[80, 81, 82]``, Python clients
index with ``store=true``) and never send indexed entries: :func:`literal`
builds ``[false, name, value]``, which cannot touch the peer's table.
Headers are informational in cocaine_http; nothing requires them.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from ..errors import FrameFormatError

__all__ = [
    "DYNAMIC_BASE",
    "STATIC_TABLE",
    "TABLE_CAPACITY",
    "HeaderTable",
    "literal",
    "tracing_headers",
    "uint64_le",
]

_Z8 = b"\x00" * 8

#: Index -> (name, value). 1-61 are RFC 7541's static table, 62-79 reserved,
#: 80-82 cocaine's tracing headers with an all-zero default value.
STATIC_TABLE: dict[int, tuple[bytes, bytes]] = {
    i + 1: (name.encode(), value.encode())
    for i, (name, value) in enumerate(
        [
            (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
            (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
            (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
            (":status", "404"), (":status", "500"), ("accept-charset", ""),
            ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
            ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
            ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
            ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
            ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
            ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
            ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
            ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
            ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
            ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
            ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
            ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
        ]
    )
}
STATIC_TABLE.update({80: (b"trace_id", _Z8), 81: (b"span_id", _Z8), 82: (b"parent_id", _Z8)})

#: The first dynamic index; the newest dynamic entry always has it.
DYNAMIC_BASE = 83
#: Dynamic table size in bytes (entry size = name + value + 32, as in HPACK).
TABLE_CAPACITY = 4096
_ENTRY_OVERHEAD = 32


def uint64_le(value: int) -> bytes:
    """Tracing values are 8-byte little-endian integers."""
    return struct.pack("<Q", value)


def literal(name: str | bytes, value: str | bytes) -> list[Any]:
    """A header entry that never touches the peer's dynamic table."""
    return [False, name, value]


def tracing_headers(trace_id: int = 0, span_id: int = 0, parent_id: int = 0) -> list[list[Any]]:
    """The three literal tracing headers a 0.12.14 runtime sends (H0 when all zero)."""
    return [
        literal("trace_id", uint64_le(trace_id)),
        literal("span_id", uint64_le(span_id)),
        literal("parent_id", uint64_le(parent_id)),
    ]


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise FrameFormatError(f"header {what} must be a string, got {type(value).__name__}")


class HeaderTable:
    """One direction's header table; :meth:`decode` turns element 3 into pairs."""

    __slots__ = ("_dynamic", "_size", "capacity")

    def __init__(self, capacity: int = TABLE_CAPACITY) -> None:
        self.capacity = capacity
        self._dynamic: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0

    def __len__(self) -> int:
        return len(self._dynamic)

    def lookup(self, index: Any) -> tuple[bytes, bytes]:
        if type(index) is not int:
            raise FrameFormatError(f"header index must be an integer, got {type(index).__name__}")
        if index >= DYNAMIC_BASE:
            pos = index - DYNAMIC_BASE
            if pos < len(self._dynamic):
                return self._dynamic[pos]
        elif index in STATIC_TABLE:
            return STATIC_TABLE[index]
        raise FrameFormatError(f"header index {index} is not in the table")

    def push(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self.capacity:
            self._dynamic.clear()
            self._size = 0
            return
        while self._size + size > self.capacity:
            old_name, old_value = self._dynamic.pop()
            self._size -= len(old_name) + len(old_value) + _ENTRY_OVERHEAD
        self._dynamic.appendleft((name, value))
        self._size += size

    def decode(self, entries: Any) -> list[tuple[bytes, bytes]]:
        """Element 3 of a frame -> ``[(name, value), ...]`` (bytes), updating the table."""
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise FrameFormatError("frame headers must be an array")
        out: list[tuple[bytes, bytes]] = []
        for entry in entries:
            if type(entry) is int:
                out.append(self.lookup(entry))
                continue
            if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], bool):
                raise FrameFormatError(f"malformed header entry {entry!r:.80}")
            store, name_ref, value = entry
            name = self.lookup(name_ref)[0] if type(name_ref) is int else _as_bytes(name_ref, "name")
            value = _as_bytes(value, "value")
            if store:
                self.push(name, value)
            out.append((name, value))
        return out
