"""Encoders produce the exact bytes of PROTOCOL.md §7, and nothing msgpack-c 0.5 cannot read."""

from __future__ import annotations

import msgpack
import pytest
from helpers.oldspec import assert_old_spec

from cocaine_http.protocol.catalog import MessageEncoder, raw_header, uint
from cocaine_http.protocol.definitions import GRAPHS_B, TABLES_A, method_names
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.wire import packb

UUID = "8f0a6d4e-1c2b-4a55-9e0e-2f2b8e3f6a11"


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace("\n", " "))


A1 = hx("93 00 00 91 da 00 24 38 66 30 61 36 64 34 65 2d 31 63 32 62 2d 34 61 35 35 2d 39 65 30 65 2d 32 "
        "66 32 62 38 65 33 66 36 61 31 31")
A6 = hx("93 05 11 92 d0 9c da 00 24 74 68 65 72 65 20 69 73 20 6e 6f 20 68 61 6e 64 6c 65 72 20 66 6f 72 "
        "20 65 76 65 6e 74 20 6e 6f 73 75 63 68")
B8 = hx(
    "93 01 00 93 92 92 a9 31 32 37 2e 30 2e 30 2e 31 cd a8 ca"
    " 92 a3 3a 3a 31 cd a8 ca 01 84 00 93 a4 72 65 61 64 "
    "80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72"
    " 80 01 93 a5 77 72 69 74 65 80 82 00 92 a5 76 61 6c "
    "75 65 80 01 92 a5 65 72 72 6f 72 80 02 93 a6 72 65 6d 6f"
    " 76 65 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 "
    "72 72 6f 72 80 03 93 a4 66 69 6e 64 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80"
)


@pytest.fixture
def a() -> MessageEncoder:
    return MessageEncoder(Generation.A)


@pytest.fixture
def b() -> MessageEncoder:
    return MessageEncoder(Generation.B)


def test_generation_a_vectors(a: MessageEncoder) -> None:
    assert a.handshake(UUID) == A1  # uuid as raw16 da 00 24, never str8
    assert a.heartbeat() == hx("93 01 00 90")  # A2
    assert a.invoke(17, "http") == hx("93 03 11 91 a4 68 74 74 70")  # A3
    assert a.chunk(17, b"\x00\x80\xc4\xd9\xff") == hx("93 04 11 91 a5 00 80 c4 d9 ff")  # A4
    assert a.choke(17) == hx("93 06 11 90")  # A5
    assert a.error(17, -100, "there is no handler for event nosuch") == A6
    assert a.terminate(1, "slave is idle") == hx(
        "93 02 00 92 01 ad 73 6c 61 76 65 20 69 73 20 69 64 6c 65"
    )  # A7
    assert a.frame(1, 0, ["storage"]) == hx("93 00 01 91 a7 73 74 6f 72 61 67 65")  # A8


def test_generation_b_vectors(b: MessageEncoder) -> None:
    assert b.handshake(UUID) == hx("93 01 00 91 da 00 24") + UUID.encode()  # B1
    assert b.chunk(2, b"\x00\x80\xc4\xd9\xff") == hx("93 02 00 91 a5 00 80 c4 d9 ff")  # B4
    assert b.error(2, (42, 1), "event not found") == hx(
        "93 02 01 92 92 2a 01 af 65 76 65 6e 74 20 6e 6f 74 20 66 6f 75 6e 64")  # B5
    assert b.terminate(13, "slave is idle") == hx(
        "93 01 01 92 0d ad 73 6c 61 76 65 20 69 73 20 69 64 6c 65"
    )  # B6
    assert b.frame(1, 0, ["storage"]) == hx("93 01 00 91 a7 73 74 6f 72 61 67 65")  # B7
    assert b.chunk(2, b"hello") + b.choke(2) == hx("93 02 00 91 a5 68 65 6c 6c 6f 93 02 02 90")  # B10 tail
    assert b.invoke(2, "http", [80, 81, 82]) == hx("94 02 00 91 a4 68 74 74 70 93 50 51 52")


def test_error_code_dialects(a: MessageEncoder, b: MessageEncoder) -> None:
    # A has no categories: a pair keeps its code; B wraps a bare int in category 42.
    assert msgpack.unpackb(a.error(3, (42, 7), "x")) == [5, 3, [7, "x"]]
    assert msgpack.unpackb(b.error(3, 7, "x")) == [3, 1, [[42, 7], "x"]]


def test_a_frames_cannot_carry_headers(a: MessageEncoder) -> None:
    with pytest.raises(ValueError):
        a.frame(1, 4, [b"x"], headers=[80])


@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536, 1 << 20])
@pytest.mark.parametrize(
    "session", [0, 1, 127, 128, 255, 256, 4097, 65535, 65536, 1 << 20, 2**32 - 1, 2**32, 2**64 - 1]
)
def test_hand_rolled_chunks_equal_the_packer(size: int, session: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for gen, order in ((Generation.A, lambda s: [4, s, [data]]), (Generation.B, lambda s: [s, 0, [data]])):
        enc = MessageEncoder(gen)
        frame = enc.chunk(session, data)
        assert frame == msgpack.packb(order(session), use_bin_type=False)
        assert_old_spec(frame)
        assert enc.choke(session) == msgpack.packb(
            [6, session, []] if gen is Generation.A else [session, 2, []]
        )


def test_uint_and_raw_header_edges() -> None:
    assert uint(0) == b"\x00" and uint(127) == b"\x7f" and uint(128) == b"\xcc\x80"
    assert raw_header(31) == b"\xbf" and raw_header(32) == b"\xda\x00\x20"  # never str8 d9
    assert raw_header(65536) == b"\xdb\x00\x01\x00\x00"
    with pytest.raises(ValueError):
        raw_header(1 << 32)


def test_every_encoder_output_is_old_spec(a: MessageEncoder, b: MessageEncoder) -> None:
    long_text = "x" * 200  # 32..255 is where the default packer would emit str8
    for enc in (a, b):
        for frame in (
            enc.handshake(long_text),
            enc.terminate(1, long_text),
            enc.invoke(5, long_text),
            enc.error(5, 1, long_text),
            enc.chunk(5, long_text.encode()),
            enc.frame(5, 1, [long_text, {1: long_text}, [b"\xff" * 40], 1.5, None, True]),
        ):
            assert_old_spec(frame)


def test_resolve_graph_matches_b8() -> None:
    reply = [1, 0, [[["127.0.0.1", 43210], ["::1", 43210]], 1, GRAPHS_B["storage"]]]
    assert packb(reply) == B8


def test_method_tables() -> None:
    assert TABLES_A["storage"] == {0: "read", 1: "write", 2: "remove", 3: "find"}
    assert method_names("storage", True) == method_names("storage", False)
    assert method_names("app", False) == {"enqueue": 0, "info": 1, "control": 2}
    assert GRAPHS_B["logging"][0] == ["emit", {}, {}]  # mute


def test_error_codes_as_decoded_from_the_wire(a: MessageEncoder, b: MessageEncoder) -> None:
    # A [category, code] pair decodes as a list; relaying it must work as a tuple does.
    assert b.error(4, [0x52FF, 1], "queue is full") == b.error(4, (0x52FF, 1), "queue is full")
    assert msgpack.unpackb(a.error(4, [0x52FF, 1], "queue is full")) == [5, 4, [1, "queue is full"]]
    with pytest.raises(ValueError):
        b.error(4, [1, 2, 3], "x")
