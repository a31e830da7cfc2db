"""The requests the HTTP benchmarks send: the hello ``GET /`` or a JSON ``POST``, with a
hello client's headers or a browser's behind a proxy.

wrk sends ``Host`` and nothing else, so the hello figures leave out what a
server spends per header. A browser's request through a cocaine HTTP proxy
carries a dozen (its own plus the proxy's ``X-Real-IP`` and
``X-Forwarded-For``): ``--headers browser`` sends those, the same to every
server, through wrk's ``-H`` and in the cocaine envelope alike.

The hello ``GET /`` reads no body and returns a fixed text. ``--request json``
is an API call instead: ``POST /json`` with a JSON object of 437 bytes,
which the example apps parse (Flask's ``get_json``, FastAPI's pydantic
model) and send back in a ``201`` JSON answer; the servers' body paths
(``wsgi.input``, ASGI ``receive``) are then part of the figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cocaine_http.http.envelope import encode_request
from cocaine_http.protocol.frames import Generation

HEADER_SETS: dict[str, list[tuple[str, str]]] = {
    "hello": [("Host", "127.0.0.1"), ("User-Agent", "bench")],
    "browser": [
        ("Host", "127.0.0.1"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Connection", "keep-alive"),
        ("Cookie", "session=4f1c2a9e7b3d; theme=dark"),
        ("Referer", "https://example.com/"),
        ("Upgrade-Insecure-Requests", "1"),
        ("X-Real-IP", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Request-Id", "0123456789abcdef"),
    ],
}


#: The JSON object ``--request json`` posts (437 bytes): what the FastAPI example's
#: ``Item`` model takes, and any JSON the Flask example's ``/json`` takes.
JSON_BODY = json.dumps(
    {"name": "widget-" + "x" * 34, "price": 9.5, "tags": [f"tag{i:02d}" for i in range(40)]}
).encode()


@dataclass(frozen=True)
class BenchRequest:
    """A request every server gets alike, and what each answer must hold."""

    method: str
    path: str
    #: Headers beyond the header set's (the body's type and length).
    extra: tuple[tuple[str, str], ...]
    body: bytes
    status: int
    #: Bytes every answer's body contains (the whole body of the hello).
    expect: bytes

    def envelope(self, header_set: str = "hello", generation: Generation = Generation.B) -> bytes:
        """The request as a proxy sends it to a worker, with header set *header_set*
        (``HEADER_SETS``) and the body's own headers."""
        headers = [*HEADER_SETS[header_set], *self.extra]
        return encode_request(self.method, self.path, headers, self.body, generation=generation)


REQUESTS: dict[str, BenchRequest] = {
    "get": BenchRequest("GET", "/", (), b"", 200, b"Hello, world!\n"),
    "json": BenchRequest(
        "POST",
        "/json",
        (("Content-Type", "application/json"), ("Content-Length", str(len(JSON_BODY)))),
        JSON_BODY,
        201,
        b'"received":{"name":"widget-',
    ),
}
