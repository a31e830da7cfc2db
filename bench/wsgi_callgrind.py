#!/usr/bin/env python3
"""Instructions per request of the Flask (WSGI) or FastAPI (ASGI) hello through the worker, under callgrind.

``bench/http_apps.py`` measures CPU time, which a shared machine makes noisy
by a few percent; this counts instructions, which it does not. The C fake
engine of ``bench/worker_floor.py`` (``bench/floor_engine.c``) drives
``examples/flask_app`` (``--app fastapi``: ``examples/fastapi_app``) with W
sessions in flight; it sends a fixed payload, not an HTTP envelope, so the
worker started here reads every invocation as
``GET /``. Runs of 500 and 2 500 requests, the difference over the extra
2 000 (start-up and exit cancel out).

    python bench/wsgi_callgrind.py                 # --threads 0 (inline) and 8 threads
    python bench/wsgi_callgrind.py --threads 8
    python bench/wsgi_callgrind.py --app fastapi    # the ASGI path (threads do not apply)
    python bench/wsgi_callgrind.py --floor          # the Flask app alone, no server: the floor

``--floor`` counts what no server can avoid: the app called in-process with
a prebuilt environ (a copy of the one the worker builds for that request)
and a trivial ``start_response``, its body iterated and closed
(``bench/app_alone.py --requests N``). The
framework's share of a request through the worker is then (through the
worker) - (app alone) - (the worker's echo path, ``bench/worker_floor.py
--callgrind``).

Needs valgrind and a C compiler.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from worker_floor import build_engine  # noqa: E402

#: The worker: cocaine-http's CLI, with every request envelope read as ``GET /``.
WORKER = """
import sys
from cocaine_http.compat import asgi, wsgi
from cocaine_http.http.envelope import encode_request, parse_request
blob = encode_request("GET", "/", [("Host", "127.0.0.1"), ("User-Agent", "bench")], b"")
wsgi.parse_request = asgi.parse_request = lambda _blob, drop_cookies=True: parse_request(
    blob, drop_cookies=drop_cookies
)
from cocaine_http.cli import main
sys.exit(main(sys.argv[1:]))
"""


APPS = {"flask": "examples.flask_app.app:app", "fastapi": "examples.fastapi_app.app:app"}


def count(engine: str, threads: int, width: int, app: str = "flask") -> float:
    totals = []
    with tempfile.TemporaryDirectory(prefix="wsgi-cg-") as out:
        for n in (500, 2500):
            path = os.path.join(out, f"{n}.out")
            valgrind = ["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={path}"]
            worker = [sys.executable, "-c", WORKER, APPS[app], "--app-dir", ROOT, "--log-level", "warning"]
            if app == "flask":
                worker += ["--threads", str(threads)]
            # The engine's echo check fails (the reply is an HTTP response): not a failure here.
            subprocess.run(
                [engine, "--proto", "1", "-n", str(n), "-s", "16", "-w", str(width), "--warmup", "0",
                 "--event", "http", "--term-timeout", "600", "--", *valgrind, *worker],
                capture_output=True, check=False, timeout=3600,
            )  # fmt: skip
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
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = ROOT
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
