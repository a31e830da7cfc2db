"""Large envelopes whose body the worker's decoder collected apart (protocol/payloads.py).

Over the real socket from the Engine, a chunk of 1 MiB or more shaped like an
HTTP envelope arrives at the worker in many reads. A handler that says it
takes split payloads (the HTTP adapters do) gets the ``SplitPayload``; any
other handler gets ``bytes`` equal to the chunk, as before, with either decoder.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import msgpack
from test_worker_inprocess import inproc

from cocaine_http.aio.worker import Worker
from cocaine_http.compat.asgi import ASGIHandler
from cocaine_http.compat.wsgi import InlineWSGIHandler, WSGIHandler
from cocaine_http.http.envelope import encode_request
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.payloads import LARGE_PAYLOAD, SplitPayload
from cocaine_http.runtime import Engine, Slave

ENVELOPE = msgpack.packb(["POST", "/", "1.1", [["Host", "h"]], os.urandom(LARGE_PAYLOAD + 11)])
NOT_AN_ENVELOPE = msgpack.packb([os.urandom(LARGE_PAYLOAD), 1])


class TakesSplit:
    """A handler as the adapters are: it says it takes split payloads."""

    takes_split_payloads = True

    async def __call__(self, request: Any, response: Any) -> None:
        chunk = await request.read()
        kind = type(chunk).__name__.encode()
        body = chunk.body if type(chunk) is SplitPayload else chunk
        await response.write(kind + b" " + hashlib.sha256(body).hexdigest().encode())


def test_only_a_handler_that_takes_them_gets_split_payloads(gen: str, runtime_dir: str) -> None:
    def setup(w: Worker) -> None:
        @w.on("plain")
        async def plain(request: Any, response: Any) -> None:
            chunk = await request.read()
            await response.write(
                type(chunk).__name__.encode() + b" " + hashlib.sha256(chunk).hexdigest().encode()
            )

        w.on("takes", TakesSplit())

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        whole = hashlib.sha256(ENVELOPE).hexdigest().encode()
        assert (await engine.invoke("plain", [ENVELOPE])).data == b"bytes " + whole
        reply = (await engine.invoke("takes", [ENVELOPE])).data
        body = msgpack.unpackb(ENVELOPE)[4]
        assert reply == b"SplitPayload " + hashlib.sha256(body).hexdigest().encode()
        other = hashlib.sha256(NOT_AN_ENVELOPE).hexdigest().encode()
        assert (await engine.invoke("takes", [NOT_AN_ENVELOPE])).data == b"bytes " + other

    inproc(gen, runtime_dir, setup, scenario)


def test_a_later_chunk_shaped_like_an_envelope_reaches_the_apps_as_bytes(gen: str, runtime_dir: str) -> None:
    """The HTTP adapters take split payloads, but only their first chunk is an
    envelope: a later body chunk that happens to have the shape (a client can
    send anything) reaches the app as plain ``bytes``, in every mode."""
    generation = "A" if gen == "A" else "B"
    first = encode_request("POST", "/", [("Host", "h")], b"abc", generation=Generation.parse(generation))
    expected = hashlib.sha256(b"abc" + ENVELOPE).hexdigest().encode()

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [type(body).__name__.encode() + b" " + hashlib.sha256(body).hexdigest().encode()]

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kinds, digest = set(), hashlib.sha256()
        while (message := await receive())["type"] == "http.request":
            kinds.add(type(message["body"]).__name__)
            digest.update(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {
                "type": "http.response.body",
                "body": " ".join(sorted(kinds)).encode() + b" " + digest.hexdigest().encode(),
            }
        )

    def setup(w: Worker) -> None:
        w.on("wsgi", WSGIHandler(wsgi_app, generation=generation))
        w.on("inline", InlineWSGIHandler(wsgi_app, generation=generation))
        w.on("asgi", ASGIHandler(asgi_app, generation=generation))

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        for event in ("wsgi", "inline", "asgi"):
            reply = await engine.invoke(event, [first, ENVELOPE])
            assert b"bytes " + expected in reply.data, (event, reply.data[-200:])  # (A packs the body)

    inproc(gen, runtime_dir, setup, scenario)
