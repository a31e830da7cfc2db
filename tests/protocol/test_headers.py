"""HPACK-like header tables (PROTOCOL.md §3.2.3)."""

from __future__ import annotations

import pytest

from cocaine_http.errors import FrameFormatError
from cocaine_http.protocol.headers import (
    DYNAMIC_BASE,
    STATIC_TABLE,
    HeaderTable,
    literal,
    tracing_headers,
    uint64_le,
)

Z8 = b"\x00" * 8


def test_static_table_shape() -> None:
    assert STATIC_TABLE[1] == (b":authority", b"")
    assert STATIC_TABLE[2] == (b":method", b"GET")
    assert STATIC_TABLE[61] == (b"www-authenticate", b"")
    assert STATIC_TABLE[80] == (b"trace_id", Z8)
    assert STATIC_TABLE[82] == (b"parent_id", Z8)
    assert 62 not in STATIC_TABLE and 79 not in STATIC_TABLE


def test_observed_0_12_3_indices() -> None:
    # [80, 81, 82] packed as cf ints decodes to plain ints: the tracing defaults.
    assert HeaderTable().decode([80, 81, 82]) == [(b"trace_id", Z8), (b"span_id", Z8), (b"parent_id", Z8)]


def test_literals_and_store() -> None:
    t = HeaderTable()
    trace = uint64_le(0x0102030405060708)
    assert trace == bytes([8, 7, 6, 5, 4, 3, 2, 1])  # little-endian
    out = t.decode([[True, 80, trace], [False, b"x-a", b"1"], [True, b"x-b", b"2"]])
    assert out == [(b"trace_id", trace), (b"x-a", b"1"), (b"x-b", b"2")]
    assert len(t) == 2
    # newest stored entry is DYNAMIC_BASE, the older one next
    assert t.decode([DYNAMIC_BASE, DYNAMIC_BASE + 1]) == [(b"x-b", b"2"), (b"trace_id", trace)]
    assert t.decode([[False, DYNAMIC_BASE, b"3"]]) == [(b"x-b", b"3")]


def test_eviction_by_size() -> None:
    t = HeaderTable(capacity=100)
    t.push(b"a", b"x" * 30)  # 63
    t.push(b"b", b"y" * 30)  # 63 -> evicts a
    assert t.decode([DYNAMIC_BASE]) == [(b"b", b"y" * 30)]
    with pytest.raises(FrameFormatError):
        t.lookup(DYNAMIC_BASE + 1)
    t.push(b"c", b"z" * 200)  # larger than capacity: empties, not inserted
    assert len(t) == 0


@pytest.mark.parametrize(
    "bad",
    [
        [0],
        [62],
        [DYNAMIC_BASE],
        ["x"],
        [[1, b"a", b"b"]],
        [[True, b"a"]],
        [[False, 1.5, b"v"]],
        [[False, b"a", 3]],
        b"notalist",
    ],
)
def test_malformed_entries_raise_typed(bad: object) -> None:
    with pytest.raises(FrameFormatError):
        HeaderTable().decode(bad)


def test_outgoing_helpers_never_index() -> None:
    assert literal("a", "b") == [False, "a", "b"]
    h0 = tracing_headers()
    assert h0 == [[False, "trace_id", Z8], [False, "span_id", Z8], [False, "parent_id", Z8]]
    assert HeaderTable().decode(h0) == [(b"trace_id", Z8), (b"span_id", Z8), (b"parent_id", Z8)]
