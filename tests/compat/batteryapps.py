"""Flask and FastAPI apps for the differential battery (tests/compat/test_compat_battery.py).

What the examples do not cover: repeated response headers, Django-style
values with a leading space, a NUL in a header value, a multipart upload
with a file, a HEAD-aware GET, an app that raises before and while
streaming, and a WebSocket route.
"""

from __future__ import annotations

import hashlib

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse
from flask import Flask, request

flask_app = Flask(__name__)


def _repeated() -> list[tuple[str, str]]:
    return [
        ("Link", "</a.css>; rel=preload"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Vary", "Accept"),
        ("Link", "</b.js>; rel=preload"),
        ("Set-Cookie", "b=2; Path=/; HttpOnly"),
        ("Vary", "Cookie"),
        ("X-Single", "one"),
    ]


@flask_app.get("/repeated")
def flask_repeated():
    return "repeated\n", 200, _repeated()


@flask_app.get("/spaced")
def flask_spaced():
    # what Django's WSGIHandler does with every Set-Cookie
    return "spaced\n", 200, [("Set-Cookie", " session=abc123; HttpOnly; Path=/"), ("X-Tabbed", "\tv \t")]


@flask_app.get("/nul-header")
def flask_nul():
    return "never\n", 200, [("X-Bad", "a\x00b")]


@flask_app.post("/multipart")
def flask_multipart():
    files = {}
    for name, storage in request.files.items():
        data = storage.read()
        files[name] = {
            "filename": storage.filename,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    return {"form": request.form.to_dict(flat=False), "files": files}


@flask_app.route("/sized", methods=["GET", "HEAD"])
def flask_sized():
    return "x" * 1000, 200, [("Content-Type", "text/plain")]


@flask_app.get("/raise-in-stream")
def flask_raise_in_stream():
    def gen():
        yield b"first\n"
        raise RuntimeError("broken stream")

    return flask_app.response_class(gen(), mimetype="text/plain")


@flask_app.get("/unicode/<name>")
def flask_unicode(name):
    return {"name": name, "path": request.path}


fastapi_app = FastAPI()


@fastapi_app.get("/repeated")
async def fastapi_repeated() -> Response:
    response = PlainTextResponse("repeated\n")
    for name, value in _repeated():
        response.headers.append(name, value)
    return response


@fastapi_app.get("/spaced")
async def fastapi_spaced() -> Response:
    response = PlainTextResponse("spaced\n")
    response.raw_headers.append((b"set-cookie", b" session=abc123; HttpOnly; Path=/"))
    response.raw_headers.append((b"x-tabbed", b"\tv \t"))
    return response


@fastapi_app.get("/nul-header")
async def fastapi_nul() -> Response:
    response = PlainTextResponse("never\n")
    response.raw_headers.append((b"x-bad", b"a\x00b"))
    return response


@fastapi_app.post("/multipart")
async def fastapi_multipart(request: Request) -> dict:
    body = await request.body()
    return {
        "type": request.headers.get("content-type", "").split(";")[0],
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


@fastapi_app.api_route("/sized", methods=["GET", "HEAD"])
async def fastapi_sized() -> Response:
    return PlainTextResponse("x" * 1000)


@fastapi_app.get("/raise-in-stream")
async def fastapi_raise_in_stream() -> Response:
    async def gen():
        yield b"first\n"
        raise RuntimeError("broken stream")

    return StreamingResponse(gen(), media_type="text/plain")


@fastapi_app.get("/unicode/{name}")
async def fastapi_unicode(name: str, request: Request) -> dict:
    return {"name": name, "path": request.url.path}


@fastapi_app.websocket("/ws")
async def fastapi_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()
