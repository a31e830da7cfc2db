"""A plain Flask app. Nothing in it knows about Cocaine.

Serve it the usual way (``gunicorn app:app``) or as a Cocaine worker
(``cocaine-http app:app``; locally ``cocaine-http dev app:app``).
"""

from __future__ import annotations

import hashlib
import os
import time

from flask import Flask, Response, abort, jsonify, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, world!\n"


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, q=request.args.get("q"), tags=request.args.getlist("tag"))


@app.post("/json")
def echo_json():
    data = request.get_json(silent=True)
    if data is None:
        return jsonify(error="expected a JSON body"), 400
    return jsonify(received=data, type=type(data).__name__), 201


@app.post("/form")
def form():
    return jsonify(
        form=request.form.to_dict(flat=False),
        files={name: len(f.read()) for name, f in request.files.items()},
    )


@app.post("/upload")
def upload():
    digest = hashlib.sha256()
    size = 0
    while chunk := request.stream.read(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(size=size, sha256=digest.hexdigest())


@app.get("/headers")
def headers():
    return jsonify(
        accept=request.headers.getlist("Accept"),
        x_multi=request.headers.get("X-Multi"),
        cookies=request.cookies.to_dict(),
        host=request.host,
        scheme=request.scheme,
        remote_addr=request.remote_addr,
        path=request.path,
        script_root=request.script_root,
    )


@app.get("/stream")
def stream():
    count = request.args.get("n", 5, type=int)

    @stream_with_context
    def generate():
        for i in range(count):
            yield f"line {i}\n"
            time.sleep(float(request.args.get("delay", 0)))

    return Response(generate(), mimetype="text/plain")


@app.get("/cached")
def cached():
    etag = '"v1"'
    if request.headers.get("If-None-Match") == etag:
        return Response(status=304, headers={"ETag": etag})
    return Response("fresh\n", headers={"ETag": etag})


@app.delete("/items/<int:item_id>")
def delete_item(item_id):
    return "", 204


@app.get("/unicode/<name>")
def unicode_path(name):
    return jsonify(name=name, path=request.path)


@app.get("/cookie")
def set_cookie():
    response = jsonify(ok=True)
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@app.get("/boom")
def boom():
    raise RuntimeError("boom")


@app.get("/teapot")
def teapot():
    abort(418)


@app.get("/storage/<namespace>/<key>")
def storage(namespace, key):
    # The Cocaine service client is imported here, not at the top, so the app
    # runs (and answers 503 on this route) where cocaine_http is absent.
    try:
        from cocaine_http.errors import ServiceError, ServiceNotFoundError, TransportError
        from cocaine_http.services.sync import default_client
    except ImportError as exc:
        return jsonify(error="storage unavailable: the Cocaine service client cannot be imported", detail=str(exc)), 503
    try:
        value = default_client().storage().read(namespace, key)
    except (ServiceNotFoundError, TransportError) as exc:  # no locator, no storage service, timeout
        return jsonify(error="storage unavailable", detail=f"{type(exc).__name__}: {exc}"), 503
    except ServiceError as exc:  # the service answered with an error, e.g. no such key
        return jsonify(error=f"storage read {namespace}/{key} failed", detail=str(exc)), 404
    return Response(value, mimetype="application/octet-stream")


@app.get("/pid")
def pid():
    return jsonify(pid=os.getpid())
