"""Requests the HTTP front refuses before any worker sees them, as gunicorn does with its default limits.

:class:`HeadScan` checks the raw lines of a head as they arrive,
:func:`refuse_early` the parsed head, :func:`check_chunk` each chunk size of
a chunked body as soon as its size line is in. Each refusal is an
:class:`~cocaine_http.errors.HttpRequestRefused` carrying its status.
"""

from __future__ import annotations

import contextlib
import re

import h11

from ..errors import HttpRequestRefused

__all__ = ["HeadScan", "check_chunk", "declared_length", "refuse_early"]

LF = re.compile(b"\n")
#: A chunk size this large or larger does not fit in 64 bits (a smuggling vector).
MAX_CHUNK = 1 << 64


class HeadScan:
    """Checks the raw lines of a request head before h11 parses them.

    h11 takes a bare LF as a line end and has no limit on the request line,
    on one header line or on the number of fields (only on the whole head).
    This scan refuses, as gunicorn does with its default limits: a bare LF
    (400, RFC 9112 §2.2), a request line over ``max_line`` bytes (414), more
    than ``max_fields`` header fields or one over ``max_field`` bytes with its
    CRLF (431), and obsolete line folding (400, RFC 9112 §5.2). An over-long
    line is refused as soon as it is too long, without waiting for its end.
    It looks at each piece as it arrives (one regex search per line, no copy)
    and stops at the blank line that ends the head.
    """

    __slots__ = (
        "active",
        "fields",
        "first",
        "last",
        "length",
        "max_field",
        "max_fields",
        "max_line",
        "started",
    )

    def __init__(self, max_line: int, max_fields: int, max_field: int) -> None:
        self.max_line, self.max_fields, self.max_field = max_line, max_fields, max_field
        self.reset()

    def reset(self) -> None:
        self.active = True
        self.started = False  # the request line has been seen
        self.fields = 0
        self.length = 0  # bytes of the current line so far, its CR included
        self.first = -1  # the current line's first byte
        self.last = -1  # the last byte seen

    def feed(self, data: bytes | memoryview) -> None:
        """Scan *data*, the next bytes of the stream; raises :class:`HttpRequestRefused`."""
        pos, size = 0, len(data)
        while self.active and pos < size:
            match = LF.search(data, pos)
            end = size if match is None else match.start()
            if end > pos:
                if self.length == 0:
                    self.first = data[pos]
                self.length += end - pos
                self.last = data[end - 1]
            if match is None:
                self._check_length(self.length - 1)  # it ends at least this long
                return
            if self.last != 13:
                raise HttpRequestRefused("bare LF line ending (RFC 9112 section 2.2)")
            length, first = self.length - 1, self.first
            self.length, self.first, self.last = 0, -1, 10
            pos = end + 1
            if length == 0:
                if self.started:
                    self.active = False  # the blank line: the head is complete
                continue  # empty lines before the request line are ignored (RFC 9112 §2.2)
            self._check_length(length)
            if not self.started:
                self.started = True
                continue
            if first in (32, 9):
                raise HttpRequestRefused("obsolete line folding in a header (RFC 9112 section 5.2)")
            self.fields += 1
            if self.fields > self.max_fields:
                raise HttpRequestRefused(f"more than {self.max_fields} header fields", status=431)

    def _check_length(self, length: int) -> None:
        if not self.started:
            if length > self.max_line:
                raise HttpRequestRefused(f"request line is too long (over {self.max_line} bytes)", status=414)
        elif length + 2 > self.max_field:
            raise HttpRequestRefused(f"a header line is too long (over {self.max_field} bytes)", status=431)


def refuse_early(req: h11.Request) -> None:
    """Requests refused as soon as their head is in, before any body is read."""
    if req.http_version not in (b"1.1", b"1.0"):
        if req.method == b"PRI":
            raise HttpRequestRefused("an HTTP/2 connection preface: this server speaks HTTP/1.1")
        raise HttpRequestRefused(f"HTTP/{req.http_version.decode('latin-1')} is not supported")
    length = chunked = websocket = False
    # raw_items(): one list, where iterating h11's Headers calls __getitem__ per field
    for name, value in req.headers.raw_items():
        lname = name.lower()
        if lname == b"content-length":
            length = True
        elif lname == b"transfer-encoding":
            chunked = True
        elif lname == b"upgrade" and b"websocket" in value.lower():
            websocket = True
    if length and chunked:
        # RFC 9112 §6.1: a request smuggling vector; answering it and closing
        # keeps a request hidden in its body from ever running (gunicorn: 400)
        raise HttpRequestRefused("both Content-Length and Transfer-Encoding")
    if websocket:
        # 501 Not Implemented: the request is valid, but the feature is not
        # there: Cocaine's HTTP proxies (and this front, which plays them)
        # carry request/response HTTP only, so no WebSocket reaches a worker.
        # Not 426 (no other protocol would do) nor 400 (nothing is malformed).
        raise HttpRequestRefused(
            "WebSocket is not supported: Cocaine's HTTP proxies do not carry WebSocket "
            "connections, so this request was not passed to the app",
            status=501,
        )


def declared_length(req: h11.Request) -> int:
    for name, value in req.headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def check_chunk(connection: h11.Connection, body_seen: int, max_body_size: int) -> None:
    """Refuse a chunk whose declared size cannot be accepted, as soon as its size line is in.

    h11 reads sizes of up to 20 hex digits and then waits for that many
    bytes; ``_bytes_in_chunk`` (private to h11's ChunkedReader, read as of
    h11 0.16; tests/runtime/test_rt_front_edge.py notices if it goes) is
    what is left of the current chunk. Without it, the body limit still
    applies as the data comes. *body_seen* is what the body brought so far.
    """
    pending = getattr(getattr(connection, "_reader", None), "_bytes_in_chunk", 0)
    if not pending:
        return
    if pending >= MAX_CHUNK:
        raise HttpRequestRefused("chunk size does not fit in 64 bits")
    if body_seen + pending > max_body_size:
        raise HttpRequestRefused("request body too large", status=413)
