"""The limit rules of native/README.md, at their exact thresholds and at the
exact byte where each is detected, for both backends; and the msgpack
behaviour the pure twin relies on, so that a msgpack upgrade that moves a
threshold fails here rather than as a parity mismatch."""

from __future__ import annotations

import struct
import sys

import msgpack
import pytest
from helpers.feeding import NEED_DATA, array, bytewise, cut, make, map_header, outcome, pack, run

from cocaine_http.errors import FrameTooDeepError
from cocaine_http.protocol.wire import MAX_MAP_LEN

DEPTH = 1024  # msgpack's unpacker stack; the top-level array is depth 1

needs_cmsgpack = pytest.mark.skipif(
    msgpack.Unpacker.__module__ != "msgpack._cmsgpack", reason="documents msgpack's C extension"
)


def nested(depth: int, inner: bytes = b"") -> bytes:
    """A frame [1, 0, [[...inner...]]] with *depth* containers in all."""
    assert depth >= 2
    return b"\x93\x01\x00" + b"\x91" * (depth - 2) + (inner or b"\x90")


def first_verdict(
    backend: str, data: bytes, generation: str = "A", max_frame_size: int | None = None
) -> tuple[int, str]:
    """Feed byte by byte; return how many bytes it took to reach a verdict, and the verdict."""
    kw = {} if max_frame_size is None else {"max_frame_size": max_frame_size}
    decoder = make(backend, generation, **kw)
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        try:
            if decoder.next_frame() is not None:
                return i + 1, "frame"
        except Exception as exc:
            return i + 1, type(exc).__name__
    return len(data), NEED_DATA


# --- depth ---------------------------------------------------------------------------------------


def test_depth_limit_is_inclusive(backend: str) -> None:
    (frame,) = outcome(backend, nested(DEPTH)).frames
    inner = frame.args
    for _ in range(DEPTH - 2):
        (inner,) = inner
    assert inner == []
    assert outcome(backend, nested(DEPTH + 1)).end == "FrameTooDeepError"


@pytest.mark.parametrize(
    "container", [b"\x90", b"\x80", b"\x91\x01", b"\xdc\x00\x00", b"\xdf\x00\x00\x00\x00"]
)
def test_depth_is_checked_at_the_header_even_for_empty_containers(backend: str, container: bytes) -> None:
    data = nested(DEPTH + 1, container)
    header_end = len(nested(DEPTH)) + (1 if container[0] < 0xDC else 3 if container[0] == 0xDC else 5)
    assert first_verdict(backend, data) == (header_end, "FrameTooDeepError")


def test_depth_is_checked_before_length(backend: str) -> None:
    data = nested(DEPTH + 1, b"\xdd\xff\xff\xff\xff")
    assert outcome(backend, data, max_frame_size=100_000).end == "FrameTooDeepError"
    data = nested(DEPTH + 1, b"\xdf\xff\xff\xff\xff")
    assert outcome(backend, data).end == "FrameTooDeepError"


def test_deep_scalars_are_fine(backend: str) -> None:
    assert len(outcome(backend, nested(DEPTH, b"\x93\xa3abc\xc0\xcb" + bytes(8))).frames) == 1


# --- container lengths -----------------------------------------------------------------------------


def test_map_length_limit_at_its_header(backend: str) -> None:
    ok = b"\x93\x01\x00\x91" + map_header(MAX_MAP_LEN, "df")
    assert first_verdict(backend, ok) == (len(ok), NEED_DATA)
    bad = b"\x93\x01\x00\x91" + map_header(MAX_MAP_LEN + 1, "df")
    assert first_verdict(backend, bad) == (len(bad), "FrameTooLargeError")


def test_array_length_limit_is_max_frame_size(backend: str) -> None:
    ok = b"\x93\x01\x00\xdc\x03\xe8"  # 1000 elements
    assert first_verdict(backend, ok, max_frame_size=1000) == (len(ok), NEED_DATA)
    bad = b"\x93\x01\x00\xdc\x03\xe9"  # 1001 elements cannot fit in 1000 bytes
    assert first_verdict(backend, bad, max_frame_size=1000) == (len(bad), "FrameTooLargeError")


# --- frame size: the window ------------------------------------------------------------------------


def test_frame_of_exactly_max_bytes(backend: str) -> None:
    frame = pack([4, 1, [b"x" * 93]])
    assert len(frame) == 100
    for pieces in ([frame], bytewise(frame)):
        assert len(run(make(backend, "A", max_frame_size=100), pieces).frames) == 1
        assert run(make(backend, "A", max_frame_size=99), pieces).end == "FrameTooLargeError"


def test_too_large_needs_one_byte_past_the_window(backend: str) -> None:
    frame = pack([4, 1, [[1] * 15] * 6])  # small tokens only: nothing declares its way past the window
    assert len(frame) == 100
    assert first_verdict(backend, frame, max_frame_size=99) == (100, "FrameTooLargeError")
    head = frame[:50]
    assert first_verdict(backend, head, max_frame_size=49) == (50, "FrameTooLargeError")
    assert first_verdict(backend, head, max_frame_size=50) == (50, NEED_DATA)


@pytest.mark.parametrize("at", [11, 19, 21, 31])
def test_nothing_past_the_window_is_looked_at(backend: str, at: int) -> None:
    """0xc1 inside the first max_frame_size bytes is malformed; past them the
    frame is simply too large, however the stream was split."""
    data = b"\x93\x04\x01\x91\xdc\x00\x10" + b"\xcc\x01" * ((at - 7) // 2) + b"\xc1" + b"\x01" * 40
    want = "MalformedMessageError" if at < 20 else "FrameTooLargeError"
    for pieces in ([data], bytewise(data), cut(data, [at]), cut(data, [at + 1])):
        assert run(make(backend, "A", max_frame_size=20), pieces).end == want


def test_huge_raw_fails_at_its_header(backend: str) -> None:
    """A raw declaring 4 GiB is refused once its 5 header bytes are in, not
    after max_frame_size bytes of it (issue #16: a worker waited 30 s)."""
    head = b"\x93\x04\x01\x91\xdb\xff\xff\xff\xff"
    data = head + b"z" * 100
    assert first_verdict(backend, data, max_frame_size=64) == (9, "FrameTooLargeError")
    assert first_verdict(backend, data) == (9, "FrameTooLargeError")  # the default 256 MiB too


@pytest.mark.parametrize(
    "header",
    [
        b"\xbf",
        b"\xd9\x3d",
        b"\xc4\x3d",
        b"\xda\x00\x3c",
        b"\xc5\x00\x3c",
        b"\xdb\x00\x00\x00\x3a",
        b"\xc6\x00\x00\x00\x3a",
    ],
)
def test_raw_declaring_one_byte_past_the_window(backend: str, header: bytes) -> None:
    """A raw whose body would end one byte past the window fails at its
    header; with one byte more of window it waits for its body."""
    n = int.from_bytes(header[1:], "big") if len(header) > 1 else header[0] & 0x1F
    frame_start = b"\x93\x04\x01\x91"
    limit = 4 + len(header) + n - 1
    assert first_verdict(backend, frame_start + header + b"z" * 10, max_frame_size=limit) == (
        4 + len(header),
        "FrameTooLargeError",
    )
    fits = frame_start + header + b"z" * 10
    assert first_verdict(backend, fits, max_frame_size=limit + 1) == (len(fits), NEED_DATA)


def test_raw_past_the_window_deep_inside(backend: str) -> None:
    """In a map value two levels down, in B, with a split that cuts the header."""
    data = b"\x94\x02\x00\x91\x81\xa1k\x91\xdb\x00\x01\x00\x00" + b"z" * 50
    assert first_verdict(backend, data, generation="B", max_frame_size=4096) == (13, "FrameTooLargeError")
    for pieces in ([data], bytewise(data), cut(data, [10]), cut(data, [12, 13])):
        assert run(make(backend, "B", max_frame_size=4096), pieces).end == "FrameTooLargeError"


def test_ext_past_the_window_is_too_large_at_its_header(backend: str) -> None:
    """An ext that could not fit is refused like a raw, before its body could be judged."""
    data = b"\x93\x01\x00\x91\xc9\x00\x01\x00\x00" + b"\x00" * 10
    assert first_verdict(backend, data, max_frame_size=1000) == (9, "FrameTooLargeError")
    assert first_verdict(backend, b"\x93\x01\x00\x91\xd8", max_frame_size=20) == (5, "FrameTooLargeError")


def test_earlier_frames_are_returned_before_the_refusal(backend: str) -> None:
    good = pack([4, 1, [b"ok"]])
    data = good + good + b"\x93\x04\x01\x91\xdb\xff\xff\xff\xff"
    for pieces in ([data], bytewise(data)):
        result = run(make(backend, "A", max_frame_size=64), pieces)
        assert (len(result.frames), result.end) == (2, "FrameTooLargeError")


def test_later_frames_get_their_own_window(backend: str) -> None:
    frame = pack([4, 1, [b"x" * 20]])
    stream = frame * 10
    for pieces in ([stream], bytewise(stream), cut(stream, [7, 100, 101, 200])):
        result = run(make(backend, "A", max_frame_size=len(frame)), pieces)
        assert (len(result.frames), result.end, result.pending) == (10, NEED_DATA, 0)


# --- ext and timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext",
    [
        b"\xd4\x01\x00",
        b"\xd8\x01" + bytes(16),
        b"\xc7\x03\x01abc",
        b"\xc8\x00\x01\x01a",
        b"\xc9\x00\x00\x00\x00\x7f",
    ],
)
def test_ext_is_malformed_once_complete(backend: str, ext: bytes) -> None:
    data = b"\x93\x01\x00\x91" + ext + b"\x01\x02"
    assert first_verdict(backend, data) == (4 + len(ext), "MalformedMessageError")


def test_ext32_of_4_gib_fails_at_its_header(backend: str) -> None:
    # msgpack computes length + 1 in 32 bits: 0 bytes to wait for, then an invalid timestamp
    data = b"\x93\x01\x00\x91\xc9\xff\xff\xff\xff" + b"\x00" * 10
    assert first_verdict(backend, data) == (9, "MalformedMessageError")


TIMESTAMPS = {
    "32": b"\xd6\xff" + struct.pack(">I", 1),
    "64": b"\xd7\xff" + struct.pack(">Q", (10**9 - 1) << 34 | 5),
    "96": b"\xc7\x0c\xff" + struct.pack(">Iq", 10**9 - 1, -(2**63)),
    "32 as ext8": b"\xc7\x04\xff" + bytes(4),
}
BAD_TIMESTAMPS = {
    "64 nanoseconds": b"\xd7\xff" + struct.pack(">Q", 10**9 << 34),
    "96 nanoseconds": b"\xc7\x0c\xff" + struct.pack(">Iq", 10**9, 0),
    "length 5": b"\xc7\x05\xff" + bytes(5),
    "length 0": b"\xc7\x00\xff",
    "length 16": b"\xd8\xff" + bytes(16),
}
LATER_FORMAT_ERROR = b"\x81\x91\x01\x02"  # an unhashable key


@pytest.mark.parametrize("name", sorted(TIMESTAMPS))
def test_valid_timestamp_is_judged_with_the_frame(backend: str, name: str) -> None:
    """msgpack decodes these itself (no ext_hook): both backends reject the
    frame when it is complete, after errors found while scanning it."""
    ts = TIMESTAMPS[name]
    data = b"\x93\x01\x00\x92" + ts + b"\x01"
    assert first_verdict(backend, data) == (len(data), "MalformedMessageError")
    assert first_verdict(backend, data[:-1]) == (len(data) - 1, NEED_DATA)
    later = b"\x93\x01\x00\x92" + ts + LATER_FORMAT_ERROR
    assert outcome(backend, later).end == "FrameFormatError"


@pytest.mark.parametrize("name", sorted(BAD_TIMESTAMPS))
def test_invalid_timestamp_fails_at_once(backend: str, name: str) -> None:
    ts = BAD_TIMESTAMPS[name]
    data = b"\x93\x01\x00\x92" + ts + LATER_FORMAT_ERROR
    assert first_verdict(backend, data) == (4 + len(ts), "MalformedMessageError")


# --- map keys, shape -------------------------------------------------------------------------------


def test_unhashable_key_fails_when_its_value_is_complete(backend: str) -> None:
    data = b"\x93\x01\x00\x91\x81\x91\x01\xa3abc"
    assert first_verdict(backend, data) == (len(data), "FrameFormatError")
    inner_error = b"\x93\x01\x00\x91\x81\x91\x01\x91\xc1"
    assert first_verdict(backend, inner_error) == (len(inner_error), "MalformedMessageError")


def test_shape_is_judged_on_the_complete_frame(backend: str) -> None:
    four = pack([1, 0, [], [b"x" * 10]])
    assert first_verdict(backend, four, "A") == (len(four), "FrameFormatError")
    bool_id = b"\x93\xc3\x00\x91\xa5hello"
    assert first_verdict(backend, bool_id, "B") == (len(bool_id), "FrameFormatError")
    assert outcome(backend, b"\x93\xc3\x00\x91\xc1").end == "MalformedMessageError"


def test_array_as_top_level_element_counts_as_one(backend: str) -> None:
    data = array(b"\x01", b"\x00", array(array(b"\x01", b"\x02"), b"\xa1x"), array(b"\x50"), b"\x90")
    (frame,) = outcome(backend, data, "B").frames
    assert (frame.args, frame.headers) == ([[1, 2], b"x"], [0x50])


# --- what the pure twin relies on ----------------------------------------------------------------


def _unpacker_verdict(data: bytes, **kw: int) -> str:
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=sys.maxsize, **kw)
    unpacker.feed(data)
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return NEED_DATA
    except Exception as exc:
        return type(exc).__name__
    return "value"


@needs_cmsgpack
def test_msgpack_thresholds_are_the_ones_mirrored() -> None:
    assert _unpacker_verdict(b"\x91" * (DEPTH - 1) + b"\x90") == "value"
    assert _unpacker_verdict(b"\x91" * DEPTH + b"\x90") == "StackError"
    assert _unpacker_verdict(b"\x91" * DEPTH + b"\xdc\x00") == NEED_DATA
    assert _unpacker_verdict(b"\x91" * DEPTH + b"\xdd\xff\xff\xff\xff", max_array_len=1) == "StackError"
    assert _unpacker_verdict(b"\xdc\x00\x03", max_array_len=2) == "ValueError"
    assert _unpacker_verdict(b"\xdc\x00\x02", max_array_len=2) == NEED_DATA
    assert _unpacker_verdict(b"\xde\x00\x03", max_map_len=2) == "ValueError"
    # raw lengths are checked only once the body is there: no header-time rule to mirror
    assert _unpacker_verdict(b"\xda\x00\x10", max_str_len=1) == NEED_DATA
    assert _unpacker_verdict(b"\xc4\x10", max_bin_len=1) == NEED_DATA
    # ext: judged once complete; timestamps are decoded without ext_hook
    assert _unpacker_verdict(b"\xd4\x01") == NEED_DATA
    assert _unpacker_verdict(b"\xc9\xff\xff\xff\xff") == "ValueError"
    assert _unpacker_verdict(b"\xd6\xff\x00\x00\x00\x00") == "value"
    # unhashable keys: when the entry is stored
    assert _unpacker_verdict(b"\x81\x91\x01") == NEED_DATA
    assert _unpacker_verdict(b"\x81\x91\x01\x01") == "TypeError"


def test_deep_frame_fed_in_one_piece_fails_the_same(backend: str) -> None:
    with pytest.raises(FrameTooDeepError):
        decoder = make(backend, "A")
        decoder.feed(nested(DEPTH + 50))
        decoder.next_frame()
