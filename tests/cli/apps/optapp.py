"""Apps for the command-line tests: they answer with what the server gave them."""

from __future__ import annotations

import gc
import json
import os
import threading


def app(environ, start_response):  # type: ignore[no-untyped-def]
    """WSGI: the request as the app sees it, plus the worker process's settings."""
    body = json.dumps(
        {
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "marker": os.environ.get("CLI_TEST_MARKER"),
            "thread": threading.current_thread().name,
            "pid": os.getpid(),
            "gc_frozen": gc.get_freeze_count(),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def other(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"other " + environ["PATH_INFO"].encode()]


async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
    """ASGI: root_path and path."""
    if scope["type"] != "http":
        return
    body = json.dumps({"root_path": scope["root_path"], "path": scope["path"]}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _flask_app():  # type: ignore[no-untyped-def]
    from flask import Flask, redirect, url_for

    flask_app = Flask(__name__)

    @flask_app.get("/go")
    def go():  # type: ignore[no-untyped-def]
        return redirect(url_for("me"))

    @flask_app.get("/me")
    def me():  # type: ignore[no-untyped-def]
        return "me"

    return flask_app


flask = _flask_app()
