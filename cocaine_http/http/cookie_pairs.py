"""The Tornado proxies' cookie pairs: one ``[name, value]`` header per cookie, to drop.

Both generations of the Tornado HTTP proxy put one ``[cookie_name,
cookie_value]`` pair per cookie *before* the real headers of a request
envelope (PROTOCOL.md §5 item 8). An app would see them as headers named
after its cookies; :func:`drop_cookie_pairs` removes that leading run, and
only when each pair is a cookie of the request's ``Cookie`` header.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["drop_cookie_pairs"]


def _cookie_pairs(cookies: Sequence[bytes]) -> set[tuple[bytes, bytes]]:
    """Every ``(name, value)`` of the Cookie headers' values *cookies*, raw and unquoted."""
    out: set[tuple[bytes, bytes]] = set()
    for value in cookies:
        for part in value.split(b";"):
            name, sep, val = part.partition(b"=")
            if not sep:
                continue
            name, val = name.strip(), val.strip()
            out.add((name, val))
            if len(val) >= 2 and val[:1] == val[-1:] == b'"':
                out.add((name, val[1:-1]))
    return out


def drop_cookie_pairs(headers: list[tuple[bytes, bytes]], cookies: Sequence[bytes] | None = None) -> int:
    """Remove the Tornado proxy's leading cookie pairs in place; return how many.

    The run is dropped only when *every* pair in it equals a cookie of a
    ``Cookie`` header found later in the list, so a request that did not come
    through that proxy keeps all its headers. *cookies* are the values of
    the Cookie headers, when the caller has them at hand.
    """
    if cookies is None:
        # (the lengths first: one lower() per header costs more)
        cookies = [value for key, value in headers if len(key) == 6 and key.lower() == b"cookie"]
    if not cookies or not headers:
        return 0
    first = headers[0][0]
    for value in cookies:
        if first in value:
            break
    else:  # the first header is no cookie's name: no run (the usual request), nothing parsed
        return 0
    pairs = _cookie_pairs(cookies)
    if not pairs:
        return 0
    n = 0
    while n < len(headers) and headers[n] in pairs and headers[n][0].lower() != b"cookie":
        n += 1
    if n:
        del headers[:n]
    return n
