#!/usr/bin/env python3
"""CPU per request of an example app alone, with no server: the floor under every server.

A server's CPU per request is the app's own plus the server's. This runs
the app's ``GET /`` (or ``--request json``'s ``POST /json``) in a loop, in
process, as a server with no cost would call it, and prints the app's CPU
per request: ``granian's CPU / this`` is the most any server could reach
against granian on the same machine.

* ``wsgi``: the app is called with a prebuilt environ (copied per request,
  as apps write into it; the one cocaine-http builds for the request with
  ``Host`` and ``User-Agent``, or ``--headers browser``'s dozen, see
  ``bench/request_headers.py``), a fresh ``io.BytesIO`` of the body as
  ``wsgi.input`` and a ``start_response`` that keeps nothing; its body is
  iterated and closed.
* ``asgi``: one asyncio task awaits the app with a prebuilt ``http`` scope
  (copied per request), a ``receive`` that returns the request's body
  and a ``send`` that keeps nothing.

It checks the first answer (the request's status and body), then runs for
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
import io
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
from cocaine_http.http.envelope import parse_request  # noqa: E402
from cocaine_http.importer import import_app  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from request_headers import HEADER_SETS, REQUESTS, BenchRequest  # noqa: E402

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


def parsed(req: BenchRequest, headers: str = "hello") -> Any:
    return parse_request(req.envelope(headers))


def run_wsgi(
    app: Any, seconds: float, requests: int | None = None, headers: str = "hello", request: str = "get"
) -> tuple[int, float]:
    req = REQUESTS[request]
    base = build_environ(parsed(req, headers), None)
    data = req.body
    answer: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer.append(status)

    result = app({**base, "wsgi.input": io.BytesIO(data)}, start_response)
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    if int(answer[0][:3]) != req.status or req.expect not in body:
        raise SystemExit(f"unexpected answer {answer[0]!r} {body!r}")

    def keep_nothing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    n = 0
    cpu0 = time.process_time()
    for size in batches(seconds, requests):
        for _ in range(size):
            result = app({**base, "wsgi.input": io.BytesIO(data)}, keep_nothing)
            for _chunk in result:
                pass
            if hasattr(result, "close"):
                result.close()
        n += size
    return n, time.process_time() - cpu0


async def run_asgi(
    app: Any, seconds: float, requests: int | None = None, headers: str = "hello", request: str = "get"
) -> tuple[int, float]:
    req = REQUESTS[request]
    base = build_scope(parsed(req, headers), root_path="", state=None)
    request_message = {"type": "http.request", "body": req.body, "more_body": False}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return request_message

    async def keep(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(base), receive, keep)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    if sent[0].get("status") != req.status or req.expect not in body:
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
    parser.add_argument(
        "--request", choices=sorted(REQUESTS), default="get", help="the request (default get)"
    )
    args = parser.parse_args()
    app = import_app(args.app)
    if args.interface == "wsgi":
        n, cpu = run_wsgi(app, args.seconds, args.requests, args.headers, args.request)
    else:
        n, cpu = asyncio.run(run_asgi(app, args.seconds, args.requests, args.headers, args.request))
    print(json.dumps({"n": n, "cpu_us": cpu / n * 1e6}))


if __name__ == "__main__":
    main()
