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
from typing import Any

import msgpack

from ..errors import LocalProtocolError
from ..protocol.catalog import raw_header
from ..protocol.frames import Generation
from ..protocol.wire import PACKER_OPTIONS
from .cookie_pairs import drop_cookie_pairs
from .reply import PROTO_VERSION_HEADER, decode_head, decode_response
from .request import CR_LF_NUL, TOKEN, EnvelopeError, HttpRequest, encode_request, parse_request

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
_STATUS_LINE = re.compile(r"^([1-5][0-9][0-9])(?: (.*))?$", re.DOTALL)


class ResponseHeadError(LocalProtocolError):
    """The app produced a head that cannot be sent: a bad status line, a
    header that is not a ``(name, value)`` pair of strings, a control
    character, or more than the configured head size. Nothing was sent; the
    adapters answer ``500`` instead."""

    http_status = 500


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
    if type(status) is str:
        known = _STATUS_CODES.get(status)
        if known is not None:
            return known
    if isinstance(status, int) and not isinstance(status, bool):
        code = status
    elif isinstance(status, str):
        match = _STATUS_LINE.match(status)
        if not match or (
            match.group(2) is not None and CR_LF_NUL.search(match.group(2).encode("latin-1", "replace"))
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
        if not TOKEN.match(name):
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
