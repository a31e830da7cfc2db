"""Memory of the native decoder for a frame far larger than a socket read.

The proxies send a request's whole body in one frame, which reaches the
decoder as the socket's reads, 256 KiB at most each (``aio/reads.py``). Fed
read by read (``records()``, as the transport feeds it), such a frame must
cost the decoder about its own size while it arrives, and nothing once it
has been handed out: ``tracemalloc`` counts every ``bytes`` and ``BytesIO``
allocation, so these bounds hold whatever the C allocator does.
"""

from __future__ import annotations

import os
import tracemalloc

from helpers.feeding import make, pack, require_backend

READ = 256 * 1024
MiB = 1 << 20


def _reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def test_a_frame_in_many_reads_peaks_at_its_size_and_is_let_go() -> None:
    require_backend("native")
    payload = os.urandom(24 * MiB)
    reads = _reads(pack([7, 4, [payload]]))
    del payload
    decoder = make("native", "B")
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
        # Handed out: the payload, a copy cut from the frame, is all that is left.
        current, _ = tracemalloc.get_traced_memory()
        assert current - before < 24 * MiB + 1 * MiB, f"held {(current - before) / MiB:.1f} MiB"
        assert peak - before < 2 * 24 * MiB + 2 * MiB  # the frame and the payload cut from it
    finally:
        tracemalloc.stop()
    assert decoder.pending == 0
