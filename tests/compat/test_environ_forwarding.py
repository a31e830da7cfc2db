"""build_environ reads the forwarding headers and Host from the environ's
values (one pass over the headers) unless one of them is repeated: either
way it must answer what :func:`forwarded` and :func:`host_and_port` answer
from the headers themselves."""

from __future__ import annotations

import pytest

from cocaine_http.compat.common import forwarded, host_and_port, lowered
from cocaine_http.compat.wsgi import build_environ
from cocaine_http.http.envelope import encode_request, parse_request

TRUSTED = (b"X-Real-IP", b"127.0.0.1")
CASES = [
    [(b"Host", b"example.org")],
    [(b"Host", b" example.org:8080 "), (b"User-Agent", b"t")],
    [(b"Host", b"[::1]:81")],
    [(b"Host", b"")],
    [],
    [TRUSTED, (b"X-Forwarded-For", b"1.2.3.4, 127.0.0.1"), (b"X-Forwarded-Proto", b"HTTPS, http")],
    [TRUSTED, (b"X-Forwarded-For", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2, ::1")],
    [TRUSTED, (b"X-Forwarded-Proto", b" https"), (b"X-Forwarded-Proto", b"http"), (b"Host", b"h:443")],
    [TRUSTED, (b"X-Forwarded-Proto", b"gopher")],
    [(b"X-Real-IP", b" 9.9.9.9:80 "), (b"X-Forwarded-For", b"1.2.3.4"), (b"X-Forwarded-Proto", b"https")],
    [(b"X-Real-IP", b""), (b"X-Real-IP", b"127.0.0.1"), (b"X-Forwarded-Proto", b"https")],
    [(b"X-Real-IP", b"10.0.0.1"), (b"X-Real-IP", b"127.0.0.1")],
    [(b"X-Forwarded-For", b" , "), (b"Host", b"a"), (b"Host", b"b:1")],
    [(b"X-Forwarded-Proto", b"https")],
    [(b"X_Real_IP", b"127.0.0.1"), (b"X-Forwarded-Proto", b"https")],
    [(b"Host", b"h:\xb2")],  # "²".isdigit() is True, int("²") raises
    [(b"Host", b"[::1]:\xb2")],
]


@pytest.mark.parametrize("headers", CASES, ids=range(len(CASES)))
def test_environ_answers_what_the_headers_say(headers: list[tuple[bytes, bytes]]) -> None:
    req = parse_request(encode_request("GET", "/", headers))
    environ = build_environ(req, None)
    pairs = lowered(req.headers)
    remote, scheme = forwarded(pairs)
    host, port = host_and_port(pairs, scheme)
    assert environ["wsgi.url_scheme"] == scheme
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (host, str(port))
    assert environ.get("REMOTE_ADDR") == remote
    assert environ.get("REMOTE_PORT") == (None if remote is None else "0")


def test_a_port_of_non_ascii_digits_is_no_port() -> None:
    """A Host whose "port" is a latin-1 superscript digit is a name with the
    scheme's default port, not a ValueError out of the adapter."""
    req = parse_request(encode_request("GET", "/", [(b"Host", b"h:\xb2")]))
    environ = build_environ(req, None)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("h:\xb2", "80")
