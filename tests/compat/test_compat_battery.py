"""The differential battery: the same requests to gunicorn / uvicorn and to ``cocaine-http dev``.

For each app (the three examples, two apps of our own, and a site made by
``django-admin startproject`` at test time) the reference server (gunicorn
for WSGI, uvicorn for ASGI) and ``cocaine-http dev`` in both protocol
generations run on loopback, one set per app for the whole module. Each
request goes to all three over real sockets; status, headers (less
Date/Server, compared as (lower-name, value) lists grouped by name in the
order received) and body must be equal after :func:`known_differences`,
which encodes exactly the deliberate differences listed in docs/http.md
("Differences from gunicorn and uvicorn").
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from battery_servers import ROOT, Reply, Server, dev, fetch, gunicorn, uvicorn

from cocaine_http.http.envelope import PY2_HTTPLIB_CODES

COMPAT_DIR = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = ("0.11", "0.12")

#: Never compared: they name the server and the moment (the task's rule), or
#: they are the connection's framing, which each HTTP/1.1 server picks for
#: itself (keep-alive, chunked or not).
UNCOMPARED = {"date", "server", "connection", "keep-alive", "transfer-encoding"}


@dataclass
class Case:
    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: only the status is compared: the body is the server's own error page
    status_only: bool = False
    #: uvicorn (h11) refuses to send this head and drops the connection without a response;
    #: then the dev reply must be this (status, {name: value}) instead
    uvicorn_drops: tuple[int, dict[str, str]] | None = None
    #: a WebSocket handshake: the reference hands it to the app as plain HTTP (a 404 from a
    #: websocket-only route, as no WebSocket library is installed); dev refuses it with 501
    websocket: bool = False


def multipart(boundary: str = "battery0boundary") -> tuple[list[tuple[str, str]], bytes]:
    data = bytes(range(256)) * 64
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nh\xe9llo'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="tag"\r\n\r\na'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="tag"\r\n\r\nb'.encode(),
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="data.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data,
    ]
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return [("Content-Type", f"multipart/form-data; boundary={boundary}")], body


UPLOAD = bytes(range(256)) * (2 * 4096)  # 2 MiB
MP_HEADERS, MP_BODY = multipart()

EXAMPLE_CASES = {
    "hello": Case("GET", "/"),
    "get_query": Case("GET", "/items/3?q=x%20y&tag=a&tag=b"),
    "head": Case("HEAD", "/items/3?q=x"),
    "post_form": Case(
        "POST", "/form", [("Content-Type", "application/x-www-form-urlencoded")], b"a=1&a=2&b=x+y&c=%C3%A9"
    ),
    "post_json": Case(
        "POST",
        "/json",
        [("Content-Type", "application/json")],
        b'{"name": "widget", "price": 2.5, "tags": ["a"]}',
    ),
    "upload_raw": Case("POST", "/upload", [("Content-Type", "application/octet-stream")], UPLOAD),
    "upload_multipart_raw": Case("POST", "/upload", MP_HEADERS, MP_BODY),
    "unicode_path": Case("GET", "/unicode/%C3%BCn%C3%AFc%C3%B8d%C3%A9-%E2%82%AC"),
    "request_headers": Case(
        "GET", "/headers", [("Accept", "text/html"), ("X-Multi", "1"), ("Cookie", "a=b; sid=xyz")]
    ),
    # A browser's dozen, as bench/http_apps.py --headers browser sends them (run_case adds
    # X-Real-IP): the names parse_request has seen take its one-call-per-check path.
    "browser_headers": Case(
        "GET",
        "/headers",
        [
            ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
            ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Accept-Encoding", "gzip, deflate, br"),
            ("Cookie", "session=4f1c2a9e7b3d; theme=dark"),
            ("Referer", "https://example.com/"),
            ("Upgrade-Insecure-Requests", "1"),
            ("X-Request-Id", "0123456789abcdef"),
            ("X-Multi", "1"),
        ],
    ),
    "repeated_request_headers": Case(
        "GET",
        "/headers",
        [("Accept", "text/html"), ("X-Multi", "1"), ("Accept", "application/json"), ("X-Multi", "2")],
    ),
    "set_cookie": Case("GET", "/cookie"),
    "streaming": Case("GET", "/stream?n=20"),
    "no_content_204": Case("DELETE", "/items/3"),
    "not_modified_304": Case("GET", "/cached", [("If-None-Match", '"v1"')]),
    "fresh_200": Case("GET", "/cached"),
    "app_raises": Case("GET", "/boom"),
    "teapot_418": Case("GET", "/teapot"),
    "not_found": Case("GET", "/no/such/page"),
}

OWN_CASES = {
    "repeated_response_headers": Case("GET", "/repeated"),
    "spaced_values": Case(
        "GET",
        "/spaced",
        uvicorn_drops=(200, {"set-cookie": "session=abc123; HttpOnly; Path=/", "x-tabbed": "v"}),
    ),
    "nul_in_header_value": Case("GET", "/nul-header", status_only=True, uvicorn_drops=(500, {})),
    "multipart": Case("POST", "/multipart", MP_HEADERS, MP_BODY),
    "get_sized": Case("GET", "/sized"),
    "head_sized": Case("HEAD", "/sized"),
    "raises_while_streaming": Case("GET", "/raise-in-stream"),
    "unicode_path": Case("GET", "/unicode/%E6%97%A5%E6%9C%AC%20x%2Fy"),
    "websocket_route_plain_get": Case("GET", "/ws"),
    "websocket_handshake": Case(
        "GET",
        "/ws",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
        websocket=True,
    ),
}

APPS = {
    "flask": ("examples.flask_app.app:app", "wsgi", EXAMPLE_CASES),
    "flask_inline": ("examples.flask_app.app:app", "wsgi", EXAMPLE_CASES),
    "django": ("examples.django_app.mysite.wsgi:application", "wsgi", EXAMPLE_CASES),
    "fastapi": ("examples.fastapi_app.app:app", "asgi", EXAMPLE_CASES),
    "flask_own": ("batteryapps:flask_app", "wsgi", OWN_CASES),
    "fastapi_own": ("batteryapps:fastapi_app", "asgi", OWN_CASES),
    "flask_own_inline": ("batteryapps:flask_app", "wsgi", OWN_CASES),
}
#: The dev workers' own flags, per app: the ``_inline`` ones run the app on the
#: worker's loop (``--threads 0``), whose requests take the adapter's request
#: stage (aio/handlers.py) rather than a pool thread.
WORKER_ARGS: dict[str, tuple[str, ...]] = {
    "flask_inline": ("--threads", "0"),
    "flask_own_inline": ("--threads", "0"),
}
ALL_CASES = [(app, case) for app, (_t, _k, cases) in APPS.items() for case in cases]


@dataclass
class Trio:
    kind: str
    reference: Server
    dev: dict[str, Server]

    def close(self) -> None:
        for server in (self.reference, *self.dev.values()):
            server.close()


def start(target: str, kind: str, cwd: str, worker_args: tuple[str, ...] = ()) -> Trio:
    started: list[Server] = []
    try:
        started.append((gunicorn if kind == "wsgi" else uvicorn)(target, cwd))
        started += [dev(target, protocol, cwd, worker_args) for protocol in PROTOCOLS]
        for server in started:
            server.ready()
    except Exception:
        for server in started:
            server.close()
        raise
    return Trio(kind, started[0], dict(zip(PROTOCOLS, started[1:], strict=True)))


class Pool:
    """The servers of one app at a time: the cases come grouped by app, in definition order."""

    def __init__(self) -> None:
        self.app = ""
        self.trio: Trio | None = None

    def get(self, app: str) -> Trio:
        if app != self.app:
            self.close()
            target, kind, _cases = APPS[app]
            cwd = COMPAT_DIR if target.startswith("batteryapps") else ROOT
            self.trio, self.app = start(target, kind, cwd, WORKER_ARGS.get(app, ())), app
        assert self.trio is not None
        return self.trio

    def close(self) -> None:
        if self.trio is not None:
            self.trio.close()
        self.trio, self.app = None, ""


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    servers = Pool()
    yield servers
    servers.close()


# -- the deliberate differences (docs/http.md, "Differences from gunicorn and uvicorn") ---------------------


def grouped(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Grouped by name (sorted), each name's values in the order received."""
    return sorted((h for h in headers if h[0] not in UNCOMPARED), key=lambda h: h[0])


def join_repeats(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What the worker sends in B: repeated fields but Set-Cookie joined with ", " in place."""
    out: list[list[str]] = []
    index: dict[str, list[str]] = {}
    for name, value in headers:
        if name != "set-cookie" and name in index:
            index[name][1] += ", " + value
            continue
        pair = [name, value]
        out.append(pair)
        if name != "set-cookie":
            index[name] = pair
    return [(n, v) for n, v in out]


def known_differences(ref: Reply, protocol: str) -> Reply:
    """The reference's reply as ``cocaine-http dev --protocol`` deliberately gives it."""
    status, headers = ref.status, list(ref.headers)
    if protocol == "0.11":
        # the 0.11 proxy adds its own Content-Length (the worker drops the app's), and hangs on
        # status codes Python 2's httplib lacks: mapped, the original in X-Cocaine-Original-Status
        headers = [h for h in headers if h[0] != "content-length"]
        if status not in PY2_HTTPLIB_CODES:
            headers.append(("x-cocaine-original-status", str(status)))
            status = 307 if status == 308 else status // 100 * 100
    else:
        # the 0.12 Tornado proxy keeps only the last of repeated pairs: the worker joins them
        headers = join_repeats(headers)
    return Reply(status, headers, ref.body, ref.truncated)


def comparable(reply: Reply, protocol: str) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    headers = reply.headers
    if protocol == "0.11":
        headers = [h for h in headers if h[0] != "content-length"]
    return reply.status, grouped(headers), reply.body, reply.truncated


def request_headers_as_the_front_sends(case: Case, kind: str) -> Case:
    """The Tornado proxies (and the dev front) join repeated request headers with ","; an
    ASGI app then sees one header where uvicorn gives it several (WSGI servers join anyway)."""
    if kind != "asgi":
        return case
    merged: dict[str, tuple[str, list[str]]] = {}
    for k, v in case.headers:
        merged.setdefault(k.lower(), (k, []))[1].append(v)
    return Case(
        case.method, case.path, [(k, ",".join(vs)) for k, vs in merged.values()], case.body, case.status_only
    )


def run_case(app: str, servers: Trio, case: Case) -> None:
    # Every request names its peer the way the dev front does (X-Real-IP: the socket's peer),
    # so REMOTE_ADDR / scope["client"] agree with the reference servers' socket peer.
    peer = [("X-Real-IP", "127.0.0.1")]
    ref_case = request_headers_as_the_front_sends(case, servers.kind)
    if servers.kind == "asgi" and case.uvicorn_drops is not None:
        with pytest.raises(http.client.RemoteDisconnected):
            fetch(
                servers.reference.port,
                ref_case.method,
                ref_case.path,
                [*ref_case.headers, *peer],
                ref_case.body,
            )
        status, values = case.uvicorn_drops
        for protocol, server in servers.dev.items():
            got = fetch(server.port, case.method, case.path, [*case.headers, *peer], case.body)
            assert got.status == status, (protocol, got)
            assert {k: v for k, v in got.headers if k in values} == values, (protocol, got)
        return
    if case.websocket:
        ref = fetch(servers.reference.port, case.method, case.path, [*case.headers, *peer])
        assert ref.status == 404, ref
        for protocol, server in servers.dev.items():
            got = fetch(server.port, case.method, case.path, [*case.headers, *peer])
            assert got.status == 501 and b"WebSocket" in got.body, (protocol, got)
        return
    ref = fetch(
        servers.reference.port, ref_case.method, ref_case.path, [*ref_case.headers, *peer], ref_case.body
    )
    for protocol, server in servers.dev.items():
        got = fetch(server.port, case.method, case.path, [*case.headers, *peer], case.body)
        want = known_differences(ref, protocol)
        where = f"{app} {case.method} {case.path} under dev --protocol {protocol}"
        if case.status_only:
            assert got.status == want.status, where
            continue
        assert comparable(got, protocol) == comparable(want, protocol), (
            f"{where}\n reference {servers.reference.name}: {ref}\n dev: {got}"
        )


@pytest.mark.parametrize(("app", "case_name"), ALL_CASES, ids=[f"{a}-{c}" for a, c in ALL_CASES])
def test_same_reply(pool: Pool, app: str, case_name: str) -> None:
    run_case(app, pool.get(app), APPS[app][2][case_name])


# -- a site from `django-admin startproject`: the admin login flow ------------------------------------

_RANDOM = [
    (re.compile(r"(csrftoken=)[A-Za-z0-9]+"), r"\1<token>"),
    (re.compile(r"(sessionid=)[a-z0-9]+"), r"\1<session>"),
    (re.compile(r"([Ee]xpires=)[^;]+"), r"\1<date>"),
    (re.compile(r'(name="csrfmiddlewaretoken" value=")[A-Za-z0-9]+'), r"\1<token>"),
]


def masked(text: str) -> str:
    """Random tokens and dates masked (each server's session has its own)."""
    for pattern, repl in _RANDOM:
        text = pattern.sub(repl, text)
    return text


class Browser:
    """A cookie jar and the CSRF token of the last form, against one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.form_token = ""

    def go(self, method: str, path: str, form: dict[str, str] | None = None, csrf: bool = True) -> Reply:
        headers = [("X-Real-IP", "127.0.0.1")]
        if self.cookies:
            headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items())))
        body = b""
        if form is not None:
            fields = dict(form)
            if csrf:
                fields["csrfmiddlewaretoken"] = self.form_token
            body = urlencode(fields).encode()
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        reply = fetch(self.server.port, method, path, headers, body)
        for name, value in reply.headers:
            if name == "set-cookie":
                cookie, _, attrs = value.partition(";")
                key, _, val = cookie.partition("=")
                if val and "max-age=0" not in attrs.lower():
                    self.cookies[key.strip()] = val.strip()
                else:
                    self.cookies.pop(key.strip(), None)
        match = re.search(rb'name="csrfmiddlewaretoken" value="([A-Za-z0-9]+)"', reply.body)
        if match:
            self.form_token = match.group(1).decode()
        return reply


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory, pool: Pool) -> Iterator[Trio]:
    pool.close()  # the app cases are done: their servers go first
    base = tmp_path_factory.mktemp("startproject")
    python = sys.executable
    run = {"cwd": base, "check": True, "capture_output": True, "timeout": 120}
    subprocess.run([python, "-m", "django", "startproject", "battery_site", str(base)], **run)
    env = {**os.environ, "DJANGO_SUPERUSER_PASSWORD": "battery-Pass-1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # an in-process test may have set the examples' one
    subprocess.run([python, "manage.py", "migrate", "--verbosity", "0"], env=env, **run)
    subprocess.run(
        [
            python,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.invalid",
        ],
        env=env,
        **run,
    )
    servers = start("battery_site.wsgi:application", "wsgi", str(base))
    yield servers
    servers.close()


LOGIN = "/admin/login/?next=/admin/"
ADMIN_FLOW = [
    ("redirect to the login page", "GET", "/admin/", None, True),
    ("login form, csrftoken cookie", "GET", LOGIN, None, True),
    ("wrong password", "POST", LOGIN, {"username": "admin", "password": "nope", "next": "/admin/"}, True),
    ("no CSRF token: 403", "POST", LOGIN, {"username": "admin", "password": "battery-Pass-1"}, False),
    (
        "login: session and csrftoken cookies, redirect",
        "POST",
        LOGIN,
        {"username": "admin", "password": "battery-Pass-1", "next": "/admin/"},
        True,
    ),
    ("the dashboard", "GET", "/admin/", None, True),
    ("a changelist with a unicode query", "GET", "/admin/auth/user/?q=%C3%BC", None, True),
    ("HEAD of the dashboard", "HEAD", "/admin/", None, True),
    ("logout", "POST", "/admin/logout/", {}, True),
    ("logged out: redirect again", "GET", "/admin/", None, True),
]


def test_startproject_admin_login_flow(django_site: Trio) -> None:
    ref = Browser(django_site.reference)
    devs = {protocol: Browser(server) for protocol, server in django_site.dev.items()}
    for what, method, path, form, csrf in ADMIN_FLOW:
        want = ref.go(method, path, form, csrf)
        for protocol, browser in devs.items():
            got = browser.go(method, path, form, csrf)
            expected = known_differences(want, protocol)
            a, b = comparable(got, protocol), comparable(expected, protocol)
            # never_cache's Expires header is the moment, like Date
            mask = lambda r: (  # noqa: E731
                r[0],
                [(k, "<date>" if k == "expires" else masked(v)) for k, v in r[1]],
                masked(r[2].decode("utf-8")),
                r[3],
            )
            assert mask(a) == mask(b), f"{what}: {method} {path} under dev --protocol {protocol}"
    assert "sessionid" in ref.cookies or "sessionid" not in devs["0.12"].cookies  # logged out at the end
    # the login set two cookies: only the B generation warns (the 0.12 Tornado proxy keeps one)
    warning = "route /admin/login/: the response sets 2 cookies"
    assert warning in django_site.dev["0.12"].output()
    assert django_site.dev["0.12"].output().count(warning) == 1  # once per route
    assert warning not in django_site.dev["0.11"].output()
