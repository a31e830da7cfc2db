"""The cocaine HTTP envelope: what an HTTP proxy puts in a session, and what it expects back.

Request (PROTOCOL.md §2.8, §3.9): the first chunk of an ``http`` session is
one msgpack blob::

    [method, uri, version, [[name, value], ...], body]

``version`` is ``"HTTP/1.1"`` behind the A Tornado proxy and ``"1.1"``
behind the B proxies; both spellings (and ``1.0``) are accepted. Further
chunks of the session are more body (the native framework's reading; the
Python and Node.js frameworks assert on them, we append). The Tornado
proxies, A and B, put one ``[cookie_name, cookie_value]`` pair per cookie
*before* the real headers; :func:`parse_request` drops that leading run when
each pair equals a cookie of the ``Cookie`` header (§5 item 8).

Response: the first chunk is ``msgpack([code, [[name, value], ...]])``, then
body chunks, then choke/close. The generations differ in the body (the key
A/B difference, §3.9):

* **A** msgpack-wraps *every* body chunk, must send the head before choke
  (a bare choke hangs the 0.11 Tornado proxy) and should not send
  ``Content-Length`` (that proxy appends its own, so it would be doubled).
  Status codes Python 2's ``httplib`` does not know hang that proxy too;
  :class:`ResponseEncoder` maps them to a known code (``a_status_fallback``).
* **B** sends body chunks raw and never an empty body write: an empty write
  ends (``X-Cocaine-HTTP-Proto-Version: 1.1``) or breaks (otherwise) the 0.12
  proxy's chunked stream. :meth:`ResponseEncoder.lingering_end` is the one
  deliberate empty write, allowed only with that header.

Everything is encoded with :mod:`cocaine_http.protocol.wire`'s options
(old-spec raw only). Nothing here does IO: the WSGI and ASGI adapters hand
the payloads to the worker's response object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..errors import ErrorCode, FrameFormatError, LocalProtocolError
from ..protocol.catalog import raw_header
from ..protocol.frames import Generation
from ..protocol.wire import PACKER_OPTIONS, packb, unpackb
from .cookie_pairs import drop_cookie_pairs
from .reply import PROTO_VERSION_HEADER, decode_head, decode_response

__all__ = [
    "DEFAULT_MAX_HEAD_SIZE",
    "HOP_BY_HOP",
    "PY2_HTTPLIB_CODES",
    "EnvelopeError",
    "HttpRequest",
    "ResponseEncoder",
    "ResponseHeadError",
    "body_allowed",
    "decode_head",
    "decode_response",
    "drop_cookie_pairs",
    "encode_request",
    "parse_request",
    "parse_status_line",
]

#: Upper bound on the encoded size of a response head (status + headers).
#: An app that produces more gets a 500 instead (proxies have limits of their
#: own, usually far lower: nginx 4-8 KiB, Tornado 64 KiB).
DEFAULT_MAX_HEAD_SIZE = 64 * 1024

#: Connection-level headers an app must not send (PEP 3333 §"Other HTTP
#: Features"); the proxy frames the response itself. Dropped from every head.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Status codes of Python 2.7's ``httplib.responses``: the 0.11 Tornado proxy
#: builds its status line from that table and hangs on a ``KeyError`` for
#: any other code (PROTOCOL.md §2.8, observed).
PY2_HTTPLIB_CODES = frozenset(
    [100, 101, 200, 201, 202, 203, 204, 205, 206, *range(300, 308), *range(400, 418), *range(500, 506)]
)

_ORIGINAL_STATUS_HEADER = b"X-Cocaine-Original-Status"
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: CR, LF or NUL. The request path tests for them with ``13 in value or 10 in
#: value or 0 in value`` instead (memchr): about 700 instructions whatever the
#: length, where the regex costs 800 plus 55 a byte (callgrind).
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
#: What a response header value may not hold: every control character but
#: HTAB (RFC 9110 §5.5; gunicorn and h11 refuse the same set).
_BAD_RESPONSE_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: The field RFC 9110 §5.3 names as the one that cannot be combined into one line.
_SET_COOKIE = b"set-cookie"
#: How many header names a :class:`ResponseEncoder` remembers as checked (an
#: app that echoes its clients' names cannot grow the table past it).
_KNOWN_NAMES_LIMIT = 256
#: ``Generation.A`` costs an enum metaclass lookup (~900 instructions on 3.11), a global does not.
_GEN_A, _GEN_B = Generation.A, Generation.B
_VERSION = re.compile(r"^(?:HTTP/)?(\d)(?:\.(\d))?$", re.IGNORECASE)
_STATUS_LINE = re.compile(r"^([1-5][0-9][0-9])(?: (.*))?$", re.DOTALL)
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


class ResponseHeadError(LocalProtocolError):
    """The app produced a head that cannot be sent: a bad status line, a
    header that is not a ``(name, value)`` pair of strings, a control
    character, or more than the configured head size. Nothing was sent; the
    adapters answer ``500`` instead."""

    http_status = 500


# -- request -------------------------------------------------------------------


@dataclass(slots=True)
class HttpRequest:
    """One parsed request envelope. Method and version are text; URI,
    header names and values, and the body stay bytes (PROTOCOL.md §0)."""

    method: str
    uri: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: How many leading Tornado cookie pairs were dropped.
    dropped_cookie_pairs: int = 0
    #: ``path`` and ``query`` split from ``uri`` (absolute-form URIs lose
    #: their scheme and authority; an empty URI becomes ``/``).
    path: bytes = field(default=b"/")
    query: bytes = field(default=b"")

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


#: Request header names already found to be tokens: a set lookup instead of
#: a regex match per header. Bounded, as the names come from clients.
_REQUEST_NAMES: set[bytes] = set()
_REQUEST_NAMES_LIMIT = 1024


def _new_name(name: bytes) -> bool:
    """Whether a header name not seen before is a token (then it is remembered)."""
    if not _TOKEN.match(name):
        return False
    if len(_REQUEST_NAMES) < _REQUEST_NAMES_LIMIT:
        _REQUEST_NAMES.add(name)
    return True


def _split_uri(uri: bytes) -> tuple[bytes, bytes]:
    """``(path, query)`` of a non-empty URI."""
    if uri[0] == 47 and 63 not in uri and 35 not in uri:
        return uri, b""  # "/" first, no "?" nor "#" (ints: memchr): the usual case
    if uri[:1] != b"/" and (uri[:7].lower() == b"http://" or uri[:8].lower() == b"https://"):
        rest = uri.split(b"://", 1)[1]
        slash = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=-1)
        uri = rest[slash:] if slash >= 0 else b"/"
    path, _, query = uri.partition(b"?")
    path, _, _ = path.partition(b"#")
    if not path.startswith(b"/"):
        path = b"/" + path
    return path, query


def parse_request(blob: bytes | bytearray | memoryview, *, drop_cookies: bool = True) -> HttpRequest:
    """Decode the first chunk of an HTTP session. Raises :class:`EnvelopeError`."""
    if not blob:
        raise EnvelopeError("the HTTP session carried no request chunk")
    try:
        obj = unpackb(blob)
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
        if not _TOKEN.match(method_b):
            raise EnvelopeError(f"invalid HTTP method {method_b[:32]!r}")
        method = method_b.decode("latin-1")
    uri = raw_uri if type(raw_uri) is bytes else _as_bytes(raw_uri, "uri")
    if 32 in uri or 13 in uri or 10 in uri or 0 in uri:  # space, CR, LF, NUL (see _BAD_VALUE)
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
    known = _REQUEST_NAMES
    for pair in raw_headers:
        # fast path: what every proxy sends, a [raw, raw] pair with a clean name and value
        # (callgrind, parse_request of a 10-header envelope: 138.2K -> 100.7K instr;
        # bench/wsgi_callgrind.py --threads 0: a whole Flask hello request is about 545K)
        if type(pair) is list and len(pair) == 2:
            name, value = pair
            if (
                type(name) is bytes
                and type(value) is bytes
                and (name in known or _new_name(name))
                and not (13 in value or 10 in value or 0 in value)
            ):
                headers.append((name, value))
                continue
        i = len(headers)  # every pair before this one is in headers
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise EnvelopeError(f"header {i} must be a [name, value] pair, got {pair!r:.64}")
        name = _as_bytes(pair[0], f"header {i} name")
        value = _as_bytes(pair[1], f"header {i} value")
        if not _TOKEN.match(name):
            raise EnvelopeError(f"invalid header name {name[:64]!r}")
        if _BAD_VALUE.search(value):
            raise EnvelopeError(f"header {name.decode('latin-1')} has a control character in its value")
        headers.append((name, value))

    body = raw_body if type(raw_body) is bytes else b"" if raw_body is None else _as_bytes(raw_body, "body")
    dropped = drop_cookie_pairs(headers) if drop_cookies else 0
    path, query = _split_uri(uri) if uri else (b"/", b"")
    return HttpRequest(method, uri or b"/", version, headers, body, dropped, path, query)


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


# -- response ------------------------------------------------------------------


#: Heads packed by one packer, not one made per call (msgpack.packb makes one:
#: 3.3K of its 8.4K instructions for a two-header head). Safe from several
#: threads: its pack() runs in C without letting go of the GIL, and a head
#: holds only lists, ints and bytes, so no Python code runs inside it.
_pack: Callable[[Any], bytes] = msgpack.Packer(**PACKER_OPTIONS).pack

#: Status lines already validated -> their code: an app says "200 OK" on
#: nearly every response, and the regexes cost more than the rest of the head.
#: Bounded, as an app may build its reason phrases from anything.
_STATUS_CODES: dict[str, int] = {}
_STATUS_CODES_LIMIT = 512


def parse_status_line(status: Any) -> int:
    """``"200 OK"`` (WSGI) or ``200`` (ASGI) -> ``200``; raises :class:`ResponseHeadError`."""
    kind = type(status)
    if kind is str:
        known = _STATUS_CODES.get(status)
        if known is not None:
            return known
    elif kind is int and 100 <= status <= 599:
        return status  # type: ignore[no-any-return]  # ASGI's usual: no isinstance, no regex
    if isinstance(status, int) and not isinstance(status, bool):
        code = status
    elif isinstance(status, str):
        match = _STATUS_LINE.match(status)
        if not match or (
            match.group(2) is not None and _BAD_VALUE.search(match.group(2).encode("latin-1", "replace"))
        ):
            raise ResponseHeadError(f"invalid status line {status[:64]!r}")
        code = int(match.group(1))
    else:
        raise ResponseHeadError(
            f"status must be a string like '200 OK' or an int, got {type(status).__name__}"
        )
    if not 100 <= code <= 599:
        raise ResponseHeadError(f"status code {code} out of range 100-599")
    if type(status) is str and len(_STATUS_CODES) < _STATUS_CODES_LIMIT:
        _STATUS_CODES[status] = code
    return code


def body_allowed(method: str, status: int) -> bool:
    """RFC 9110: no body for HEAD, 1xx, 204 and 304."""
    return not (method == "HEAD" or status < 200 or status in (204, 304))


def _header_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise ResponseHeadError(f"{what} {value[:64]!r} is not latin-1 (PEP 3333)") from None
    raise ResponseHeadError(f"{what} must be a string, got {type(value).__name__}")


class ResponseEncoder:
    """Builds the response payloads for one generation.

    ``head()`` returns the first chunk's payload, ``body()`` the payload of a
    body chunk (``None`` when nothing must be sent). Both are payloads, not
    frames: the worker's response wraps them in chunk frames.
    """

    __slots__ = ("_names", "a_status_fallback", "drop_content_length", "generation", "max_head_size")

    def __init__(
        self,
        generation: Generation | str,
        *,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
        a_status_fallback: bool = True,
        drop_content_length: bool | None = None,
    ) -> None:
        self.generation = Generation.parse(generation)
        self.max_head_size = max_head_size
        self.a_status_fallback = a_status_fallback and self.generation is Generation.A
        if drop_content_length is None:
            drop_content_length = self.generation is Generation.A
        self.drop_content_length = drop_content_length
        #: Header names of the app's heads (str from WSGI, bytes from ASGI), checked
        #: once: name -> (bytes, lowercased, dropped).
        self._names: dict[str | bytes, tuple[bytes, bytes, bool]] = {}

    def head_pairs(self, status: Any, headers: Iterable[Any]) -> tuple[int, list[list[bytes]]]:
        """Validate and normalise a head; returns ``(code, [[name, value], ...])`` as sent.

        As gunicorn does: values lose surrounding spaces and tabs (RFC 9110
        §5.5; Django's ``Set-Cookie`` starts with one), and a name that is not
        a token or a value with a control character (CR, LF, NUL ...) is
        refused, naming the header. In B, repeated fields other than
        ``Set-Cookie`` are joined with ``", "`` at the first one's place: the
        0.12 Tornado proxy keeps only the last of repeated pairs (§3.9).
        """
        return self.code_pairs(parse_status_line(status), headers)

    def code_pairs(self, code: int, headers: Iterable[Any]) -> tuple[int, list[list[bytes]]]:
        """:meth:`head_pairs` for a *code* that :func:`parse_status_line` returned
        (the adapters parse the app's status first, to keep it for the access log)."""
        out: list[list[bytes]] = []
        size = 0
        try:
            items = list(headers)
        except TypeError:
            raise ResponseHeadError(
                f"headers must be a list of (name, value), got {type(headers).__name__}"
            ) from None
        join = self.generation is _GEN_B
        seen: dict[bytes, list[bytes]] = {}
        names = self._names
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ResponseHeadError(f"header {item!r:.64} is not a (name, value) pair")
            raw_name, raw_value = item
            kind, value_kind = type(raw_name), type(raw_value)
            known = names.get(raw_name) if kind is str or kind is bytes else None
            if known is not None and value_kind is str and raw_value.isascii() and raw_value.isprintable():
                # A name checked before and a printable ASCII value (no control
                # character, no tab): what WSGI apps send, without the regexes.
                name, lname, drop = known
                value = raw_value.encode("ascii").strip(b" ")
            elif known is not None and value_kind is bytes and not _BAD_RESPONSE_VALUE.search(raw_value):
                # What ASGI apps send: the name checked before, the value's check as in _checked.
                name, lname, drop = known
                value = raw_value.strip(b" \t")
            else:
                name, value = self._checked(raw_name, raw_value)
                lname = name.lower()
                drop = lname in HOP_BY_HOP or (self.drop_content_length and lname == b"content-length")
                if (kind is str or kind is bytes) and len(names) < _KNOWN_NAMES_LIMIT:
                    names[raw_name] = (name, lname, drop)
            size += len(name) + len(value) + 4
            if size > self.max_head_size:
                raise ResponseHeadError(f"response head exceeds {self.max_head_size} bytes")
            if drop:
                continue
            if join and lname != _SET_COOKIE:
                first = seen.get(lname)
                if first is not None:
                    if value:
                        first[1] = first[1] + b", " + value if first[1] else value
                    continue
                pair = [name, value]
                seen[lname] = pair
                out.append(pair)
                continue
            out.append([name, value])
        if self.a_status_fallback and code not in PY2_HTTPLIB_CODES:
            out.append([_ORIGINAL_STATUS_HEADER, str(code).encode()])
            code = 307 if code == 308 else code // 100 * 100
        return code, out

    @staticmethod
    def _checked(raw_name: Any, raw_value: Any) -> tuple[bytes, bytes]:
        """One header as bytes, checked (a token name, no control character
        but HTAB in the value) and its value stripped of spaces and tabs."""
        name = _header_bytes(raw_name, "header name")
        value = _header_bytes(raw_value, "header value")
        if not _TOKEN.match(name):
            raise ResponseHeadError(f"invalid header name {name[:64]!r} (not an RFC 9110 token)")
        if _BAD_RESPONSE_VALUE.search(value):
            raise ResponseHeadError(
                f"header {name.decode('latin-1')} has a control character (CR, LF, NUL ...) in its value"
            )
        return name, value.strip(b" \t")

    def head(self, status: Any, headers: Iterable[Any]) -> bytes:
        """Payload of the first chunk: ``msgpack([code, [[name, value], ...]])``."""
        code, pairs = self.head_pairs(status, headers)
        return _pack([code, pairs])

    def encode_head(self, code: int, headers: Iterable[Any]) -> tuple[list[list[bytes]], bytes]:
        """The pairs sent and the head's payload, for a *code* that
        :func:`parse_status_line` returned (the adapters parse the app's status
        first: it is what their access line shows, A may send another)."""
        sent, pairs = self.code_pairs(code, headers)
        return pairs, _pack([sent, pairs])

    def body(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Payload of one body chunk; ``None`` for empty data (never sent)."""
        if not data:
            return None
        if self.generation is _GEN_A:
            return raw_header(len(data)) + bytes(data)
        return data if isinstance(data, bytes) else bytes(data)

    def lingering_end(self, head_headers: Iterable[Sequence[bytes]]) -> bytes | None:
        """The empty write that ends the body early (B, with
        ``X-Cocaine-HTTP-Proto-Version: 1.1`` in the head), else ``None``."""
        if self.generation is not Generation.B:
            return None
        for name, value in head_headers:
            if name.lower() == PROTO_VERSION_HEADER and value.strip() == b"1.1":
                return b""
        return None

    def error_response(self, status: int, message: str) -> tuple[bytes, bytes | None]:
        """A plain-text error answer: ``(head payload, body payload)``."""
        body = message.encode("utf-8", "replace")
        headers: list[tuple[bytes, bytes]] = [(b"Content-Type", b"text/plain; charset=utf-8")]
        if not self.drop_content_length:
            headers.append((b"Content-Length", str(len(body)).encode()))
        return self.head(status, headers), self.body(body)
