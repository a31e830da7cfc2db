"""Endpoint and --locator parsing (PROTOCOL.md §2.4.1, §3.4.1)."""

from __future__ import annotations

import pytest

from cocaine_http.protocol.endpoints import format_endpoint, parse_endpoint, parse_locators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/var/run/cocaine/web.4242", "/var/run/cocaine/web.4242"),
        ("./x.sock", "./x.sock"),
        ("127.0.0.1:10053", ("127.0.0.1", 10053)),
        ("node1.example.net:10053", ("node1.example.net", 10053)),
        ("[::1]:10053", ("::1", 10053)),
        ("10053", ("127.0.0.1", 10053)),
        (("h", "80"), ("h", 80)),
    ],
)
def test_parse_endpoint(text: object, expected: object) -> None:
    assert parse_endpoint(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "host:", "host:notaport", "[::1", "h:99999", ("a",)])
def test_bad_endpoints(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(bad)  # type: ignore[arg-type]


def test_locator_lists() -> None:
    assert parse_locators("127.0.0.1:10053,[::1]:10053") == [("127.0.0.1", 10053), ("::1", 10053)]
    assert parse_locators("node1", comma_list=False) == [("node1", 10053)]
    assert parse_locators("10054", comma_list=False) == [("127.0.0.1", 10054)]  # 0.10.5 bare port
    with pytest.raises(ValueError):
        parse_locators("")


def test_format_round_trip() -> None:
    for ep in [("::1", 1), ("127.0.0.1", 2), "/tmp/x.sock"]:
        assert parse_endpoint(format_endpoint(ep)) == ep


def test_relative_unix_paths() -> None:
    # A runtime configured with a relative runtime path hands out such endpoints.
    assert parse_endpoint("run/web.123") == "run/web.123"
    assert parse_endpoint("web.123", unix=True) == "web.123"
    with pytest.raises(ValueError, match="needs a '/'"):
        parse_endpoint("web.123")
