"""Which app and event an HTTP request goes to, and the URI its worker sees (see :mod:`.front`)."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["Route", "RouteError", "route", "title_case"]

ROUTE = re.compile(rb"/([^/]*)/([^/?]*)(.*)", re.DOTALL)


def title_case(name: bytes) -> bytes:
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


class Route:
    __slots__ = ("app", "by_url", "event", "uri")

    def __init__(self, app: str, event: str, uri: bytes, by_url: bool) -> None:
        self.app, self.event, self.uri, self.by_url = app, event, uri, by_url


class RouteError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def route(
    target: bytes, headers: dict[bytes, bytes], running: Callable[[str], bool], default_app: str | None
) -> Route:
    """Pick app, event and the URI the worker sees (see the module docstring)."""
    service = headers.get(b"x-cocaine-service")
    event = headers.get(b"x-cocaine-event")
    if service and event:
        return Route(service.decode("latin-1"), event.decode("latin-1"), target, False)
    match = ROUTE.match(target)
    if match is not None:
        app = match.group(1).decode("latin-1")
        if running(app) or default_app is None:
            if not match.group(2):
                raise RouteError(404, "Invalid request")
            rest = match.group(3)
            if not rest.startswith(b"/"):
                rest = b"/" + rest
            return Route(app, match.group(2).decode("latin-1"), rest, True)
    if default_app is not None:
        return Route(default_app, "http", target, False)
    raise RouteError(404, "Invalid url")
