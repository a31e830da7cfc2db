#!/usr/bin/env python3
"""Instructions per request of the FastAPI hello in process: the app alone, and the app behind ASGIHandler.

``bench/wsgi_callgrind.py --app fastapi`` counts a whole request through the
worker. This splits that figure. Under callgrind, with instrumentation
switched on only around the measured loop (``<valgrind/callgrind.h>``
client requests, from a tiny C library built here), one asyncio task runs
``examples/fastapi_app``'s ``GET /`` n times:

* ``app``: the app alone, called with a prebuilt ``http`` scope (copied per
  request, as the app writes into it) and ``receive``/``send`` coroutines
  that do nothing: what no server can avoid;
* ``handler``: :class:`~cocaine_http.compat.asgi.ASGIHandler` with the
  worker's request envelope (``GET /``, ``Host``, ``User-Agent``) and
  session ends that only keep what is written (no socket, no protocol): the
  adapter (envelope parsing, scope, receive/send, response encoding) plus
  the app.

``handler - app`` is the adapter's share; ``wsgi_callgrind --app fastapi``
minus ``handler`` is the worker's (sessions, task, frames, socket).

    python bench/asgi_floor.py               # both, n = 2000 after 300 warm-up requests
    python bench/asgi_floor.py --mode handler -n 5000
    python bench/asgi_floor.py --keep /tmp/cg   # keep callgrind.out.<mode> for callgrind_annotate
    python bench/asgi_floor.py --mode handler --access-log   # with the access line (to a NullHandler)

Needs valgrind (with its headers) and a C compiler.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TOGGLE_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""

WARMUP = 300


def build_toggle(out_dir: str) -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) found")
    src = os.path.join(out_dir, "cg_toggle.c")
    lib = os.path.join(out_dir, "cg_toggle.so")
    with open(src, "w") as f:
        f.write(TOGGLE_C)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src], check=True)
    return lib


class _Request:
    """The worker's request end as ASGIHandler uses it for a bodiless request:
    the envelope is buffered and the runtime has closed its side."""

    __slots__ = ("_blob", "buffered", "event", "headers", "session")

    failure = None
    at_eof = True

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self.buffered = len(blob)
        self.event = "http"
        self.session = 1
        self.headers: list[tuple[bytes, bytes]] = []

    async def read(self) -> bytes:
        blob, self._blob = self._blob, b""
        self.buffered = 0
        return blob


class _Response:
    """The worker's response end, keeping the payloads instead of framing them."""

    __slots__ = ("closed", "written")

    def __init__(self) -> None:
        self.closed = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> _Response:
        self.written.append(data)
        return self

    def __await__(self) -> Any:
        return iter(())

    def close(self) -> _Response:
        self.closed = True
        return self

    def error(self, code: Any, message: str) -> _Response:
        self.closed = True
        return self


async def _measure(mode: str, n: int, lib: str | None, access: bool = False) -> int:
    from cocaine_http.compat.asgi import ASGIHandler, Lifespan, build_scope
    from cocaine_http.http.envelope import encode_request, parse_request
    from examples.fastapi_app.app import app

    blob = encode_request("GET", "/", [("Host", "127.0.0.1"), ("User-Agent", "bench")], b"")
    lifespan = Lifespan(app, "auto")
    await lifespan.startup()
    handler = ASGIHandler(app, lifespan=lifespan, access_log=access)
    if access:  # made and handed to logging, which drops it
        logger = logging.getLogger("cocaine_http.access")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    scope = build_scope(parse_request(blob), state=lifespan.state)
    scope["extensions"] = {"cocaine": {"event": "http", "session": 1, "headers": []}}
    sent: list[Any] = []
    request_message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request_message

    async def send(message: Any) -> None:
        sent.append(message)

    async def one() -> None:
        if mode == "app":
            await app({**scope, "state": scope["state"].copy()}, receive, send)
        else:
            response = _Response()
            await handler(_Request(blob), response)
            sent.append(response.written)

    for _ in range(WARMUP):
        await one()
    check = sent[-1]
    sent.clear()
    toggle = ctypes.CDLL(lib) if lib else None
    if toggle is not None:
        toggle.cg_start()
    for _ in range(n):
        await one()
    if toggle is not None:
        toggle.cg_stop()
    assert len(sent) == n * (2 if mode == "app" else 1), "the app did not answer every request"
    await lifespan.shutdown()
    print(f"{mode}: last answer {check!r:.160}", file=sys.stderr)
    return n


def count(mode: str, n: int, lib: str, keep: str | None, access: bool = False) -> float:
    with tempfile.TemporaryDirectory(prefix="asgi-floor-") as tmp:
        if keep:
            os.makedirs(keep, exist_ok=True)
        out = os.path.join(keep or tmp, f"callgrind.out.{mode}")
        subprocess.run(
            ["valgrind", "-q", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--inner", mode, "-n", str(n), "--lib", lib,
             *(["--access-log"] if access else [])],
            check=True, env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": "0"},  # runs repeat exactly
        )  # fmt: skip
        with open(out) as f:
            total = sum(int(line.split()[1]) for line in f if line.startswith("totals:"))
    return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("app", "handler"), action="append", help="default: both")
    parser.add_argument("-n", type=int, default=2000, help="measured requests (default 2000)")
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind output files in DIR")
    parser.add_argument("--access-log", action="store_true", help="handler: with the access log on")
    parser.add_argument("--inner", choices=("app", "handler"), help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        sys.path.insert(0, ROOT)
        asyncio.run(_measure(args.inner, args.n, args.lib, args.access_log))
        return
    with tempfile.TemporaryDirectory(prefix="asgi-floor-") as tmp:
        lib = build_toggle(tmp)
        results = {}
        for mode in args.mode or ["app", "handler"]:
            results[mode] = count(mode, args.n, lib, args.keep, args.access_log)
            print(f"fastapi hello, {mode}: {results[mode]:.0f} instr/req", flush=True)
        if len(results) == 2:
            print(f"adapter (handler - app): {results['handler'] - results['app']:.0f} instr/req")


if __name__ == "__main__":
    main()
