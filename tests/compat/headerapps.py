"""Apps for tests/compat/test_compat_headers.py: response-header exactness (issue #16).

Each dispatches on the path; ``PROBE_LOG`` collects one line per call of
the app for a path the worker must not hand over (``/ws``).
"""

from __future__ import annotations

import json
import os

_BAD = {
    "cr": [("X-Bad", "a\rb")],
    "lf": [("X-Bad", "a\nInjected: yes")],
    "nul": [("X-Bad", "a\x00b")],
    "name-cr": [("X-B\rad", "v")],
}


def _probe(line: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _headers_for(path: str, query: str) -> tuple[int, list[tuple[str, str]], bytes]:
    if path == "/django-cookie":
        # what Django's WSGIHandler gives for response.set_cookie(): a leading space
        return (
            200,
            [("Content-Type", "text/plain"), ("Set-Cookie", " session=abc123; HttpOnly; Path=/")],
            b"ok",
        )
    if path == "/bad":
        return 200, [("Content-Type", "text/plain"), *_BAD[query]], b"never"
    if path.startswith("/cookies"):
        return (
            200,
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1; Path=/"),
                ("Vary", "Accept"),
                ("Set-Cookie", "b=2; Path=/"),
                ("Vary", "Cookie"),
                ("Cache-Control", "no-cache"),
                ("Cache-Control", "no-store"),
            ],
            b"two cookies",
        )
    if path == "/vary":
        return 200, [("Content-Type", "text/plain"), ("Vary", "Accept"), ("Vary", "Cookie")], b"vary"
    return 404, [("Content-Type", "text/plain")], b"not found"


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ws":
        _probe("wsgi app called for /ws")
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route"]
    if path == "/remote":
        body = json.dumps({"addr": environ.get("REMOTE_ADDR"), "scheme": environ["wsgi.url_scheme"]})
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]
    status, headers, body = _headers_for(path, environ["QUERY_STRING"])
    start_response(f"{status} X", headers)
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        _probe("asgi app called with a websocket scope")
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path == "/ws":
        _probe("asgi app called for /ws")
        status, headers, body = 404, [("Content-Type", "text/plain")], b"no such route"
    elif path == "/remote":
        client = scope["client"][0] if scope["client"] else None
        status, headers = 200, [("Content-Type", "application/json")]
        body = json.dumps({"addr": client, "scheme": scope["scheme"]}).encode()
    else:
        status, headers, body = _headers_for(path, scope["query_string"].decode())
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
