#!/usr/bin/env python3
"""Instructions per request of the Flask (WSGI) or FastAPI (ASGI) hello through the worker, under callgrind.

``bench/http_apps.py`` measures CPU time, which a shared machine makes noisy
by a few percent; this counts instructions, which it does not. The C fake
engine of ``bench/worker_floor.py`` (``bench/floor_engine.c``) drives
``examples/flask_app`` (``--app fastapi``: ``examples/fastapi_app``) with W
sessions in flight, each sending the hello ``GET /`` envelope of
``bench/http_apps.py`` (``bench/request_headers.py``); every answer's head
must be a ``200``, or the run fails. Runs of 500 and 2 500 requests, the
difference over the extra 2 000 (start-up and exit cancel out).

    python bench/wsgi_callgrind.py                 # --threads 0 (inline) and 8 threads
    python bench/wsgi_callgrind.py --threads 8
    python bench/wsgi_callgrind.py --app fastapi    # the ASGI path (threads do not apply)
    python bench/wsgi_callgrind.py --floor          # the Flask app alone, no server: the floor
    python bench/wsgi_callgrind.py --check          # one short run each, no valgrind: all answered?

``--floor`` counts what no server can avoid: the app called in-process with
a prebuilt environ (a copy of the one the worker builds for that request)
and a trivial ``start_response``, its body iterated and closed
(``bench/app_alone.py --requests N``). The
framework's share of a request through the worker is then (through the
worker) - (app alone) - (the worker's echo path, ``bench/worker_floor.py
--callgrind``).

Needs valgrind (but for ``--check``) and a C compiler.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from request_headers import REQUESTS  # noqa: E402
from worker_floor import build_engine  # noqa: E402

APPS = {"flask": "examples.flask_app.app:app", "fastapi": "examples.fastapi_app.app:app"}


def run_engine(engine: str, threads: int, width: int, app: str, n: int, valgrind: list[str]) -> None:
    """One run of the C engine against the worker (under *valgrind*, if given):
    *n* hello requests, every answer's head checked; raises if one was not a 200."""
    hello = REQUESTS["get"]
    head = b"\x92" + msgpack.packb(hello.status)  # the reply's first chunk: [status, headers]
    worker = [*valgrind, sys.executable, "-m", "cocaine_http", APPS[app], "--app-dir", ROOT]
    worker += ["--log-level", "warning"]
    if app == "flask":
        worker += ["--threads", str(threads)]
    with tempfile.NamedTemporaryFile(suffix=".envelope") as envelope:
        envelope.write(hello.envelope("hello"))
        envelope.flush()
        proc = subprocess.run(
            [engine, "--proto", "1", "-n", str(n), "-w", str(width), "--warmup", "0",
             "--event", "http", "--payload-file", envelope.name, "--expect-prefix", head.hex(),
             "--term-timeout", "600", "--", *worker],
            capture_output=True, text=True, check=False, timeout=3600, cwd=ROOT,
        )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    if proc.returncode != 0 or not result.get("ok"):
        raise RuntimeError(f"C engine run failed ({proc.returncode}): {result or proc.stderr[-2000:]}")


def count(engine: str, threads: int, width: int, app: str = "flask") -> float:
    totals = []
    with tempfile.TemporaryDirectory(prefix="wsgi-cg-") as out:
        for n in (500, 2500):
            path = os.path.join(out, f"{n}.out")
            run_engine(
                engine,
                threads,
                width,
                app,
                n,
                ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={path}"],
            )
            with open(path) as f:
                totals.append(sum(int(line.split()[1]) for line in f if line.startswith("summary:")))
    return (totals[1] - totals[0]) / 2000


def count_floor(n_small: int = 500, n_large: int = 2500) -> float:
    """Instructions per request of the Flask hello app alone (see ``--floor``)."""
    totals = []
    with tempfile.TemporaryDirectory(prefix="wsgi-cg-") as out:
        for n in (n_small, n_large):
            path = os.path.join(out, f"{n}.out")
            subprocess.run(
                ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={path}", sys.executable,
                 os.path.join(HERE, "app_alone.py"), "wsgi", APPS["flask"], "--requests", str(n)],
                check=True, cwd=ROOT, timeout=3600, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            with open(path) as f:
                totals.append(sum(int(line.split()[1]) for line in f if line.startswith("summary:")))
    return (totals[1] - totals[0]) / (n_large - n_small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, action="append", help="worker --threads (default 0 and 8)")
    parser.add_argument("-w", type=int, default=64, help="sessions in flight (default 64)")
    parser.add_argument("--app", choices=sorted(APPS), default="flask", help="the hello app (default flask)")
    parser.add_argument("--floor", action="store_true", help="the Flask app alone (no worker): the floor")
    parser.add_argument(
        "--check", action="store_true", help="one short run each without valgrind, answers checked"
    )
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = ROOT
    if args.check:
        with tempfile.TemporaryDirectory(prefix="wsgi-cg-") as tmp:
            engine = build_engine(tmp)
            runs = (
                [(0, "fastapi")] if args.app == "fastapi" else [(t, "flask") for t in args.threads or [0, 8]]
            )
            for threads, app in runs:
                run_engine(engine, threads, args.w, app, 200, [])
                print(f"{app} hello, --threads {threads}: every answer a 200", flush=True)
        return
    if args.floor:
        print(f"flask hello, app alone: {count_floor():.0f} instr/req", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="wsgi-cg-") as tmp:
        engine = build_engine(tmp)
        if args.app == "fastapi":
            ir = count(engine, 0, args.w, "fastapi")
            print(f"fastapi hello, B, W {args.w}: {ir:.0f} instr/req", flush=True)
            return
        for threads in args.threads or [0, 8]:
            ir = count(engine, threads, args.w)
            print(f"flask hello, B, W {args.w}, --threads {threads}: {ir:.0f} instr/req", flush=True)


if __name__ == "__main__":
    main()
