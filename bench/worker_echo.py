#!/usr/bin/env python3
"""Echo throughput and latency: cocaine_http's Worker against a bare asyncio + msgpack worker.

The in-process :class:`~cocaine_http.runtime.Engine` drives N invocations of
``echo`` (one chunk of 16 B or 4 KiB, then choke/close) with W sessions in
flight, against

(a) a worker built on :class:`cocaine_http.aio.worker.Worker` (``async def`` echo handler), and
(b) a minimal worker written here with asyncio streams and msgpack, no framework,
(``--kinds shaped``: that worker plus only what the handler's API needs, see
:func:`shaped_worker`; ``bench/worker_floor.py`` reports it beside the others)

and prints requests/s, p50/p99 latency per case and the ratio a/b. The
engine is the same Python code for both, so its cost is in both numbers:
the ratio measures what the framework adds on the worker's side.

    python bench/worker_echo.py                    # generation A, N=20000, 3 rounds
    python bench/worker_echo.py --protocol 1 -n 50000
    python bench/worker_echo.py --sync             # also a plain-def handler (threads), not in the ratio
    python bench/worker_echo.py --callgrind --cases 16x1   # instructions per request (needs valgrind)

The script is also the workers' executable: the engine starts it again with
``--as-worker KIND`` before the runtime's own flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

SELF = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(SELF)))


# ---------------------------------------------------------------------------
# the workers
# ---------------------------------------------------------------------------
def framework_worker(sync: bool) -> None:
    from cocaine_http.aio.worker import Worker

    worker = Worker()

    if sync:

        @worker.on("echo")
        def echo_sync(request, response):
            for chunk in request:
                response.write(chunk)
    else:

        @worker.on("echo")
        async def echo(request, response):
            async for chunk in request:
                await response.write(chunk)

    worker.run()


async def minimal_connect(
    endpoint: str, uuid: str, b: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Task[None]]:
    """How a bare worker starts (this one and bench/minimal_http.py's): connect,
    handshake and a first heartbeat, then a heartbeat every 5 s (the task)."""
    import msgpack

    def pack(obj: object) -> bytes:
        return msgpack.packb(obj, use_bin_type=False)

    reader, writer = await asyncio.open_unix_connection(endpoint)
    writer.write(pack([1, 0, [uuid]] if b else [0, 0, [uuid]]) + pack([1, 0, []]))

    async def beat() -> None:
        while True:
            await asyncio.sleep(5)
            writer.write(pack([1, 0, []]))

    return reader, writer, asyncio.ensure_future(beat())


def minimal_worker() -> None:
    """The least a correct worker does: handshake, heartbeats, echo chunk by chunk, terminate."""
    import msgpack

    from cocaine_http.config import split_args

    flags, _ = split_args(sys.argv[1:])
    b = flags.get("protocol") == "1"
    endpoint, uuid = flags["endpoint"], flags["uuid"]

    def pack(obj: object) -> bytes:
        return msgpack.packb(obj, use_bin_type=False)

    async def main() -> None:
        reader, writer, beating = await minimal_connect(endpoint, uuid, b)
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        open_sessions: set[int] = set()
        while data := await reader.read(262144):
            unpacker.feed(data)
            out = []
            for msg in unpacker:
                if b:
                    ch, t, args = msg[0], msg[1], msg[2]
                    if ch == 1:
                        if t == 1:
                            writer.write(pack([1, 1, args]))
                            await writer.drain()
                            beating.cancel()
                            return
                    elif ch not in open_sessions:
                        open_sessions.add(ch)  # invoke
                    elif t == 0:
                        out.append(pack([ch, 0, args]))
                    else:
                        out.append(pack([ch, 2, []]))
                        open_sessions.discard(ch)
                else:
                    t, s, args = msg[0], msg[1], msg[2]
                    if t == 4:
                        out.append(pack([4, s, args]))
                    elif t == 6:
                        out.append(pack([6, s, []]))
                    elif t == 2:
                        writer.write(pack([2, 0, args]))
                        await writer.drain()
                        beating.cancel()
                        return
            if out:
                writer.write(b"".join(out))
                await writer.drain()

    asyncio.run(main())


def shaped_worker() -> None:
    """The bare worker plus only what the echo handler's API needs: the floor of
    any framework that keeps that API (issue #15).

    Each session gets what ``framework``'s handler is given and nothing more:
    a request that is an async iterator over its chunks, a response whose
    ``write`` and ``close`` append a frame to the read's answer and return a
    done future, and its own task, started as the framework starts its tasks
    (:class:`~cocaine_http.aio.eager.TaskStarter`: the first step runs in the
    read's turn). The same ``async for chunk in request: await
    response.write(chunk)`` handler runs in it. There is nothing else: no
    frame checks, no session states, no flow control, no timeouts, no error
    replies. What ``framework`` costs beyond this is the price of those; what
    this costs beyond ``minimal`` is the price of the API itself.
    """
    from collections import deque

    import msgpack

    from cocaine_http.aio.eager import TaskStarter
    from cocaine_http.config import split_args

    flags, _ = split_args(sys.argv[1:])
    b = flags.get("protocol") == "1"
    endpoint, uuid = flags["endpoint"], flags["uuid"]
    pack = msgpack.Packer(use_bin_type=False).pack
    chunk_type, choke_type = (0, 2) if b else (4, 6)

    async def echo(request: Any, response: Any) -> None:
        async for chunk in request:
            await response.write(chunk)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        ready.set_result(None)
        out: list[bytes] = []
        finished = loop.create_future()
        tasks = TaskStarter(loop)
        sessions: dict[int, Request] = {}
        starting: list[tuple[int, Request]] = []

        class Request:
            __slots__ = ("chunks", "eof", "waiter")

            def __init__(self) -> None:
                self.chunks: deque[bytes] = deque()
                self.eof = False
                self.waiter: asyncio.Future[None] | None = None

            def wake(self) -> None:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_result(None)
                    loop.call_soon(flush)  # its writes, after its step

            def __aiter__(self) -> Request:
                return self

            async def __anext__(self) -> bytes:
                while not self.chunks:
                    if self.eof:
                        raise StopAsyncIteration
                    self.waiter = loop.create_future()
                    await self.waiter
                return self.chunks.popleft()

        class Response:
            __slots__ = ("s",)

            def __init__(self, s: int) -> None:
                self.s = s

            def write(self, data: bytes) -> asyncio.Future[None]:
                out.append(pack([self.s, chunk_type, [data]] if b else [chunk_type, self.s, [data]]))
                return ready

            def close(self) -> asyncio.Future[None]:
                out.append(pack([self.s, choke_type, []] if b else [choke_type, self.s, []]))
                return ready

        async def run(s: int, request: Request) -> None:
            response = Response(s)
            try:
                await echo(request, response)
            finally:
                response.close()
                del sessions[s]

        def flush() -> None:
            if out:
                transport.write(b"".join(out))
                out.clear()

        def on_message(msg: list[Any]) -> None:
            if b:
                s, t, args = msg
                if s == 1:
                    if t == 1:  # terminate
                        transport.write(pack([1, 1, args]))
                        finished.set_result(None)
                    return
                request = sessions.get(s)
                if request is None:  # invoke
                    request = sessions[s] = Request()
                    starting.append((s, request))
                elif t == 0:
                    request.chunks.append(args[0])
                    request.wake()
                else:
                    request.eof = True
                    request.wake()
            else:
                t, s, args = msg
                if t == 3:
                    request = sessions[s] = Request()
                    starting.append((s, request))
                elif t == 4:
                    request = sessions[s]
                    request.chunks.append(args[0])
                    request.wake()
                elif t == 6:
                    request = sessions[s]
                    request.eof = True
                    request.wake()
                elif t == 2:
                    transport.write(pack([2, 0, args]))
                    finished.set_result(None)

        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        buffer = memoryview(bytearray(262144))

        class Reader(asyncio.BufferedProtocol):
            def get_buffer(self, sizehint: int) -> memoryview:
                return buffer

            def buffer_updated(self, nbytes: int) -> None:
                unpacker.feed(buffer[:nbytes])
                for msg in unpacker:
                    on_message(msg)
                if starting:
                    for s, request in starting:
                        tasks.start(run(s, request), "echo")
                    starting.clear()
                flush()

        reader, writer, beating = await minimal_connect(endpoint, uuid, b)
        # The handshake went out on the stream; the sessions come in on this protocol.
        transport = writer.transport
        protocol = Reader()
        transport.set_protocol(protocol)
        early = bytes(reader._buffer)  # what the stream read before the switch
        if early:
            buffer[: len(early)] = early
            protocol.buffer_updated(len(early))
        await finished
        beating.cancel()

    asyncio.run(main())


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(engine: Any, payload: bytes, remaining: list[int], latencies: list[float]) -> None:
    """One of the W sessions in flight: invoke, wait for the echo, repeat while work is left."""
    while remaining[0] > 0:
        remaining[0] -= 1
        t0 = time.perf_counter()
        reply = await engine.invoke("echo", [payload])
        latencies.append(time.perf_counter() - t0)
        assert reply.chunks == [payload] and reply.error is None, reply


async def drive(
    kind: str, generation: str, cases: list[tuple[int, int]], n: int, callgrind: str | None = None
) -> dict[tuple[int, int], dict]:
    """Run every case against one worker of *kind*; with *callgrind* (an output
    file), the worker runs under valgrind and the timeouts allow for it."""
    from cocaine_http.runtime import Engine

    results = {}
    command = [sys.executable, SELF, "--as-worker", kind]
    patience: dict[str, float] = {}
    if callgrind:
        command = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *command]
        patience = {"startup_timeout": 600.0, "heartbeat_timeout": 600.0}
    with tempfile.TemporaryDirectory(prefix="chb-", dir="/tmp") as runtime_dir:
        engine = Engine(
            "bench",
            command,
            generation=generation,
            runtime_dir=runtime_dir,
            concurrency=1024,
            queue_limit=4096,
            autospawn=False,
            **patience,
        )
        async with engine:
            [slave] = await engine.start(1, timeout=600.0 if callgrind else 10.0)
            assert slave.pid is not None
            for size, width in cases:
                payload = b"x" * size
                # warm up
                await asyncio.gather(*(engine.invoke("echo", [payload]) for _ in range(min(width, 64))))
                latencies: list[float] = []
                remaining = [n]
                cpu0 = cpu_seconds(slave.pid)
                t0 = time.perf_counter()
                await asyncio.gather(*(client(engine, payload, remaining, latencies) for _ in range(width)))
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(slave.pid) - cpu0
                latencies.sort()
                results[(size, width)] = {
                    "rps": len(latencies) / elapsed,
                    "p50": statistics.median(latencies) * 1e3,
                    "p99": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
                    "cpu": cpu / len(latencies) * 1e6,
                }
    return results


def count_instructions(kinds: list[str], generation: str, cases: list[tuple[int, int]]) -> None:
    """Instructions per request, counted by callgrind: the same on a quiet or a busy machine.

    Each worker runs twice under valgrind, for N=300 and N=1300; the difference
    of the totals over 1000 is the cost of one request, start-up and shutdown
    cancelled out. (A first plain run compiles the .pyc files both then load.)
    """
    for kind in kinds:
        asyncio.run(drive(kind, generation, cases[:1], 20))
    counts: dict[str, dict[tuple[int, int], float]] = {}
    with tempfile.TemporaryDirectory(prefix="chb-cg-") as out:
        for kind in kinds:
            for case in cases:
                totals = []
                for n in (300, 1300):
                    path = os.path.join(out, f"{kind}-{n}.out")
                    asyncio.run(drive(kind, generation, [case], n, callgrind=path))
                    with open(path) as f:
                        totals += [int(line.split()[1]) for line in f if line.startswith("summary:")]
                counts.setdefault(kind, {})[case] = (totals[1] - totals[0]) / 1000
    print(f"{'worker':<15} {'size':>6} {'W':>4} {'instructions/req':>17}")
    for kind, by_case in counts.items():
        for (size, width), ir in by_case.items():
            print(f"{kind:<15} {size:>6} {width:>4} {ir:>17.0f}")
    if "framework" in counts and "minimal" in counts:
        print("ratio framework/minimal, instructions per request (lower is better)")
        for case in cases:
            ratio = counts["framework"][case] / counts["minimal"][case]
            print(f"  size {case[0]:>5} W {case[1]:>3}: x{ratio:.2f}")


def main() -> None:
    if "--as-worker" in sys.argv:
        i = sys.argv.index("--as-worker")
        kind = sys.argv[i + 1]
        del sys.argv[i : i + 2]
        if kind == "minimal":
            minimal_worker()
        elif kind == "shaped":
            shaped_worker()
        else:
            framework_worker(sync=kind == "framework-sync")
        return

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="invocations per case (default 20000)")
    parser.add_argument("--protocol", choices=["0", "1"], default="0", help="0 = generation A, 1 = B")
    parser.add_argument("--sync", action="store_true", help="also measure a plain-def (threaded) handler")
    parser.add_argument(
        "--cases", default="16x1,4096x1,16x256,4096x256", help="SIZExW,... (default: the four of the issue)"
    )
    parser.add_argument(
        "--kinds", default="framework,minimal", help="workers to run (default framework,minimal)"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions per request under valgrind instead of timing (slow; N is fixed)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every case, each worker in turn (default 3); the table keeps each best round",
    )
    args = parser.parse_args()

    from cocaine_http.protocol import codec

    generation = "B" if args.protocol == "1" else "A"
    cases = [(int(size), int(width)) for size, width in (c.split("x") for c in args.cases.split(","))]
    kinds = args.kinds.split(",") + (["framework-sync"] if args.sync else [])
    python = sys.version.split()[0]
    n = "300 and 1300, under callgrind" if args.callgrind else args.n
    print(f"generation {generation}, decoder backend {codec.BACKEND}, N={n}, Python {python}")
    if args.callgrind:
        count_instructions(kinds, generation, cases)
        return
    # Case by case, each worker in turn (order flipped every round): a machine
    # whose load drifts weighs on both sides of a ratio alike.
    best: dict[str, dict] = {}
    rounds: list[dict[str, dict]] = []
    for i in range(args.rounds):
        this: dict[str, dict] = {}
        for case in cases:
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                r = asyncio.run(drive(kind, generation, [case], args.n))[case]
                this.setdefault(kind, {})[case] = r
                old = best.setdefault(kind, {}).get(case)
                if old is None or r["rps"] > old["rps"]:  # best round; CPU comes with it
                    best[kind][case] = r
        rounds.append(this)
    head = f"{'worker':<15} {'size':>6} {'W':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head} {'worker CPU us/req':>18}")
    for kind in kinds:
        for (size, width), r in best[kind].items():
            print(
                f"{kind:<15} {size:>6} {width:>4} {r['rps']:>9.0f} {r['p50']:>8.3f} {r['p99']:>8.3f}"
                f" {r['cpu']:>18.1f}"
            )
    if "minimal" not in best or "framework" not in best:
        return
    print(
        "ratio framework/minimal: req/s of the best rounds, and the median and range of the"
        " ratios round by round (higher is better); worker CPU per request (lower is better)"
    )
    for case in cases:
        a, b = best["framework"][case], best["minimal"][case]
        paired = sorted(r["framework"][case]["rps"] / r["minimal"][case]["rps"] for r in rounds)
        cpu = f"{a['cpu'] / b['cpu']:.2f}" if b["cpu"] else "n/a"
        print(
            f"  size {case[0]:>5} W {case[1]:>3}: req/s {a['rps'] / b['rps']:.2f}"
            f"   by round {statistics.median(paired):.2f} ({paired[0]:.2f}-{paired[-1]:.2f})   CPU x{cpu}"
        )


if __name__ == "__main__":
    main()
