"""Every test vector of PROTOCOL.md §7 (and the 0.12 observations of §3.11),
decoded by each backend, fed whole, byte by byte, in random splits, and with
trailing bytes after the last frame."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from helpers.feeding import bytewise, cut, decode_all, make, random_splits, run, whole

from cocaine_http.protocol.frames import Frame


def h(text: str) -> bytes:
    return bytes.fromhex(text)


UUID = b"8f0a6d4e-1c2b-4a55-9e0e-2f2b8e3f6a11"
ZERO8 = bytes(8)
# §3.11: every frame of a 0.12.3 runtime carries [80, 81, 82] as cf-encoded uint64s.
H_CF = h("93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00 00 52")
P = {0: [b"value", {}], 1: [b"error", {}]}

# name -> (generation, wire bytes, [(message as on the wire)], encodable with packb)
VECTORS: dict[str, tuple[str, bytes, list[list[Any]], bool]] = {
    "A1": ("A", h("93 00 00 91 da 00 24") + UUID, [[0, 0, [UUID]]], True),
    "A2": ("A", h("93 01 00 90"), [[1, 0, []]], True),
    "A3": ("A", h("93 03 11 91 a4 68 74 74 70"), [[3, 17, [b"http"]]], True),
    "A4": ("A", h("93 04 11 91 a5 00 80 c4 d9 ff"), [[4, 17, [b"\x00\x80\xc4\xd9\xff"]]], True),
    "A5": ("A", h("93 06 11 90"), [[6, 17, []]], True),
    "A6": (
        "A",
        h("93 05 11 92 d0 9c da 00 24") + b"there is no handler for event nosuch",
        [[5, 17, [-100, b"there is no handler for event nosuch"]]],
        True,
    ),
    "A7": ("A", h("93 02 00 92 01 ad") + b"slave is idle", [[2, 0, [1, b"slave is idle"]]], True),
    "A8": ("A", h("93 00 01 91 a7") + b"storage", [[0, 1, [b"storage"]]], True),
    "A9": (
        "A",
        h(
            "93 04 01 91 da 00 2c 93 92 a9 31 32 37 2e 30 2e 30 2e 31 cd 27 78 01 84 00 a4 72 65 61 64 01 a5"
            " 77 72 69 74 65 02 a6 72 65 6d 6f 76 65 03 a4 66 69 6e 64 93 06 01 90"
        ),
        [
            [
                4,
                1,
                [
                    h("93 92 a9")
                    + b"127.0.0.1"
                    + h("cd 27 78 01 84 00 a4")
                    + b"read"
                    + h("01 a5")
                    + b"write"
                    + h("02 a6")
                    + b"remove"
                    + h("03 a4")
                    + b"find"
                ],
            ],
            [6, 1, []],
        ],
        True,
    ),
    "A10": (
        "A",
        h("93 05 01 92 01 bf") + b"service nosuch is not available" + h("93 06 01 90"),
        [[5, 1, [1, b"service nosuch is not available"]], [6, 1, []]],
        True,
    ),
    "A11": (
        "A",
        h("93 04 02 91 b0 af 81 a5") + b"slave" + h("a7") + b"echo.py" + h("93 06 02 90"),
        [[4, 2, [h("af 81 a5") + b"slave" + h("a7") + b"echo.py"]], [6, 2, []]],
        True,
    ),
    "A12": (
        "A",
        h("93 04 11 91 da 00 2d 95 a3")
        + b"GET"
        + h("aa")
        + b"/hello?x=1"
        + h("a8")
        + b"HTTP/1.1"
        + h("91 92 a4")
        + b"Host"
        + h("ab")
        + b"example.com"
        + h("a0"),
        [
            [
                4,
                17,
                [
                    h("95 a3")
                    + b"GET"
                    + h("aa")
                    + b"/hello?x=1"
                    + h("a8")
                    + b"HTTP/1.1"
                    + h("91 92 a4")
                    + b"Host"
                    + h("ab")
                    + b"example.com"
                    + h("a0")
                ],
            ]
        ],
        True,
    ),
    "A13": (
        "A",
        h("93 04 11 91 bd 92 cc c8 91 92 ac") + b"Content-Type" + h("aa") + b"text/plain",
        [[4, 17, [h("92 cc c8 91 92 ac") + b"Content-Type" + h("aa") + b"text/plain"]]],
        True,
    ),
    "A14": ("A", h("93 04 11 91 a6 a5") + b"hello", [[4, 17, [h("a5") + b"hello"]]], True),
    "B1": ("B", h("93 01 00 91 da 00 24") + UUID, [[1, 0, [UUID]]], True),
    "B2": (
        "B",
        h("94 01 00 90 93 93 c2 a8")
        + b"trace_id"
        + h("a8")
        + ZERO8
        + h("93 c2 a7")
        + b"span_id"
        + h("a8")
        + ZERO8
        + h("93 c2 a9")
        + b"parent_id"
        + h("a8")
        + ZERO8,
        [[1, 0, [], [[False, b"trace_id", ZERO8], [False, b"span_id", ZERO8], [False, b"parent_id", ZERO8]]]],
        True,
    ),
    "B3": ("B", h("94 02 00 91 a4") + b"http" + H_CF, [[2, 0, [b"http"], [80, 81, 82]]], False),
    "B4": ("B", h("93 02 00 91 a5 00 80 c4 d9 ff"), [[2, 0, [b"\x00\x80\xc4\xd9\xff"]]], True),
    "B5": (
        "B",
        h("93 02 01 92 92 2a 01 af") + b"event not found",
        [[2, 1, [[42, 1], b"event not found"]]],
        True,
    ),
    "B6": ("B", h("93 01 01 92 0d ad") + b"slave is idle", [[1, 1, [13, b"slave is idle"]]], True),
    "B7": ("B", h("93 01 00 91 a7") + b"storage", [[1, 0, [b"storage"]]], True),
    "B8": (
        "B",
        h(
            "93 01 00 93 92 92 a9 31 32 37 2e 30 2e 30 2e 31 cd a8 ca 92 a3 3a 3a 31 cd a8 ca 01 84 00 93 a4"
            " 72 65 61 64 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 01 93 a5 77 72 69 74 65"
            " 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 02 93 a6 72 65 6d 6f 76 65 80 82 00"
            " 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 03 93 a4 66 69 6e 64 80 82 00 92 a5 76 61 6c"
            " 75 65 80 01 92 a5 65 72 72 6f 72 80"
        ),
        [
            [
                1,
                0,
                [
                    [[b"127.0.0.1", 43210], [b"::1", 43210]],
                    1,
                    {0: [b"read", {}, P], 1: [b"write", {}, P], 2: [b"remove", {}, P], 3: [b"find", {}, P]},
                ],
            ]
        ],
        True,
    ),
    "B9": (
        "B",
        h("93 02 00 91 da 00 28 95 a3")
        + b"GET"
        + h("aa")
        + b"/hello?x=1"
        + h("a3")
        + b"1.1"
        + h("91 92 a4")
        + b"Host"
        + h("ab")
        + b"example.com"
        + h("a0"),
        [
            [
                2,
                0,
                [
                    h("95 a3")
                    + b"GET"
                    + h("aa")
                    + b"/hello?x=1"
                    + h("a3")
                    + b"1.1"
                    + h("91 92 a4")
                    + b"Host"
                    + h("ab")
                    + b"example.com"
                    + h("a0")
                ],
            ]
        ],
        True,
    ),
    "B10": (
        "B",
        h("93 02 00 91 bd 92 cc c8 91 92 ac")
        + b"Content-Type"
        + h("aa")
        + b"text/plain"
        + h("93 02 00 91 a5")
        + b"hello"
        + h("93 02 02 90"),
        [
            [2, 0, [h("92 cc c8 91 92 ac") + b"Content-Type" + h("aa") + b"text/plain"]],
            [2, 0, [b"hello"]],
            [2, 2, []],
        ],
        True,
    ),
    # §3.11, observed on cocaine-core 0.12.3.12: H = [80, 81, 82] as cf ints on every runtime frame.
    "O-heartbeat": ("B", h("94 01 00 90") + H_CF, [[1, 0, [], [80, 81, 82]]], False),
    "O-write": ("B", h("94 02 00 91 a5") + b"chunk" + H_CF, [[2, 0, [b"chunk"], [80, 81, 82]]], False),
    "O-close": ("B", h("94 02 02 90") + H_CF, [[2, 2, [], [80, 81, 82]]], False),
    "O-terminate": (
        "B",
        h("94 01 01 92 0b b7") + b"overseer is shutdowning" + H_CF,
        [[1, 1, [11, b"overseer is shutdowning"], [80, 81, 82]]],
        False,
    ),
}

NAMES = sorted(VECTORS)


def expected_frames(generation: str, messages: list[list[Any]]) -> list[Frame]:
    frames = []
    for m in messages:
        if generation == "A":
            frames.append(Frame(session=m[1], type=m[0], args=m[2], headers=None))
        else:
            frames.append(Frame(session=m[0], type=m[1], args=m[2], headers=m[3] if len(m) > 3 else None))
    return frames


@pytest.mark.parametrize("name", NAMES)
def test_vector_bytes_are_what_the_encoder_writes(name: str) -> None:
    """Guards the transcription: packb reproduces each encodable vector."""
    _, data, messages, encodable = VECTORS[name]
    packed = b"".join(msgpack.packb(m, use_bin_type=False) for m in messages)
    if encodable:
        assert packed == data
    else:
        # decode-only: the runtime forced cf ints, packb writes them short
        assert packed != data
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(data)
        assert list(unpacker) == messages


FEEDS = {
    "whole": lambda data, _rng: whole(data),
    "bytewise": lambda data, _rng: bytewise(data),
    "random": lambda data, rng: random_splits(data, rng),
    "halves": lambda data, _rng: cut(data, [len(data) // 2]),
}


@pytest.mark.parametrize("feed", sorted(FEEDS))
@pytest.mark.parametrize("name", NAMES)
def test_vector_decodes(backend: str, name: str, feed: str) -> None:
    generation, data, messages, _ = VECTORS[name]
    rng = random.Random(f"{name}/{feed}")
    for _ in range(3 if feed == "random" else 1):
        result = run(make(backend, generation), FEEDS[feed](data, rng))
        assert result.end == "need-data"
        assert result.pending == 0
        assert result.frames == expected_frames(generation, messages)


@pytest.mark.parametrize("name", NAMES)
def test_vector_with_trailing_bytes(backend: str, name: str) -> None:
    """A partial next frame after the vector: the frames come out, the rest waits."""
    generation, data, messages, _ = VECTORS[name]
    trailer = VECTORS["A1"][1][:17]
    for pieces in (whole(data + trailer), bytewise(data + trailer), cut(data + trailer, [len(data)])):
        result = run(make(backend, generation), pieces)
        assert result.frames == expected_frames(generation, messages)
        assert (result.end, result.pending) == ("need-data", len(trailer))


def test_all_vectors_back_to_back(backend: str) -> None:
    rng = random.Random(7)
    for generation in ("A", "B"):
        names = [n for n in NAMES if VECTORS[n][0] == generation]
        stream = b"".join(VECTORS[n][1] for n in names)
        want = [f for n in names for f in expected_frames(generation, VECTORS[n][2])]
        for pieces in (whole(stream), bytewise(stream), random_splits(stream, rng, 40)):
            result = run(make(backend, generation), pieces, use_iter=True)
            assert (result.frames, result.end, result.pending) == (want, "need-data", 0)


def test_a2_reads_differently_in_b(backend: str) -> None:
    """§3.1: the same 4 bytes are A heartbeat [type 1, session 0] and B [channel 1, type 0]."""
    data = VECTORS["A2"][1]
    assert decode_all(backend, data, "A") == [Frame(session=0, type=1, args=[])]
    assert decode_all(backend, data, "B") == [Frame(session=1, type=0, args=[], headers=None)]


def unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=True, strict_map_key=False)


def test_a9_resolve_blob(backend: str) -> None:
    chunk, choke = decode_all(backend, VECTORS["A9"][1], "A")
    assert (chunk.type, chunk.session, choke.type, choke.args) == (4, 1, 6, [])
    assert unpack(chunk.args[0]) == [
        [b"127.0.0.1", 10104],
        1,
        {0: b"read", 1: b"write", 2: b"remove", 3: b"find"},
    ]


def test_a11_storage_value_blob(backend: str) -> None:
    chunk, _ = decode_all(backend, VECTORS["A11"][1], "A")
    value = unpack(chunk.args[0])
    assert unpack(value) == {b"slave": b"echo.py"}


def test_a12_http_request_blob(backend: str) -> None:
    (frame,) = decode_all(backend, VECTORS["A12"][1], "A")
    assert unpack(frame.args[0]) == [b"GET", b"/hello?x=1", b"HTTP/1.1", [[b"Host", b"example.com"]], b""]


def test_a13_http_head_blob(backend: str) -> None:
    (frame,) = decode_all(backend, VECTORS["A13"][1], "A")
    assert unpack(frame.args[0]) == [200, [[b"Content-Type", b"text/plain"]]]


def test_a14_double_wrapped_body(backend: str) -> None:
    (frame,) = decode_all(backend, VECTORS["A14"][1], "A")
    assert frame.args == [b"\xa5hello"]
    assert unpack(frame.args[0]) == b"hello"


def test_b9_b10_http_blobs(backend: str) -> None:
    (request,) = decode_all(backend, VECTORS["B9"][1], "B")
    assert unpack(request.args[0]) == [b"GET", b"/hello?x=1", b"1.1", [[b"Host", b"example.com"]], b""]
    head, body, close = decode_all(backend, VECTORS["B10"][1], "B")
    assert unpack(head.args[0]) == [200, [[b"Content-Type", b"text/plain"]]]
    assert body.args == [b"hello"]  # B body writes are raw, not wrapped
    assert (close.type, close.args, close.headers) == (2, [], None)


def test_b8_graph_has_integer_keys(backend: str) -> None:
    (frame,) = decode_all(backend, VECTORS["B8"][1], "B")
    endpoints, version, graph = frame.args
    assert endpoints == [[b"127.0.0.1", 43210], [b"::1", 43210]]
    assert version == 1
    assert sorted(graph) == [0, 1, 2, 3]
    assert graph[3] == [b"find", {}, P]


def test_b3_cf_header_indices_are_plain_ints(backend: str) -> None:
    (frame,) = decode_all(backend, VECTORS["B3"][1], "B")
    assert frame.headers == [80, 81, 82]
    assert all(type(i) is int for i in frame.headers)
