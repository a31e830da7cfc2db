"""Memory of the decoders for a frame far larger than a socket read.

The proxies send a request's whole body in one frame, which reaches the
decoder as the socket's reads, 256 KiB at most each (``aio/reads.py``). Fed
read by read (``records()``, as the transport feeds it), such a frame must
cost the decoder about its own size while it arrives, its payload once it
has been handed out, and never twice the frame: ``tracemalloc`` counts every ``bytes`` and ``BytesIO``
allocation, so these bounds hold whatever the C allocator does.
"""

from __future__ import annotations

import itertools
import os
import random
import tracemalloc

import pytest
from helpers.feeding import BACKENDS, comparable, make, pack, require_backend

READ = 256 * 1024
MiB = 1 << 20


def _reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_frame_in_many_reads_peaks_at_its_size_and_is_let_go(backend: str) -> None:
    require_backend(backend)
    payload = os.urandom(24 * MiB)
    reads = _reads(pack([7, 4, [payload]]))
    del payload
    decoder = make(backend, "B")
    # The pure twin replaces its Unpacker when it starts collecting, and
    # msgpack gives a new one a 1 MiB buffer (counted: allocated while traced;
    # the old one's, freed, is not: it was allocated before).
    spare = 1 * MiB if backend == "pure" else 0
    got: list[tuple[int, int, list[bytes], object]] = []
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        while reads:
            got.extend(decoder.records(reads.pop(0)))  # each read let go once fed, as the transport does
            if not got:
                # While it arrives: the frame once, with BytesIO's room to grow
                # (an eighth) and a read; a list of the pieces joined at the
                # end peaked at twice the frame.
                _, peak = tracemalloc.get_traced_memory()
                assert peak - before < 1.2 * 24 * MiB + 1 * MiB, f"peak {(peak - before) / MiB:.1f} MiB"
        _, peak = tracemalloc.get_traced_memory()
        ((session, kind, args, _headers),) = got
        assert (session, kind, len(args[0])) == (7, 4, 24 * MiB)
        # Handed out: the payload is all that is left.
        current, _ = tracemalloc.get_traced_memory()
        assert current - before < 24 * MiB + 1 * MiB + spare, f"held {(current - before) / MiB:.1f} MiB"
        # The payload was collected by itself, where it stays: never the
        # frame and a payload cut from it (twice the frame).
        assert peak - before < 1.2 * 24 * MiB + 2 * MiB + spare, f"peak {(peak - before) / MiB:.1f} MiB"
        # Once the reader lets go of it, so has the decoder (no next read needed).
        del got, args
        current, _ = tracemalloc.get_traced_memory()
        assert current - before < 1 * MiB + spare, f"held {(current - before) / MiB:.1f} MiB after"
    finally:
        tracemalloc.stop()
    assert decoder.pending == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("generation", ["A", "B"])
def test_nothing_of_a_fed_view_is_kept(backend: str, generation: str) -> None:
    """``feed`` takes a ``memoryview``: fed views of one buffer that is
    scribbled over after every read (as a socket's reads land in one buffer,
    ``aio/reads.py``), a decoder returns what it returns when fed ``bytes``:
    whatever it keeps of a read, it copied first."""
    require_backend(backend)
    rng = random.Random(15)
    frames = []
    for i in range(40):
        frames.append([5 + i, 4, [rng.randbytes(rng.choice([0, 10, 3000, 300_000, 1_200_000]))]])
        if generation == "B" and i % 3 == 0:
            frames[-1].append([[b"trace", b"%d" % i]])
    packed = [pack(f) for f in frames]
    stream = b"".join(packed)
    expected = [comparable(f) for f in make(backend, generation).frames(stream)]
    # Reads end at frame ends (the usual read) and anywhere inside frames.
    cuts = set(itertools.accumulate(len(p) for p in packed))
    cuts.update(rng.randrange(len(stream)) for _ in range(60))
    cuts.update(range(0, len(stream), READ))
    decoder = make(backend, generation)
    buffer = bytearray(READ)
    got, at = [], 0
    for end in sorted(c for c in cuts if c):
        n = end - at
        buffer[:n] = stream[at:end]
        at = end
        with memoryview(buffer)[:n] as view:
            got.extend(comparable(f) for f in decoder.frames(view if rng.random() < 0.7 else bytes(view)))
        buffer[:] = b"\xee" * READ  # the next read's bytes, as far as the decoder can tell
    assert got == expected
    assert decoder.pending == 0
