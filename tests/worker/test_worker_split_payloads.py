"""Large envelopes whose body the worker's decoder collected apart (protocol/payloads.py).

Over the real socket from the Engine, a chunk of 1 MiB or more shaped like an
HTTP envelope arrives at the worker in many reads. A handler that says it
takes split payloads (the HTTP adapters do) gets the ``SplitPayload``; any
other handler gets ``bytes`` equal to the chunk, as before. With the pure
twin every handler gets ``bytes``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import msgpack
from test_worker_inprocess import inproc

from cocaine_http.aio.worker import Worker
from cocaine_http.protocol import codec
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
        if codec.BACKEND == "native":
            body = msgpack.unpackb(ENVELOPE)[4]
            assert reply == b"SplitPayload " + hashlib.sha256(body).hexdigest().encode()
        else:
            assert reply == b"bytes " + whole
        other = hashlib.sha256(NOT_AN_ENVELOPE).hexdigest().encode()
        assert (await engine.invoke("takes", [NOT_AN_ENVELOPE])).data == b"bytes " + other

    inproc(gen, runtime_dir, setup, scenario)
