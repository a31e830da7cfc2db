"""The request side of the cocaine HTTP envelope: :func:`parse_request` and its checks.

See :mod:`cocaine_http.http.envelope` (which re-exports these names) for the
envelope of each generation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import ErrorCode, FrameFormatError
from ..protocol.frames import Generation
from ..protocol.payloads import LARGE_PAYLOAD, SplitPayload, trailing_raw
from ..protocol.wire import packb, unpackb, unpacker
from .cookie_pairs import drop_cookie_pairs

__all__ = ["CR_LF_NUL", "TOKEN", "EnvelopeError", "HttpRequest", "encode_request", "parse_request"]

#: An RFC 9110 token (method, header name).
TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: CR, LF or NUL. The request path tests for them with ``13 in value or 10 in
#: value or 0 in value`` instead (memchr): about 700 instructions whatever the
#: length, where the regex costs 800 plus 55 a byte (callgrind).
CR_LF_NUL = re.compile(rb"[\x00\r\n]")
_VERSION = re.compile(r"^(?:HTTP/)?(\d)(?:\.(\d))?$", re.IGNORECASE)
_METHODS = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_VERSIONS = {b"HTTP/1.1": "1.1", b"1.1": "1.1", b"HTTP/1.0": "1.0", b"1.0": "1.0"}


class EnvelopeError(FrameFormatError):
    """The request chunk of an HTTP session is not a cocaine HTTP envelope.

    Raised by :func:`parse_request`; the adapters answer it with ``400``.
    """

    code = ErrorCode.FRAME_FORMAT
    http_status = 400


# -- the request -------------------------------------------------------------------


@dataclass(slots=True)
class HttpRequest:
    """One parsed request envelope. Method and version are text; URI,
    header names and values, and the body stay bytes (PROTOCOL.md §0)."""

    method: str
    uri: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    #: The body: ``bytes`` (a :class:`~..protocol.payloads.SplitPayload`'s
    #: own, as it is), or (:func:`parse_request` with ``body_in_place``, an
    #: envelope of :data:`LARGE_ENVELOPE` bytes or more that came whole) a
    #: ``memoryview`` of the envelope, whose suffix it is: not copied out of it.
    body: bytes | memoryview
    #: How many leading Tornado cookie pairs were dropped.
    dropped_cookie_pairs: int = 0
    #: ``path`` and ``query`` split from ``uri`` (absolute-form URIs lose
    #: their scheme and authority; an empty URI becomes ``/``).
    path: bytes = field(default=b"/")
    query: bytes = field(default=b"")
    #: Lowercase name -> value, in the headers' order, when no name repeats
    #: (``None`` when one does; made by :func:`parse_request` as it reads the
    #: pairs): the adapters look up Host, Cookie, Upgrade and the forwarding
    #: headers here instead of a pass over the headers for each, and the
    #: ASGI scope's headers are its items.
    fields: dict[bytes, bytes] | None = None

    @property
    def request_line(self) -> str:
        """``GET /p?q HTTP/1.1`` for logs (undecodable bytes escaped)."""
        return f"{self.method} {self.uri.decode('latin-1')} HTTP/{self.version}"

    def header(self, name: bytes) -> bytes | None:
        """The first value of header *name* (lowercase bytes), or ``None``."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise EnvelopeError(f"{what} must be a string, got {type(value).__name__}")


#: Request header names already found to be tokens, each with its lowercase
#: spelling: a lookup instead of a regex match and a ``lower()`` per header.
#: Bounded, as the names come from clients.
_REQUEST_NAMES: dict[bytes, bytes] = {}
_REQUEST_NAMES_LIMIT = 1024


def _new_name(name: bytes) -> bytes | None:
    """A header name not seen before in lowercase, if it is a token (then it is remembered)."""
    if not TOKEN.match(name):
        return None
    lname = name.lower()
    if len(_REQUEST_NAMES) < _REQUEST_NAMES_LIMIT:
        _REQUEST_NAMES[name] = lname
    return lname


#: From this size on, an envelope's body can be left in it (``body_in_place``).
LARGE_ENVELOPE = LARGE_PAYLOAD


def _items_and_body(head: bytes | memoryview, body: bytes | memoryview) -> list[Any] | None:
    """The envelope's items: those in *head* (an array up to its last item's
    body), then *body*; ``None`` if the head does not decode (the caller then
    unpacks the envelope whole, which says what is wrong with it). Flask
    example, 8 MiB uploads read in 64 KiB pieces (``bench/floor_engine.c`` with
    the envelope as ``--payload-file``, W 4): 9.1-9.3 -> 8.6-8.8 ms of worker
    CPU each, the body read where it is rather than copied out."""
    reader = unpacker()
    reader.feed(head)
    try:
        return [*(reader.unpack() for _ in range(reader.read_array_header() - 1)), body]
    except (msgpack.OutOfData, ValueError, TypeError):  # (msgpack's format errors subclass the last two)
        return None


def _split_uri(uri: bytes) -> tuple[bytes, bytes]:
    """``(path, query)`` of a non-empty URI."""
    if uri[0] == 47 and 63 not in uri and 35 not in uri:
        return uri, b""  # "/" first, no "?" nor "#" (ints: memchr): the usual case
    if uri[:1] != b"/" and (uri[:7].lower() == b"http://" or uri[:8].lower() == b"https://"):
        rest = uri.split(b"://", 1)[1]
        slash = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=-1)
        uri = rest[slash:] if slash >= 0 else b"/"
    path, _, query = uri.partition(b"?")
    if 35 in path:
        path = path.partition(b"#")[0]
    if not path or path[0] != 47:
        path = b"/" + path
    return path, query


def parse_request(
    blob: bytes | bytearray | memoryview | SplitPayload,
    *,
    drop_cookies: bool = True,
    body_in_place: bool = False,
) -> HttpRequest:
    """Decode the first chunk of an HTTP session. Raises :class:`EnvelopeError`.

    The proxies send a request's whole body in its envelope. The worker's
    decoder collects a large one's body apart (a :class:`SplitPayload`), which
    becomes the request's body as it is. With *body_in_place*, the body of an
    envelope of :data:`LARGE_ENVELOPE` bytes or more that came whole is a view
    of *blob* rather than a copy (the WSGI input reads it in place).
    """
    if not blob:
        raise EnvelopeError("the HTTP session carried no request chunk")
    obj: Any = None
    if type(blob) is SplitPayload:
        obj = _items_and_body(blob.head, blob.body)
    elif body_in_place and type(blob) is bytes and len(blob) >= LARGE_ENVELOPE:
        at = trailing_raw(memoryview(blob), len(blob))
        if at is not None:
            obj = _items_and_body(memoryview(blob)[:at], memoryview(blob)[at:])
    in_place = obj is not None
    if not in_place:
        try:
            obj = unpackb(bytes(blob) if isinstance(blob, SplitPayload) else blob)
        except (ValueError, TypeError) as exc:  # msgpack's errors subclass these
            raise EnvelopeError(f"HTTP request chunk is not msgpack: {exc}") from None
    if not isinstance(obj, (list, tuple)) or not 4 <= len(obj) <= 5:
        raise EnvelopeError(
            "HTTP request chunk must be [method, uri, version, headers, body], "
            f"got {type(obj).__name__}{f' of {len(obj)}' if isinstance(obj, (list, tuple)) else ''}"
        )
    if len(obj) == 5:
        raw_method, raw_uri, raw_version, raw_headers, raw_body = obj
    else:
        raw_method, raw_uri, raw_version, raw_headers = obj
        raw_body = b""

    method = _METHODS.get(raw_method) if type(raw_method) is bytes else None
    if method is None:
        method_b = _as_bytes(raw_method, "method")
        if not TOKEN.match(method_b):
            raise EnvelopeError(f"invalid HTTP method {method_b[:32]!r}")
        method = method_b.decode("latin-1")
    uri = raw_uri if type(raw_uri) is bytes else _as_bytes(raw_uri, "uri")
    if 32 in uri or 13 in uri or 10 in uri or 0 in uri:  # space, CR, LF, NUL (see CR_LF_NUL)
        raise EnvelopeError(f"invalid request URI {uri[:64]!r}")
    version = _VERSIONS.get(raw_version) if type(raw_version) is bytes else None
    if version is None:
        version_text = _as_bytes(raw_version, "version").decode("latin-1").strip()
        match = _VERSION.match(version_text)
        if not match:
            raise EnvelopeError(f"invalid HTTP version {version_text[:16]!r}")
        major, minor = match.group(1), match.group(2) or "0"
        version = major if major in ("2", "3") else f"{major}.{minor}"

    if isinstance(raw_headers, dict):  # tolerance: a map instead of pairs
        raw_headers = list(raw_headers.items())
    if not isinstance(raw_headers, (list, tuple)):
        raise EnvelopeError(
            f"headers must be a list of [name, value] pairs, got {type(raw_headers).__name__}"
        )
    headers: list[tuple[bytes, bytes]] = []
    fields: dict[bytes, bytes] = {}
    known = _REQUEST_NAMES
    for pair in raw_headers:
        # fast path: what every proxy sends, a [raw, raw] pair with a clean name and value
        # (callgrind, parse_request of a browser's 10-header envelope: 73.7K instr with
        # a regex per value, 54.5K with the memchr tests; 138.2K before the fast path)
        if type(pair) is list and len(pair) == 2:
            name, value = pair
            if (
                type(name) is bytes
                and type(value) is bytes
                and (lname := known.get(name) or _new_name(name)) is not None
                and not (13 in value or 10 in value or 0 in value)
            ):
                headers.append((name, value))
                fields[lname] = value
                continue
        i = len(headers)  # every pair before this one is in headers
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise EnvelopeError(f"header {i} must be a [name, value] pair, got {pair!r:.64}")
        name = _as_bytes(pair[0], f"header {i} name")
        value = _as_bytes(pair[1], f"header {i} value")
        if not TOKEN.match(name):
            raise EnvelopeError(f"invalid header name {name[:64]!r}")
        if CR_LF_NUL.search(value):
            raise EnvelopeError(f"header {name.decode('latin-1')} has a control character in its value")
        headers.append((name, value))
        fields[name.lower()] = value
    dropped = 0
    if drop_cookies and b"cookie" in fields:
        # (with no name repeated, the one Cookie value is at hand)
        dropped = drop_cookie_pairs(headers, (fields[b"cookie"],) if len(fields) == len(headers) else None)
        if dropped:  # the fields of what is left (a dropped name may be a real header's too)
            fields = {name.lower(): value for name, value in headers}
    body = (
        raw_body
        if type(raw_body) is bytes or in_place
        else b""
        if raw_body is None
        else _as_bytes(raw_body, "body")
    )
    path, query = _split_uri(uri) if uri else (b"/", b"")
    single = fields if len(fields) == len(headers) else None  # a name repeats: its values are in headers
    return HttpRequest(method, uri or b"/", version, headers, body, dropped, path, query, single)


def encode_request(
    method: str,
    uri: str | bytes,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    generation: Generation = Generation.B,
    version: str = "1.1",
) -> bytes:
    """What a proxy sends: the request envelope for *generation* (tests, dev runtime)."""
    ver = f"HTTP/{version}" if generation is Generation.A else version
    return packb([method, uri, ver, [[k, v] for k, v in headers], body])
