"""Response-header exactness and request-header trust through real worker processes (issue #16).

Envelopes as the real proxies send them (A: ``HTTP/1.1`` with the Tornado
proxy's leading cookie pairs; B: ``1.1``), WSGI and ASGI adapters, both
generations. What the proxies then do with the head is PROTOCOL.md §2.8/§3.9;
what a browser sees end to end is tests/compat/test_compat_battery.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator

import pytest
from http_harness import COMPAT_DIR, Served, read_lines, wait_for

from cocaine_http.protocol.frames import Generation

HOST = ("Host", "example.com")


def proxy_headers(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    """What the Tornado proxies send: one pair per cookie first, then the headers."""
    return [("a", "1"), HOST, ("Cookie", "a=1"), *headers]


@pytest.fixture(scope="module")
def probe_log() -> Iterator[str]:
    fd, path = tempfile.mkstemp(prefix="probe-")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture(scope="module")
def pool(probe_log: str) -> Iterator[Callable[..., Served]]:
    workers: dict[tuple[str, Generation, tuple[str, ...], str], Served] = {}

    def get(kind: str, generation: Generation, args: tuple[str, ...] = (), allow_env: str = "") -> Served:
        key = (kind, generation, args, allow_env)
        if key not in workers:
            env = {"PROBE_LOG": probe_log}
            if allow_env:
                env["FORWARDED_ALLOW_IPS"] = allow_env
            workers[key] = Served(f"headerapps:{kind}", generation, app_dir=COMPAT_DIR, env=env, args=args)
        return workers[key]

    yield get
    for worker in workers.values():
        worker.close()


@pytest.fixture(params=["wsgi", "asgi"])
def worker(request: pytest.FixtureRequest, pool: Callable[..., Served], generation: Generation) -> Served:
    return pool(request.param, generation)


def values(reply, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [v.decode("latin-1") for k, v in reply.headers if k.decode().lower() == name]


def test_leading_space_of_djangos_set_cookie_is_stripped(worker: Served) -> None:
    reply = worker.request("GET", "/django-cookie", proxy_headers())
    assert reply.status == 200, reply.body
    assert values(reply, "set-cookie") == ["session=abc123; HttpOnly; Path=/"]
    assert reply.body == b"ok"


@pytest.mark.parametrize(
    ("case", "named"), [("cr", "X-Bad"), ("lf", "X-Bad"), ("nul", "X-Bad"), ("name-cr", "X-B")]
)
def test_control_character_in_a_header_is_a_500_naming_it(worker: Served, case: str, named: str) -> None:
    reply = worker.request("GET", f"/bad?{case}", proxy_headers())
    assert reply.status == 500
    assert reply.body == b"Internal Server Error"
    assert not values(reply, "x-bad") and not values(reply, "injected")
    line = f"GET /bad?{case} HTTP/1.1"
    assert wait_for(
        lambda: any(
            line in x and named.lower() in x.lower() and "header" in x for x in worker.output().splitlines()
        )
    ), worker.output()
    assert worker.request("GET", "/django-cookie", proxy_headers()).status == 200  # still serving


def test_repeated_headers(worker: Served, generation: Generation) -> None:
    reply = worker.request("GET", "/cookies", proxy_headers())
    assert reply.status == 200
    assert values(reply, "set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    if generation is Generation.A:
        # the 0.11 proxy writes every pair: repeats survive as they are
        assert values(reply, "vary") == ["Accept", "Cookie"]
        assert values(reply, "cache-control") == ["no-cache", "no-store"]
    else:
        # the 0.12 Tornado proxy keeps the last of repeated pairs: joined before sending
        assert values(reply, "vary") == ["Accept, Cookie"]
        assert values(reply, "cache-control") == ["no-cache, no-store"]
        names = [k.decode().lower() for k, _ in reply.headers]
        assert names.index("vary") < names.index("cache-control")  # at the first one's place


def test_several_set_cookie_warned_once_per_route_in_b(
    pool: Callable[..., Served], generation: Generation
) -> None:
    for kind in ("wsgi", "asgi"):
        worker = pool(kind, generation, ("--log-level", "info"))
        for path in ("/cookies", "/cookies", "/cookies-two", "/vary", "/cookies"):
            assert worker.request("GET", path, proxy_headers()).status == 200
        worker.request("GET", "/django-cookie", proxy_headers())

        def warned() -> list[str]:
            return [x for x in worker.output().splitlines() if "Set-Cookie" in x and "WARNING" in x]  # noqa: B023

        if generation is Generation.A:
            assert warned() == []  # the 0.11 proxy keeps every Set-Cookie
            continue
        assert wait_for(lambda: len(warned()) >= 2), worker.output()
        lines = warned()
        assert len(lines) == 2, lines
        assert "app web" in lines[0] and "route /cookies:" in lines[0] and "only the last" in lines[0]
        assert "route /cookies-two:" in lines[1]


def test_websocket_upgrade_is_refused_never_a_silent_404(
    worker: Served, generation: Generation, probe_log: str
) -> None:
    open(probe_log, "w").close()
    upgrade = (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"))
    for _ in range(2):
        reply = worker.request("GET", "/ws", proxy_headers(*upgrade))
        assert reply.status == 501
        assert b"WebSocket" in reply.body and b"Cocaine" in reply.body
    assert not [x for x in read_lines(probe_log) if "/ws" in x or "websocket" in x]

    def logged() -> list[str]:
        return [x for x in worker.output().splitlines() if "WebSocket upgrade" in x and "WARNING" in x]

    assert wait_for(lambda: len(logged()) >= 1), worker.output()
    assert len(logged()) == 1  # once, not once per request
    assert "GET /ws HTTP/1.1" in logged()[0]
    # a plain request for the route still reaches the app
    assert worker.request("GET", "/ws", proxy_headers()).status == 404


def remote(worker: Served, *headers: tuple[str, str]) -> dict[str, str | None]:
    reply = worker.request("GET", "/remote", proxy_headers(*headers))
    assert reply.status == 200, reply.body
    return json.loads(reply.body)


def test_forwarded_headers_trusted_only_from_allowed_peers(worker: Served) -> None:
    xff = ("X-Forwarded-For", "6.6.6.6, 1.2.3.4")
    https = ("X-Forwarded-Proto", "https")
    # default --forwarded-allow-ips 127.0.0.1,::1: the peer is X-Real-IP
    assert remote(worker, ("X-Real-IP", "127.0.0.1"), xff, https) == {"addr": "1.2.3.4", "scheme": "https"}
    assert remote(worker, ("X-Real-IP", "::1"), xff, https) == {"addr": "1.2.3.4", "scheme": "https"}
    assert remote(worker, ("X-Real-IP", "8.8.8.8"), xff, https) == {"addr": "8.8.8.8", "scheme": "http"}
    assert remote(worker, xff, https) == {"addr": None, "scheme": "http"}  # peer unknown: not trusted


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_forwarded_allow_ips_option_and_env(pool: Callable[..., Served], kind: str) -> None:
    xff = ("X-Forwarded-For", "6.6.6.6, 10.9.9.9")
    https = ("X-Forwarded-Proto", "https")
    everyone = pool(kind, Generation.B, ("--forwarded-allow-ips", "*"))
    assert remote(everyone, xff, https) == {"addr": "6.6.6.6", "scheme": "https"}
    nets = pool(kind, Generation.B, allow_env="10.0.0.0/8")
    assert remote(nets, ("X-Real-IP", "10.0.0.1"), xff, https) == {"addr": "6.6.6.6", "scheme": "https"}
    assert remote(nets, ("X-Real-IP", "127.0.0.1"), xff, https) == {"addr": "127.0.0.1", "scheme": "http"}


def test_forwarded_allow_ips_from_config_file_and_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cocaine_http.cli import parse_options

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"forwarded-allow-ips": "10.0.0.0/8,::1"}))
    assert parse_options(["app:x", "--config", str(config)]).ns.forwarded_allow_ips == "10.0.0.0/8,::1"
    ns = parse_options(["app:x", "--config", str(config), "--forwarded-allow-ips", "*"]).ns
    assert ns.forwarded_allow_ips == "*"
    assert (
        parse_options(["app:x"]).ns.forwarded_allow_ips is None
    )  # then FORWARDED_ALLOW_IPS, else the default
