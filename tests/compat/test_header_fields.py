"""The adapters read a request's ``fields`` (its headers by lowercase name,
when no name repeats) instead of passing over its headers: the environ, the
scope and the WebSocket refusal must be what the pass over the headers gives.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from cocaine_http.compat.asgi import build_scope
from cocaine_http.compat.common import WebSocketRefusal, forwarded, forwarded_fields, lowered
from cocaine_http.compat.wsgi import build_environ
from cocaine_http.http.envelope import HttpRequest, encode_request, parse_request

TRUSTED = (b"X-Real-IP", b"127.0.0.1")
CASES: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"Host", b"example.org")],
    [(b"Host", b" example.org:8080 "), (b"User-Agent", b"t"), (b"Content-Type", b"text/plain")],
    [(b"Content-Length", b"0"), (b"Host", b"[::1]:81")],
    [TRUSTED, (b"X-Forwarded-For", b"1.2.3.4, 127.0.0.1"), (b"X-Forwarded-Proto", b"HTTPS, http")],
    [(b"X-Real-IP", b" 9.9.9.9:80 "), (b"X-Forwarded-For", b"1.2.3.4"), (b"X-Forwarded-Proto", b"https")],
    [(b"x-real-ip", b""), (b"X-FORWARDED-PROTO", b"https"), (b"Host", b"h:\xb2")],
    [TRUSTED, (b"X-Forwarded-Proto", b"gopher"), (b"Cookie", b"a=b; c=d")],
    [(b"X_Real_IP", b"127.0.0.1"), (b"X-Forwarded-Proto", b"https"), (b"Accept", b"*/*")],
    [(b"Upgrade", b"WebSocket"), (b"Connection", b"Upgrade"), (b"Host", b"h")],
    [(b"Upgrade", b"h2c"), (b"Host", b"h")],
    [(b"X-Latin", b"caf\xe9"), (b"X-Empty", b""), (b"Accept", b"a, b")],
]


def parsed(headers: list[tuple[bytes, bytes]]) -> HttpRequest:
    blob = encode_request("GET", "/p?q=1", headers)
    parse_request(blob)  # the names seen: the second parse gives the fields
    req = parse_request(blob)
    assert req.fields is not None
    return req


def without_fields(req: HttpRequest) -> HttpRequest:
    return dataclasses.replace(req, fields=None)


@pytest.mark.parametrize("headers", CASES, ids=range(len(CASES)))
def test_environ_from_fields(headers: list[tuple[bytes, bytes]]) -> None:
    req = parsed(headers)
    assert build_environ(req, None, errors="e") == build_environ(without_fields(req), None, errors="e")


@pytest.mark.parametrize("headers", CASES, ids=range(len(CASES)))
def test_scope_from_fields(headers: list[tuple[bytes, bytes]]) -> None:
    req = parsed(headers)
    assert build_scope(req) == build_scope(without_fields(req))
    assert req.fields is not None
    assert forwarded_fields(req.fields) == forwarded(lowered(req.headers))


@pytest.mark.parametrize("headers", CASES, ids=range(len(CASES)))
def test_websocket_refusal_from_fields(headers: list[tuple[bytes, bytes]]) -> None:
    req = parsed(headers)
    refusal = WebSocketRefusal("app", logging.getLogger("test"))
    assert refusal.refuse(req) == refusal.refuse(without_fields(req))
