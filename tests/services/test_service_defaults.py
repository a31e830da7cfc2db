"""Client defaults from the worker's argv, and endpoint arguments."""

from __future__ import annotations

from cocaine_http.protocol.frames import Generation
from cocaine_http.services import Client
from cocaine_http.services.client import runtime_defaults


def test_outside_a_worker_the_defaults_are_b_and_both_loopbacks() -> None:
    d = runtime_defaults([])
    assert d.generation is Generation.B and not d.in_worker
    assert d.locators == [("127.0.0.1", 10053), ("::1", 10053)]


def test_a_worker_argv() -> None:
    d = runtime_defaults(
        ["--app", "web", "--endpoint", "/run/web.1", "--locator", "node1:10053", "--uuid", "u"]
    )
    assert d.generation is Generation.A and d.in_worker and d.app == "web"
    assert d.locators == [("node1", 10053)]


def test_b_worker_argv_with_a_comma_list_in_any_order() -> None:
    d = runtime_defaults(["--uuid", "u", "--protocol", "1", "--locator=127.0.0.1:5,[::1]:6", "--app", "x",
                          "foreign", "--threads", "2"])
    assert d.generation is Generation.B and d.locators == [("127.0.0.1", 5), ("::1", 6)]


def test_explicit_arguments_win() -> None:
    argv = ["--locator", "h:1", "--protocol", "1", "--app", "a"]
    c = Client(protocol="0.11", argv=argv)
    assert c.generation is Generation.A and c.locator.endpoints == [("127.0.0.1", 10053)]
    c = Client("10.0.0.1:7", argv=argv)
    assert c.generation is Generation.B and c.locator.endpoints == [("10.0.0.1", 7)]
    c = Client(["a:1", ("b", 2), "[::1]:3"], "0.12", argv=[])
    assert c.locator.endpoints == [("a", 1), ("b", 2), ("::1", 3)]
    c = Client(("h", 9), "0.11", argv=[])
    assert c.locator.endpoints == [("h", 9)] and c.app_name == ""
    assert Client(argv=argv).app_name == "a"


def test_methods_before_resolution_are_deferred_calls() -> None:
    from cocaine_http.services import Service

    svc = Service("storage", generation="0.12")
    read = svc.read  # not resolved yet: a call that resolves first
    assert callable(read) and read.__name__ == "read"
    assert svc.methods == {} and svc.pending == 0
