"""The cocaine HTTP envelope, byte-exact against PROTOCOL.md §7 (A12-A14, B9-B10)."""

from __future__ import annotations

import os

import msgpack
import pytest
from helpers.oldspec import assert_old_spec

from cocaine_http.http.envelope import (
    EnvelopeError,
    HttpRequest,
    ResponseEncoder,
    ResponseHeadError,
    body_allowed,
    decode_response,
    encode_request,
    parse_request,
    parse_status_line,
)
from cocaine_http.http.request import LARGE_ENVELOPE
from cocaine_http.protocol.catalog import MessageEncoder
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.payloads import SplitPayload, trailing_raw
from cocaine_http.protocol.wire import packb


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace("\n", " "))


A12 = hx(
    "93 04 11 91 da 00 2d 95 a3 47 45 54 aa 2f 68 65 6c 6c 6f"
    " 3f 78 3d 31 a8 48 54 54 50 2f 31 2e 31 91 92 a4 48 6f 73"
    " 74 ab 65 78 61 6d 70 6c 65 2e 63 6f 6d a0"
)
A13 = hx(
    "93 04 11 91 bd 92 cc c8 91 92 ac 43 6f 6e 74 65 6e 74 2d 54 79 70 65 aa 74 65 78 74 2f 70 6c 61 69 6e"
)
A14 = hx("93 04 11 91 a6 a5 68 65 6c 6c 6f")
B9 = hx(
    "93 02 00 91 da 00 28 95 a3 47 45 54 aa 2f 68 65 6c 6c 6f"
    " 3f 78 3d 31 a3 31 2e 31 91 92 a4 48 6f 73 74 ab 65 78 61"
    " 6d 70 6c 65 2e 63 6f 6d a0"
)
B10 = hx(
    "93 02 00 91 bd 92 cc c8 91 92 ac 43 6f 6e 74 65 6e 74 2d"
    " 54 79 70 65 aa 74 65 78 74 2f 70 6c 61 69 6e 93 02 00 91"
    " a5 68 65 6c 6c 6f 93 02 02 90"
)


def _frame_payload(frame: bytes) -> bytes:
    obj = msgpack.unpackb(frame, raw=True)
    return obj[2][0]


# -- request vectors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "generation", "session"),
    [(A12, Generation.A, 17), (B9, Generation.B, 2)],
    ids=["A12", "B9"],
)
def test_request_vector_roundtrip(vector: bytes, generation: Generation, session: int) -> None:
    blob = encode_request("GET", "/hello?x=1", [("Host", "example.com")], b"", generation=generation)
    assert MessageEncoder(generation).chunk(session, blob) == vector
    req = parse_request(_frame_payload(vector))
    assert req.method == "GET"
    assert req.uri == b"/hello?x=1"
    assert (req.path, req.query) == (b"/hello", b"x=1")
    assert req.version == "1.1"
    assert req.headers == [(b"Host", b"example.com")]
    assert req.body == b""
    assert req.request_line == "GET /hello?x=1 HTTP/1.1"


def test_response_vectors_a13_a14() -> None:
    enc = ResponseEncoder(Generation.A)
    frames = MessageEncoder(Generation.A)
    head = enc.head("200 OK", [("Content-Type", "text/plain")])
    assert frames.chunk(17, head) == A13
    body = enc.body(b"hello")
    assert body is not None
    assert frames.chunk(17, body) == A14
    assert_old_spec(A13 + A14)


def test_response_vector_b10() -> None:
    enc = ResponseEncoder(Generation.B)
    frames = MessageEncoder(Generation.B)
    head = enc.head(200, [(b"Content-Type", b"text/plain")])
    body = enc.body(b"hello")
    assert body is not None
    assert frames.chunk(2, head) + frames.chunk(2, body) + frames.choke(2) == B10


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
def test_decode_response_roundtrip(generation: Generation) -> None:
    enc = ResponseEncoder(generation)
    chunks = [enc.head(201, [("X-A", "1")]), enc.body(b"ab"), enc.body(b"\x00\xc4\xd9")]
    status, headers, body = decode_response([c for c in chunks if c is not None], generation)
    assert (status, headers, body) == (201, [(b"X-A", b"1")], b"ab\x00\xc4\xd9")


# -- request parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [("HTTP/1.1", "1.1"), ("1.1", "1.1"), ("HTTP/1.0", "1.0"), ("1.0", "1.0"), ("HTTP/2", "2"), ("2.0", "2")],
)
def test_version_spellings(version: str, expected: str) -> None:
    assert parse_request(packb(["GET", "/", version, [], ""])).version == expected


def test_a_tornado_cookie_pairs_dropped() -> None:
    # the observed A request (PROTOCOL.md §2.8): one pair per cookie first
    blob = packb(
        [
            "POST",
            "/p/q?x=1",
            "HTTP/1.1",
            [
                ["a", "b"],
                ["sid", "x y"],
                ["Content-Length", "4"],
                ["Cookie", 'a=b; sid="x y"'],
                ["Content-Type", "application/x-www-form-urlencoded"],
            ],
            "hi=1",
        ]
    )
    req = parse_request(blob)
    assert req.dropped_cookie_pairs == 2
    assert [k for k, _ in req.headers] == [b"Content-Length", b"Cookie", b"Content-Type"]
    assert req.body == b"hi=1"


def test_cookie_like_header_kept_without_matching_cookie() -> None:
    blob = packb(["GET", "/", "1.1", [["a", "b"], ["Cookie", "a=c"]], ""])
    assert parse_request(blob).headers == [(b"a", b"b"), (b"Cookie", b"a=c")]
    blob = packb(["GET", "/", "1.1", [["a", "b"]], ""])
    assert parse_request(blob).headers == [(b"a", b"b")]


def test_cookie_pairs_kept_when_disabled() -> None:
    blob = packb(["GET", "/", "1.1", [["a", "b"], ["Cookie", "a=b"]], ""])
    assert len(parse_request(blob, drop_cookies=False).headers) == 2


@pytest.mark.parametrize(
    ("uri", "path", "query"),
    [
        (b"", b"/", b""),
        (b"/a/b?c=d&e", b"/a/b", b"c=d&e"),
        (b"?x=1", b"/", b"x=1"),
        (b"http://h.example:8080/x?y", b"/x", b"y"),
        (b"https://h.example", b"/", b""),
        (b"/%C3%BC?q=%20", b"/%C3%BC", b"q=%20"),
    ],
)
def test_uri_split(uri: bytes, path: bytes, query: bytes) -> None:
    req = parse_request(packb(["GET", uri, "1.1", [], b""]))
    assert (req.path, req.query) == (path, query)


def test_four_element_envelope_and_nil_body() -> None:
    assert parse_request(packb(["GET", "/", "1.1", []])).body == b""
    assert parse_request(packb(["GET", "/", "1.1", [], None])).body == b""


def test_header_map_tolerated() -> None:
    assert parse_request(packb(["GET", "/", "1.1", {"Host": "h"}, b""])).headers == [(b"Host", b"h")]


@pytest.mark.parametrize(
    "blob",
    [
        b"\xc1",  # not msgpack
        b"\x95\xa3GET",  # truncated
        packb({"method": "GET"}),
        packb(["GET", "/", "1.1"]),
        packb(["GET", "/", "1.1", [], b"", b"extra"]),
        packb([1, "/", "1.1", [], b""]),
        packb(["G ET", "/", "1.1", [], b""]),
        packb(["GET", "/a b", "1.1", [], b""]),
        packb(["GET", "/", "HTTP/x", [], b""]),
        packb(["GET", "/", 11, [], b""]),
        packb(["GET", "/", "1.1", "Host: h", b""]),
        packb(["GET", "/", "1.1", [["Host"]], b""]),
        packb(["GET", "/", "1.1", [["Host", 1]], b""]),
        packb(["GET", "/", "1.1", [[1, "h"]], b""]),
        packb(["GET", "/", "1.1", [["Bad Name", "h"]], b""]),
        packb(["GET", "/", "1.1", [["X", "a\r\nInjected: 1"]], b""]),
        packb(["GET", "/", "1.1", [], 12]),
        b"\x95\xa3GET\xa1/\xa31.1\x90\xc7\x01\x01x",  # ext body
    ],
)
def test_malformed_envelopes_raise_typed_error(blob: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_request(blob)
    assert info.value.http_status == 400
    assert str(info.value)


# -- response heads ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [("200 OK", 200), ("404 Not Found", 404), ("599", 599), (204, 204)]
)
def test_status_lines(status: object, code: int) -> None:
    assert parse_status_line(status) == code


@pytest.mark.parametrize(
    "status", ["OK", "20 OK", "2000 OK", "600 Nope", "200OK", "099 x", "200 a\r\nb", b"200 OK", None, True]
)
def test_bad_status_lines(status: object) -> None:
    with pytest.raises(ResponseHeadError):
        parse_status_line(status)


@pytest.mark.parametrize(
    "headers",
    [
        [("X", "a\nb")],
        [("Bad Name", "v")],
        [("X", 1)],
        [("X",)],
        ["X: y"],
        [("X", "\u20ac")],  # not latin-1
        5,
    ],
)
def test_bad_heads(headers: object) -> None:
    with pytest.raises(ResponseHeadError):
        ResponseEncoder(Generation.B).head(200, headers)  # type: ignore[arg-type]


def test_head_size_limit() -> None:
    enc = ResponseEncoder(Generation.B, max_head_size=1024)
    enc.head(200, [("X", "v" * 500)])
    with pytest.raises(ResponseHeadError, match="exceeds"):
        enc.head(200, [("X", "v" * 2000)])


def test_a_drops_content_length_and_hop_by_hop() -> None:
    enc = ResponseEncoder(Generation.A)
    _code, pairs = enc.head_pairs(
        200, [("Content-Length", "5"), ("Transfer-Encoding", "chunked"), ("Connection", "close"), ("X", "1")]
    )
    assert pairs == [[b"X", b"1"]]
    _code, pairs = ResponseEncoder(Generation.B).head_pairs(
        200, [("Content-Length", "5"), ("Connection", "x")]
    )
    assert pairs == [[b"Content-Length", b"5"]]


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
def test_header_values_are_stripped_as_gunicorn_does(generation: Generation) -> None:
    # Django's WSGI handler gives Set-Cookie values with a leading space (issue #16)
    _code, pairs = ResponseEncoder(generation).head_pairs(
        200, [("Set-Cookie", " session=abc123; HttpOnly; Path=/"), ("X-T", "\t a b \t"), ("X-E", "  ")]
    )
    assert pairs == [[b"Set-Cookie", b"session=abc123; HttpOnly; Path=/"], [b"X-T", b"a b"], [b"X-E", b""]]


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("X-Bad", "a\rb", "X-Bad"),
        ("X-Bad", "a\nb", "X-Bad"),
        ("X-Bad", "a\x00b", "X-Bad"),
        ("X-Bad", "a\x7fb", "X-Bad"),
        ("X-Bad", "ab\r\n", "X-Bad"),  # not rescued by the strip
        ("X-B\rad", "v", "X-B\\rad"),
        ("X-B\nad", "v", "X-B\\nad"),
        ("X-B\x00ad", "v", "X-B\\x00ad"),
    ],
)
def test_control_characters_refused_naming_the_header(
    generation: Generation, name: str, value: str, named: str
) -> None:
    with pytest.raises(ResponseHeadError) as info:
        ResponseEncoder(generation).head_pairs(200, [("X-Ok", "1"), (name, value)])
    assert named in str(info.value)


def test_b_joins_repeated_fields_but_set_cookie() -> None:
    headers = [
        ("Vary", "Accept"),
        ("Set-Cookie", "a=1"),
        ("X-Other", "x"),
        ("vary", "Cookie"),
        ("Set-Cookie", "b=2"),
        ("Link", "</a>; rel=preload"),
        ("LINK", "</b>; rel=preload"),
        ("Vary", ""),
    ]
    _code, pairs = ResponseEncoder(Generation.B).head_pairs(200, headers)
    assert pairs == [
        [b"Vary", b"Accept, Cookie"],
        [b"Set-Cookie", b"a=1"],
        [b"X-Other", b"x"],
        [b"Set-Cookie", b"b=2"],
        [b"Link", b"</a>; rel=preload, </b>; rel=preload"],
    ]
    # A: the 0.11 proxy writes every pair as given, so repeats are kept apart
    _code, pairs = ResponseEncoder(Generation.A).head_pairs(200, headers)
    assert [k for k, _ in pairs] == [k.encode() for k, _ in headers]


def test_repeated_heads_give_the_same_pairs() -> None:
    # An encoder remembers the header names it checked (a bounded number): the
    # same head again, a B join, many values of one name, long values: every
    # head is what the checks give, and a bad pair is still refused.
    headers = [(b"Vary", b"Accept "), (b"vary", b"\tCookie"), (b"Connection", b"close"), ("X-S", "s")]
    expected = [[b"Vary", b"Accept, Cookie"], [b"X-S", b"s"]]
    enc = ResponseEncoder(Generation.B)
    for _ in range(3):
        assert enc.head_pairs(200, headers) == (200, expected)
    assert enc.head_pairs(200, [[b"Vary", b"x"]]) == (200, [[b"Vary", b"x"]])
    with pytest.raises(ResponseHeadError):
        enc.head_pairs(200, [(b"X-L", [1])])  # a tuple that cannot be a key
    for i in range(1500):
        length = str(i % 1000).encode()
        assert enc.head_pairs(200, [(b"Content-Length", length), *headers])[1] == [
            [b"Content-Length", length],
            *expected,
        ]
    for _ in range(3):
        late = [(b"X-Late", b"\tl\t"), ("X-S", "s ")]
        assert enc.head_pairs(200, late)[1] == [[b"X-Late", b"l"], [b"X-S", b"s"]]
        assert enc.head_pairs(200, [("X-Long", " v" * 600)])[1] == [[b"X-Long", b"v" + b" v" * 599]]
        with pytest.raises(ResponseHeadError):
            enc.head_pairs(200, [(b"Vary", b"a\rb")])
    assert ResponseEncoder(Generation.A).head_pairs(200, [(b"Content-Length", b"1"), *headers])[1] == [
        [b"Vary", b"Accept"],
        [b"vary", b"Cookie"],
        [b"X-S", b"s"],
    ]


def test_a_status_fallback_for_codes_python2_httplib_lacks() -> None:
    enc = ResponseEncoder(Generation.A)
    assert enc.head_pairs(429, []) == (400, [[b"X-Cocaine-Original-Status", b"429"]])
    assert enc.head_pairs(308, [])[0] == 307
    assert enc.head_pairs(299, [])[0] == 200
    assert enc.head_pairs(418, [])[0] == 400
    assert enc.head_pairs(417, []) == (417, [])
    assert ResponseEncoder(Generation.A, a_status_fallback=False).head_pairs(429, [])[0] == 429
    assert ResponseEncoder(Generation.B).head_pairs(429, [])[0] == 429


def test_body_chunks() -> None:
    a, b = ResponseEncoder(Generation.A), ResponseEncoder(Generation.B)
    assert a.body(b"") is None and b.body(b"") is None  # never an empty write
    big = b"x" * 70000
    assert a.body(big) == b"\xdb\x00\x01\x11\x70" + big  # raw32, not bin32
    assert a.body(b"y" * 40) == b"\xda\x00\x28" + b"y" * 40  # raw16, not str8
    assert b.body(memoryview(b"z")) == b"z"
    assert_old_spec(a.head(200, [("K", "v" * 40)]))


def test_lingering_end_only_with_proto_header_in_b() -> None:
    b = ResponseEncoder(Generation.B)
    assert b.lingering_end([(b"X-Cocaine-HTTP-Proto-Version", b"1.1")]) == b""
    assert b.lingering_end([(b"X-Cocaine-HTTP-Proto-Version", b"1.0")]) is None
    assert b.lingering_end([]) is None
    assert ResponseEncoder(Generation.A).lingering_end([(b"X-Cocaine-HTTP-Proto-Version", b"1.1")]) is None


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
def test_error_response(generation: Generation) -> None:
    head, body = ResponseEncoder(generation).error_response(500, "Internal Server Error")
    assert body is not None
    status, headers, text = decode_response([head, body], generation)
    assert status == 500 and text == b"Internal Server Error"
    has_cl = any(k == b"Content-Length" for k, _ in headers)
    assert has_cl is (generation is Generation.B)


def test_body_allowed() -> None:
    assert body_allowed("GET", 200)
    assert not body_allowed("HEAD", 200)
    assert not body_allowed("GET", 204)
    assert not body_allowed("GET", 304)
    assert not body_allowed("GET", 101)


def test_remembered_names_and_status_lines_are_still_checked() -> None:
    # The encoder remembers the header names it found valid, the module the
    # status lines and request header names: a later bad value still fails.
    enc = ResponseEncoder(Generation.B)
    for _ in range(2):
        assert enc.head_pairs("200 OK", [("X-Ok", "\t v \t"), ("X-Two", " 1")]) == (
            200,
            [[b"X-Ok", b"v"], [b"X-Two", b"1"]],
        )
    for bad in ("a\rb", "a\x7fb", "a\x00", 1, "\u20ac"):
        with pytest.raises(ResponseHeadError):
            enc.head_pairs("200 OK", [("X-Ok", bad)])
    assert enc.head_pairs(200, [("X-Ok", "caf\xe9")])[1] == [[b"X-Ok", b"caf\xe9"]]  # latin-1, not ASCII
    for _ in range(2):
        assert parse_status_line("201 Created") == 201
        with pytest.raises(ResponseHeadError):
            parse_status_line("200 a\r\nb")
    assert parse_request(encode_request("GET", "/", [("X-Name", "ok")])).headers == [(b"X-Name", b"ok")]
    with pytest.raises(EnvelopeError):
        parse_request(encode_request("GET", "/", [("X-Name", "a\rb")]))
    for _ in range(2):
        with pytest.raises(EnvelopeError):
            parse_request(encode_request("GET", "/", [("X Name", "ok")]))


# -- a large envelope's body left in place ------------------------------------------------


def _fields(req: HttpRequest) -> tuple[object, ...]:
    return (req.method, req.uri, req.version, req.headers, bytes(req.body), req.path, req.query, req.fields)


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
@pytest.mark.parametrize("size", [LARGE_ENVELOPE, 3 * LARGE_ENVELOPE + 7])
def test_a_large_envelope_body_in_place_reads_as_the_copy(generation: Generation, size: int) -> None:
    body = os.urandom(size)
    headers = [("Host", "h"), ("Cookie", "a=1"), ("X-Long", "v" * 5000)]
    blob = encode_request("PUT", "/up?x=1", headers, body, generation=generation)
    copied, in_place = parse_request(blob), parse_request(blob, body_in_place=True)
    assert type(copied.body) is bytes and type(in_place.body) is memoryview
    assert in_place.body.obj is blob  # a view of the envelope: the body was not copied
    assert _fields(in_place) == _fields(copied)


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(["GET", "/", "1.1", [["Host", "h"]], b"b" * LARGE_ENVELOPE, b"x"], id="six items"),
        pytest.param(["GET", "/", "1.1", [["X-Big", "v" * LARGE_ENVELOPE]]], id="four items"),
        pytest.param(["GET", "/", "1.1", [["X-Big", "v" * LARGE_ENVELOPE]], b""], id="head past the window"),
        pytest.param(["GET", "/", "1.1", [], [b"b" * LARGE_ENVELOPE]], id="body not a raw"),
    ],
)
def test_a_large_envelope_of_another_shape_parses_as_without_it(items: list[object]) -> None:
    """Anything but five items ending with a raw, the first four in 64 KiB, is
    unpacked whole: the same request, or the same error, as without body_in_place."""
    blob = packb(items)
    assert len(blob) >= LARGE_ENVELOPE
    outcomes = []
    for in_place in (False, True):
        try:
            req = parse_request(blob, body_in_place=in_place)
            assert type(req.body) is bytes
            outcomes.append(_fields(req))
        except EnvelopeError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


def test_a_large_envelope_packed_with_bin_types_reads_alike() -> None:
    """A new-spec packer sends the body as bin32 (0xc6), not raw32 (0xdb)."""
    body = os.urandom(LARGE_ENVELOPE)
    blob = msgpack.packb(["POST", "/", "1.1", [["Host", "h"]], body], use_bin_type=True)
    assert blob[-len(body) - 5] == 0xC6
    in_place = parse_request(blob, body_in_place=True)
    assert type(in_place.body) is memoryview
    assert _fields(in_place) == _fields(parse_request(blob))


def test_trailing_bytes_after_a_large_envelope_are_refused_either_way() -> None:
    blob = encode_request("POST", "/", [("Host", "h")], b"b" * LARGE_ENVELOPE) + b"\xc0"
    for in_place in (False, True):
        with pytest.raises(EnvelopeError, match="not msgpack"):
            parse_request(blob, body_in_place=in_place)


# -- a large envelope whose body the worker's decoder collected apart --------------------------


def _split(blob: bytes) -> SplitPayload:
    at = trailing_raw(memoryview(blob), len(blob))
    assert at is not None
    return SplitPayload(blob[:at], blob[at:])


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
def test_a_split_envelope_parses_as_the_whole_one_and_keeps_its_body(generation: Generation) -> None:
    body = os.urandom(LARGE_ENVELOPE + 3)
    headers = [("Host", "h"), ("Cookie", "a=1"), ("X-Long", "v" * 5000)]
    blob = encode_request("PUT", "/up?x=1", headers, body, generation=generation)
    split = _split(blob)
    req = parse_request(split)
    assert req.body is split.body  # the app gets the decoder's object: never copied
    assert _fields(req) == _fields(parse_request(blob))
    assert parse_request(split, body_in_place=True).body is split.body


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(["GET", "/", "1.1", [["Host", "h"]], b"x", b"b" * LARGE_ENVELOPE], id="six items"),
        pytest.param(["GET", "/", "1.1", b"b" * LARGE_ENVELOPE], id="four items"),
        pytest.param([b"b" * LARGE_ENVELOPE], id="one item"),
        pytest.param(["GET", "/", "1.1", [[1, 2]], b"b" * LARGE_ENVELOPE], id="bad header pair"),
        pytest.param(["GET", msgpack.ExtType(5, b"x"), "1.1", [], b"b" * LARGE_ENVELOPE], id="ext in head"),
    ],
)
def test_a_split_envelope_of_another_shape_fails_as_the_whole_one(items: list[object]) -> None:
    """The same request or the same error as the joined bytes give."""
    blob = packb(items)
    outcomes = []
    for chunk in (blob, _split(blob)):
        try:
            outcomes.append(_fields(parse_request(chunk)))
        except EnvelopeError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], str)
