#!/usr/bin/env python3
"""CPU per request of an example app alone, with no server: the floor under every server.

A server's CPU per request is the app's own plus the server's. This runs
the app's ``GET /`` in a loop, in process, as a server with no cost would
call it, and prints the app's CPU per request: ``granian's CPU / this`` is
the most any server could reach against granian on the same machine.

* ``wsgi``: the app is called with a prebuilt environ (copied per request,
  as apps write into it; the one cocaine-http builds for ``GET /`` with
  ``Host`` and ``User-Agent``, or ``--headers browser``'s dozen, see
  ``bench/request_headers.py``) and a ``start_response`` that keeps nothing;
  its body is iterated and closed.
* ``asgi``: one asyncio task awaits the app with a prebuilt ``http`` scope
  (copied per request), a ``receive`` that returns the empty request body
  and a ``send`` that keeps nothing.

It checks the first answer (status 200, ``Hello, world!``), then runs for
``--seconds`` (or exactly ``--requests N``) and prints one JSON line:
``{"n": ..., "cpu_us": ...}``. ``bench/http_apps.py --floor`` runs it on the
servers' CPU, between their rounds; ``bench/wsgi_callgrind.py --floor`` runs
it under callgrind with ``--requests``.

    python bench/app_alone.py wsgi examples.flask_app.app:app --seconds 3
    python bench/app_alone.py asgi examples.fastapi_app.app:app
    python bench/app_alone.py wsgi examples.flask_app.app:app --requests 2500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cocaine_http.compat.asgi import build_scope  # noqa: E402
from cocaine_http.compat.wsgi_environ import build_environ  # noqa: E402
from cocaine_http.http.envelope import encode_request, parse_request  # noqa: E402
from cocaine_http.importer import import_app  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from request_headers import HEADER_SETS  # noqa: E402

EXPECTED = b"Hello, world!\n"
BATCH = 200  # requests between two looks at the clock


def batches(seconds: float, requests: int | None) -> Iterator[int]:
    """How many requests to run before the next look at the clock: *requests* in
    all when given, else batches of :data:`BATCH` for *seconds*."""
    if requests is not None:
        yield from [BATCH] * (requests // BATCH) + ([requests % BATCH] if requests % BATCH else [])
        return
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        yield BATCH


def request(headers: str = "hello") -> Any:
    return parse_request(encode_request("GET", "/", HEADER_SETS[headers], b""))


def run_wsgi(
    app: Any, seconds: float, requests: int | None = None, headers: str = "hello"
) -> tuple[int, float]:
    base = build_environ(request(headers), None)
    answer: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer.append(status)

    result = app(dict(base), start_response)
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    if answer[0] != "200 OK" or body != EXPECTED:
        raise SystemExit(f"unexpected answer {answer[0]!r} {body!r}")

    def keep_nothing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    n = 0
    cpu0 = time.process_time()
    for size in batches(seconds, requests):
        for _ in range(size):
            result = app(dict(base), keep_nothing)
            for _chunk in result:
                pass
            if hasattr(result, "close"):
                result.close()
        n += size
    return n, time.process_time() - cpu0


async def run_asgi(
    app: Any, seconds: float, requests: int | None = None, headers: str = "hello"
) -> tuple[int, float]:
    req = request(headers)
    base = build_scope(req, root_path="", state=None)
    request_message = {"type": "http.request", "body": b"", "more_body": False}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return request_message

    async def keep(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(base), receive, keep)
    if sent[0].get("status") != 200 or sent[-1].get("body") != EXPECTED:
        raise SystemExit(f"unexpected answer {sent!r}")

    async def keep_nothing(message: dict[str, Any]) -> None:
        return None

    n = 0
    cpu0 = time.process_time()
    for size in batches(seconds, requests):
        for _ in range(size):
            await app(dict(base), receive, keep_nothing)
        n += size
    return n, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("interface", choices=("wsgi", "asgi"))
    parser.add_argument("app", help="module:attribute, as cocaine-http takes it")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run (default 3)")
    parser.add_argument("--requests", type=int, default=None, help="run exactly this many instead")
    parser.add_argument(
        "--headers", choices=sorted(HEADER_SETS), default="hello", help="request headers (default hello)"
    )
    args = parser.parse_args()
    app = import_app(args.app)
    if args.interface == "wsgi":
        n, cpu = run_wsgi(app, args.seconds, args.requests, args.headers)
    else:
        n, cpu = asyncio.run(run_asgi(app, args.seconds, args.requests, args.headers))
    print(json.dumps({"n": n, "cpu_us": cpu / n * 1e6}))


if __name__ == "__main__":
    main()
