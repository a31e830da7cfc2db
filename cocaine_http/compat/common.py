"""What the WSGI and ASGI adapters read from request headers the same way.

The cocaine proxies do not say who the client was or which host and scheme
it used; the front-end in front of them (nginx, a balancer) usually does:

* client address: ``X-Real-IP``, else the *last* ``X-Forwarded-For`` entry
  (the one the nearest proxy appended; the first entry is whatever the
  client claimed). Both are only as trustworthy as the front-end that sets
  them: it should overwrite, not append to, what clients send;
* scheme: ``X-Forwarded-Proto`` (``http`` or ``https``), else ``http``;
* server name and port: the ``Host`` header, the scheme's default port
  when it has none.

The helpers take header pairs with **lowercase names** (:func:`lowered`),
so a request's headers are lowercased once, not once per question.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..accesslog import AccessFormat, AccessRecord
from ..http.envelope import HttpRequest

__all__ = ["access_line", "client_addr", "host_and_port", "lowered", "url_scheme"]

Headers = Sequence[tuple[bytes, bytes]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_FORMAT = AccessFormat()


def lowered(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in headers]


def _values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for k, v in headers if k == name]


def url_scheme(headers: Headers, default: str = "http") -> str:
    for value in _values(headers, b"x-forwarded-proto"):
        scheme = value.split(b",")[0].strip().lower()
        if scheme in (b"http", b"https"):
            return scheme.decode()
    return default


def host_and_port(headers: Headers, scheme: str = "http") -> tuple[str, int]:
    """``(name, port)`` from ``Host``; ``("localhost", default)`` without one."""
    default = _DEFAULT_PORTS.get(scheme, 80)
    values = _values(headers, b"host")
    if not values or not values[0].strip():
        return "localhost", default
    host = values[0].strip().decode("latin-1")
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            name, rest = host[: end + 1], host[end + 1 :]
            port = rest[1:] if rest.startswith(":") else ""
            return name, int(port) if port.isdigit() else default
        return host, default
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, default


def client_addr(headers: Headers) -> str | None:
    for value in _values(headers, b"x-real-ip"):
        ip = value.strip()
        if ip:
            return ip.decode("latin-1")
    chain: list[bytes] = []
    for value in _values(headers, b"x-forwarded-for"):
        chain.extend(part.strip() for part in value.split(b",") if part.strip())
    if chain:
        return chain[-1].decode("latin-1")
    return None


def access_line(
    req: HttpRequest, status: int, nbytes: int, seconds: float, fmt: AccessFormat | None = None
) -> str:
    """The request's access line in *fmt* (gunicorn's atoms, :mod:`cocaine_http.accesslog`;
    default: gunicorn's default format)."""
    headers = lowered(req.headers)
    record = AccessRecord(
        req.method, req.uri, req.version, headers, status, nbytes, seconds, client=client_addr(headers)
    )
    return (fmt or _DEFAULT_FORMAT).line(record)
