"""Shared helpers of the service-client tests: run a scenario, make a client, check for leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from cocaine_http.protocol.states import Backoff
from cocaine_http.services import BaseService, Client

#: Fast reconnects so failure scenarios stay quick.
FAST = Backoff(initial=0.01, factor=2.0, cap=0.05, attempts=2)


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    """Run one scenario on a fresh loop; nothing may hang."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def protocol_of(gen: str) -> str:
    return "0.11" if gen == "A" else "0.12"


def make_client(cloud: Any, **kw: Any) -> Client:
    kw.setdefault("backoff", FAST)
    kw.setdefault("timeout", 5.0)
    return Client(cloud.locator_endpoint, protocol_of(cloud.gen), **kw)


def assert_no_leaks(*services: BaseService) -> None:
    """Every call is over: no session state left on any connection."""
    for svc in services:
        link = svc.link
        assert svc.pending == 0, f"{svc!r} leaked sessions: {link.proto.calls if link else None}"
        assert link is None or not link.paused


def all_services(client: Client) -> list[BaseService]:
    return [client.locator, *client._services, *client._loggers]
