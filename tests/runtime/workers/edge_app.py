"""The app behind the HTTP front's edge tests (tests/runtime/test_rt_front_edge.py).

``app`` (ASGI) runs under ``cocaine-http dev``; ``wsgi`` is its twin for
gunicorn, the oracle of the refusals. Routes:

* ``/seen``: the paths this worker has been asked for, one per line;
* ``/client``: the ASGI ``client`` and the ``x-real-ip`` headers received;
* ``/server``: a response that sets its own ``Server`` header;
* ``/hold?n=N&release=PATH``: waits until N requests are inside the app at
  once, or until the file PATH exists (bounded: 60 s, then 500);
* anything else: ``ok`` after reading the whole body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any
from urllib.parse import parse_qs

SEEN: list[str] = []
_arrived = 0
_all_in: asyncio.Event | None = None
HOLD_LIMIT = 60.0


async def _body(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _reply(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*length, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _hold(query: dict[str, list[str]]) -> tuple[int, bytes]:
    global _arrived, _all_in
    want = int(query.get("n", ["1"])[0])
    release = query.get("release", [""])[0]
    if _all_in is None:
        _all_in = asyncio.Event()
    _arrived += 1
    if _arrived >= want:
        _all_in.set()
    deadline = time.monotonic() + HOLD_LIMIT
    while not _all_in.is_set():
        if release and os.path.exists(release):  # noqa: ASYNC240 - a stat of a local file, 20 times a second
            return 200, b"released"
        if time.monotonic() > deadline:
            return 500, b"only %d arrived" % _arrived
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_all_in.wait(), 0.05 if release else deadline - time.monotonic())
    return 200, b"all %d in" % _arrived


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    SEEN.append(path)
    await _body(receive)
    if path == "/seen":
        await _reply(send, 200, "\n".join(SEEN).encode())
    elif path == "/client":
        real_ip = [v.decode() for k, v in scope["headers"] if k == b"x-real-ip"]
        await _reply(send, 200, repr((scope["client"], real_ip)).encode())
    elif path == "/server":
        await _reply(send, 200, b"mine", [(b"server", b"edge-app")])
    elif path == "/hold":
        status, body = await _hold(parse_qs(scope["query_string"].decode()))
        await _reply(send, status, body)
    else:
        await _reply(send, 200, b"ok")


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
