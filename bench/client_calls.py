"""Unary service calls per second: cocaine_http's client next to a minimal one.

    python bench/client_calls.py [--protocol 0.12|0.11|both] [--server runtime|peer] [--seconds 2]

The storage service runs in a separate process (so client and server do not
share one core): cocaine_http's local runtime when it is importable
(``--server runtime``, the default), else a fast asyncio peer defined here
(``--server peer``). The same key is read over and over: a 16-byte value.

Two clients, each on one connection, measured with 1 and with 256 calls in
flight:

* **cocaine_http**: ``Client`` -> ``await client.service("storage")`` ->
  ``await storage.read(collection, key)`` (generated method, per-call timeout,
  session bookkeeping, A double decoding);
* **minimal**: asyncio.Protocol + msgpack Unpacker + a dict of futures, ids
  from a counter, no timeouts, no checks: about as little as a correct client
  can do.

Prints the median calls/s of each over alternating rounds and the median of the
per-round ratios (target >= 0.8x).

``--callgrind`` counts instead the client's instructions per call (valgrind's
callgrind, the client process only): runs of 2 000 and 12 000 calls, the
difference over the extra 10 000, so start-up and exit cancel out; calls
without a timeout (see ``make_calls``). Slow, but steadier on a busy machine
than calls/s.

``--baseline REV`` adds a third contender: cocaine_http as it was at git
revision REV, extracted to a temporary directory and imported as
``cocaine_http_baseline`` (every import inside the package is relative), with
this tree's native decoder. All three run in the same process, in the same
interleaved rounds, against the same server, so a change to the call path is
measured side by side rather than across runs on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VALUE = b"0123456789abcdef"


# -- servers (run in a child process) --------------------------------------------------------------


class _PeerProtocol(asyncio.Protocol):
    """A fast storage/locator peer: only what the benchmark needs."""

    def __init__(self, gen: str, role: str, storage_port: list[int]) -> None:
        self.gen = gen
        self.role = role
        self.storage_port = storage_port
        self.up = msgpack.Unpacker(raw=True, strict_map_key=False)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.up.feed(data)
        out = []
        pack = msgpack.packb
        for msg in self.up:
            if self.gen == "A":
                _method, sid, _args = msg
            else:
                sid, _method, _args = msg
            if self.role == "locator":
                table = {0: "read", 1: "write", 2: "remove", 3: "find"}
                if self.gen == "A":
                    blob = pack([["127.0.0.1", self.storage_port[0]], 1, table], use_bin_type=False)
                    out.append(pack([4, sid, [blob]], use_bin_type=False) + pack([6, sid, []]))
                else:
                    p = {0: ["value", {}], 1: ["error", {}]}
                    graph = {i: [n, {}, p] for i, n in table.items()}
                    out.append(
                        pack([sid, 0, [[["127.0.0.1", self.storage_port[0]]], 1, graph]], use_bin_type=False)
                    )
            elif self.gen == "A":
                out.append(pack([4, sid, [pack(VALUE, use_bin_type=False)]], use_bin_type=False))
                out.append(pack([6, sid, []]))
            else:
                out.append(pack([sid, 0, [VALUE]], use_bin_type=False))
        self.transport.write(b"".join(out))


async def serve(kind: str, gen: str) -> None:
    loop = asyncio.get_running_loop()
    if kind == "runtime":
        from cocaine_http.runtime.local import LocalRuntime
        from cocaine_http.runtime.logging import Console

        rt = LocalRuntime("0.11" if gen == "A" else "0.12", locator_port=0, bind=None,
                          console=Console(open(os.devnull, "w")))  # noqa: SIM115, ASYNC230 - setup, before timing
        await rt.start()
        rt.storage.write("bench", "k", VALUE, [])
        locator_port = rt.locator_port
    else:
        storage_port = [0]
        storage = await loop.create_server(
            lambda: _PeerProtocol(gen, "storage", storage_port), "127.0.0.1", 0
        )
        storage_port[0] = storage.sockets[0].getsockname()[1]
        locator = await loop.create_server(
            lambda: _PeerProtocol(gen, "locator", storage_port), "127.0.0.1", 0
        )
        locator_port = locator.sockets[0].getsockname()[1]
    print(locator_port, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# -- the minimal client ----------------------------------------------------------------------------


class MinimalClient(asyncio.Protocol):
    def __init__(self, gen: str) -> None:
        self.gen = gen
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.up = msgpack.Unpacker(raw=True, strict_map_key=False)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.up.feed(data)
        for msg in self.up:
            if self.gen == "A":
                kind, sid, args = msg
                if kind == 4:
                    fut = self.pending[sid]
                    fut._value = msgpack.unpackb(args[0], raw=True)  # type: ignore[attr-defined]
                elif kind == 6:
                    fut = self.pending.pop(sid)
                    fut.set_result(getattr(fut, "_value", None))
            else:
                sid, kind, args = msg
                fut = self.pending.pop(sid)
                fut.set_result(args[0] if kind == 0 else RuntimeError(args))

    async def read(self, collection: str, key: str) -> Any:
        sid = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[sid] = fut
        frame = [0, sid, [collection, key]] if self.gen == "A" else [sid, 0, [collection, key]]
        self.transport.write(msgpack.packb(frame, use_bin_type=False))
        return await fut


# -- measurement -----------------------------------------------------------------------------------


async def measure(read: Any, inflight: int, seconds: float) -> tuple[float, float]:
    """(calls per second, client CPU microseconds per call)."""
    for _ in range(50):  # warm up
        assert await read("bench", "k") == VALUE
    stop = time.perf_counter() + seconds
    count = 0

    async def lane() -> None:
        nonlocal count
        n = 0
        while True:
            for _ in range(50):
                await read("bench", "k")
            n += 50
            if time.perf_counter() >= stop:
                break
        count += n

    start = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    return count / (time.perf_counter() - start), (time.process_time() - cpu) / count * 1e6


def load_baseline(rev: str) -> Any:
    """``cocaine_http.services`` as of git revision *rev*, imported as ``cocaine_http_baseline``."""
    import atexit
    import glob
    import importlib
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="cocaine_http_baseline.")
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "cocaine_http"],
                             check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True)
    pkg = os.path.join(where, "cocaine_http_baseline")
    os.rename(os.path.join(where, "cocaine_http"), pkg)
    for built in glob.glob(os.path.join(ROOT, "cocaine_http", "_native*")):
        if not built.endswith((".py", ".c")):
            shutil.copy(built, pkg)
    sys.path.insert(0, where)
    return importlib.import_module("cocaine_http_baseline.services")


async def bench(gen: str, locator_port: int, seconds: float, rounds: int,
                baseline: Any = None) -> list[tuple[Any, ...]]:
    from cocaine_http.services import Client

    protocol = "0.11" if gen == "A" else "0.12"
    client = Client(f"127.0.0.1:{locator_port}", protocol, timeout=30)
    storage = await client.service("storage")
    contenders: dict[str, Any] = {"cocaine_http": storage.read}
    old_client = None
    if baseline is not None:
        old_client = baseline.Client(f"127.0.0.1:{locator_port}", protocol, timeout=30)
        old_storage = await old_client.service("storage")
        contenders["baseline"] = old_storage.read
    host, port = storage.endpoints[0]
    loop = asyncio.get_running_loop()
    _, minimal = await loop.create_connection(lambda: MinimalClient(gen), host, port)
    contenders["minimal"] = minimal.read
    names = list(contenders)
    rows = []
    for inflight in (1, 256):
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for i in range(rounds):  # rotate the order every round so noise hits all alike
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                got[name].append(await measure(contenders[name], inflight, seconds / rounds))
        row: list[Any] = [inflight]
        for name in names:
            ratio = statistics.median(o[0] / t[0] for o, t in zip(got[name], got["minimal"], strict=True))
            row.append((name, statistics.median(o[0] for o in got[name]), ratio,
                        statistics.median(o[1] for o in got[name])))
        rows.append(tuple(row))
        assert storage.pending == 0
    minimal.transport.close()
    await client.close()
    if old_client is not None:
        await old_client.close()
    return rows


async def make_calls(gen: str, locator_port: int, inflight: int, n: int, package: str) -> None:
    """*n* ``storage.read`` calls in *inflight* lanes with the client of *package* (a child run).

    Without a timeout: under callgrind a call takes some 50 times longer, so a 5 ms
    deadline bucket would hold a few calls instead of hundreds, and the buckets'
    timers would dominate the count and vary with the machine's load.
    """
    import importlib

    services = importlib.import_module(f"{package}.services")
    client = services.Client(f"127.0.0.1:{locator_port}", "0.11" if gen == "A" else "0.12", timeout=None)
    storage = await client.service("storage")

    async def lane(calls: int) -> None:
        for _ in range(calls):
            await storage.read("bench", "k")

    await asyncio.gather(*(lane(n // inflight + (i < n % inflight)) for i in range(inflight)))
    await client.close()


def count_instructions(gen: str, port: int, inflight: int, baseline: str | None) -> float:
    """Instructions per call of one client (this tree's, or *baseline*'s) under callgrind."""
    import tempfile

    totals = []
    with tempfile.TemporaryDirectory(prefix="client-cg-") as out:
        for n in (2000, 12000):
            path = os.path.join(out, f"{n}.out")
            command = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={path}",
                       sys.executable, __file__, "--calls", gen, str(port), str(inflight), str(n)]
            if baseline:
                command += ["--baseline", baseline]
            subprocess.run(command, check=True, cwd=ROOT)
            with open(path) as f:
                totals.append(sum(int(line.split()[1]) for line in f if line.startswith("summary:")))
    return (totals[1] - totals[0]) / 10000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=["0.11", "0.12", "both"], default="both")
    ap.add_argument("--server", choices=["runtime", "peer"], default=None)
    ap.add_argument("--seconds", type=float, default=3.0, help="per client and in-flight setting")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds; the median ratio is printed")
    ap.add_argument("--baseline", metavar="REV",
                    help="also measure cocaine_http at git revision REV, side by side")
    ap.add_argument("--callgrind", action="store_true",
                    help="count the client's instructions per call instead (slow; see above)")
    ap.add_argument("--inflight", default="1,256",
                    help="--callgrind: calls in flight, a comma list (default 1,256)")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "GEN"), help=argparse.SUPPRESS)
    ap.add_argument("--calls", nargs=4, metavar=("GEN", "PORT", "INFLIGHT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(*args.serve))
        return
    if args.calls:
        gen, port, inflight, n = args.calls
        package = "cocaine_http"
        if args.baseline:
            load_baseline(args.baseline)
            package = "cocaine_http_baseline"
        asyncio.run(make_calls(gen, int(port), int(inflight), int(n), package))
        return
    server = args.server
    if server is None:
        try:
            import cocaine_http.runtime.local  # noqa: F401

            server = "runtime"
        except ImportError:
            server = "peer"
    from cocaine_http.protocol import codec

    baseline = load_baseline(args.baseline) if args.baseline and not args.callgrind else None
    gens = ["A", "B"] if args.protocol == "both" else ["A" if args.protocol == "0.11" else "B"]
    print(f"storage server: {server} (separate process); decoder backend: {codec.BACKEND}; "
          f"python {sys.version.split()[0]}" + (f"; baseline: {args.baseline}" if baseline else ""))
    head = f"{'gen':4} {'in flight':>9} {'client':>12}"
    columns = f"{'calls/s':>10} {'vs minimal':>10}   client CPU/call"
    if args.callgrind:
        columns = f"{'instr/call':>11}"
    print(f"{head} {columns}")
    for gen in gens:
        child = subprocess.Popen([sys.executable, __file__, "--serve", server, gen], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            if args.callgrind:
                for inflight in map(int, args.inflight.split(",")):
                    clients = [("cocaine_http", None)] + [("baseline", args.baseline)] * bool(args.baseline)
                    for name, rev in clients:
                        per_call = count_instructions(gen, port, inflight, rev)
                        print(f"{gen:4} {inflight:>9} {name:>12} {per_call:>11,.0f}", flush=True)
                continue
            for inflight, *results in asyncio.run(bench(gen, port, args.seconds, args.rounds, baseline)):
                for name, rate, ratio, cpu in results:
                    print(f"{gen:4} {inflight:>9.0f} {name:>12} {rate:>10,.0f} {ratio:>9.2f}x"
                          f"   {cpu:6.1f} us", flush=True)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
