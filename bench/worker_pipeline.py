#!/usr/bin/env python3
"""The worker's own path for one request, in process: bytes in, answer out, no socket.

``bench/worker_echo.py`` measures whole workers over a real socket, where
the loop, the system calls and the engine are in every number and the
machine's noise is in every ratio. This benchmark isolates what the
framework itself does per request: it wires the worker's real parts
(:class:`~cocaine_http.aio.worker_transport.WorkerTransport`,
:class:`~cocaine_http.protocol.worker.WorkerProtocol`,
:class:`~cocaine_http.aio.sessions.Sessions`, the outbox and the flow control)
to a transport that only counts what it is given, and feeds each request
(invoke, one chunk, choke/close) to the protocol's ``data_received``, from
a plain loop callback as a socket read would. The ``async def`` echo
handler answers within the read (eager start), so one call is one request.

It runs every decoder backend side by side and prints microseconds per
request and the ratio native/python. With ``--callgrind`` it counts
instructions per request under valgrind instead (repeatable on a busy
machine): two runs of different lengths, their difference over the extra
requests, the cost of building the inputs subtracted.

    python bench/worker_pipeline.py                    # generation A, 16 B chunks
    python bench/worker_pipeline.py --protocol 1 --size 4096
    python bench/worker_pipeline.py --callgrind --backends native
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from typing import Any

SELF = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(SELF)))

import msgpack  # noqa: E402

from cocaine_http.aio.flow import InboundFlow, Outbox  # noqa: E402
from cocaine_http.aio.handlers import registered  # noqa: E402
from cocaine_http.aio.sessions import Sessions  # noqa: E402
from cocaine_http.aio.threads import HandlerThreads  # noqa: E402
from cocaine_http.aio.worker_transport import WorkerTransport  # noqa: E402
from cocaine_http.protocol.worker import WorkerProtocol  # noqa: E402


class CountingTransport(asyncio.Transport):
    """Takes every write, keeps only the count: the socket's place."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "bench"

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def echo(request: Any, response: Any) -> None:
    async for chunk in request:
        await response.write(chunk)


def requests(generation: str, count: int, size: int) -> list[bytes]:
    """Each request as the runtime writes it, in one read; sessions numbered as a runtime's."""
    payload = b"x" * size

    def pack(obj: object) -> bytes:
        return msgpack.packb(obj, use_bin_type=False)

    def request(s: int) -> bytes:
        if generation == "A":  # [type, session, args]: invoke 3, chunk 4, choke 6
            return pack([3, s, [b"echo"]]) + pack([4, s, [payload]]) + pack([6, s, []])
        # [channel, type, args]: invoke and write are type 0 in their graphs, close 2
        return pack([s, 0, [b"echo"]]) + pack([s, 0, [payload]]) + pack([s, 2, []])

    first = 1 if generation == "A" else 2  # B: channel 1 is the control channel
    return [request(s) for s in range(first, first + count)]


async def run_pipeline(
    generation: str, backend: str, count: int, size: int, only_inputs: bool, batch: int = 1
) -> float:
    """Microseconds per request of the timed part (the first 10% warm up).

    *batch* requests arrive in each read (as with many sessions in flight)."""
    loop = asyncio.get_running_loop()
    entry = registered(echo)  # as Worker.on decides it
    protocol = WorkerProtocol(generation, "bench")
    channel = WorkerTransport(generation, protocol, backend=backend)
    outbox = Outbox(channel, loop)
    flow = InboundFlow(channel.pause_reading, lambda: None, session_high=1 << 20, high=1 << 22, low=1 << 20)
    sessions = Sessions(
        loop,
        protocol,
        outbox,
        flow,
        HandlerThreads(1),
        find_handler=lambda event: entry if event == "echo" else None,
        control=lambda event: None,
        max_sessions=1024,
        sync_write_budget=1 << 20,
    )
    channel.sink = sessions
    channel.on_read_end = sessions.on_read_end
    transport = CountingTransport()
    channel.make_protocol().connection_made(transport)
    feed = channel.reader()  # what each read of the socket goes to
    reads = requests(generation, count, size)
    if batch > 1:
        reads = [b"".join(reads[i : i + batch]) for i in range(0, count, batch)]
    if only_inputs:
        return 0.0
    warm = len(reads) // 10
    done: asyncio.Future[float] = loop.create_future()

    def deliver() -> None:  # a loop callback, as a socket read is: no current task
        for data in reads[:warm]:
            feed(data)
        t0 = time.perf_counter()
        for data in reads[warm:]:
            feed(data)
        done.set_result(time.perf_counter() - t0)

    loop.call_soon(deliver)
    elapsed = await done
    await asyncio.sleep(0)
    if transport.writes != len(reads) or len(sessions):
        raise SystemExit(f"{transport.writes} writes for {len(reads)} reads, {len(sessions)} sessions left")
    return elapsed / (len(reads) - warm) / batch * 1e6


def callgrind_total(args: list[str]) -> int:
    """Instructions callgrind counted for one run of this script with *args*."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, SELF, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in:\n{out.stderr}")
    return int(found.group(1))


def count_instructions(generation: str, backend: str, size: int, batch: int = 1) -> float:
    common = ["--protocol", "1" if generation == "B" else "0", "--size", str(size), "--backends", backend]
    common += ["--batch", str(batch)]
    totals = {}
    for n in (3000, 13000):
        for inputs in (False, True):
            extra = ["--only-inputs"] if inputs else []
            totals[n, inputs] = callgrind_total([*common, "-n", str(n), "--single", *extra])
    work = (totals[13000, False] - totals[3000, False]) - (totals[13000, True] - totals[3000, True])
    return work / 10000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100000, help="requests per run (default 100000)")
    parser.add_argument("--protocol", choices=["0", "1"], default="0", help="0 = generation A, 1 = B")
    parser.add_argument("--size", type=int, default=16, help="chunk size in bytes (default 16)")
    parser.add_argument("--backends", default="native,python", help="decoder backends (default both)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per backend, best kept (default 3)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions per request instead")
    parser.add_argument(
        "--batch", type=int, default=1, help="requests per read (default 1; 64 is like W = 256)"
    )
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)  # one run, no report
    parser.add_argument("--only-inputs", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    generation = "B" if args.protocol == "1" else "A"
    backends = args.backends.split(",")

    if args.single:
        asyncio.run(run_pipeline(generation, backends[0], args.n, args.size, args.only_inputs, args.batch))
        return

    py = sys.version.split()[0]
    print(f"generation {generation}, {args.size} B chunks, {args.batch} per read, Python {py}")
    results: dict[str, float] = {}
    if args.callgrind:
        for backend in backends:
            results[backend] = count_instructions(generation, backend, args.size, args.batch)
            print(f"{backend:8} {results[backend]:10.0f} instructions/request")
    else:
        best: dict[str, list[float]] = {b: [] for b in backends}
        for _ in range(args.rounds):
            for backend in backends:  # interleaved: a drifting load weighs on each alike
                best[backend].append(
                    asyncio.run(run_pipeline(generation, backend, args.n, args.size, False, args.batch))
                )
        for backend in backends:
            results[backend] = min(best[backend])
            print(f"{backend:8} {results[backend]:8.2f} us/request (best of {args.rounds})")
    if "native" in results and "python" in results:
        print(f"ratio native/python: x{results['native'] / results['python']:.2f} (lower is better)")


if __name__ == "__main__":
    main()
