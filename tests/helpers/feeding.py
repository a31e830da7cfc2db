"""Feed byte streams to frame decoders in pieces and record what comes out.

A run is summarised as an :class:`Outcome`: the frames in order (in a
comparable form), then how it ended (``"need-data"`` or the exception class
name) and the bytes left pending. Two runs agree when their outcomes are
equal, which is how the backends are compared with each other and a split
feeding with a whole one.
"""

from __future__ import annotations

import itertools
import os
import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from cocaine_http.errors import DecodeError
from cocaine_http.protocol import codec
from cocaine_http.protocol.frames import Frame, Generation

BACKENDS = ("native", "pure")
#: The native decoder collecting every payload that spans pieces by itself
#: (``collect_min=1``; by default only payloads of 64 KiB or more are), so
#: that the parity fuzz covers the collection on small streams.
COLLECTING = "native-collect"
#: The pure twin doing the same (its collection mirrors C's).
PURE_COLLECTING = "pure-collect"
NEED_DATA = "need-data"


def require_backend(name: str) -> str:
    """Skip (or fail) a test that needs a backend this process lacks.

    The native backend is skipped when the extension was not built, unless
    ``COCAINE_HTTP_DECODER`` is set: then a missing extension is a failure.
    """
    if name in {"native", COLLECTING} and "native" not in codec.available_backends():
        forced = os.environ.get(codec.ENV_VAR, "").strip()
        if forced:
            pytest.fail(f"{codec.ENV_VAR}={forced} but cocaine_http._native is not built", pytrace=False)
        pytest.skip("native decoder not built (cocaine_http._native missing)")
    return name


def make(
    backend: str,
    generation: Generation | str = "A",
    max_frame_size: int = codec.DEFAULT_MAX_FRAME_SIZE,
    skip_oversize: bool = False,
):
    if backend in (COLLECTING, PURE_COLLECTING):
        cls = codec._native_class() if backend == COLLECTING else codec._pure_class()
        gen = Generation.parse(generation)
        return cls(gen, max_frame_size=max_frame_size, skip_oversize=skip_oversize, collect_min=1)
    return codec.new_decoder(
        generation, max_frame_size=max_frame_size, backend=backend, skip_oversize=skip_oversize
    )


def comparable(frame: Frame) -> tuple[int, int, str, str]:
    """A frame as a value that compares equal across backends (NaN included)."""
    return (frame.session, frame.type, repr(frame.args), repr(frame.headers))


@dataclass
class Outcome:
    frames: list[Frame] = field(default_factory=list)
    end: str = NEED_DATA  # NEED_DATA or the DecodeError subclass name
    pending: int | None = None  # bytes pending at the end (only when end == NEED_DATA)

    def key(self) -> tuple[list[tuple[int, int, str, str]], str, int | None]:
        return ([comparable(f) for f in self.frames], self.end, self.pending)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self.key() == other.key()

    __hash__ = None  # type: ignore[assignment]


def run(
    decoder: Any,
    pieces: Iterable[bytes],
    *,
    use_iter: bool = False,
    use_frames: bool = False,
    use_records: bool = False,
) -> Outcome:
    """Feed *pieces* one by one, draining frames after each; stop at an error.

    Frames are drained with ``next_frame()``, by iterating (*use_iter*), or
    fed and drained in one call with ``frames(piece)`` (*use_frames*) or
    ``records(piece)`` (*use_records*: each record must be a plain tuple, and
    becomes a Frame here).
    """
    out = Outcome()
    try:
        for piece in pieces:
            if use_frames:
                out.frames.extend(decoder.frames(piece))
                continue
            if use_records:
                for record in decoder.records(piece):
                    assert type(record) is tuple and len(record) == 4, record
                    out.frames.append(Frame(*record))
                continue
            decoder.feed(piece)
            if use_iter:
                out.frames.extend(decoder)
            else:
                while (frame := decoder.next_frame()) is not None:
                    out.frames.append(frame)
    except DecodeError as exc:
        out.end = type(exc).__name__
        return out
    out.pending = decoder.pending
    return out


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def cut(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """Split *data* at the given offsets (any order, duplicates and ends allowed)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def random_splits(data: bytes, rng: random.Random, max_piece: int | None = None) -> list[bytes]:
    """Random pieces: anything from single bytes to the whole stream."""
    pieces = []
    i = 0
    limit = max_piece or max(1, len(data))
    while i < len(data):
        n = rng.randint(1, limit)
        pieces.append(data[i : i + n])
        i += n
    return pieces


def decode_all(backend: str, data: bytes, generation: Generation | str = "A", **kw: Any) -> list[Frame]:
    """Every frame in *data*, which must hold complete frames only."""
    decoder = make(backend, generation, **kw)
    decoder.feed(data)
    frames = list(decoder)
    assert decoder.pending == 0, f"{decoder.pending} bytes left over"
    return frames


def outcome(
    backend: str,
    data: bytes,
    generation: Generation | str = "A",
    pieces: Sequence[bytes] | None = None,
    **kw: Any,
) -> Outcome:
    return run(make(backend, generation, **kw), whole(data) if pieces is None else pieces)


# --- msgpack with chosen encodings -------------------------------------------------------------
# packb always writes the shortest form and old-spec raws only; the decoders must also read the
# forms a peer may choose: wide ints (the runtime's cf header indices), signed markers holding
# non-negative values, str8/bin, wide container headers.

_UINT = {"fix": None, "cc": (0xCC, ">B"), "cd": (0xCD, ">H"), "ce": (0xCE, ">I"), "cf": (0xCF, ">Q")}
_INT = {"d0": (0xD0, ">b"), "d1": (0xD1, ">h"), "d2": (0xD2, ">i"), "d3": (0xD3, ">q")}


def uint(value: int, marker: str = "cf") -> bytes:
    """A non-negative int with an unsigned marker (``fix`` = positive fixint)."""
    if marker == "fix":
        assert 0 <= value <= 0x7F
        return bytes([value])
    code, fmt = _UINT[marker]
    return bytes([code]) + struct.pack(fmt, value)


def sint(value: int, marker: str = "d3") -> bytes:
    """An int with a signed marker (``neg`` = negative fixint)."""
    if marker == "neg":
        assert -32 <= value < 0
        return struct.pack(">b", value)
    code, fmt = _INT[marker]
    return bytes([code]) + struct.pack(fmt, value)


def raw(data: bytes, marker: str = "auto") -> bytes:
    """A byte string as fixraw/raw16/raw32 (``auto`` = what packb writes), str8 or bin8/16/32."""
    n = len(data)
    if marker == "auto":
        marker = "fix" if n < 32 else "da" if n < 65536 else "db"
    head = {
        "fix": lambda: bytes([0xA0 | n]),
        "d9": lambda: b"\xd9" + struct.pack(">B", n),
        "da": lambda: b"\xda" + struct.pack(">H", n),
        "db": lambda: b"\xdb" + struct.pack(">I", n),
        "c4": lambda: b"\xc4" + struct.pack(">B", n),
        "c5": lambda: b"\xc5" + struct.pack(">H", n),
        "c6": lambda: b"\xc6" + struct.pack(">I", n),
    }[marker]()
    return head + data


def array_header(n: int, marker: str = "auto") -> bytes:
    if marker == "auto":
        marker = "fix" if n < 16 else "dc" if n < 65536 else "dd"
    if marker == "fix":
        return bytes([0x90 | n])
    return (b"\xdc" + struct.pack(">H", n)) if marker == "dc" else (b"\xdd" + struct.pack(">I", n))


def map_header(n: int, marker: str = "auto") -> bytes:
    if marker == "auto":
        marker = "fix" if n < 16 else "de" if n < 65536 else "df"
    if marker == "fix":
        return bytes([0x80 | n])
    return (b"\xde" + struct.pack(">H", n)) if marker == "de" else (b"\xdf" + struct.pack(">I", n))


def array(*items: bytes, marker: str = "auto") -> bytes:
    return array_header(len(items), marker) + b"".join(items)


def pack(obj: Any) -> bytes:
    """Shortest, old-spec encoding: what every cocaine peer writes."""
    return msgpack.packb(obj, use_bin_type=False)
