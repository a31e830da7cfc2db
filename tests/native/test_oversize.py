"""Rule 5c (native/README.md): with ``skip_oversize``, a frame whose raw cannot
fit in ``max_frame_size`` is reported once for its session and skipped as its
bytes arrive; the frames after it decode as usual. Both backends (the fuzz in
test_parity.py compares them on generated streams)."""

from __future__ import annotations

import msgpack
import pytest
from helpers.feeding import cut, make

from cocaine_http.errors import FrameFormatError, FrameTooLargeError
from cocaine_http.protocol.frames import OVERSIZE

LIMIT = 1000


def records(decoder, pieces):  # type: ignore[no-untyped-def]
    out = []
    for piece in pieces:
        out.extend(decoder.records(piece))
    return out


@pytest.mark.parametrize("gen", ["A", "B"])
def test_skips_across_many_feeds_then_decodes_the_next_frame(backend: str, gen: str) -> None:
    """A 200 kB raw (limit 1000) fed in 7-byte and 4 kB pieces: one OVERSIZE
    record for its session, nothing buffered for it, and the frame right
    behind its last byte decodes, in the same piece or the next."""
    if gen == "A":
        big = msgpack.packb([1, 9, [b"x" * 200_000]])  # A: [type (chunk), session, [data]] (PROTOCOL.md 2.1)
        after = msgpack.packb([1, 10, [b"next"]])
        want = [(9, OVERSIZE, [1, 200_000], None), (10, 1, [b"next"], None)]
    else:
        big = msgpack.packb([9, 0, [b"x" * 200_000], [[b"k", b"v"]]])
        after = msgpack.packb([10, 0, [b"next"]])
        want = [(9, OVERSIZE, [0, 200_000], None), (10, 0, [b"next"], None)]
    stream = big + after
    for step in (7, 4096, len(big), len(big) - 1, len(big) + 3):
        decoder = make(backend, gen, LIMIT, skip_oversize=True)
        peak = 0
        got = []
        for piece in cut(stream, list(range(step, len(stream), step))):
            got.extend(decoder.records(piece))
            peak = max(peak, decoder.pending)
        assert got == want, step
        assert peak <= LIMIT + 8192, f"{peak} bytes held while skipping (step {step})"
        assert decoder.pending == 0


def test_a_second_oversize_raw_in_the_same_frame_is_skipped_silently(backend: str) -> None:
    frame = msgpack.packb([3, 0, [b"a" * 5000], [b"b" * 5000, 7]]) + msgpack.packb([4, 0, []])
    got = records(make(backend, "B", LIMIT, skip_oversize=True), cut(frame, list(range(0, len(frame), 333))))
    assert got == [(3, OVERSIZE, [0, 5000], None), (4, 0, [], None)]


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb([None, 1, [b"x" * 5000]]),  # an id is not an int
        msgpack.packb([-1, 1, [b"x" * 5000]]),  # nor a negative one
        msgpack.packb([1, 1, b"x" * 5000]),  # args is the raw itself, not an array
        msgpack.packb([1, [b"x" * 5000], []]),  # the raw sits in an id
        msgpack.packb([b"x" * 5000]),  # nothing known about the frame
    ],
    ids=["nil-id", "negative-id", "args-not-array", "in-id", "no-ids"],
)
@pytest.mark.parametrize("gen", ["A", "B"])
def test_oversize_without_a_known_session_still_fails_the_stream(
    backend: str, gen: str, frame: bytes
) -> None:
    decoder = make(backend, gen, LIMIT, skip_oversize=True)
    with pytest.raises(FrameTooLargeError):
        records(decoder, [frame[:10], frame[10:]])


def test_oversize_is_a_stream_error_without_skip_oversize(backend: str) -> None:
    decoder = make(backend, "A", LIMIT)
    with pytest.raises(FrameTooLargeError):
        records(decoder, [msgpack.packb([1, 9, [b"x" * 5000]])])


def test_the_rest_of_a_skipped_frame_is_still_checked(backend: str) -> None:
    """Generation A has exactly 3 elements; a B frame's element 3 must be an array.
    Judged when the skipped frame ends, as for any frame."""
    decoder = make(backend, "A", LIMIT, skip_oversize=True)
    with pytest.raises(FrameTooLargeError):  # 4 elements in A: not a frame that may be skipped
        records(decoder, [msgpack.packb([1, 9, [b"x" * 5000], []])])
    decoder = make(backend, "B", LIMIT, skip_oversize=True)
    got = []
    with pytest.raises(FrameFormatError):
        for piece in cut(msgpack.packb([9, 1, [b"x" * 5000], 5]), [100, 3000]):
            got.extend(decoder.records(piece))
    assert got == [(9, OVERSIZE, [1, 5000], None)]
