#!/usr/bin/env python3
"""The worker's own cost per request, measured with an engine that is not the bottleneck.

``bench/worker_echo.py`` drives the workers with the project's Python engine,
which spends more CPU per request than a bare worker does; at W = 256 it hides
what the worker costs. This script compiles ``bench/floor_engine.c`` (a fake
Cocaine engine in C, well under a microsecond of its own CPU per request) with
``cc -O2`` into a temporary directory, pins it to one CPU and the worker to
another, and runs the echo cases against

(a) ``framework``: cocaine_http's Worker, ``async def`` echo handler
    (``async for chunk in request: await response.write(chunk)``), and
(b) ``minimal``: the bare asyncio + msgpack worker of ``worker_echo.py``,
(c) ``shaped`` (with ``--kinds``): that bare worker plus only what the
    handler's API needs (a task per session, the request as an async
    iterator, a response whose writes return a done future): the floor of
    any framework with that API,

in rounds, each case against each worker in turn (order flipped every round).
It prints the medians over the rounds of req/s, p50/p99 latency, worker CPU
us/request (``/proc/PID/stat``) and the engine's own CPU us/request, then the
ratios framework/minimal of req/s (round by round, median) and of worker CPU.

    python bench/worker_floor.py                          # both wires, 16 B and 4 KiB, W 1 and 256
    python bench/worker_floor.py --protocol 0 --cases 16x256 -n 100000 --rounds 5
    python bench/worker_floor.py --verify -n 2000         # byte-compare every echo first
    python bench/worker_floor.py --callgrind --protocol 0 --cases 16x256   # instructions per request

Needs a C compiler (``cc``) and Linux (CPU affinity, /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_C = os.path.join(HERE, "floor_engine.c")
ECHO = os.path.join(HERE, "worker_echo.py")


def build_engine(out_dir: str, cc: str | None = None) -> str:
    """Compile floor_engine.c into *out_dir*; returns the executable's path."""
    cc = cc or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) found")
    exe = os.path.join(out_dir, "floor_engine")
    subprocess.run([cc, "-O2", "-o", exe, ENGINE_C], check=True)
    return exe


def worker_command(kind: str) -> list[str]:
    return [sys.executable, ECHO, "--as-worker", kind]


def run_case(
    engine: str,
    kind: str,
    protocol: int,
    size: int,
    width: int,
    n: int,
    *,
    warmup: int | None = None,
    verify: bool = False,
    cpus: tuple[int, int] = (0, 1),
    timeout: float = 300.0,
    command: list[str] | None = None,
    term_timeout: float = 3.0,
) -> dict:
    """One run of the C engine against one worker; returns its JSON result."""
    if warmup is None:
        warmup = min(max(n // 20, width * 4), 10000)
    args = [engine, "--proto", str(protocol), "-n", str(n), "-s", str(size), "-w", str(width)]
    args += ["--warmup", str(warmup), "--engine-cpu", str(cpus[0]), "--worker-cpu", str(cpus[1])]
    args += ["--term-timeout", str(term_timeout)]
    if verify:
        args.append("--verify")
    proc = subprocess.run(
        [*args, "--", *(command or worker_command(kind))], capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"floor_engine failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(lines[-1])
    result["kind"] = kind
    result["stderr"] = proc.stderr
    return result


def count_instructions(engine: str, kind: str, protocol: int, size: int, width: int) -> float:
    """Instructions per request of the worker, counted by callgrind: runs of 2 000 and
    12 000 requests, the difference over the extra 10 000 (start-up and exit cancel out)."""
    totals = []
    with tempfile.TemporaryDirectory(prefix="floor-cg-") as out:
        for n in (2000, 12000):
            path = os.path.join(out, f"{n}.out")
            valgrind = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={path}"]
            res = run_case(
                engine, kind, protocol, size, width, n, warmup=0, cpus=(-1, -1), timeout=3600,
                command=[*valgrind, *worker_command(kind)], term_timeout=600,
            )
            if not res["ok"]:
                raise SystemExit(f"run failed: {res}")
            with open(path) as f:
                totals.append(sum(int(line.split()[1]) for line in f if line.startswith("summary:")))
    return (totals[1] - totals[0]) / 10000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100000, help="measured requests per run (default 100000)")
    parser.add_argument("--protocol", choices=["0", "1", "both"], default="both", help="0 = A, 1 = B, both")
    parser.add_argument("--cases", default="16x1,4096x1,16x256,4096x256", help="SIZExW,...")
    parser.add_argument(
        "--kinds", default="framework,minimal", help="framework, minimal, shaped (default framework,minimal)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default 3)")
    parser.add_argument("--verify", action="store_true", help="byte-compare every echoed payload")
    parser.add_argument("--cpus", default="0,1", help="ENGINE_CPU,WORKER_CPU (default 0,1; -1 = no pinning)")
    parser.add_argument("--json", action="store_true", help="also print every run as a JSON line")
    parser.add_argument(
        "--callgrind", action="store_true", help="count the workers' instructions per request (slow)"
    )
    args = parser.parse_args()

    cpu_engine, cpu_worker = (int(c) for c in args.cpus.split(","))
    protocols = [0, 1] if args.protocol == "both" else [int(args.protocol)]
    cases = [(int(s), int(w)) for s, w in (c.split("x") for c in args.cases.split(","))]
    kinds = args.kinds.split(",")
    from cocaine_http.protocol import codec

    print(
        f"decoder backend {codec.BACKEND}, N={args.n}, rounds {args.rounds}, Python {sys.version.split()[0]},"
        f" engine on CPU {cpu_engine}, worker on CPU {cpu_worker}"
    )
    runs: dict[tuple, list[dict]] = {}
    if args.callgrind:
        with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
            engine = build_engine(tmp)
            for protocol in protocols:
                for size, width in cases:
                    ir = {kind: count_instructions(engine, kind, protocol, size, width) for kind in kinds}
                    wire = "A" if protocol == 0 else "B"
                    line = "   ".join(f"{kind} {count:.0f}" for kind, count in ir.items())
                    ratio = "".join(
                        f"   {a}/{b} x{ir[a] / ir[b]:.2f}"
                        for a, b in (("framework", "minimal"), ("framework", "shaped"), ("shaped", "minimal"))
                        if a in ir and b in ir
                    )
                    head = f"{wire} size {size:>5} W {width:>3}"
                    print(f"{head}: instructions/request {line}{ratio}", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        engine = build_engine(tmp)
        for r in range(args.rounds):
            for protocol in protocols:
                for size, width in cases:
                    n = args.n if width > 1 else max(args.n // 5, 1000)  # W = 1 is slower per request
                    for kind in kinds if r % 2 == 0 else kinds[::-1]:
                        res = run_case(
                            engine, kind, protocol, size, width, n, verify=args.verify,
                            cpus=(cpu_engine, cpu_worker),
                        )
                        if not res["ok"]:
                            raise SystemExit(f"run failed: {res}")
                        if args.json:
                            print(json.dumps({k: v for k, v in res.items() if k != "stderr"}), flush=True)
                        runs.setdefault((protocol, size, width, kind), []).append(res)

    def med(key: tuple, field: str) -> float:
        return statistics.median(x[field] for x in runs[key])

    head = f"{'wire':<5} {'worker':<10} {'size':>5} {'W':>4} {'req/s':>8} {'p50 us':>8} {'p99 us':>8}"
    print(f"{head} {'worker CPU us/req':>17} {'engine CPU us/req':>17}")
    for protocol in protocols:
        for size, width in cases:
            for kind in kinds:
                key = (protocol, size, width, kind)
                wire = "A" if protocol == 0 else "B"
                print(
                    f"{wire:<5} {kind:<10} {size:>5} {width:>4} {med(key, 'rps'):>8.0f}"
                    f" {med(key, 'p50us'):>8.1f} {med(key, 'p99us'):>8.1f} {med(key, 'worker_cpu_us'):>17.2f}"
                    f" {med(key, 'engine_cpu_us'):>17.2f}"
                )
    for top, base in (("framework", "minimal"), ("framework", "shaped"), ("shaped", "minimal")):
        if top not in kinds or base not in kinds:
            continue
        print(f"{top}/{base}: req/s (median of the ratios round by round, range), worker CPU per request")
        for protocol in protocols:
            for size, width in cases:
                f = runs[(protocol, size, width, top)]
                m = runs[(protocol, size, width, base)]
                ratios = sorted(a["rps"] / b["rps"] for a, b in zip(f, m, strict=True))
                cpu = med((protocol, size, width, top), "worker_cpu_us") / max(
                    med((protocol, size, width, base), "worker_cpu_us"), 1e-9
                )
                wire = "A" if protocol == 0 else "B"
                print(
                    f"  {wire} size {size:>5} W {width:>3}: req/s x{statistics.median(ratios):.2f}"
                    f" ({ratios[0]:.2f}-{ratios[-1]:.2f})   worker CPU x{cpu:.2f}"
                )


if __name__ == "__main__":
    main()
