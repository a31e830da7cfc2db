"""The decoder facade and the frame contract, for each backend: shapes that
are frames, shapes that are not, the dialect, and the life cycle."""

from __future__ import annotations

import array as pyarray
import os
import subprocess
import sys

import pytest
from helpers.feeding import (
    array,
    array_header,
    bytewise,
    decode_all,
    make,
    map_header,
    outcome,
    pack,
    raw,
    require_backend,
    sint,
    uint,
)

from cocaine_http.errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from cocaine_http.protocol import codec
from cocaine_http.protocol.frames import Frame, Generation
from cocaine_http.protocol.wire import MAX_MAP_LEN

# --- the facade ---------------------------------------------------------------------------------


def test_backend_names() -> None:
    assert codec.BACKEND in {"native", "pure"}
    names = codec.available_backends()
    assert names[-1] == "pure"
    assert set(names) <= {"native", "pure"}
    assert codec.BACKEND in names


def test_backend_follows_the_environment() -> None:
    forced = os.environ.get(codec.ENV_VAR, "").strip().lower()
    if forced == "native":
        assert codec.BACKEND == "native"
    elif forced in {"python", "pure"}:
        assert codec.BACKEND == "pure"


def _backend_in_subprocess(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **{codec.ENV_VAR: value})
    code = "from cocaine_http.protocol import codec; print(codec.BACKEND)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_environment_forces_the_pure_twin() -> None:
    done = _backend_in_subprocess("python")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"


def test_environment_rejects_unknown_backend() -> None:
    done = _backend_in_subprocess("fortran")
    assert done.returncode != 0
    assert "ImportError" in done.stderr


def test_environment_forces_native() -> None:
    require_backend("native")
    done = _backend_in_subprocess("native")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "native"


def test_new_decoder_picks_the_class(backend: str) -> None:
    decoder = codec.new_decoder("0.12", backend=backend)
    assert decoder.generation is Generation.B
    assert decoder.max_frame_size == codec.DEFAULT_MAX_FRAME_SIZE
    assert type(decoder).__name__ == {"native": "NativeDecoder", "pure": "PureDecoder"}[backend]
    default = codec.new_decoder(Generation.A)
    assert type(default).__name__ == {"native": "NativeDecoder", "pure": "PureDecoder"}[codec.BACKEND]


def test_new_decoder_rejects_unknown_backend() -> None:
    with pytest.raises(ValueError):
        codec.new_decoder("A", backend="rust")


@pytest.mark.parametrize("bad", [0, -1, 2**63])
def test_max_frame_size_must_be_positive(backend: str, bad: int) -> None:
    with pytest.raises(ValueError):
        codec.new_decoder("A", max_frame_size=bad, backend=backend)


@pytest.mark.parametrize("bad", [1.5, "10", True, None])
def test_max_frame_size_must_be_an_int(backend: str, bad: object) -> None:
    with pytest.raises(TypeError):
        codec.new_decoder("A", max_frame_size=bad, backend=backend)  # type: ignore[arg-type]


# --- frames that are frames ----------------------------------------------------------------------


def test_generation_a_order(backend: str) -> None:
    assert decode_all(backend, pack([4, 17, [b"x"]]), "A") == [
        Frame(session=17, type=4, args=[b"x"], headers=None)
    ]


def test_generation_b_order_and_headers(backend: str) -> None:
    assert decode_all(backend, pack([17, 4, [b"x"]]), "B") == [Frame(session=17, type=4, args=[b"x"])]
    frames = decode_all(backend, pack([17, 4, [b"x"], [[False, b"k", b"v"]]]), "B")
    assert frames == [Frame(session=17, type=4, args=[b"x"], headers=[[False, b"k", b"v"]])]
    assert decode_all(backend, pack([1, 2, [], []]), "B")[0].headers == []


def test_generation_b_ignores_elements_after_headers(backend: str) -> None:
    data = pack([5, 0, [b"a"], [80], b"reserved", {1: 2}, [[[]]]])
    assert decode_all(backend, data, "B") == [Frame(session=5, type=0, args=[b"a"], headers=[80])]


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (uint(0, "fix"), 0),
        (uint(0x7F, "fix"), 0x7F),
        (uint(200, "cc"), 200),
        (uint(7, "cd"), 7),
        (uint(2**32 - 1, "ce"), 2**32 - 1),
        (uint(2**64 - 1, "cf"), 2**64 - 1),
        (uint(0, "cf"), 0),
        (sint(0, "d0"), 0),
        (sint(127, "d0"), 127),
        (sint(5, "d1"), 5),
        (sint(2**31 - 1, "d2"), 2**31 - 1),
        (sint(2**63 - 1, "d3"), 2**63 - 1),
    ],
)
def test_ids_of_any_integer_width(backend: str, encoded: bytes, value: int) -> None:
    for generation in ("A", "B"):
        data = array(encoded, encoded, array())
        (frame,) = decode_all(backend, data, generation)
        assert (frame.session, frame.type) == (value, value)
        assert type(frame.session) is int and type(frame.type) is int


def test_dialect_str8_bin_read_as_raw(backend: str) -> None:
    payload = bytes(range(40))
    args = array(raw(b"s8", "d9"), raw(payload, "c4"), raw(b"", "c5"), raw(b"b32", "c6"), raw(b"r32", "db"))
    (frame,) = decode_all(backend, array(uint(4, "fix"), uint(1, "fix"), args))
    assert frame.args == [b"s8", payload, b"", b"b32", b"r32"]
    assert all(type(a) is bytes for a in frame.args)


@pytest.mark.parametrize("marker", ["fix", "d9", "da", "db", "c4", "c5", "c6"])
def test_chunk_payload_any_raw_marker(backend: str, marker: str) -> None:
    payload = b"\x00\xc1\xd4\xff" * 5
    (frame,) = decode_all(backend, array(uint(4, "fix"), uint(9, "cf"), array(raw(payload, marker))))
    assert frame == Frame(session=9, type=4, args=[payload])


def test_dialect_scalars_and_maps(backend: str) -> None:
    value = [
        None,
        True,
        False,
        -1,
        -33,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.25,
        {0: b"read", b"k": [1, {}], None: 1.0},
    ]
    (frame,) = decode_all(backend, pack([1, 2, value]))
    assert frame.args == value
    float32 = array(uint(1, "fix"), uint(2, "fix"), array(b"\xca\x3f\xc0\x00\x00"))
    assert decode_all(backend, float32)[0].args == [1.5]


def test_wide_container_headers(backend: str) -> None:
    data = (
        array_header(3, "dd")
        + uint(1, "cd")
        + uint(2, "ce")
        + array_header(2, "dc")
        + b"\x01"
        + map_header(1, "df")
        + b"\x01\x02"
    )
    assert decode_all(backend, data) == [Frame(session=2, type=1, args=[1, {1: 2}])]


def test_map_keys_any_scalar(backend: str) -> None:
    args = [{7: 1, -1: 2, b"x": 3, None: 4, True: 5, 2.5: 6}]
    assert decode_all(backend, pack([1, 2, args]))[0].args == args


def test_max_map_len_itself_is_fine(backend: str) -> None:
    body = b"".join(uint(i, "cd") + b"\xc0" for i in range(MAX_MAP_LEN))
    data = array(uint(1, "fix"), uint(2, "fix"), array(map_header(MAX_MAP_LEN, "df") + body))
    (frame,) = decode_all(backend, data)
    assert len(frame.args[0]) == MAX_MAP_LEN


# --- frames that are not --------------------------------------------------------------------------

BAD: dict[str, tuple[str, bytes, type[DecodeError]]] = {
    "top-level int": ("A", uint(1, "cd"), FrameFormatError),
    "top-level nil": ("B", b"\xc0", FrameFormatError),
    "top-level raw": ("A", raw(b"abc"), FrameFormatError),
    "top-level map": ("B", pack({0: 1}), FrameFormatError),
    "empty array": ("A", array(), FrameFormatError),
    "A two elements": ("A", pack([1, 0]), FrameFormatError),
    "A four elements": ("A", pack([1, 0, [], []]), FrameFormatError),
    "B two elements": ("B", pack([1, 0]), FrameFormatError),
    "bool type": ("A", pack([True, 0, []]), FrameFormatError),
    "bool session": ("A", pack([1, False, []]), FrameFormatError),
    "nil id": ("B", pack([None, 0, []]), FrameFormatError),
    "negative fixint id": ("B", pack([1, -1, []]), FrameFormatError),
    "negative signed id": ("A", array(sint(-5, "d3"), uint(0, "fix"), array()), FrameFormatError),
    "float id": ("A", pack([1.0, 0, []]), FrameFormatError),
    "raw id": ("B", pack([b"1", 0, []]), FrameFormatError),
    "array id": ("A", pack([[1], 0, []]), FrameFormatError),
    "args nil": ("A", pack([1, 0, None]), FrameFormatError),
    "args map": ("B", pack([1, 0, {}]), FrameFormatError),
    "args raw": ("A", pack([1, 0, b""]), FrameFormatError),
    "headers map": ("B", pack([1, 0, [], {}]), FrameFormatError),
    "headers nil": ("B", pack([1, 0, [], None]), FrameFormatError),
    "headers int": ("B", pack([1, 0, [], 80]), FrameFormatError),
    "unhashable array key": (
        "A",
        pack([1, 0, []])[:-1] + array(map_header(1) + array(b"\x01") + b"\x02"),
        FrameFormatError,
    ),
    "unhashable map key": (
        "B",
        array(b"\x01", b"\x00", array(map_header(1) + map_header(0) + b"\x02")),
        FrameFormatError,
    ),
    "fixext": ("A", array(b"\x01", b"\x00", array(b"\xd4\x01\x00")), MalformedMessageError),
    "ext8": ("B", array(b"\x01", b"\x00", array(b"\xc7\x02\x05ab")), MalformedMessageError),
    "ext32 at top": ("A", b"\xc9\x00\x00\x00\x01\x05a", MalformedMessageError),
    "timestamp ext": ("B", b"\xd6\xff\x00\x00\x00\x00", MalformedMessageError),
    "timestamp in args": (
        "A",
        array(b"\x01", b"\x00", array(b"\xd6\xff\x00\x00\x00\x01")),
        MalformedMessageError,
    ),
    "timestamp map key": (
        "B",
        array(b"\x01", b"\x00", array(map_header(1) + b"\xd6\xff\x00\x00\x00\x01\x01")),
        MalformedMessageError,
    ),
    "timestamp96 as id": ("B", array(b"\xc7\x0c\xff" + bytes(12), b"\x00", array()), MalformedMessageError),
    "bad timestamp": ("A", array(b"\x01", b"\x00", array(b"\xd5\xff\x00\x00")), MalformedMessageError),
    "0xc1 at top": ("A", b"\xc1", MalformedMessageError),
    "0xc1 as id": ("A", b"\x93\xc1\x00\x90", MalformedMessageError),
    "0xc1 in args": ("B", b"\x93\x01\x00\x92\x01\xc1", MalformedMessageError),
    "0xc1 after a bad shape": ("A", b"\x94\xc2\x00\x90\xc1", MalformedMessageError),
    "map too long": ("A", b"\x93\x01\x00\x91" + map_header(MAX_MAP_LEN + 1, "df"), FrameTooLargeError),
    "too deep": ("A", b"\x93\x01\x00" + b"\x91" * 1023 + b"\x90", FrameTooDeepError),
    "too deep, empty map": ("B", b"\x91" * 1024 + b"\x80", FrameTooDeepError),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input(backend: str, name: str) -> None:
    generation, data, error = BAD[name]
    for pieces in ([data], bytewise(data), [data + pack([1, 0, []])]):
        result = outcome(backend, data, generation, pieces=pieces)
        assert result.end == error.__name__, pieces
        assert result.frames == []


def test_good_frames_before_a_bad_one_come_out(backend: str) -> None:
    good = pack([1, 0, [b"ok"]])
    result = outcome(backend, good * 3 + b"\xc1" + good)
    assert len(result.frames) == 3
    assert result.end == "MalformedMessageError"


def test_oversize_frame(backend: str) -> None:
    fits = pack([4, 1, [b"x" * 11]])  # 16 bytes
    assert len(fits) == 16
    assert decode_all(backend, fits, max_frame_size=16) == [Frame(session=1, type=4, args=[b"x" * 11])]
    too_big = pack([4, 1, [b"x" * 12]])
    for pieces in ([too_big], bytewise(too_big)):
        assert outcome(backend, too_big, pieces=pieces, max_frame_size=16).end == "FrameTooLargeError"


def test_huge_declared_raw_fails_at_its_header(backend: str) -> None:
    """No allocation, no wait: a raw that cannot end inside max_frame_size is
    refused as soon as its header is in, whatever the limit (issue #16)."""
    head = b"\x93\x04\x01\x91\xdb\xff\xff\xff\xff"
    for kw in ({"max_frame_size": 64}, {}):
        decoder = make(backend, "A", **kw)
        decoder.feed(head)
        with pytest.raises(FrameTooLargeError):
            decoder.next_frame()
    # one that could still fit waits for its body
    decoder = make(backend, "A", max_frame_size=64)
    decoder.feed(b"\x93\x04\x01\x91\xda\x00\x39" + b"x" * 10)
    assert decoder.next_frame() is None
    assert decoder.pending == 17


def test_huge_declared_array_fails_at_its_header(backend: str) -> None:
    decoder = make(backend, "A", max_frame_size=1000)
    decoder.feed(b"\x93\x01\x00\xdd\x00\x00\x03\xe9")  # 1001 elements cannot fit in 1000 bytes
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


# --- life cycle ----------------------------------------------------------------------------------


def test_error_is_sticky(backend: str) -> None:
    decoder = make(backend, "A")
    decoder.feed(pack([1, 0, []]) + b"\xc1")
    assert decoder.next_frame() == Frame(session=0, type=1, args=[])
    with pytest.raises(MalformedMessageError) as first:
        decoder.next_frame()
    with pytest.raises(MalformedMessageError) as again:
        decoder.next_frame()
    assert again.value is first.value
    with pytest.raises(MalformedMessageError) as on_feed:
        decoder.feed(pack([1, 0, []]))
    assert on_feed.value is first.value
    with pytest.raises(MalformedMessageError):
        list(decoder)
    assert first.value.code == MalformedMessageError.code


def test_iteration_stops_at_need_data_and_resumes(backend: str) -> None:
    decoder = make(backend, "B")
    frame = pack([1, 0, [b"abc"], []])
    decoder.feed(frame * 2 + frame[:5])
    assert len(list(decoder)) == 2
    assert list(decoder) == []
    assert decoder.pending == 5
    decoder.feed(frame[5:])
    assert list(decoder) == [Frame(session=1, type=0, args=[b"abc"], headers=[])]
    assert decoder.pending == 0


def test_pending_counts_bytes_not_returned(backend: str) -> None:
    decoder = make(backend, "A")
    frame = pack([4, 1, [b"data"]])
    assert decoder.pending == 0
    decoder.feed(frame * 3)
    assert decoder.pending == 3 * len(frame)
    decoder.next_frame()
    assert decoder.pending == 2 * len(frame)
    decoder.feed(frame[:3])
    assert decoder.pending == 2 * len(frame) + 3
    assert len(list(decoder)) == 2
    assert decoder.pending == 3
    assert decoder.next_frame() is None


def test_feed_accepts_buffers(backend: str) -> None:
    decoder = make(backend, "A")
    frame = pack([4, 1, [b"data!"]])
    assert len(frame) % 2 == 0
    decoder.feed(bytearray(frame))
    decoder.feed(memoryview(frame))
    decoder.feed(pyarray.array("H", frame))  # itemsize 2: counted in bytes
    decoder.feed(b"")
    assert decoder.pending == 3 * len(frame)
    assert list(decoder) == [Frame(session=1, type=4, args=[b"data!"])] * 3


def test_feeding_does_not_alias_caller_buffers(backend: str) -> None:
    decoder = make(backend, "A")
    buf = bytearray(pack([4, 1, [b"abc"]]))
    decoder.feed(buf)
    buf[:] = b"\xc1" * len(buf)
    assert list(decoder) == [Frame(session=1, type=4, args=[b"abc"])]


def test_many_frames_then_large_and_small(backend: str) -> None:
    """Decoding ahead in batches must not change what is returned, or when."""
    frames = [pack([4, i, [bytes([i % 256]) * (i % 50)]]) for i in range(500)]
    big = pack([4, 9999, [b"B" * 200_000]])
    stream = b"".join(frames) + big + b"".join(frames)
    result = outcome(backend, stream, pieces=[stream[i : i + 4096] for i in range(0, len(stream), 4096)])
    assert result.end == "need-data" and result.pending == 0
    assert [f.session for f in result.frames] == [*range(500), 9999, *range(500)]
    assert result.frames[500].args == [b"B" * 200_000]
