"""Large payloads collected apart: ``trailing_raw``, ``PayloadCollector`` and
the native decoder asked to split (``split_payloads=True``, the worker's).

Whatever way a payload arrives and whatever its shape, what comes out must be
the payload: ``bytes`` equal to it, or a ``SplitPayload`` whose two parts
join to it, split exactly at the body of its last item.
"""

from __future__ import annotations

import os
import random
import tracemalloc

import msgpack
import pytest
from helpers.feeding import BACKENDS, make, pack, random_splits, require_backend

from cocaine_http.protocol import codec, payloads
from cocaine_http.protocol.payloads import (
    HEAD_WINDOW,
    LARGE_PAYLOAD,
    PayloadCollector,
    SplitPayload,
    trailing_raw,
)

MiB = 1 << 20


def envelope(body: bytes, *, bin_type: bool = False, headers: int = 3) -> bytes:
    items = ["POST", "/upload", "1.1", [[f"X-H{i}", "v" * 40] for i in range(headers)], body]
    return msgpack.packb(items, use_bin_type=bin_type)


# --- the shape ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bin_type", [False, True], ids=["raw32", "bin32"])
def test_the_body_of_an_array_s_last_raw_is_found(bin_type: bool) -> None:
    body = b"b" * (LARGE_PAYLOAD)
    blob = envelope(body, bin_type=bin_type)
    at = trailing_raw(memoryview(blob), len(blob))
    assert at is not None and blob[at:] == body


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(b"x" * (2 * HEAD_WINDOW), id="not an array"),
        pytest.param([], id="an empty array"),
        pytest.param(["GET", "/", [b"b" * (2 * HEAD_WINDOW)]], id="last item not a raw"),
        pytest.param(["GET", "/", b"b" * (2 * HEAD_WINDOW), 7], id="raw not last"),
        pytest.param(["GET", "v" * (2 * HEAD_WINDOW), b"b" * (2 * HEAD_WINDOW)], id="items past the window"),
        pytest.param(["GET", b"b" * 1000], id="a raw16"),
    ],
)
def test_other_shapes_are_not_split(obj: object) -> None:
    blob = pack(obj)
    assert trailing_raw(memoryview(blob), len(blob)) is None


def test_a_raw_that_does_not_end_the_payload_is_not_split() -> None:
    blob = envelope(b"b" * LARGE_PAYLOAD)
    assert trailing_raw(memoryview(blob), len(blob) + 1) is None  # more follows it
    assert trailing_raw(memoryview(blob), len(blob) - 1) is None  # declared past the end


# --- the collector -----------------------------------------------------------------------------


@pytest.fixture(params=["allocated whole", "grown"])
def allocation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a collector keeps its buffer: allocated whole at the start (up
    to 16 MiB), or grown as the pieces come (larger payloads)."""
    if request.param == "grown":
        monkeypatch.setattr(payloads, "_ALLOCATE_WHOLE_MAX", 0)
    return str(request.param)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_a_collector_returns_the_payload_however_it_is_written(
    split: bool, seed: int, allocation: str
) -> None:
    rng = random.Random(seed)
    blob = envelope(rng.randbytes(LARGE_PAYLOAD + rng.randrange(5000)), bin_type=seed % 2 == 1)
    collector = PayloadCollector(len(blob), split=split)
    for piece in random_splits(blob, rng, max_piece=rng.choice([1000, 70_000, 300_000])):
        collector.write(memoryview(piece))
    value = collector.value()
    if split:
        assert type(value) is SplitPayload
        at = trailing_raw(memoryview(blob), len(blob))
        assert (value.head, value.body) == (blob[:at], blob[at:])
        assert bytes(value) == blob and len(value) == len(blob)
    else:
        assert type(value) is bytes and value == blob


@pytest.mark.parametrize("split", [False, True])
def test_a_collector_holds_its_payload_once(split: bool, allocation: str) -> None:
    """Written read by read, a payload peaks at its size (and a read), and the
    value handed out is the collector's own buffer, not a copy of it."""
    blob = envelope(os.urandom(8 * MiB))
    reads = [blob[i : i + 256 * 1024] for i in range(0, len(blob), 256 * 1024)]
    del blob
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        collector = PayloadCollector(sum(map(len, reads)), split=split)
        for read in reads:
            collector.write(read)
        value = collector.value()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(value) == b"".join(reads)
    assert peak - before < 1.15 * 8 * MiB + 1 * MiB, f"{allocation}: peak {(peak - before) / MiB:.1f} MiB"


def test_a_collector_of_another_shape_returns_bytes() -> None:
    blob = pack([b"b" * LARGE_PAYLOAD, 1])
    collector = PayloadCollector(len(blob), split=True)
    collector.write(blob[:100])
    collector.write(blob[100:])
    assert collector.value() == blob


# --- the decoder -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("generation", ["A", "B"])
@pytest.mark.parametrize("seed", range(3))
def test_the_worker_s_decoder_splits_large_envelopes_only(backend: str, generation: str, seed: int) -> None:
    """Frames with large envelopes, large payloads of other shapes and small
    ones, fed in random pieces: the payloads come out whole (or split at the
    body), in order, with their headers (B), from either decoder."""
    require_backend(backend)
    rng = random.Random(seed)
    payloads = [
        envelope(rng.randbytes(LARGE_PAYLOAD + 17)),
        b"s" * 100,
        pack([b"b" * LARGE_PAYLOAD, 1]),  # large, not an envelope's shape
        envelope(rng.randbytes(2 * LARGE_PAYLOAD), bin_type=True),
        envelope(b"small"),
    ]
    frames = []
    for i, payload in enumerate(payloads):
        frame: list[object] = [10 + i, 4, [payload]] if generation == "B" else [4, 10 + i, [payload]]
        if generation == "B":
            frame.append([[b"trace", b"%d" % i]])
        frames.append(pack(frame))
    stream = b"".join(frames)
    decoder = codec.new_decoder(generation, backend=backend, split_payloads=True)
    got = []
    for piece in random_splits(stream, rng, max_piece=256 * 1024):
        got.extend(decoder.records(piece))
    assert decoder.pending == 0
    assert [r[0] for r in got] == [10 + i for i in range(len(payloads))]
    assert [type(r[2][0]) for r in got] == [SplitPayload, bytes, bytes, SplitPayload, bytes]
    assert [bytes(r[2][0]) for r in got] == payloads
    if generation == "B":
        assert [r[3] for r in got] == [[[b"trace", b"%d" % i]] for i in range(len(payloads))]


def test_a_decoder_not_asked_to_split_hands_out_bytes() -> None:
    require_backend("native")
    payload = envelope(b"b" * (2 * LARGE_PAYLOAD))
    decoder = make("native", "B")
    data = pack([9, 4, [payload]])
    got = []
    for i in range(0, len(data), 256 * 1024):
        got.extend(decoder.records(data[i : i + 256 * 1024]))
    assert type(got[0][2][0]) is bytes and got[0][2][0] == payload


def test_hostile_starts_are_not_split() -> None:
    """Declared counts past the data, deep nesting, bytes that are not
    msgpack: ``None``, at once (the window bounds the work), never an
    exception. (An ext item is skipped like any other: ``parse_request``
    refuses it when it unpacks the head, as it does in the whole envelope.)"""
    body = b"b" * LARGE_PAYLOAD
    tail = b"\xdb" + len(body).to_bytes(4, "big") + body
    starts = [
        b"\xdd\xff\xff\xff\xff" + b"\xc0" * 10,  # four billion items, ten there
        b"\x92" + b"\x91" * 5000 + b"\xc0",  # nested deeper than the unpacker goes
        b"\x92\xc1",  # not msgpack
    ]
    for start in starts:
        blob = start + tail
        assert trailing_raw(memoryview(blob), len(blob)) is None, start[:8]
