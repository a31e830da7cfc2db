"""Differential battery: the example apps through a real worker vs httpx's in-process transports.

For every case the same request goes (1) through ``httpx.WSGITransport`` /
``httpx.ASGITransport`` (ground truth) and (2) as a cocaine HTTP envelope
through the Engine to a ``python -m cocaine_http`` worker process, generation
A and B. Status, headers and body must match, modulo hop-by-hop headers,
Date/Server, and Content-Length in A (the A proxy sets its own, so the
worker drops it). In A, a status Python 2's httplib lacks is mapped
(envelope.PY2_HTTPLIB_CODES) and the expectation is mapped the same way.

Two deliberate input differences, both where httpx deviates from PEP 3333:

* httpx.WSGITransport puts the *decoded* URL path in PATH_INFO, where PEP
  3333 wants the bytes as latin-1; the ground-truth app is wrapped to fix it
  (``pep3333_path``), otherwise Flask and Django see mojibake.
* httpx.WSGITransport keeps only the last of repeated headers; a WSGI environ
  holds one value per name, joined with "," (what the Tornado proxies send
  anyway). WSGI ground truth therefore gets the joined header, the worker the
  separate pairs; ASGI apps get the separate pairs on both sides.

And one output difference: for HEAD the worker sends no body even when the
app produced one (Django does; servers strip it), httpx.WSGITransport keeps it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from http_harness import HttpReply, Served, served

from cocaine_http.http.envelope import PY2_HTTPLIB_CODES
from cocaine_http.protocol.frames import Generation

APPS = {
    "flask": ("examples.flask_app.app:app", "wsgi"),
    "django": ("examples.django_app.mysite.wsgi:application", "wsgi"),
    "fastapi": ("examples.fastapi_app.app:app", "asgi"),
}
IGNORED = {"date", "server", "connection", "keep-alive", "transfer-encoding", "proxy-connection"}
TEN_MIB = bytes(range(256)) * (10 * 4096)


@dataclass
class Case:
    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    cookie_pairs: list[tuple[str, str]] = field(default_factory=list)  # what the Tornado proxy prepends
    split_body: int = 0  # > 0: envelope carries this much, the rest follows as extra chunks
    min_chunks: int = 0  # streaming: at least this many reply chunks


CASES = {
    "get_query": Case("GET", "/items/3?q=x%20y&tag=a&tag=b"),
    "head": Case("HEAD", "/items/3?q=x"),
    "post_form": Case(
        "POST",
        "/form",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"a=1&a=2&b=x+y&c=%C3%A9",
    ),
    "post_json": Case(
        "POST",
        "/json",
        [("Content-Type", "application/json")],
        b'{"name": "widget", "price": 2.5, "tags": ["a"]}',
    ),
    "upload_10mib": Case("POST", "/upload", [("Content-Type", "application/octet-stream")], TEN_MIB),
    "upload_10mib_streamed": Case(
        "POST", "/upload", [("Content-Type", "application/octet-stream")], TEN_MIB, split_body=1 << 20
    ),
    "unicode_path": Case("GET", "/unicode/%C3%BCn%C3%AFc%C3%B8d%C3%A9-%E2%82%AC"),
    "repeated_headers": Case(
        "GET",
        "/headers",
        [
            ("Accept", "text/html"),
            ("X-Multi", "1"),
            ("Accept", "application/json"),
            ("X-Multi", "2"),
            ("X-Real-IP", "127.0.0.1"),
        ],
    ),
    "cookies": Case(
        "GET",
        "/headers",
        [("Cookie", "a=b; sid=xyz"), ("X-Real-IP", "127.0.0.1")],
        cookie_pairs=[("a", "b"), ("sid", "xyz")],
    ),
    "set_cookie": Case("GET", "/cookie"),
    "streaming": Case("GET", "/stream?n=20", min_chunks=3),
    "no_content_204": Case("DELETE", "/items/3"),
    "not_modified_304": Case("GET", "/cached", [("If-None-Match", '"v1"')]),
    "fresh_200": Case("GET", "/cached"),
    "app_exception": Case("GET", "/boom"),
    "teapot_418": Case("GET", "/teapot"),
    "not_found": Case("GET", "/no/such/page"),
}


def pep3333_path(app: Callable[..., Any]) -> Callable[..., Any]:
    def fixed(environ: dict[str, Any], start_response: Any) -> Any:
        environ["PATH_INFO"] = environ["PATH_INFO"].encode("utf-8").decode("latin-1")
        return app(environ, start_response)

    return fixed


def _joined(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: dict[str, tuple[str, list[str]]] = {}
    for k, v in headers:
        out.setdefault(k.lower(), (k, []))[1].append(v)
    return [(k, ",".join(vs)) for k, vs in out.values()]


def ground_truth(kind: str, app: Any, case: Case) -> httpx.Response:
    headers = case.headers if kind == "asgi" else _joined(case.headers)
    request = httpx.Request(case.method, "http://example.com" + case.path, headers=headers, content=case.body)
    if kind == "wsgi":
        transport = httpx.WSGITransport(app=pep3333_path(app), raise_app_exceptions=False)
        with httpx.Client(transport=transport) as client:
            response = client.send(request)
            response.read()
            return response

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 123))
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.send(request)
            await response.aread()
            return response

    return asyncio.run(go())


def through_worker(worker: Served, case: Case) -> HttpReply:
    request = httpx.Request(
        case.method, "http://example.com" + case.path, headers=case.headers, content=case.body
    )
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    headers = [*case.cookie_pairs, *headers]
    uri = request.url.raw_path.decode("ascii")
    body, extra = case.body, []
    if case.split_body:
        body = case.body[: case.split_body]
        extra = [
            case.body[i : i + case.split_body]
            for i in range(case.split_body, len(case.body), case.split_body)
        ]
    return worker.request(case.method, uri, headers, body, extra_chunks=extra)


def normalise(headers: Any, generation: Generation) -> list[tuple[str, str]]:
    out = []
    for k, v in headers:
        name = (k.decode("latin-1") if isinstance(k, bytes) else k).lower()
        # stripped as servers do (RFC 9110 §5.5); httpx's transports keep Django's leading space
        value = (v.decode("latin-1") if isinstance(v, bytes) else v).strip(" \t")
        if name in IGNORED or (generation is Generation.A and name == "content-length"):
            continue
        out.append((name, value))
    return sorted(out)


_APP_CACHE: dict[str, Any] = {}


def load(name: str) -> Any:
    if name not in _APP_CACHE:
        from cocaine_http.importer import import_app

        _APP_CACHE[name] = import_app(APPS[name][0])
    return _APP_CACHE[name]


@pytest.fixture(scope="module", params=sorted(APPS), ids=sorted(APPS))
def app_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def worker(app_name: str, generation: Generation) -> Iterator[Served]:
    yield from served(APPS[app_name][0], generation)


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_same_response(worker: Served, app_name: str, generation: Generation, case_name: str) -> None:
    case = CASES[case_name]
    kind = APPS[app_name][1]
    expected = ground_truth(kind, load(app_name), case)
    got = through_worker(worker, case)

    status = expected.status_code
    want_headers = normalise(expected.headers.raw, generation)
    if generation is Generation.A and status not in PY2_HTTPLIB_CODES:
        want_headers = sorted([*want_headers, ("x-cocaine-original-status", str(status))])
        status = 307 if status == 308 else status // 100 * 100

    assert got.status == status, got.body[:300]
    assert normalise(got.headers, generation) == want_headers
    # A response to HEAD has no body on the wire, whatever the app produced (Django
    # leaves stripping it to the server; httpx.WSGITransport passes it through).
    assert got.body == (b"" if case.method == "HEAD" else expected.content)
    if case.min_chunks:
        assert len(got.reply.chunks) >= case.min_chunks, "the response was not streamed"
    if case_name.startswith("upload"):
        assert hashlib.sha256(TEN_MIB).hexdigest().encode() in got.body
    if case_name == "unicode_path":
        assert (
            "ünïcødé-€" in got.body.decode("utf-8") or "\\u00fcn\\u00efc\\u00f8d\\u00e9" in got.body.decode()
        )
    if case_name == "cookies":
        assert b'"a":"b"' in got.body.replace(b" ", b"")
