"""``--threads 0``: a Flask app run inline on a real worker's loop thread (A and B),
and the threaded hand-off under many concurrent requests.

The worker processes are real (``python -m cocaine_http``), behind the
runtime-side Engine, which sends HTTP envelopes as the cocaine proxies do.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import pytest
from http_harness import COMPAT_DIR, Served, served, wait_for

from cocaine_http.http.envelope import decode_response, encode_request
from cocaine_http.protocol.frames import Generation

TARGET = "inlineapps:app"


@pytest.fixture(scope="module")
def inline(generation: Generation) -> Iterator[Served]:
    yield from served(TARGET, generation, app_dir=COMPAT_DIR, args=["--threads", "0"])


@pytest.fixture(scope="module")
def threaded(generation: Generation) -> Iterator[Served]:
    yield from served(TARGET, generation, app_dir=COMPAT_DIR, args=["--threads", "4"])


def _digest_line(body: bytes, first_line: int) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()} {first_line}\n".encode()


def test_requests_run_on_the_loop_thread(inline: Served) -> None:
    for i in range(20):
        reply = inline.request("GET", f"/hello/n{i}")
        assert (reply.status, reply.body) == (200, f"hello n{i}\n".encode())
        assert reply.header("X-Thread") == "main"
        assert reply.header("X-Multithread") == "False"


def test_the_thread_pool_runs_the_app_by_default(threaded: Served) -> None:
    reply = threaded.request("GET", "/hello/x")
    assert reply.status == 200 and reply.header("X-Thread").startswith("cocaine-handler")
    assert reply.header("X-Multithread") == "True"


def test_streaming_response_larger_than_the_write_mark(inline: Served) -> None:
    # 64 chunks of 64 KiB: 4 MiB, four times the socket's write mark, so the
    # inline handler waits for drains between chunks.
    reply = inline.request("GET", "/stream/64/65536")
    assert reply.status == 200
    expected = b"".join(bytes([65 + i % 26]) * 65536 for i in range(64))
    assert reply.body == expected
    assert inline.request("GET", "/hello/after").body == b"hello after\n"


def test_wsgi_input_body_in_the_envelope_and_in_chunks(inline: Served) -> None:
    body = b"first line\n" + bytes(range(256)) * 40
    reply = inline.request("POST", "/digest", [("Host", "x"), ("Content-Length", str(len(body)))], body)
    assert reply.body == _digest_line(body, 11)
    # the same body split over the envelope and three more chunks
    head, tail = body[:5], body[5:]
    pieces = [tail[:3000], tail[3000:7000], tail[7000:]]
    reply = inline.request(
        "POST", "/digest", [("Host", "x"), ("Content-Length", str(len(body)))], head, extra_chunks=pieces
    )
    assert reply.body == _digest_line(body, 11) and reply.header("X-Thread") == "main"


def test_body_still_arriving_does_not_block_other_requests(inline: Served) -> None:
    """The rest of a small body is awaited on the loop, so another request is
    answered meanwhile; the app then runs inline."""
    gen = inline.generation
    body = b"line\n" + b"x" * 5000
    blob = encode_request(
        "POST", "/digest", [("Host", "x"), ("Content-Length", str(len(body)))], body[:100], generation=gen
    )

    async def scenario() -> tuple[bytes, bytes, str]:
        inv = await inline.engine.open("http")
        await inv.write(blob)
        other = await inline.engine.invoke(
            "http",
            [encode_request("GET", "/hello/meanwhile", [("Host", "x")], b"", generation=gen)],
            timeout=10,
        )
        await inv.write(body[100:])
        await inv.close()
        reply = await inv.reply(10)
        _, headers, data = decode_response(reply.chunks, gen)
        thread = {k.lower(): v for k, v in headers}[b"x-thread"].decode()
        return decode_response(other.chunks, gen)[2], data, thread

    other, digest, thread = inline.lt.run(scenario())
    assert other == b"hello meanwhile\n"
    assert digest == _digest_line(body, 5) and thread == "main"


def test_large_streamed_body_falls_back_to_a_thread(inline: Served) -> None:
    """A body still arriving past 64 KiB is read from a thread with the blocking
    streams; every byte still arrives. (The worker reads at most 256 KiB at a
    time, so 3 MiB cannot arrive whole in the read of the invoke.)"""
    body = b"big\n" + bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB in 64 KiB chunks
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    reply = inline.request(
        "POST", "/digest", [("Host", "x"), ("Content-Length", str(len(body)))], b"", extra_chunks=pieces
    )
    assert reply.body == _digest_line(body, 4)
    assert reply.header("X-Thread").startswith("cocaine-wsgi-stream-")
    assert inline.request("GET", "/hello/after").header("X-Thread") == "main"


def test_app_that_raises(inline: Served) -> None:
    reply = inline.request("GET", "/raise")
    assert reply.status == 500
    # the worker's records reach its stderr after the reply (the logging service is not there)
    assert wait_for(lambda: "the view failed" in inline.output()), inline.output()
    # after the head: the session ends with an error frame, not a truncated 200
    reply = inline.invoke(
        [encode_request("GET", "/raise-mid-stream", [("Host", "x")], b"", generation=inline.generation)]
    )
    assert reply.error is not None
    assert inline.request("GET", "/hello/still").body == b"hello still\n"


def _concurrent(worker: Served, n: int, in_flight: int = 48) -> list[tuple[int, bytes, bytes, str]]:
    """*n* requests, *in_flight* at once (the Engine's slots are 64), each with its own body."""
    gen = worker.generation
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> tuple[int, bytes, bytes, str]:
        async with slots:
            return await send(i)

    async def send(i: int) -> tuple[int, bytes, bytes, str]:
        body = f"req {i}\n".encode() * (1 + i % 50)
        blob = encode_request(
            "POST", "/digest", [("Host", "x"), ("Content-Length", str(len(body)))], body, generation=gen
        )
        reply = await worker.engine.invoke("http", [blob], timeout=30)
        assert reply.error is None, reply.error
        status, headers, data = decode_response(reply.chunks, gen)
        thread = {k.lower(): v for k, v in headers}.get(b"x-thread", b"").decode()
        return status, data, _digest_line(body, len(f"req {i}\n")), thread

    async def all_of() -> list[tuple[int, bytes, bytes, str]]:
        return await asyncio.gather(*(one(i) for i in range(n)))

    return worker.lt.run(all_of(), 120)


def test_many_concurrent_requests_threaded(threaded: Served) -> None:
    results = _concurrent(threaded, 400)
    assert all(status == 200 and got == want for status, got, want, _ in results)
    assert {thread for *_, thread in results} <= {f"cocaine-handler-{i}" for i in range(4)}


def test_many_concurrent_requests_inline(inline: Served) -> None:
    results = _concurrent(inline, 400)
    assert all(status == 200 and got == want and thread == "main" for status, got, want, thread in results)
