"""What the WSGI and ASGI adapters read from request headers the same way.

The cocaine proxies do not say who the client was or which host and scheme
it used; the front-end in front of them (nginx, a balancer) usually does.
As uvicorn's and gunicorn's ``--forwarded-allow-ips``, the forwarding
headers are believed only from a trusted peer (:class:`ProxyTrust`):

* the peer is ``X-Real-IP``, the address the front-end saw (the proxy's
  envelope has no field for it); without it the peer is unknown, which only
  ``*`` trusts;
* client address: a trusted peer's ``X-Forwarded-For`` is walked from the
  right, the first untrusted entry is the client (all trusted: the first);
  from an untrusted peer, or without ``X-Forwarded-For``, the peer itself;
* scheme: a trusted peer's ``X-Forwarded-Proto`` (``http`` or ``https``),
  else ``http``;
* server name and port: the ``Host`` header, the scheme's default port
  when it has none.

The helpers take header pairs with **lowercase names** (:func:`lowered`),
so a request's headers are lowercased once, not once per question.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Mapping, Sequence

from ..accesslog import AccessFormat, AccessRecord
from ..http.envelope import HttpRequest
from ..protocol.frames import Generation

__all__ = [
    "DEFAULT_FORWARDED_ALLOW_IPS",
    "TOO_LARGE",
    "ProxyTrust",
    "SetCookieWarning",
    "WebSocketRefusal",
    "access_line",
    "answered",
    "client_addr",
    "first_value",
    "forwarded",
    "forwarded_fields",
    "forwarded_values",
    "host_and_port",
    "lowered",
    "server_address",
    "server_name",
    "set_forwarded_allow_ips",
    "url_scheme",
]

Headers = Sequence[tuple[bytes, bytes]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DEFAULT_FORMAT = AccessFormat()

#: uvicorn's default for ``--forwarded-allow-ips`` (and gunicorn's, less ``::1``).
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
#: The environment variable uvicorn and gunicorn read for it.
FORWARDED_ALLOW_IPS_ENV = "FORWARDED_ALLOW_IPS"


def lowered(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in headers]


def first_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header *name* (lowercase), or ``None``."""
    for k, v in headers:
        if k == name:
            return v
    return None


def _strip_port(value: str) -> str:
    """``1.2.3.4:80`` -> ``1.2.3.4``, ``[::1]:80`` -> ``::1``; anything else unchanged."""
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if port.isdigit():
            return host
    return value


class ProxyTrust:
    """The peers whose ``X-Forwarded-For`` / ``-Proto`` are believed.

    *allow* is uvicorn's ``--forwarded-allow-ips``: a comma-separated string
    (or a list) of addresses, networks (``10.0.0.0/8``) and literals; ``*``
    trusts everyone. ``None`` reads ``FORWARDED_ALLOW_IPS`` from the
    environment, else ``127.0.0.1,::1``.
    """

    __slots__ = ("_known", "addresses", "everyone", "literals", "networks", "spec")

    #: answers remembered (a per-request cost of a dict lookup); bounded, as hosts come from clients
    KNOWN_LIMIT = 1024

    def __init__(self, allow: str | Sequence[str] | None = None) -> None:
        if allow is None:
            allow = os.environ.get(FORWARDED_ALLOW_IPS_ENV, DEFAULT_FORWARDED_ALLOW_IPS)
        raw = allow.split(",") if isinstance(allow, str) else [str(x) for x in allow]
        items = [x.strip() for x in raw if x.strip()]
        self.spec = ",".join(items)
        self.everyone = "*" in items
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for item in items:
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)
        self._known: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"ProxyTrust({self.spec!r})"

    def __contains__(self, host: str | None) -> bool:
        if self.everyone:
            return True
        if not host:
            return False
        known = self._known.get(host)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            known = host in self.literals
        else:
            known = ip in self.addresses or any(ip in net for net in self.networks)
        if len(self._known) < self.KNOWN_LIMIT:
            self._known[host] = known
        return known

    def client(self, forwarded_for: list[str]) -> str | None:
        """The client named by a trusted peer's ``X-Forwarded-For`` entries."""
        if not forwarded_for:
            return None
        if not self.everyone:
            for entry in reversed(forwarded_for):
                host = _strip_port(entry)
                if host not in self:
                    return host
        return _strip_port(forwarded_for[0])


_default: list[ProxyTrust] = []


def set_forwarded_allow_ips(allow: str | Sequence[str] | None) -> ProxyTrust:
    """Set the process-wide trust (the worker's ``--forwarded-allow-ips``)."""
    trust = ProxyTrust(allow)
    _default[:] = [trust]
    return trust


def _default_trust() -> ProxyTrust:
    return _default[0] if _default else set_forwarded_allow_ips(None)


def forwarded(headers: Headers, trust: ProxyTrust | None = None) -> tuple[str | None, str]:
    """``(client address or None, scheme)`` of a request, trusting *trust*'s peers."""
    peer: str | None = None
    proto: str | None = None
    chain: str | None = None
    for name, value in headers:
        if name[:1] != b"x":  # none of the three: the usual case
            continue
        if name == b"x-real-ip":
            if peer is None:
                peer = value.strip().decode("latin-1") or None
        elif name == b"x-forwarded-for":
            text = value.decode("latin-1")
            chain = text if chain is None else chain + "," + text
        elif name == b"x-forwarded-proto" and proto is None:
            proto = value.decode("latin-1")
    if peer is None and proto is None and chain is None:
        return None, "http"  # nothing forwarded (as forwarded_values answers, without the call)
    return forwarded_values(peer, chain, proto, trust)


def forwarded_fields(
    fields: Mapping[bytes, bytes], trust: ProxyTrust | None = None
) -> tuple[str | None, str]:
    """:func:`forwarded` for headers whose names are single (a request's ``fields``)."""
    get = fields.get
    peer, chain, proto = get(b"x-real-ip"), get(b"x-forwarded-for"), get(b"x-forwarded-proto")
    if peer is None and chain is None and proto is None:
        return None, "http"
    return forwarded_values(
        peer.decode("latin-1") if peer is not None else None,
        chain.decode("latin-1") if chain is not None else None,
        proto.decode("latin-1") if proto is not None else None,
        trust,
    )


#: What ``bytes.strip()`` strips; ``str.strip()`` would strip more (\x1c-\x1f, \x85, \xa0).
_WS = " \t\n\r\x0b\x0c"


def forwarded_values(
    real_ip: str | None, forwarded_for: str | None, proto: str | None, trust: ProxyTrust | None = None
) -> tuple[str | None, str]:
    """:func:`forwarded` from the headers' values, decoded as latin-1: the
    (one) ``X-Real-IP``, every ``X-Forwarded-For`` joined with ``,`` and
    ``X-Forwarded-Proto`` (its first value, or every one joined with ``,``)."""
    peer = (real_ip.strip(_WS) or None) if real_ip is not None else None
    chain = [p.strip() for p in forwarded_for.split(",") if p.strip()] if forwarded_for else []
    if peer is None and proto is None and not chain:
        return None, "http"  # nothing forwarded: no trust to look up (what any trust would answer)
    if peer is not None and ":" in peer:
        peer = _strip_port(peer)
    if trust is None:
        trust = _default_trust()
    if peer not in trust:
        return peer, "http"
    scheme = "http"
    if proto is not None:
        first = proto.split(",")[0].strip(_WS).lower()
        if first == "http" or first == "https":
            scheme = first
    if chain:
        return trust.client(chain), scheme
    return peer, scheme


def url_scheme(headers: Headers, trust: ProxyTrust | None = None) -> str:
    return forwarded(headers, trust)[1]


def host_and_port(headers: Headers, scheme: str = "http") -> tuple[str, int]:
    """``(name, port)`` from ``Host``; ``("localhost", default)`` without one."""
    return server_address(first_value(headers, b"host"), scheme)


def server_address(value: bytes | None, scheme: str = "http") -> tuple[str, int]:
    """``(name, port)`` from a ``Host`` value; ``("localhost", default)`` for none or a blank one."""
    return server_name(value.decode("latin-1") if value is not None else None, scheme)


def _is_port(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``"²"`` (latin-1 ``\\xb2``), which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def server_name(value: str | None, scheme: str = "http") -> tuple[str, int]:
    """:func:`server_address` of a ``Host`` value decoded as latin-1."""
    default = _DEFAULT_PORTS.get(scheme, 80)
    if value is None or not (host := value.strip(_WS)):
        return "localhost", default
    if ":" not in host:
        return host, default  # the usual case: a name without a port
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            name, rest = host[: end + 1], host[end + 1 :]
            port = rest[1:] if rest.startswith(":") else ""
            return name, int(port) if _is_port(port) else default
        return host, default
    name, sep, port = host.rpartition(":")
    if sep and _is_port(port) and ":" not in name:
        return name, int(port)
    return host, default


def client_addr(headers: Headers, trust: ProxyTrust | None = None) -> str | None:
    return forwarded(headers, trust)[0]


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


class SetCookieWarning:
    """Say, once per route, that a B response carries several ``Set-Cookie``.

    The 0.12 Tornado proxy builds its header map pair by pair, so only the
    last ``Set-Cookie`` reaches the client (PROTOCOL.md §3.9), and cookies
    cannot be joined into one line. The worker still sends them all (the
    Rust proxy and ``cocaine-http dev`` keep them). At most *limit* routes are
    remembered, so a client inventing paths cannot grow the set.
    """

    __slots__ = ("_full", "_lock", "_log", "_seen", "active", "app_name", "limit")

    def __init__(
        self, generation: Generation, app_name: str, logger: logging.Logger, limit: int = 256
    ) -> None:
        self.active = generation is Generation.B
        self.app_name = app_name or "?"
        self.limit = limit
        self._log = logger
        self._seen: set[str] = set()
        self._full = False
        self._lock = threading.Lock()

    def check(self, pairs: Sequence[Sequence[bytes]] | None, req: HttpRequest) -> None:
        if not self.active or not pairs or len(pairs) < 2:
            return
        n = 0
        for name, _ in pairs:
            if len(name) == 10 and name.lower() == b"set-cookie":
                n += 1
        if n < 2:
            return
        route = req.path.decode("latin-1")
        with self._lock:
            if self._full or route in self._seen:
                return
            if len(self._seen) >= self.limit:
                self._full = True
                route += f" (and no further routes: {self.limit} were warned about)"
            else:
                self._seen.add(route)
        self._log.warning(
            "app %s, route %s: the response sets %d cookies (Set-Cookie); the 0.12 Tornado proxy "
            "passes only the last one to the client, as it keeps one value per header name "
            "(docs/http.md, Repeated headers). Warned once per route.",
            self.app_name,
            route,
            n,
        )


class WebSocketRefusal:
    """Refuse WebSocket handshakes: Cocaine's HTTP proxies do not carry them.

    Neither the Tornado proxies (A, B) nor the Rust proxy can switch a
    connection to another protocol, so an app's WebSocket route could only
    answer a misleading 404 to an ``http`` scope. The adapters never call the
    app for such a request; they answer :attr:`status` with :attr:`message`
    and log it once per handler (the next ones at debug level).
    """

    status = 501
    message = (
        "WebSocket is not supported here: Cocaine's HTTP proxies do not carry WebSocket "
        "connections (docs/http.md, WebSockets)"
    )

    __slots__ = ("_log", "_logged", "app_name")

    def __init__(self, app_name: str, logger: logging.Logger) -> None:
        self.app_name = app_name or "?"
        self._log = logger
        self._logged = False

    def refuse(self, req: HttpRequest) -> bool:
        """Whether *req* asks for a WebSocket upgrade (then it was logged)."""
        fields = req.fields
        if fields is not None:
            upgrade = fields.get(b"upgrade")
            if upgrade is None or b"websocket" not in upgrade.lower():
                return False
        else:
            for name, value in req.headers:
                if len(name) == 7 and name.lower() == b"upgrade" and b"websocket" in value.lower():
                    break
            else:
                return False
        level = logging.DEBUG if self._logged else logging.WARNING
        self._logged = True
        self._log.log(
            level,
            "app %s: %s asks for a WebSocket upgrade; refused with %d, as Cocaine's HTTP proxies "
            "do not carry WebSockets (logged once)",
            self.app_name,
            req.request_line,
            self.status,
        )
        return True


async def answered() -> None:
    """What is left to run of a request its request stage already answered
    (a bad envelope, a WebSocket handshake): nothing (aio/handlers.py)."""


#: The body of the 413 answered for a request frame over the worker's
#: ``max_frame_size`` (skipped by the decoder: see Sessions._oversize).
TOO_LARGE = "Request Entity Too Large: request body too large"
