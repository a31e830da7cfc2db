"""Walk encoded msgpack and fail on anything the runtime cannot read (PROTOCOL.md §0).

No str8 (d9), bin (c4-c6), ext (c7-c9, d4-d8) at any *value position*:
payload bytes inside a raw are skipped, so data may hold any byte.
"""

from __future__ import annotations

import struct

FORBIDDEN = {0xD9, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xC1}


def _skip(buf: bytes, pos: int) -> int:
    b = buf[pos]
    if b in FORBIDDEN:
        raise AssertionError(f"forbidden msgpack marker 0x{b:02x} at offset {pos}")
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return pos + 1
    if 0xA0 <= b <= 0xBF:
        return pos + 1 + (b & 0x1F)
    if 0x90 <= b <= 0x9F:
        pos += 1
        for _ in range(b & 0x0F):
            pos = _skip(buf, pos)
        return pos
    if 0x80 <= b <= 0x8F:
        pos += 1
        for _ in range(2 * (b & 0x0F)):
            pos = _skip(buf, pos)
        return pos
    fixed = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xCA: 4, 0xCB: 8}
    if b in fixed:
        return pos + 1 + fixed[b]
    if b == 0xDA:
        return pos + 3 + struct.unpack_from(">H", buf, pos + 1)[0]
    if b == 0xDB:
        return pos + 5 + struct.unpack_from(">I", buf, pos + 1)[0]
    if b in (0xDC, 0xDD):
        n, width = (struct.unpack_from(">H", buf, pos + 1)[0], 3) if b == 0xDC else (
            struct.unpack_from(">I", buf, pos + 1)[0], 5)
        pos += width
        for _ in range(n):
            pos = _skip(buf, pos)
        return pos
    if b in (0xDE, 0xDF):
        n, width = (struct.unpack_from(">H", buf, pos + 1)[0], 3) if b == 0xDE else (
            struct.unpack_from(">I", buf, pos + 1)[0], 5)
        pos += width
        for _ in range(2 * n):
            pos = _skip(buf, pos)
        return pos
    raise AssertionError(f"unknown msgpack marker 0x{b:02x} at offset {pos}")


def assert_old_spec(data: bytes) -> None:
    """Every top-level value in *data* uses only markers msgpack-c 0.5 knows."""
    pos = 0
    while pos < len(data):
        pos = _skip(data, pos)
    assert pos == len(data), "trailing partial value"
