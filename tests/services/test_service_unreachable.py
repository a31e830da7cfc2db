"""Unreachable locators and services fail calls promptly, with ConnectError, both generations.

Real sockets only: a "dead" endpoint is a loopback port bound by a socket
that never listens, so every connect to it is refused at once (and no other
test can take the port meanwhile). The clients use their default backoff
here on purpose: that is what a Flask view gets.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from cocaine_peers import Cloud
from svc_util import protocol_of, run

from cocaine_http.errors import ConnectError
from cocaine_http.protocol.states import Backoff
from cocaine_http.services import Client, Service, SyncClient

#: Generous: a refused connect takes microseconds; the default in-call backoff sleeps 0.15 s.
PROMPT = 3.0


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port where connects are refused: bound, never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def timed_failure(
    call: Callable[[], Awaitable[object]], n: int = 5
) -> list[tuple[float, ConnectError]]:
    """Make *n* calls in a row; each must raise ConnectError. Returns (seconds, error) per call."""
    out = []
    for _ in range(n):
        start = time.monotonic()
        with pytest.raises(ConnectError) as info:
            await call()
        out.append((time.monotonic() - start, info.value))
    return out


def test_refused_locator_fails_every_call_promptly(gen: str, dead_port: int) -> None:
    async def scenario() -> None:
        async with Client(f"127.0.0.1:{dead_port}", protocol_of(gen)) as client:
            for elapsed, exc in await timed_failure(client.storage):
                assert elapsed < PROMPT, exc
                assert f"127.0.0.1:{dead_port}" in str(exc)
                assert str(exc).startswith("storage: cannot resolve through the locator: locator:")
            # the same through a service object that is not resolved yet
            svc = Service("storage", generation=client.generation, resolver=client.locator.resolve)
            for elapsed, exc in await timed_failure(lambda: svc.read("c", "k"), 3):
                assert elapsed < PROMPT, exc

    run(scenario(), 30)


def test_locator_resolving_to_a_dead_endpoint_fails_promptly(gen: str, dead_port: int) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            cloud.locator.register("storage", cloud.storage, endpoints=[("127.0.0.1", dead_port)])
            async with Client(cloud.locator_endpoint, protocol_of(gen)) as client:
                results = await timed_failure(client.storage, 6)
                for elapsed, exc in results:
                    assert elapsed < PROMPT, exc
                    assert f"127.0.0.1:{dead_port}" in str(exc) and str(exc).startswith("storage:")
                # the backoff paces the calls: the failure count survives between them, so
                # the later calls resolve and connect less and less, and at last not at all
                assert len(cloud.locator.resolves) < 6 * Backoff().attempts
                assert "not reconnecting for another" in str(results[-1][1])
                # the locator itself is fine
                assert (await client.resolve("storage")).endpoints == (("127.0.0.1", dead_port),)

    run(scenario(), 30)


def test_a_call_in_the_backoff_window_fails_at_once_naming_the_last_error(gen: str, dead_port: int) -> None:
    async def scenario() -> None:
        slow = Backoff(initial=1.0, factor=2.0, cap=5.0, attempts=3)
        async with Client(f"127.0.0.1:{dead_port}", protocol_of(gen), backoff=slow) as client:
            start = time.monotonic()
            with pytest.raises(ConnectError, match="connection refused"):
                await client.resolve("storage")
            # one round only: the next would start 1 s later, past the call's window
            assert time.monotonic() - start < 0.5 and client.locator._failures == 1
            backing_off = r"not reconnecting for another [01]\.\d+ s \(backoff after 1 failed round;"
            with pytest.raises(ConnectError, match=backing_off):
                await client.resolve("storage")
            assert time.monotonic() - start < 0.5 and client.locator._failures == 1
            with pytest.raises(ConnectError) as info:
                await client.storage()
            assert f"127.0.0.1:{dead_port}" in str(info.value)  # the last error is in the text

    run(scenario(), 30)


def test_sync_client_with_a_refused_locator(gen: str, dead_port: int) -> None:
    with SyncClient(f"127.0.0.1:{dead_port}", protocol_of(gen)) as cocaine:
        for _ in range(5):
            start = time.monotonic()
            with pytest.raises(ConnectError) as info:
                cocaine.storage().read("a", "b")
            assert time.monotonic() - start < PROMPT
            assert f"127.0.0.1:{dead_port}" in str(info.value)


def test_sync_client_with_a_dead_service_endpoint(gen: str, dead_port: int) -> None:
    from test_service_sync import BackgroundCloud

    with BackgroundCloud(gen) as cloud:
        cloud.locator.register("storage", cloud.storage, endpoints=[("127.0.0.1", dead_port)])
        with SyncClient(cloud.locator_endpoint, protocol_of(gen)) as cocaine:
            for _ in range(5):
                start = time.monotonic()
                with pytest.raises(ConnectError) as info:
                    cocaine.storage().read("a", "b")
                assert time.monotonic() - start < PROMPT
                assert f"127.0.0.1:{dead_port}" in str(info.value)
