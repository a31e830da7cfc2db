"""A Flask app for the inline (``--threads 0``) and thread hand-off tests.

Every answer says which thread ran the view, so a test can tell inline
(the worker's main thread) from a pool thread.
"""

from __future__ import annotations

import hashlib
import threading

from flask import Flask, Response, request

app = Flask(__name__)


def _thread() -> str:
    current = threading.current_thread()
    return "main" if current is threading.main_thread() else current.name


@app.get("/hello/<name>")
def hello(name: str) -> Response:
    resp = Response(f"hello {name}\n", mimetype="text/plain")
    resp.headers["X-Thread"] = _thread()
    resp.headers["X-Multithread"] = str(request.environ["wsgi.multithread"])
    return resp


@app.post("/digest")
def digest() -> Response:
    """Reads wsgi.input in pieces: a line, a fixed size, then the rest."""
    stream = request.environ["wsgi.input"]
    first = stream.readline()
    middle = stream.read(1000)
    rest = stream.read()
    body = first + middle + rest
    resp = Response(f"{len(body)} {hashlib.sha256(body).hexdigest()} {len(first)}\n", mimetype="text/plain")
    resp.headers["X-Thread"] = _thread()
    return resp


@app.get("/stream/<int:count>/<int:size>")
def stream(count: int, size: int) -> Response:
    def chunks():
        for i in range(count):
            yield bytes([65 + i % 26]) * size

    return Response(chunks(), mimetype="application/octet-stream")


@app.get("/raise")
def boom() -> Response:
    raise RuntimeError("the view failed")


@app.get("/raise-mid-stream")
def boom_mid_stream() -> Response:
    def chunks():
        yield b"first part\n"
        raise RuntimeError("the stream failed")

    return Response(chunks(), mimetype="text/plain")
