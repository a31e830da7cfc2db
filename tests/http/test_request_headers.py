"""parse_request's ``fields`` and its Tornado cookie-pair drop, against a pair-by-pair reading.

``fields`` (lowercase name -> value, ``None`` when a name repeats) is made
while the pairs are read, and the cookie pairs are looked for only when the
first header's name appears in the Cookie value. Each case is parsed twice
(the second time every name has been seen, as in a running worker): both
must give what the reference reading gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from cocaine_http.http.cookie_pairs import drop_cookie_pairs
from cocaine_http.http.envelope import EnvelopeError, parse_request
from cocaine_http.protocol.wire import packb

Pairs = list[tuple[bytes, bytes]]

CASES: dict[str, Pairs] = {
    "none": [],
    "hello": [(b"Host", b"127.0.0.1"), (b"User-Agent", b"bench")],
    "browser": [
        (b"Host", b"example.com"),
        (b"Accept", b"text/html,*/*;q=0.8"),
        (b"Accept-Language", b"en-US,en;q=0.5"),
        (b"Cookie", b"session=4f1c; theme=dark"),
        (b"X-Real-IP", b"10.0.0.1"),
        (b"X-Forwarded-For", b"10.0.0.1"),
        (b"Upgrade-Insecure-Requests", b"1"),
    ],
    "repeated": [(b"Accept", b"a"), (b"X-Multi", b"1"), (b"Accept", b"b")],
    "repeated_in_another_case": [(b"Accept", b"a"), (b"accept", b"b")],
    "tornado_cookie_pairs": [
        (b"session", b"4f1c"),
        (b"theme", b"dark"),
        (b"Host", b"example.com"),
        (b"Cookie", b"session=4f1c; theme=dark"),
    ],
    "cookie_pair_quoted": [(b"sid", b"x y"), (b"Cookie", b'a=b; sid="x y"'), (b"Host", b"h")],
    "cookie_pair_named_as_a_header": [(b"host", b"1"), (b"Host", b"h"), (b"Cookie", b"host=1")],
    "cookie_pairs_and_a_repeat": [
        (b"a", b"1"),
        (b"Cookie", b"a=1"),
        (b"Cookie", b"b=2"),
        (b"Host", b"h"),
    ],
    "spaced_cookie": [(b"a", b"1"), (b"Cookie", b" a = 1 ;b=2")],
    "first_is_no_cookie": [(b"Host", b"h"), (b"a", b"1"), (b"Cookie", b"a=1")],
    "name_in_cookie_but_other_value": [(b"a", b"2"), (b"Cookie", b"a=1")],
    "cookie_first": [(b"Cookie", b"a=1"), (b"a", b"1")],
    "empty_values": [(b"X-Empty", b""), (b"Host", b"")],
    "underscore_name": [(b"X_Real_IP", b"1.2.3.4"), (b"Host", b"h")],
    "tab_and_high_bytes": [(b"X-Tab", b"a\tb"), (b"X-Latin", b"caf\xe9")],
}


def reference(pairs: Pairs) -> tuple[Pairs, int, dict[bytes, bytes] | None]:
    """Headers, cookie pairs dropped and fields, as read pair by pair."""
    headers = list(pairs)
    dropped = drop_cookie_pairs(headers)  # finds the Cookie headers itself
    lower = [name.lower() for name, _ in headers]
    fields = dict(zip(lower, (v for _, v in headers), strict=True)) if len(set(lower)) == len(lower) else None
    return headers, dropped, fields


@pytest.mark.parametrize("name", CASES)
def test_fields_and_cookie_pairs_as_the_reference_reads_them(name: str) -> None:
    pairs = CASES[name]
    blob = packb(["GET", "/", "1.1", [list(p) for p in pairs], b""])
    want_headers, want_dropped, want_fields = reference(pairs)
    for attempt in ("first", "names seen"):
        req = parse_request(blob)
        assert req.headers == want_headers, attempt
        assert all(type(p) is tuple for p in req.headers)
        assert req.dropped_cookie_pairs == want_dropped, attempt
        assert req.fields == want_fields, attempt
        if req.fields is not None:
            assert list(req.fields) == [n.lower() for n, _ in req.headers]  # the headers' order


def test_fields_with_the_cookie_pairs_kept() -> None:
    blob = packb(["GET", "/", "1.1", [list(p) for p in CASES["tornado_cookie_pairs"]], b""])
    kept = parse_request(blob, drop_cookies=False)
    assert kept.dropped_cookie_pairs == 0
    assert kept.fields is not None and list(kept.fields)[:2] == [b"session", b"theme"]


BAD: dict[str, list[Any]] = {
    "value_not_raw": [["Host", 1]],
    "value_a_list": [["Host", ["h"]]],
    "value_a_map": [["Host", {"a": "b"}]],
    "cr": [["Host", "a\rb"]],
    "lf": [["Host", "a\nInjected: 1"]],
    "nul": [["Host", "a\x00"]],
    "control_char_in_a_later_value": [["Host", "h"], ["Accept", "x\ry"]],
    "one_element": [["Host"]],
    "three_elements": [["Host", "h", "x"]],
    "a_raw_not_a_pair": ["Ho"],
    "name_a_list": [[["Host"], "h"]],
    "name_an_int": [[1, "h"]],
    "name_not_a_token": [["Bad Name", "h"]],
    "nil_pair": [None],
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_header_list_is_refused_once_its_names_are_known(name: str) -> None:
    parse_request(packb(["GET", "/", "1.1", [["Host", "h"], ["Accept", "a"]], b""]))  # names seen
    blob = packb(["GET", "/", "1.1", BAD[name], b""])
    for _ in range(2):
        with pytest.raises(EnvelopeError):
            parse_request(blob)
