"""``Client()``/``SyncClient()`` outside a worker take the locator from ``COCAINE_HTTP_LOCATOR``
(and the generation from ``COCAINE_HTTP_PROTOCOL``); inside a worker its argv wins."""

from __future__ import annotations

import asyncio

import pytest

from cocaine_http.errors import ConfigError
from cocaine_http.protocol.frames import Generation
from cocaine_http.services import Client
from cocaine_http.services.client import runtime_defaults
from cocaine_http.services.locator import default_locators


def test_environment_outside_a_worker() -> None:
    env = {"COCAINE_HTTP_LOCATOR": "10.0.0.1:1234,[::1]:99", "COCAINE_HTTP_PROTOCOL": "0.11"}
    got = runtime_defaults([], env)
    assert (got.generation, got.in_worker) == (Generation.A, False)
    assert [tuple(ep) for ep in got.locators] == [("10.0.0.1", 1234), ("::1", 99)]
    only_locator = runtime_defaults([], {"COCAINE_HTTP_LOCATOR": "127.0.0.1:20053"})
    assert only_locator.generation is Generation.B and only_locator.locators == [("127.0.0.1", 20053)]
    only_protocol = runtime_defaults([], {"COCAINE_HTTP_PROTOCOL": "0.11"})
    assert only_protocol.locators == list(default_locators(Generation.A))
    assert runtime_defaults([], {}).locators == list(default_locators(Generation.B))


def test_a_worker_argv_wins_over_the_environment() -> None:
    argv = ["--app", "a", "--endpoint", "/e", "--locator", "127.0.0.1:5000", "--uuid", "u"]
    got = runtime_defaults(argv, {"COCAINE_HTTP_LOCATOR": "10.0.0.1:1234"})
    assert got.in_worker and got.locators == [("127.0.0.1", 5000)] and got.generation is Generation.A


def test_client_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCAINE_HTTP_LOCATOR", "127.0.0.1:20053")
    monkeypatch.delenv("COCAINE_HTTP_PROTOCOL", raising=False)
    client = Client(argv=[])
    try:
        assert [tuple(ep) for ep in client.locator.endpoints] == [("127.0.0.1", 20053)]
    finally:
        asyncio.run(client.close())


@pytest.mark.parametrize(
    ("env", "name"),
    [({"COCAINE_HTTP_LOCATOR": "host:notaport"}, "COCAINE_HTTP_LOCATOR"),
     ({"COCAINE_HTTP_PROTOCOL": "0.9"}, "COCAINE_HTTP_PROTOCOL")],
)  # fmt: skip
def test_bad_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        runtime_defaults([], env)
