"""The heads of HTTP responses: the front's own plain-text answers, and what it keeps of an app's head."""

from __future__ import annotations

import http

from ..http.envelope import HOP_BY_HOP
from ..protocol.frames import Generation

__all__ = ["plain_headers", "reason", "response_headers"]

PROTO_VERSION = b"x-cocaine-http-proto-version"


def reason(status: int) -> bytes:
    """The standard reason phrase of *status* (empty for a status without one)."""
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def plain_headers(body: bytes, close: bool = False) -> list[tuple[bytes, bytes]]:
    """The head of one of the front's own plain-text answers (*close*: the connection closes after it)."""
    headers = [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", str(len(body)).encode())]
    if close:
        headers.append((b"Connection", b"close"))
    return headers


def response_headers(
    pairs: list[tuple[bytes, bytes]], gen: Generation
) -> tuple[list[tuple[bytes, bytes]], bool]:
    """What goes to the client of an app's head, and whether an empty B write ends the body.

    Hop-by-hop headers are the front's own, the proto-version marker is for
    the front only, and a repeated Content-Length is dropped.
    """
    out = []
    lingering = False
    seen_length = False
    for name, value in pairs:
        lname = name.lower()
        if lname == PROTO_VERSION:
            lingering = gen is Generation.B and value.strip() == b"1.1"
            continue
        if lname in HOP_BY_HOP:
            continue
        if lname == b"content-length":
            if seen_length:
                continue  # duplicated by an app behind the A proxy's habits
            seen_length = True
        out.append((name, value))
    return out, lingering
