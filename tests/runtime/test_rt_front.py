"""The HTTP front against in-process fake apps: routing, envelopes, framing, failures, limits."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import msgpack
import pytest
from helpers.oldspec import assert_old_spec
from rt_helpers import FakeApp, run, tcp

from cocaine_http.protocol.wire import packb
from cocaine_http.runtime.local import LocalRuntime
from cocaine_http.runtime.logging import Console


def head(code: int, headers: list[tuple[str, str]]) -> bytes:
    return packb([code, [list(h) for h in headers]])


def body(gen: str, data: bytes) -> bytes:
    return packb(data) if gen == "0.11" else data


def echo_script(gen: str, *, code: int = 200, extra: list[tuple[str, str]] | None = None) -> Any:
    """Answers with the request envelope it got, msgpack'd, as the body."""

    async def script(inv: Any, sunk: list[Any]) -> None:
        while not sunk or sunk[-1][0] != "close":  # noqa: ASYNC110 - the fake records, it does not signal
            await asyncio.sleep(0.001)
        request = msgpack.unpackb(sunk[0][1], raw=False)
        inv.feed_chunk(head(code, [("Content-Type", "application/x-msgpack"), *(extra or [])]))
        inv.feed_chunk(body(gen, packb(request)))
        inv.feed_close()

    return script


async def started(gen: str, apps: dict[str, Any], default: str | None = None, **front: Any) -> LocalRuntime:
    rt = LocalRuntime(
        gen, locator_port=0, bind="127.0.0.1:0", console=Console(io.StringIO()), front_options=front
    )
    await rt.start()
    rt.apps.update(apps)
    rt.front.default_app = default
    return rt


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_envelope_per_generation(gen: str) -> None:
    async def main() -> None:
        rt = await started(gen, {"web": FakeApp("web", echo_script(gen))}, default="web")
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.post(
                    "/p/q?x=1", content=b"hi=1", headers={"x-lower": "1", "Cookie": "a=b; c=d", "X-Dup": "1"}
                )
                assert r.status_code == 200
                method, uri, version, headers, req_body = msgpack.unpackb(r.content, raw=False)
            assert (method, uri, req_body) == ("POST", "/p/q?x=1", "hi=1")
            assert version == ("HTTP/1.1" if gen == "0.11" else "1.1")
            assert headers[:2] == [["a", "b"], ["c", "d"]]  # cookie pairs first, as the Tornado proxies
            names = [h[0] for h in headers[2:]]
            assert "X-Lower" in names and "Cookie" in names and "Content-Length" in names
            # the bytes the worker got are old-spec only
            assert_old_spec(rt.apps["web"].sunk[0][0][1])
        finally:
            await rt.stop()

    run(main())


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_routing(gen: str) -> None:
    async def main() -> None:
        apps = {"web": FakeApp("web", echo_script(gen)), "other": FakeApp("other", echo_script(gen))}
        rt = await started(gen, apps, default="web")
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:

                async def seen(path: str, **kw: Any) -> tuple[str, str, list[Any]]:
                    before = len(apps["other"].invocations)
                    r = await client.get(path, **kw)
                    assert r.status_code == 200, r.text
                    env = msgpack.unpackb(r.content, raw=False)
                    app = "other" if len(apps["other"].invocations) > before else "web"
                    return app, env[1], env[3]

                assert (await seen("/other/http/some/path?x=1"))[:2] == ("other", "/some/path?x=1")
                assert apps["other"].invocations[-1].event == "http"
                assert (await seen("/other/http?x=1"))[:2] == ("other", "/?x=1")
                assert (await seen("/other/ping"))[:2] == ("other", "/")
                assert apps["other"].invocations[-1].event == "ping"
                _app, _uri, headers = await seen("/other/http/x")
                if gen == "0.12":  # the 0.12 proxy adds the routing headers
                    assert ["X-Cocaine-Service", "other"] in headers
                # an unknown first segment goes to the default app, unchanged
                assert (await seen("/nosuch/http/x"))[:2] == ("web", "/nosuch/http/x")
                assert (await seen("/"))[:2] == ("web", "/")
                # both headers route and keep the URI
                r = await client.get(
                    "/keep/me", headers={"X-Cocaine-Service": "other", "X-Cocaine-Event": "ev"}
                )
                assert msgpack.unpackb(r.content, raw=False)[1] == "/keep/me"
                assert apps["other"].invocations[-1].event == "ev"
                # one header alone is ignored
                r = await client.get("/keep/me", headers={"X-Cocaine-Service": "other"})
                assert msgpack.unpackb(r.content, raw=False)[1] == "/keep/me"
                assert apps["web"].invocations[-1].event == "http"
                r = await client.get("/a", headers={"X-Cocaine-Service": "zzz", "X-Cocaine-Event": "e"})
                assert r.status_code == 503
        finally:
            await rt.stop()

    run(main())


def test_routing_without_default_app() -> None:
    async def main() -> None:
        rt = await started("0.12", {"web": FakeApp("web", echo_script("0.12"))}, default=None)
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.get("/")  # nothing addressed: the apps are listed, nothing is routed
                assert (r.status_code, r.text) == (404, "Invalid url\napps: /web/http/\n")
                assert not rt.apps["web"].invocations
                assert (await client.get("/web")).status_code == 404
                r = await client.get("/web/")
                assert (r.status_code, r.text) == (404, "Invalid request\n")
                assert (await client.get("/nosuch/http/")).status_code == 503
                assert (await client.get("/web/http/x")).status_code == 200
        finally:
            await rt.stop()

    run(main())


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_streaming_chunked_and_content_length(gen: str) -> None:
    async def chunked(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(head(200, [("X-App", "1")]))
        for i in range(5):
            inv.feed_chunk(body(gen, f"part{i};".encode()))
            await asyncio.sleep(0.01)
        inv.feed_close()

    async def sized(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(
            head(201, [("Content-Length", "5"), ("Connection", "close"), ("Transfer-Encoding", "x")])
        )
        inv.feed_chunk(body(gen, b"hello"))
        inv.feed_close()

    async def main() -> None:
        rt = await started(gen, {"c": FakeApp("c", chunked), "s": FakeApp("s", sized)})
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.get("/c/http/")
                assert r.headers["transfer-encoding"] == "chunked"
                assert r.content == b"part0;part1;part2;part3;part4;"
                r = await client.get("/s/http/")
                assert (r.status_code, r.content, r.headers["content-length"]) == (201, b"hello", "5")
                assert "transfer-encoding" not in r.headers
                r = await client.head("/s/http/")
                assert (r.status_code, r.content) == (201, b"")
                # keep-alive: everything above went over one connection
                assert len(rt.front.connections) == 1
        finally:
            await rt.stop()

    run(main())


def test_b_lingering_end_and_empty_writes() -> None:
    async def lingering(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(head(200, [("X-Cocaine-HTTP-Proto-Version", "1.1")]))
        inv.feed_chunk(b"done")
        inv.feed_chunk(b"")  # ends the body at once
        await asyncio.sleep(0.05)
        inv.feed_chunk(b"ignored")
        inv.feed_close()

    async def empty(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(head(200, []))
        inv.feed_chunk(b"a")
        inv.feed_chunk(b"")  # skipped without the header
        inv.feed_chunk(b"b")
        inv.feed_close()

    async def main() -> None:
        rt = await started("0.12", {"l": FakeApp("l", lingering), "e": FakeApp("e", empty)})
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.get("/l/http/")
                assert r.content == b"done" and "x-cocaine-http-proto-version" not in r.headers
                assert (await client.get("/e/http/")).content == b"ab"
        finally:
            await rt.stop()

    run(main())


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_failures_map_to_status(gen: str) -> None:
    async def error(inv: Any, sunk: list[Any]) -> None:
        inv.feed_error(42 if gen == "0.11" else (42, 1), "requested failure")

    async def bare_close(inv: Any, sunk: list[Any]) -> None:
        inv.feed_close()

    async def bad_head(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(b"\x93not a head")
        inv.feed_close()

    async def silent(inv: Any, sunk: list[Any]) -> None:
        await asyncio.sleep(30)

    async def error_after_head(inv: Any, sunk: list[Any]) -> None:
        inv.feed_chunk(head(200, []))
        inv.feed_chunk(body(gen, b"partial"))
        inv.feed_error(1, "died")

    apps = {
        "err": FakeApp("err", error),
        "bare": FakeApp("bare", bare_close),
        "badhead": FakeApp("badhead", bad_head),
        "slow": FakeApp("slow", silent),
        "mid": FakeApp("mid", error_after_head),
        "full": FakeApp("full", silent, refuse="the queue is full"),
    }

    async def main() -> None:
        rt = await started(gen, apps, timeout=0.3)
        try:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.get("/err/http/")
                assert r.status_code == 502 and "requested failure" in r.text
                assert (await client.get("/bare/http/")).status_code == 502
                assert (await client.get("/badhead/http/")).status_code == 502
                r = await client.get("/slow/http/")
                assert r.status_code == 504 and "timeout" in r.text
                assert apps["slow"].sunk[0][-1][0] == "abort"  # the session was cancelled
                r = await client.get("/full/http/")
                assert r.status_code == 503 and "queue is full" in r.text
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/mid/http/")
                # still serving
                assert (await client.get("/err/http/")).status_code == 502
        finally:
            await rt.stop()

    run(main())


def test_client_disconnect_cancels_the_session() -> None:
    started_evt = asyncio.Event

    async def main() -> None:
        began = started_evt()

        async def hang(inv: Any, sunk: list[Any]) -> None:
            began.set()
            await asyncio.sleep(30)

        app = FakeApp("h", hang)
        rt = await started("0.12", {"h": app})
        try:
            _reader, writer = await tcp(rt.front.port)
            writer.write(b"GET /h/http/ HTTP/1.1\r\nHost: x\r\n\r\n")
            await began.wait()
            writer.close()
            for _ in range(100):
                if app.sunk[0] and app.sunk[0][-1][0] == "abort":
                    break
                await asyncio.sleep(0.01)
            assert app.sunk[0][-1] == ("abort", "client disconnected")
            assert app.invocations[0].done
            assert not rt.front.connections
        finally:
            await rt.stop()

    run(main())


def test_malformed_http_and_limits() -> None:
    async def main() -> None:
        rt = await started(
            "0.12",
            {"web": FakeApp("web", echo_script("0.12"))},
            default="web",
            max_header_size=1024,
            max_body_size=1000,
        )
        try:

            async def raw(data: bytes) -> bytes:
                reader, writer = await tcp(rt.front.port)
                writer.write(data)
                out = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                return out

            assert (await raw(b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            assert (await raw(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000 + b"\r\n\r\n")).startswith(
                b"HTTP/1.1 431 "
            )
            assert (await raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")).startswith(
                b"HTTP/1.1 413 "
            )
            chunked_big = (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (200, b"z" * 200) for _ in range(10))
                + b"0\r\n\r\n"
            )
            assert (await raw(chunked_big)).startswith(b"HTTP/1.1 413 ")
            # still serving
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                assert (await client.post("/", content=b"x" * 999)).status_code == 200
        finally:
            await rt.stop()

    run(main())


def test_pipelined_requests_answered_in_order() -> None:
    async def main() -> None:
        rt = await started("0.12", {"web": FakeApp("web", echo_script("0.12"))}, default="web")
        try:
            reader, writer = await tcp(rt.front.port)
            writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
            got = b""
            while got.count(b"\r\n0\r\n\r\n") < 3:
                got += await asyncio.wait_for(reader.read(65536), 5)
            assert got.index(b"\xa2/0") < got.index(b"\xa2/1") < got.index(b"\xa2/2")
            writer.close()
        finally:
            await rt.stop()

    run(main())


def test_idle_and_slow_connections_time_out() -> None:
    async def main() -> None:
        rt = await started(
            "0.12", {"web": FakeApp("web", echo_script("0.12"))}, default="web", keepalive_timeout=0.3
        )
        try:
            idle = await tcp(rt.front.port)
            slow = await tcp(rt.front.port)
            slow[1].write(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
            )  # and never the rest
            assert await asyncio.wait_for(idle[0].read(), 3) == b""
            assert await asyncio.wait_for(slow[0].read(), 3) == b""
            assert not rt.front.connections and not rt.apps["web"].invocations
        finally:
            await rt.stop()

    run(main())
