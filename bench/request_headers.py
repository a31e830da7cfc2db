"""The request headers the HTTP benchmarks send: a hello client's, or a browser's behind a proxy.

wrk sends ``Host`` and nothing else, so the hello figures leave out what a
server spends per header. A browser's request through a cocaine HTTP proxy
carries a dozen (its own plus the proxy's ``X-Real-IP`` and
``X-Forwarded-For``): ``--headers browser`` sends those, the same to every
server, through wrk's ``-H`` and in the cocaine envelope alike.
"""

from __future__ import annotations

HEADER_SETS: dict[str, list[tuple[str, str]]] = {
    "hello": [("Host", "127.0.0.1"), ("User-Agent", "bench")],
    "browser": [
        ("Host", "127.0.0.1"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Connection", "keep-alive"),
        ("Cookie", "session=4f1c2a9e7b3d; theme=dark"),
        ("Referer", "https://example.com/"),
        ("Upgrade-Insecure-Requests", "1"),
        ("X-Real-IP", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Request-Id", "0123456789abcdef"),
    ],
}
