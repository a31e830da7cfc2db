"""Frame decoder throughput: the C decoder, the pure twin, and msgpack alone.

Streams of generation-A chunk frames ``[4, session, [data]]`` with 16-byte,
4 KiB and 1 MiB payloads are fed in 64 KiB pieces; every frame is taken
out, as ``Frame`` objects (``native``, ``pure``) and as the plain record
tuples the worker reads (``native rec``: ``decoder.records(piece)``). The
baseline runs only ``msgpack.Unpacker`` over the same pieces (no
frame checks, no Frame objects): the floor for anything built on it.

    python bench/decoder.py [--repeat N] [--quick]

Prints frames/s and MB/s (10^6 bytes of stream per second of process CPU
time, so that other load on the machine counts less; the best of N rounds,
the contenders interleaved) and the native/pure ratio per payload size.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import msgpack

from cocaine_http.protocol import codec

PIECE = 64 * 1024
SIZES = {"16 B": 16, "4 KiB": 4096, "1 MiB": 1 << 20}
STREAM_BYTES = 24 * 1024 * 1024  # per size; --quick divides by 8


def make_stream(payload_size: int, total: int) -> tuple[list[bytes], int]:
    payload = bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)
    frames = []
    size = 0
    session = 1
    while size < total:
        frame = msgpack.packb([4, session, [payload]], use_bin_type=False)
        frames.append(frame)
        size += len(frame)
        session = session % 100_000 + 1
    stream = b"".join(frames)
    return [stream[i : i + PIECE] for i in range(0, len(stream), PIECE)], len(frames)


def run_decoder(backend: str) -> Callable[[list[bytes]], int]:
    def run(pieces: list[bytes]) -> int:
        decoder = codec.new_decoder("A", backend=backend)
        n = 0
        for piece in pieces:
            decoder.feed(piece)
            for _ in decoder:
                n += 1
        return n

    return run


def run_records(backend: str) -> Callable[[list[bytes]], int]:
    """The worker's way: ``records(piece)``, plain tuples, no :class:`Frame`."""

    def run(pieces: list[bytes]) -> int:
        decoder = codec.new_decoder("A", backend=backend)
        n = 0
        for piece in pieces:
            for _ in decoder.records(piece):
                n += 1
        return n

    return run


def run_baseline(pieces: list[bytes]) -> int:
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=sys.maxsize)
    n = 0
    for piece in pieces:
        unpacker.feed(piece)
        for _ in unpacker:
            n += 1
    return n


def timed(fn: Callable[[list[bytes]], int], pieces: list[bytes], expected: int) -> float:
    start = time.process_time()
    n = fn(pieces)
    elapsed = time.process_time() - start
    if n != expected:
        raise SystemExit(f"{fn!r}: decoded {n} frames, expected {expected}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per measurement; the best counts (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="an eighth of the data, for a smoke run")
    args = parser.parse_args(argv)

    contenders: dict[str, Callable[[list[bytes]], int]] = {}
    if "native" in codec.available_backends():
        contenders["native"] = run_decoder("native")
        contenders["native rec"] = run_records("native")
    else:
        print("native decoder not built: skipping it", file=sys.stderr)
    contenders["pure"] = run_decoder("pure")
    contenders["msgpack only"] = run_baseline

    total = STREAM_BYTES // (8 if args.quick else 1)
    print(
        f"msgpack {'.'.join(map(str, msgpack.version))} ({msgpack.Unpacker.__module__}), "
        f"Python {sys.version.split()[0]}, {PIECE // 1024} KiB pieces, CPU time, best of {args.repeat}"
    )
    header = f"{'payload':>8} {'decoder':>13} {'frames':>8} {'frames/s':>12} {'MB/s':>9}"
    print(header)
    print("-" * len(header))
    ratios = {}
    for label, size in SIZES.items():
        pieces, count = make_stream(size, total)
        stream_bytes = sum(map(len, pieces))
        # Rounds interleave the contenders, so that a change in the load on
        # the machine hits them alike; each keeps its best round.
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                best[name] = min(best[name], timed(fn, pieces, count))
        for name, elapsed in best.items():
            mb_per_s = stream_bytes / elapsed / 1e6
            print(f"{label:>8} {name:>13} {count:>8} {count / elapsed:>12,.0f} {mb_per_s:>9,.1f}")
        if "native" in best:
            ratios[label] = best["pure"] / best["native"]
    if ratios:
        print()
        print("native / pure: " + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
