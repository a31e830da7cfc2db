"""The adapters' pure parts, and the handlers against in-process fake streams."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cocaine_http.aio.streams import Drain, Request
from cocaine_http.compat.asgi import ASGIHandler, Lifespan, build_scope
from cocaine_http.compat.common import (
    ProxyTrust,
    client_addr,
    forwarded,
    host_and_port,
    lowered,
    url_scheme,
)
from cocaine_http.compat.wsgi import InlineWSGIHandler, WSGIHandler, WSGIInput, build_environ
from cocaine_http.errors import DisconnectedError, ErrorCode, StartupError
from cocaine_http.http.envelope import decode_response, encode_request, parse_request
from cocaine_http.protocol.frames import Generation

# -- wsgi.input ---------------------------------------------------------------------


def make_input(first: bytes, *rest: bytes) -> tuple[WSGIInput, list[int]]:
    pulls: list[int] = []
    chunks = list(rest)

    def pull() -> bytes:
        pulls.append(1)
        return chunks.pop(0) if chunks else b""

    return WSGIInput(first, pull), pulls


def test_input_reads_lazily_across_chunks() -> None:
    stream, pulls = make_input(b"abc", b"def", b"gh")
    assert stream.read(2) == b"ab"
    assert pulls == []  # served from the first chunk, nothing pulled
    assert stream.read(3) == b"cde"
    assert len(pulls) == 1
    assert stream.read() == b"fgh"
    assert stream.read() == b"" and stream.read(5) == b""
    assert stream.bytes_read == 8


def test_input_readline_and_iteration() -> None:
    stream, _ = make_input(b"one\ntw", b"o\nthr", b"ee", b"\nlast")
    assert stream.readline() == b"one\n"
    assert stream.readline() == b"two\n"
    assert list(stream) == [b"three\n", b"last"]
    stream, _ = make_input(b"abcdef\n")
    assert stream.readline(4) == b"abcd"
    assert stream.readline(10) == b"ef\n"
    stream, _ = make_input(b"a\nb\n", b"c\n")
    assert stream.readlines() == [b"a\n", b"b\n", b"c\n"]
    stream, _ = make_input(b"a\nb\nc\n")
    assert stream.readlines(3) == [b"a\n", b"b\n"]  # stops once the total reaches the hint, as io does


def test_input_readinto_and_buffered_wrapper() -> None:
    stream, _ = make_input(b"0123", b"4567", b"89")
    assert io.BufferedReader(stream, buffer_size=3).read() == b"0123456789"
    stream, _ = make_input(b"xy")
    buf = bytearray(5)
    assert stream.readinto(buf) == 2 and bytes(buf[:2]) == b"xy"
    assert stream.readinto(buf) == 0


# -- environ and scope ------------------------------------------------------------------


def req(
    uri: bytes = b"/", headers: list[tuple[str, str]] | None = None, body: bytes = b"", method: str = "GET"
):  # type: ignore[no-untyped-def]
    return parse_request(encode_request(method, uri, headers or [], body))


def test_environ_latin1_path_and_root_path() -> None:
    env = build_environ(req(b"/app/%C3%BC/x%2Fy?a=%C3%BC"), None, root_path="/app/")
    assert env["SCRIPT_NAME"] == "/app"
    assert (
        env["PATH_INFO"] == "/\u00c3\u00bc/x/y"
    )  # bytes as latin-1 (PEP 3333), %2F decoded like every server
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/ü/x/y"
    assert env["QUERY_STRING"] == "a=%C3%BC"
    assert env["RAW_URI"] == "/app/%C3%BC/x%2Fy?a=%C3%BC"
    root = build_environ(req(b"/x"), None, root_path="/ünï")
    assert root["SCRIPT_NAME"] == "/ünï".encode().decode("latin-1")
    assert build_environ(req(b"/application"), None, root_path="/app")["PATH_INFO"] == "/application"


def test_environ_headers() -> None:
    env = build_environ(
        req(
            b"/",
            [
                ("Content-Type", "text/plain"),
                ("X-A", "1"),
                ("x-a", "2"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
                ("X_Under", "no"),
                ("Host", "h.example"),
            ],
            b"abc",
        ),
        None,
    )
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"  # no header: what the proxy buffered
    assert env["HTTP_X_A"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_UNDER" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.example", "80")
    assert "REMOTE_ADDR" not in env
    assert env["wsgi.url_scheme"] == "http"
    again = build_environ(req(b"/", [("x-a", "3"), ("X_UNDER", "no"), ("COOKIE", "c=3")]), None)
    assert (again["HTTP_X_A"], again["HTTP_COOKIE"], "HTTP_X_UNDER" in again) == ("3", "c=3", False)
    bare = build_environ(req(b"/"), None)
    assert (bare["SERVER_NAME"], bare["SERVER_PORT"]) == ("localhost", "80")
    assert "CONTENT_LENGTH" not in bare


def test_scope_root_path_like_uvicorn() -> None:
    scope = build_scope(req(b"/items/%C3%BC?x=1"), root_path="/web/http/")
    assert scope["root_path"] == "/web/http"
    assert scope["path"] == "/web/http/items/ü"
    assert scope["raw_path"] == b"/web/http/items/%C3%BC"
    assert scope["query_string"] == b"x=1"
    assert build_scope(req(b"/web/http/a"), root_path="/web/http")["path"] == "/web/http/a"
    assert build_scope(req(b"/a"))["server"] is None
    assert build_scope(req(b"/a"), state={"k": 1})["state"] == {"k": 1}


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("example.com", "http", ("example.com", 80)),
        ("example.com", "https", ("example.com", 443)),
        ("example.com:8080", "http", ("example.com", 8080)),
        ("[::1]:9", "http", ("[::1]", 9)),
        ("[::1]", "https", ("[::1]", 443)),
        ("h:notaport", "http", ("h:notaport", 80)),
        ("h", "https", ("h", 443)),
        (" h:81 ", "http", ("h", 81)),
        ("  ", "https", ("localhost", 443)),
        ("[::1", "http", ("[::1", 80)),
        ("[nocolon]", "http", ("[nocolon]", 80)),
    ],
)
def test_host_and_port(host: str, scheme: str, expected: tuple[str, int]) -> None:
    assert host_and_port(lowered([(b"Host", host.encode())]), scheme) == expected


def test_host_is_the_first_host_header() -> None:
    assert host_and_port([(b"x-real-ip", b"1.2.3.4")], "https") == ("localhost", 443)
    assert host_and_port([(b"host", b"a:1"), (b"host", b"b:2")]) == ("a", 1)
    scope = build_scope(
        parse_request(encode_request("GET", "/", [("User-Agent", "u"), ("HOST", "a:1"), ("Host", "b:2")]))
    )
    assert scope["server"] == ("a", 1)
    # a Host header, even a blank one, gives a server; none gives None (as uvicorn's scope)
    assert build_scope(parse_request(encode_request("GET", "/", [("Host", "")])))["server"] == (
        "localhost",
        80,
    )


def test_client_and_scheme() -> None:
    local = ProxyTrust("127.0.0.1")
    xff = [(b"X-Forwarded-For", b"1.1.1.1, 2.2.2.2"), (b"X-Forwarded-For", b"3.3.3.3")]
    # from a trusted peer: the rightmost untrusted entry of the chain
    assert client_addr(lowered([(b"X-Real-IP", b"127.0.0.1"), *xff]), local) == "3.3.3.3"
    assert (
        client_addr(lowered([(b"X-Real-IP", b"127.0.0.1"), *xff]), ProxyTrust("127.0.0.1,3.3.3.3"))
        == "2.2.2.2"
    )
    # every entry trusted: the first (uvicorn's reading)
    assert (
        client_addr(
            lowered([(b"X-Real-IP", b"10.0.0.1"), (b"X-Forwarded-For", b"10.1.2.3, 10.0.0.9")]),
            ProxyTrust("10.0.0.0/8"),
        )
        == "10.1.2.3"
    )
    # from an untrusted peer or an unknown one: the peer, X-Forwarded-* ignored
    assert client_addr(lowered([(b"X-Real-IP", b" 9.9.9.9 "), *xff]), local) == "9.9.9.9"
    assert client_addr(lowered(xff), local) is None
    assert client_addr([], local) is None
    # '*': the first entry, peer or not
    assert client_addr(lowered(xff), ProxyTrust("*")) == "1.1.1.1"
    assert client_addr(lowered([(b"X-Forwarded-For", b"[::5]:80, 1.2.3.4:99")]), ProxyTrust(["*"])) == "::5"
    trusted = [(b"X-Real-IP", b"127.0.0.1")]
    assert url_scheme(lowered([*trusted, (b"X-Forwarded-Proto", b"HTTPS, http")]), local) == "https"
    assert url_scheme(lowered([*trusted, (b"X-Forwarded-Proto", b"gopher")]), local) == "http"
    assert (
        url_scheme(lowered([(b"X-Real-IP", b"8.8.8.8"), (b"X-Forwarded-Proto", b"https")]), local) == "http"
    )
    assert url_scheme(lowered([(b"X-Forwarded-Proto", b"https")]), local) == "http"
    assert url_scheme(lowered([(b"X-Forwarded-Proto", b"https")]), ProxyTrust("*")) == "https"
    # nothing forwarded: no client, plain http, whoever is trusted
    for trust in (local, ProxyTrust("*"), ProxyTrust("")):
        assert forwarded(lowered([(b"Host", b"h"), (b"Accept", b"*/*")]), trust) == (None, "http")
        assert forwarded([(b"x-real-ip", b""), (b"x-forwarded-for", b" , ")], trust) == (None, "http")


def test_proxy_trust_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    default = ProxyTrust(None)
    assert default.spec == "127.0.0.1,::1"  # uvicorn's default
    assert "127.0.0.1" in default and "::1" in default and "0:0:0:0:0:0:0:1" in default
    assert "127.0.0.2" not in default and None not in default and "" not in default
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8, 192.168.1.1,proxy.local")
    env = ProxyTrust(None)
    assert "10.200.0.1" in env and "192.168.1.1" in env and "proxy.local" in env
    assert "127.0.0.1" not in env and "11.0.0.1" not in env
    assert ProxyTrust("*").everyone and "anything" in ProxyTrust("*")
    assert "127.0.0.1" not in ProxyTrust("")


# -- WSGIHandler with fake blocking streams --------------------------------------------------


class FakeBlockingRequest:
    event = "http"
    session = 7
    headers: list[tuple[bytes, bytes]] = []  # noqa: RUF012 - fake request, never mutated

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class FakeResponse:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.error_args: tuple[Any, str] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def error(self, code: Any, message: str) -> None:
        self.error_args = (code, message)
        self.closed = True

    def close(self) -> None:
        self.closed = True


def call_wsgi(app: Any, path: str = "/", gen: Generation = Generation.B, method: str = "GET") -> FakeResponse:
    response = FakeResponse()
    WSGIHandler(app, generation=gen)(
        FakeBlockingRequest(encode_request(method, path, [], generation=gen)), response
    )
    return response


def test_start_response_twice_without_exc_info_is_an_error() -> None:
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    status, _, body = decode_response(call_wsgi(app).writes, Generation.B)
    assert (status, body) == (500, b"Internal Server Error")


def test_exc_info_after_head_reraises_into_the_app() -> None:
    seen = []

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        write = start_response("200 OK", [])
        write(b"sent")
        try:
            raise ValueError("late")
        except ValueError:
            try:
                start_response("500 Oops", [], sys.exc_info())
            except ValueError as exc:
                seen.append(str(exc))
                raise
        return []

    response = call_wsgi(app)
    assert seen == ["late"]
    assert response.error_args is not None and response.error_args[0] == 100
    assert decode_response(response.writes, Generation.B)[:1] == (200,)


def test_head_is_sent_with_the_first_non_empty_chunk() -> None:
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Length", "2")])
        yield b""
        yield b""
        yield b"ok"

    response = call_wsgi(app, gen=Generation.A)
    assert len(response.writes) == 2
    assert decode_response(response.writes, Generation.A) == (200, [], b"ok")  # A: no Content-Length


def test_head_request_drops_the_body_but_keeps_content_length() -> None:
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    response = call_wsgi(app, method="HEAD")
    assert decode_response(response.writes, Generation.B) == (200, [(b"Content-Length", b"5")], b"")


# -- ASGIHandler with fake async streams -------------------------------------------------------


class FakeRequest:
    event = "http"
    session = 3
    headers: list[tuple[bytes, bytes]] = []  # noqa: RUF012 - fake request, never mutated

    def __init__(self, *chunks: bytes, eof: bool = True) -> None:
        self.chunks = list(chunks)
        self.eof = eof

    @property
    def buffered(self) -> int:
        return sum(map(len, self.chunks))

    @property
    def at_eof(self) -> bool:
        return self.eof and not self.chunks

    async def read(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.eof:
            return b""
        await asyncio.sleep(3600)
        return b""


class _Done:
    """Like the worker's write(): an awaitable that may be dropped without a warning."""

    def __await__(self) -> Any:
        return iter(())


class FakeAsyncResponse(FakeResponse):
    def write(self, data: bytes) -> Any:  # type: ignore[override]
        super().write(data)
        return _Done()


def call_asgi(app: Any, *extra: bytes, method: str = "GET", body: bytes = b"") -> FakeAsyncResponse:
    response = FakeAsyncResponse()
    request = FakeRequest(encode_request(method, "/", [], body), *extra)
    asyncio.run(ASGIHandler(app)(request, response))
    return response


def test_asgi_send_after_complete_raises() -> None:
    errors = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"a"})
        try:
            await send({"type": "http.response.body", "body": b"b"})
        except RuntimeError as exc:
            errors.append(str(exc))

    response = call_asgi(app)
    assert errors == ["http.response.body sent after the response completed"]
    assert decode_response(response.writes, Generation.B) == (200, [], b"a")
    assert response.closed


def test_asgi_receive_after_response_is_disconnect() -> None:
    messages = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        messages.append(await receive())
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})
        messages.append(await receive())

    call_asgi(app, b"more", body=b"first")
    assert messages == [
        {"type": "http.request", "body": b"first", "more_body": True},
        {"type": "http.disconnect"},
    ]


def _streamed_exchange(step: Any) -> tuple[list[Any], FakeAsyncResponse]:
    """An app that reads three messages from a real worker Request (the envelope, then two
    that must wait), *step* acting on the request or handler while the app waits for each."""
    messages: list[Any] = []
    response = FakeAsyncResponse()

    async def main() -> None:
        request = Request("http", 3, [], None, asyncio.get_running_loop())
        request.feed(encode_request("POST", "/", [], b"a"))
        waiting = asyncio.Event()

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            messages.append(await receive())
            for _ in range(2):
                waiting.set()  # the app runs on into receive() and waits there before main resumes
                messages.append(await receive())
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"done"})

        handler = ASGIHandler(app)
        task = asyncio.create_task(handler(request, response))
        for i in range(2):
            await waiting.wait()
            waiting.clear()
            step(i, request, handler)
        await task

    asyncio.run(main())
    return messages, response


def test_asgi_receive_waits_for_the_next_chunk_and_the_end() -> None:
    def step(i: int, request: Request, handler: ASGIHandler) -> None:
        request.feed(b"b") if i == 0 else request.feed_eof()

    messages, response = _streamed_exchange(step)
    assert messages == [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"b", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]
    assert decode_response(response.writes, Generation.B) == (200, [], b"done")


def test_asgi_receive_waiting_for_a_chunk_gets_http_disconnect() -> None:
    # the worker terminates (shutting_down), or the runtime fails the session, while the app waits
    def terminate(i: int, request: Request, handler: ASGIHandler) -> None:
        request.feed(b"b") if i == 0 else handler.shutting_down()

    def fail(i: int, request: Request, handler: ASGIHandler) -> None:
        request.feed(b"b") if i == 0 else request.feed_error(DisconnectedError("the client went away"))

    for step in (terminate, fail):
        messages, response = _streamed_exchange(step)
        assert messages[1:] == [
            {"type": "http.request", "body": b"b", "more_body": True},
            {"type": "http.disconnect"},
        ]
        assert decode_response(response.writes, Generation.B) == (200, [], b"done")


def test_asgi_bad_message_type_gets_500() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.trailers"})

    assert decode_response(call_asgi(app).writes, Generation.B)[0] == 500


# -- lifespan ----------------------------------------------------------------------------------


def test_lifespan_modes() -> None:
    async def no_lifespan(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("http only")

    async def run(app: Any, mode: str) -> Lifespan:
        ls = Lifespan(app, mode)
        await ls.startup()
        await ls.shutdown()
        return ls

    assert asyncio.run(run(no_lifespan, "auto")).supported is False
    assert asyncio.run(run(no_lifespan, "off")).started is False
    with pytest.raises(StartupError):
        asyncio.run(run(no_lifespan, "on"))


def test_lifespan_state_and_exactly_once() -> None:
    events = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["db"] = "up"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def run() -> dict[str, Any]:
        ls = Lifespan(app)
        await ls.startup()
        await ls.startup()
        await ls.shutdown()
        await ls.shutdown()
        return ls.state

    assert asyncio.run(run()) == {"db": "up"}
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_an_apps_own_cocaine_error_still_gets_500() -> None:
    from cocaine_http.errors import ServiceError

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        raise ServiceError("storage said no", code=2)

    assert decode_response(call_wsgi(app).writes, Generation.B)[0] == 500


def test_nothing_is_written_once_the_session_is_gone() -> None:
    from cocaine_http.errors import ChannelClosedError

    response = FakeResponse()

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        response.closed = True  # the worker aborted the session meanwhile
        raise ChannelClosedError("session aborted")

    WSGIHandler(app)(FakeBlockingRequest(encode_request("GET", "/", [])), response)
    assert response.writes == [] and response.error_args is None


# -- InlineWSGIHandler: a drain that fails ends the response as a failed write would -------------


class _LostChannel:
    """A channel whose connection went away while the socket was over its mark."""

    async def drain(self) -> None:
        raise DisconnectedError("channel closed while waiting to write")


class DrainingResponse(FakeResponse):
    """Every write finds the socket over its mark."""

    def write(self, data: bytes) -> Any:  # type: ignore[override]
        super().write(data)
        return Drain(_LostChannel())  # type: ignore[arg-type]


def test_inline_mode_fails_the_response_when_its_drain_fails() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"one"
            yield b"two"

        def close(self) -> None:
            closed.append(True)

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [])
        return Body()

    async def main() -> DrainingResponse:
        request = Request("http", 7, [], None, asyncio.get_running_loop())
        request.feed(encode_request("GET", "/", []))
        request.feed_eof()
        response = DrainingResponse()
        await InlineWSGIHandler(app)(request, response)
        return response

    response = asyncio.run(main())
    assert response.writes[1:] == [b"one"]  # the head, the first chunk; then the drain failed
    assert response.error_args is not None
    assert response.error_args[0] == ErrorCode.UNCAUGHT_EXCEPTION
    assert closed == [True]
