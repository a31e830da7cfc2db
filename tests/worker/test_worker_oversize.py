"""Issue #16: a request frame over the worker's ``max_frame_size`` fails its session, not the worker.

A real worker process behind a real Engine (the runtime side), both
generations. The Engine sends a request body as ONE frame, as the real proxies
do (PROTOCOL.md §2.8, §3.9). The worker's decoder reports the frame and skips
its bytes as they arrive (native/README.md, rule 5c): the session gets its 413
(WSGI, ASGI) or an error (a plain handler), every other session its normal
answer, and the worker stays connected with its memory bounded.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest
from worker_helpers import rss_kib, run

from cocaine_http.http.envelope import decode_response, encode_request
from cocaine_http.runtime import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1024 * 1024
LIMIT = 1 * MiB

WORKER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv.pop(1))
    from cocaine_http.compat.asgi import ASGIHandler
    from cocaine_http.compat.wsgi import InlineWSGIHandler, WSGIHandler
    from cocaine_http.aio.worker import Worker

    LIMIT = int(os.environ["CH_MAX_FRAME"])
    worker = Worker(heartbeat_interval=60.0, disown_timeout=120.0, max_frame_size=LIMIT)

    @worker.on("echo")
    async def echo(request, response):
        async for chunk in request:
            await response.write(chunk)

    @worker.on("echo_sync")
    def echo_sync(request, response):
        for chunk in request:
            response.write(chunk)

    def wsgi_app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi got %d" % len(body)]

    async def asgi_app(scope, receive, send):
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect: give up, as apps do
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        head = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": b"asgi got %d" % size})

    worker.on("wsgi", WSGIHandler(wsgi_app, generation=worker.config.generation))
    worker.on("asgi", ASGIHandler(asgi_app, generation=worker.config.generation))
    worker.on("wsgi_inline", InlineWSGIHandler(wsgi_app, generation=worker.config.generation))
    worker.run()
    """
)

GENS = pytest.mark.parametrize("gen", ["A", "B"])


def engine_for(gen: str, tmp_path) -> Engine:  # type: ignore[no-untyped-def]
    script = tmp_path / "oversize_worker.py"
    script.write_text(WORKER)
    return Engine(
        "oversize",
        [sys.executable, str(script), ROOT],
        generation=gen,
        runtime_dir=str(tmp_path),
        env={"CH_MAX_FRAME": str(LIMIT)},
        concurrency=64,
        pool_limit=1,
        autospawn=False,
    )


def http_body(gen: str, size: int) -> bytes:
    return encode_request("POST", "/up", [("Host", "example.com")], b"b" * size, generation=gen)


@GENS
def test_oversize_frame_fails_only_its_session(gen: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 64 MiB chunk (max 1 MiB) on one session among normal ones: its handler's
    read raises, the runtime gets an error on that session; the others echo,
    the worker stays the same connected process, and its RSS does not grow by
    the frame's size."""

    async def go() -> None:
        async with engine_for(gen, tmp_path) as engine:
            (slave,) = await engine.start(1)
            pid = slave.pid
            # warm up (imports, pools), then measure
            for event in ("echo", "echo_sync"):
                assert (await engine.invoke(event, [b"warm"])).data == b"warm"
            before = rss_kib(pid)
            big = await engine.open("echo")
            first = await engine.open("echo")
            await first.write(b"before")
            await big.write(b"x" * (64 * MiB))  # one frame, 64 times the limit
            await big.close()
            await first.close()
            after_sync = await engine.invoke("echo_sync", [b"after", b"-sync"])
            after = await engine.invoke("echo", [b"after"])
            big_reply = await big.reply(30)
            first_reply = await first.reply(30)
            assert first_reply.error is None and first_reply.data == b"before"
            assert after.error is None and after.data == b"after"
            assert after_sync.error is None and after_sync.data == b"after-sync"
            assert big_reply.error is not None, big_reply
            code, message = big_reply.error
            assert "request body too large" in message and str(64 * MiB) in message
            if gen == "B":
                assert code == (42, 252)  # worker category, FRAME_TOO_LARGE
            # a sync handler gets the same, and the worker goes on
            big_sync = await engine.invoke("echo_sync", [b"y" * (3 * LIMIT)])
            assert big_sync.error is not None and "request body too large" in big_sync.error[1]
            assert (await engine.invoke("echo", [b"still here"])).data == b"still here"
            assert slave.pid == pid and engine.active_slaves() == [slave]
            grown = rss_kib(pid) - before
            assert grown < 16 * 1024, f"worker RSS grew by {grown} KiB for a 64 MiB frame"

    run(go(), 90)


@GENS
@pytest.mark.parametrize("event", ["wsgi", "wsgi_inline", "asgi"])
def test_oversize_http_request_gets_413(gen: str, event: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An HTTP request whose envelope (with its body) is one frame over the limit:
    413 from the WSGI and the ASGI handler; the requests around it are served."""

    async def go() -> None:
        async with engine_for(gen, tmp_path) as engine:
            await engine.start(1)
            small = await engine.invoke(event, [http_body(gen, 10)])
            big = await engine.invoke(event, [http_body(gen, 5 * LIMIT)])
            after = await engine.invoke(event, [http_body(gen, 1000)])
            for reply, size in ((small, 10), (after, 1000)):
                assert reply.error is None, reply
                status, _headers, body = decode_response(reply.chunks, gen)
                assert (status, body) == (200, b"%s got %d" % (event[:4].encode(), size))
            assert big.error is None, big
            status, _headers, body = decode_response(big.chunks, gen)
            assert status == 413
            assert b"request body too large" in body

    run(go(), 60)
