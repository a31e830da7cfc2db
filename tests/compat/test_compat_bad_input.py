"""Bad input and misbehaving apps, through real worker processes (A and B).

Every case: the session gets an HTTP answer (400/500 head + body) or, once
the head is out, an error frame; the error is logged with the request line;
and the same worker answers the next request.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from http_harness import COMPAT_DIR, Served, raw_envelope, read_lines, wait_for

from cocaine_http.http.envelope import decode_response
from cocaine_http.protocol.frames import Generation


@pytest.fixture(scope="module")
def probe_log() -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="probe-")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture(scope="module")
def pool(probe_log: str) -> Iterator[Callable[[str, Generation], Served]]:
    """One worker per (adapter, generation), started on first use, kept for the module."""
    workers: dict[tuple[str, Generation], Served] = {}

    def get(kind: str, generation: Generation) -> Served:
        key = (kind, generation)
        if key not in workers:
            workers[key] = Served(
                f"badapps:{kind}", generation, app_dir=COMPAT_DIR, env={"PROBE_LOG": probe_log}
            )
        return workers[key]

    yield get
    for worker in workers.values():
        worker.close()


@pytest.fixture
def wsgi_worker(pool: Callable[[str, Generation], Served], generation: Generation) -> Served:
    return pool("wsgi", generation)


@pytest.fixture
def asgi_worker(pool: Callable[[str, Generation], Served], generation: Generation) -> Served:
    return pool("asgi", generation)


def still_serving(worker: Served) -> None:
    reply = worker.request("GET", "/no-such-probe")
    assert reply.status == 404


# -- malformed envelopes (both adapters) -------------------------------------------

MALFORMED = {
    "not_msgpack": b"\xc1garbage",
    "not_an_array": raw_envelope({"method": "GET"}),
    "too_short": raw_envelope(["GET", "/", "1.1"]),
    "method_not_a_string": raw_envelope([7, "/", "1.1", [], b""]),
    "headers_not_a_list": raw_envelope(["GET", "/", "1.1", "Host: x", b""]),
    "header_not_a_pair": raw_envelope(["GET", "/", "1.1", [["Host"]], b""]),
    "header_value_int": raw_envelope(["GET", "/", "1.1", [["Host", 80]], b""]),
    "header_injection": raw_envelope(["GET", "/", "1.1", [["X", "a\r\nB: c"]], b""]),
    "bad_version": raw_envelope(["GET", "/", "HTTP/one", [], b""]),
    "body_not_raw": raw_envelope(["GET", "/", "1.1", [], 5]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_malformed_envelope_gets_400(pool: Any, generation: Generation, kind: str, case: str) -> None:
    worker: Served = pool(kind, generation)
    reply = worker.invoke([MALFORMED[case]])
    assert reply.error is None and reply.closed
    status, _headers, body = decode_response(reply.chunks, worker.generation)
    assert status == 400
    assert body.startswith(b"Bad Request: ")
    assert wait_for(lambda: "bad HTTP request on session" in worker.output())
    still_serving(worker)


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_empty_session_gets_400(pool: Any, generation: Generation, kind: str) -> None:
    worker: Served = pool(kind, generation)
    reply = worker.invoke([])
    status, _, body = decode_response(reply.chunks, worker.generation)
    assert status == 400 and b"no request chunk" in body
    still_serving(worker)


# -- misbehaving WSGI apps -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/raise-before",
        "/bad-status",
        "/bad-header",
        "/not-iterable",
        "/huge-head",
        "/str-body",
        "/no-start-response",
        "/raise-in-iter-before-head",
    ],
)
def test_wsgi_app_fault_before_head_gets_500(wsgi_worker: Served, probe_log: str, path: str) -> None:
    reply = wsgi_worker.request("GET", path)
    assert reply.status == 500
    assert reply.body == b"Internal Server Error"
    assert wait_for(lambda: f"GET {path} HTTP/1.1" in wsgi_worker.output()), wsgi_worker.output()[-2000:]
    if path == "/raise-in-iter-before-head":
        assert wait_for(lambda: "closed raise-in-iter-before-head" in read_lines(probe_log))
    still_serving(wsgi_worker)


def test_wsgi_app_fault_after_head_ends_with_error_frame(wsgi_worker: Served, probe_log: str) -> None:
    reply = wsgi_worker.invoke([raw_envelope(["GET", "/raise-after", "1.1", [], b""])])
    assert reply.error is not None
    code, message = reply.error
    assert (code[1] if isinstance(code, tuple) else code) == 100
    assert "after its response started" in message
    status, _, body = decode_response(reply.chunks, wsgi_worker.generation)
    assert status == 200 and body == b"partial "
    assert wait_for(lambda: "closed raise-after" in read_lines(probe_log)), "close() was not called"
    still_serving(wsgi_worker)


def test_wsgi_close_always_called(wsgi_worker: Served, probe_log: str) -> None:
    reply = wsgi_worker.request("GET", "/environ")
    assert reply.status == 200
    assert wait_for(lambda: "closed environ" in read_lines(probe_log))


def test_wsgi_exc_info_replaces_the_head(wsgi_worker: Served) -> None:
    reply = wsgi_worker.request("GET", "/exc-info")
    assert (reply.status, reply.body) == (503, b"replaced")


def test_wsgi_write_callable(wsgi_worker: Served) -> None:
    assert wsgi_worker.request("GET", "/write-callable").body == b"via write(), then iterable"


def test_wsgi_status_missing_from_python2_httplib(wsgi_worker: Served) -> None:
    reply = wsgi_worker.request("GET", "/status-429")
    if wsgi_worker.generation is Generation.A:
        assert reply.status == 400 and reply.header("X-Cocaine-Original-Status") == "429"
    else:
        assert reply.status == 429 and reply.header("X-Cocaine-Original-Status") is None


def test_wsgi_large_streamed_response(wsgi_worker: Served) -> None:
    reply = wsgi_worker.request("GET", "/big-stream", body=b"", headers=[("Host", "h")], version="1.1")
    assert len(reply.body) == 64 * 65536
    assert len(reply.reply.chunks) == 65  # head + one chunk per yielded block
    assert reply.body[65536 * 5] == 5


def test_wsgi_environ(wsgi_worker: Served) -> None:
    reply = wsgi_worker.request(
        "POST",
        "/environ?x=%20y",
        [
            ("Host", "api.example.com:8443"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("X-Real-IP", "127.0.0.1"),  # the peer: trusted by default (--forwarded-allow-ips)
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-For", "10.0.0.1, 192.168.1.7"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("X_Sneaky", "dropped"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ],
        b"hel",
        extra_chunks=[b"lo"],
        version="1.0",
    )
    env = json.loads(reply.body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/environ" and env["SCRIPT_NAME"] == ""
    assert env["QUERY_STRING"] == "x=%20y"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("api.example.com", "8443")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["REMOTE_ADDR"] == "192.168.1.7"
    assert env["HTTP_X_MULTI"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "5"
    assert env["wsgi.url_scheme"] == "https"
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
    assert env["body_len"] == 5  # the extra chunk was appended to the body
    assert env["input_type"] == "WSGIInput"
    assert "HTTP_X_SNEAKY" not in env["http_keys"]
    assert "HTTP_CONTENT_TYPE" not in env["http_keys"]


# -- misbehaving ASGI apps ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/raise-before", "/no-response", "/bad-status", "/bad-header", "/huge-head"]
)
def test_asgi_app_fault_before_head_gets_500(asgi_worker: Served, path: str) -> None:
    reply = asgi_worker.request("GET", path)
    assert (reply.status, reply.body) == (500, b"Internal Server Error")
    assert wait_for(lambda: f"GET {path} HTTP/1.1" in asgi_worker.output())
    still_serving(asgi_worker)


@pytest.mark.parametrize("path", ["/raise-after", "/incomplete"])
def test_asgi_app_fault_after_head_ends_with_error_frame(asgi_worker: Served, path: str) -> None:
    reply = asgi_worker.invoke([raw_envelope(["GET", path, "1.1", [], b""])])
    assert reply.error is not None
    status, _, body = decode_response(reply.chunks, asgi_worker.generation)
    assert (status, body) == (200, b"partial")
    still_serving(asgi_worker)


@pytest.mark.parametrize(("method", "query"), [("HEAD", "200"), ("GET", "204"), ("GET", "304")])
def test_asgi_body_dropped_for_head_204_304(asgi_worker: Served, method: str, query: str) -> None:
    reply = asgi_worker.request(method, f"/head-body?{query}")
    assert reply.status == int(query)
    assert reply.body == b""
    assert len(reply.reply.chunks) == 1  # the head only: no body write at all


def test_asgi_scope(asgi_worker: Served) -> None:
    reply = asgi_worker.request(
        "PUT",
        "/scope?q=%C3%A9",
        [("Host", "[::1]:8080"), ("X-Real-IP", "203.0.113.9"), ("X-Dup", "1"), ("X-Dup", "2")],
        b"abc",
        version="1.0",
    )
    scope = json.loads(reply.body)
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.3"}
    assert scope["http_version"] == "1.0"
    assert scope["method"] == "PUT"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope" and scope["raw_path"] == "/scope"
    assert scope["query_string"] == "q=%C3%A9"
    assert scope["root_path"] == ""
    assert scope["client"] == ["203.0.113.9", 0]
    assert scope["server"] == ["[::1]", 8080]
    assert ["x-dup", "1"] in scope["headers"] and ["x-dup", "2"] in scope["headers"]
    assert all(k == k.lower() for k, _ in scope["headers"])
    assert scope["body_len"] == 3
    assert scope["state"] == {"counter": 0}  # from the lifespan


def test_asgi_request_body_streams_with_more_body(asgi_worker: Served) -> None:
    reply = asgi_worker.request("POST", "/chunks", body=b"a" * 10, extra_chunks=[b"b" * 20, b"c" * 30])
    sizes = json.loads(reply.body)
    assert sum(n for n, _ in sizes) == 60
    assert sizes[-1][1] is False and all(more for _, more in sizes[:-1])
    assert sizes[0] == [10, True]


def test_asgi_large_streamed_response(asgi_worker: Served) -> None:
    reply = asgi_worker.request("GET", "/big-stream?48")
    assert len(reply.body) == 48 * 65536
    assert len(reply.reply.chunks) == 49  # no empty write for the final empty body message


def test_asgi_disconnect_when_runtime_fails_the_session(asgi_worker: Served, probe_log: str) -> None:
    lt, engine = asgi_worker.lt, asgi_worker.engine

    async def go() -> None:
        inv = await engine.open("http")
        await inv.write(raw_envelope(["GET", "/wait-before-response", "1.1", [], b""]))
        # no close: the request side stays open, then the client goes away
        # (after a round trip on the same connection: the worker has the session by then)
        await engine.invoke("http", [raw_envelope(["GET", "/no-such-probe", "1.1", [], b""])])
        await inv.send_error((0x53FF, 1) if asgi_worker.generation is Generation.B else 1, "client went away")

    lt.run(go())
    assert wait_for(lambda: "disconnect-before-response http.disconnect" in read_lines(probe_log)), (
        asgi_worker.output()
    )
    still_serving(asgi_worker)
