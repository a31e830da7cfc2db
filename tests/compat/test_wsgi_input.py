"""``wsgi.input`` (:class:`WSGIInput`): PEP 3333 reads over a body that arrives in chunks.

The reference for what each read returns is :class:`io.BytesIO` over the same
bytes (the semantics PEP 3333 takes from file objects); the chunking must not
show. Cost is checked by memory, not time: a read that rebuilt its buffer per
chunk held the old and the new buffer at once, so its peak was twice the body.
"""

from __future__ import annotations

import io
import random
import tracemalloc
from collections.abc import Iterator

import pytest

from cocaine_http.compat.wsgi import WSGIInput
from cocaine_http.http.envelope import encode_request, parse_request

MiB = 1 << 20


def chunked(data: bytes, sizes: list[int], in_place: bool = False) -> WSGIInput:
    """*data* as an envelope body (the first piece) then pulled chunks of *sizes* (cycled).

    *in_place*: the first piece given as parse_request's ``body_in_place``
    gives it, a view of the end of the envelope that carried it."""
    cuts = []
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        cuts.append(data[pos : pos + n])
        pos += n
        i += 1
    first: bytes | memoryview = cuts.pop(0) if cuts else b""
    if in_place:
        envelope = b"\x95\xa3GET\xa1/\xa31.1\x90\xdb" + len(first).to_bytes(4, "big") + first
        first = memoryview(envelope)[len(envelope) - len(first) :]
    rest = iter(cuts)
    return WSGIInput(first, lambda: next(rest, b""))


def lazy(count: int, size: int, fill: int = 0x61) -> tuple[WSGIInput, list[int]]:
    """*count* chunks of *size* bytes made on demand (so only what the reader keeps stays alive)."""
    pulls = [0]

    def pull() -> bytes:
        if pulls[0] >= count:
            return b""
        pulls[0] += 1
        return bytes([fill]) * size

    return WSGIInput(b"", pull), pulls


def ops(rng: random.Random) -> Iterator[tuple[str, int]]:
    while True:
        kind = rng.choice(["read", "read", "readline", "readline", "readall", "readlines"])
        yield kind, rng.choice([-1, 0, 1, 2, 3, 7, 64, 1000])


@pytest.mark.parametrize("seed", range(40))
def test_reads_match_a_file_object_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 40))) for _ in range(30)]
    data = b"".join(lines)
    sizes = [rng.choice([1, 2, 5, 17, 100, 4096]) for _ in range(5)]
    if seed % 5 == 0:
        sizes = [len(data) or 1]  # the whole body in the envelope (what the proxies send)
    stream, ref = chunked(data, sizes, in_place=seed % 2 == 1), io.BytesIO(data)
    for kind, n in ops(rng):
        if kind == "read":
            assert stream.read(n) == ref.read(n), (kind, n)
        elif kind == "readline":
            assert stream.readline(n) == ref.readline(n), (kind, n)
        elif kind == "readlines":
            assert stream.readlines(n) == ref.readlines(n), (kind, n)
        else:
            assert stream.read() == ref.read()
            break
    assert stream.read() == b"" and stream.readline() == b"" and stream.readlines() == []
    assert stream.bytes_read == len(data)


def test_edge_cases() -> None:
    empty = WSGIInput(b"", None)
    assert empty.read() == b"" and empty.read(5) == b"" and empty.readline() == b"" and list(empty) == []
    stream = chunked(b"ab\n\ncd", [1])
    assert stream.read(0) == b"" and stream.readline(0) == b""
    assert list(stream) == [b"ab\n", b"\n", b"cd"]  # iteration = readline, the last line without \n
    # readinto fills from the current chunk, then from the next
    stream = chunked(b"0123456789", [4])
    buf = bytearray(6)
    assert stream.readinto(buf) == 4 and buf[:4] == b"0123"
    assert io.BufferedReader(stream, buffer_size=3).read() == b"456789"
    # None means "all", as file objects take it
    assert chunked(b"abc\ndef", [2]).read(None) == b"abc\ndef"
    assert chunked(b"abc\ndef", [2]).readline(None) == b"abc\n"


def test_a_whole_chunk_is_handed_over_uncopied() -> None:
    chunk = b"z" * (4 * MiB)
    stream = WSGIInput(chunk, None)
    assert stream.read() is chunk
    second = b"y" * MiB
    parts = iter([second])
    stream = WSGIInput(b"", lambda: next(parts, b""))
    assert stream.read(MiB) is second


def _peak_while(fn) -> tuple[object, int]:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_read_all_of_64_mib_holds_it_once() -> None:
    stream, pulls = lazy(64, MiB)
    data, peak = _peak_while(stream.read)
    assert len(data) == 64 * MiB and data.count(b"a") == 64 * MiB  # type: ignore[union-attr]
    assert pulls == [64]
    # the result plus a chunk or two in flight; rebuilding per chunk peaked at 128 MiB
    assert peak < 64 * MiB + 4 * MiB, peak


def test_sized_read_and_long_line_of_64_mib_hold_them_once() -> None:
    stream, _ = lazy(64, MiB)
    data, peak = _peak_while(lambda: stream.read(64 * MiB - 1))
    assert len(data) == 64 * MiB - 1 and peak < 68 * MiB, peak  # type: ignore[arg-type]
    assert stream.read() == b"a"
    stream, _ = lazy(64, MiB)  # one line without a newline: readline must not rescan what it saw
    line, peak = _peak_while(stream.readline)
    assert len(line) == 64 * MiB and peak < 68 * MiB, peak  # type: ignore[arg-type]


def test_many_small_reads_keep_one_chunk() -> None:
    stream, pulls = lazy(16, MiB, fill=0x0A)  # 16 MiB of empty lines, and 64 KiB reads
    total, peak = _peak_while(lambda: sum(len(stream.read(65536)) for _ in range(16 * 16 + 1)))
    assert total == 16 * MiB and pulls == [16]
    assert peak < 3 * MiB, peak
    stream, _ = lazy(2, MiB, fill=0x0A)
    assert sum(1 for _ in stream) == 2 * MiB


def test_a_body_left_in_its_envelope_is_read_in_place() -> None:
    """The body of a large envelope (parse_request's ``body_in_place``) is read
    out of the envelope: pieces cost only themselves, and the whole of it is
    copied once, by a read() that asks for all of it."""
    body = bytes(range(256)) * (32 * MiB // 256)
    envelope = encode_request("POST", "/", [("Host", "h")], body)
    req = parse_request(envelope, body_in_place=True)
    assert type(req.body) is memoryview and req.body == body
    stream = WSGIInput(req.body, None)
    got, peak = _peak_while(lambda: [stream.read(65536) for _ in range(4)])
    assert b"".join(got) == body[: 4 * 65536]  # type: ignore[arg-type]
    assert peak < 1 * MiB, peak
    rest, peak = _peak_while(stream.read)
    assert rest == body[4 * 65536 :]
    assert peak < 32 * MiB + 1 * MiB, peak
    assert stream.read() == b""
