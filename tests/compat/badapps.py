"""Misbehaving and probing WSGI/ASGI apps, served by real worker processes in the tests.

Each dispatches on the path. ``PROBE_LOG`` (an environment variable naming a
file) collects one line per notable event (iterable closed, disconnect seen,
lifespan message) so the test process can see what happened inside the worker.
"""

from __future__ import annotations

import asyncio
import json
import os


def _probe(line: str) -> None:
    path = os.environ.get("PROBE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _Body:
    """A response iterable that records its close()."""

    def __init__(self, chunks, name, fail_at=None):
        self._chunks = list(chunks)
        self._name = name
        self._fail_at = fail_at

    def __iter__(self):
        for i, chunk in enumerate(self._chunks):
            if i == self._fail_at:
                raise RuntimeError(f"{self._name}: failing after {i} chunks")
            yield chunk

    def close(self):
        _probe(f"closed {self._name}")


_ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "HTTP_X_MULTI",
    "HTTP_COOKIE",
    "HTTP_HOST",
    "wsgi.url_scheme",
    "wsgi.multithread",
    "wsgi.multiprocess",
    "wsgi.input_terminated",
)


def wsgi(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/environ":
        body = environ["wsgi.input"].read()
        data = {k: environ.get(k) for k in _ENVIRON_KEYS}
        data["body_len"] = len(body)
        data["input_type"] = type(environ["wsgi.input"]).__name__
        data["http_keys"] = sorted(k for k in environ if k.startswith("HTTP_"))
        out = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return _Body([out], "environ")
    if path == "/raise-before":
        raise RuntimeError("raised before start_response")
    if path == "/raise-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body([b"partial ", b"more"], "raise-after", fail_at=1)
    if path == "/raise-in-iter-before-head":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body([b"", b"x"], "raise-in-iter-before-head", fail_at=1)
    if path == "/bad-status":
        start_response("OK", [])
        return [b"x"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: 1")])
        return [b"x"]
    if path == "/not-iterable":
        start_response("200 OK", [])
        return 42
    if path == "/huge-head":
        start_response("200 OK", [(f"X-Big-{i}", "x" * 1000) for i in range(200)])
        return [b"x"]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["text, not bytes"]
    if path == "/no-start-response":
        return [b"x"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            import sys

            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/write-callable":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"via write(), ")
        return [b"then iterable"]
    if path == "/big-stream":
        n = int(environ["QUERY_STRING"] or 64)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Body((bytes([i % 256]) * 65536 for i in range(n)), "big-stream")
    if path == "/status-429":
        start_response("429 Too Many Requests", [("Content-Type", "text/plain")])
        return [b"slow down"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such probe"]


async def _body(receive):
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send, status, body, headers=((b"content-type", b"text/plain"),)):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            _probe(f"lifespan {message['type']} {os.getpid()}")
            if message["type"] == "lifespan.startup":
                scope["state"]["counter"] = 0
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path == "/scope":
        body = await _body(receive)
        data = {
            k: v
            for k, v in scope.items()
            if k not in ("headers", "state", "extensions", "raw_path", "query_string")
        }
        data["raw_path"] = scope["raw_path"].decode("latin-1")
        data["query_string"] = scope["query_string"].decode("latin-1")
        data["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        data["body_len"] = len(body or b"")
        data["state"] = dict(scope.get("state", {}))
        await _respond(send, 200, json.dumps(data).encode(), [(b"content-type", b"application/json")])
        return
    if path == "/chunks":
        # how the request body arrived: one entry per http.request message
        sizes = []
        while True:
            message = await receive()
            sizes.append([len(message.get("body", b"")), message.get("more_body", False)])
            if not message.get("more_body"):
                break
        await _respond(send, 200, json.dumps(sizes).encode())
        return
    if path == "/raise-before":
        raise RuntimeError("raised before http.response.start")
    if path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("raised mid-body")
    if path == "/no-response":
        return
    if path == "/incomplete":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        return
    if path == "/bad-status":
        await _respond(send, 99, b"x")
        return
    if path == "/bad-header":
        await _respond(send, 200, b"x", [(b"x-bad", b"a\nb")])
        return
    if path == "/huge-head":
        await _respond(send, 200, b"x", [(f"x-big-{i}".encode(), b"x" * 1000) for i in range(200)])
        return
    if path == "/head-body":
        # sends a body even for HEAD and 204: the adapter must drop it
        status = int(scope["query_string"] or 200)
        await _respond(send, status, b"body that must not be sent")
        return
    if path == "/wait-disconnect":
        await _body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()
        _probe(f"disconnect {message['type']}")
        return
    if path == "/wait-before-response":
        await _body(receive)
        message = await receive()
        _probe(f"disconnect-before-response {message['type']}")
        return
    if path == "/big-stream":
        n = int(scope["query_string"] or 64)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(n):
            await send({"type": "http.response.body", "body": bytes([i % 256]) * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await _respond(send, 404, b"no such probe")


async def asgi_no_lifespan(scope, receive, send):
    """Like many small ASGI apps: assumes every scope is http."""
    assert scope["type"] == "http", "only http"
    await _respond(send, 200, b"ok")


async def asgi_lifespan_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _respond(send, 200, b"ok")


class ASGI2App:
    """An ASGI 2 (double-callable) app."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        await _respond(send, 200, b"asgi2 " + self.scope["path"].encode())


def wsgi_factory(greeting="hi", *, punct="!"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{greeting}{punct}".encode()]

    return app


async def sleeper(scope, receive, send):
    """Sleeps ?s seconds before answering (terminate drain tests)."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(float(scope["query_string"] or 0))
    await _respond(send, 200, b"slept")
