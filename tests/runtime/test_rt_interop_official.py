"""The official Python client (PyPI ``cocaine`` 0.12.14.5, tornado 4) against the local runtime (B).

That client predates msgpack 1.0 and Python 3.10, so before importing it the
test aliases the ``collections`` ABCs it uses and rebinds its msgpack helpers
to the options it was written for (``raw=True, strict_map_key=False`` when
reading, ``use_bin_type=False`` when writing). Nothing else is changed: it
resolves through our locator with its own graphs handling and talks to
storage and an app with its own framing.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import functools
import io
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from cocaine_http.http.envelope import encode_request
from cocaine_http.protocol.frames import Generation
from cocaine_http.runtime.local import LocalRuntime
from cocaine_http.runtime.logging import Console
from cocaine_http.runtime.node import AppSpec

pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "rt_worker.py")


def _official() -> Any:
    for name in (
        "MutableMapping",
        "Mapping",
        "MutableSet",
        "MutableSequence",
        "Sequence",
        "Callable",
        "Iterable",
        "Hashable",
        "Set",
    ):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cocaine.detail.util as util

            util.msgpack_unpacker = functools.partial(
                msgpack.Unpacker, raw=True, strict_map_key=False, use_list=True
            )
            util.msgpack_unpackb = functools.partial(msgpack.unpackb, raw=True, strict_map_key=False)
            util.msgpack_packb = functools.partial(msgpack.packb, use_bin_type=False)
            from cocaine.exceptions import ChokeEvent, ServiceError
            from cocaine.services import Service
            from tornado import gen
            from tornado.ioloop import IOLoop
    except Exception as exc:  # ImportError, or a Python the old code cannot run on
        pytest.skip(
            f"the official client (pip install 'cocaine==0.12.14.5' 'tornado<5') cannot be imported: "
            f"{type(exc).__name__}: {exc}"
        )
    return type(
        "Official",
        (),
        {
            "Service": Service,
            "ChokeEvent": ChokeEvent,
            "ServiceError": ServiceError,
            "gen": gen,
            "IOLoop": IOLoop,
        },
    )


@pytest.fixture
def runtime_port() -> Iterator[int]:
    """A B runtime with one app, on its own thread and loop (tornado 4 owns the main thread)."""
    ready = threading.Event()
    stop: dict[str, Any] = {}
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            rt = LocalRuntime(
                "0.12",
                locator_port=0,
                bind=None,
                apps=[AppSpec("web", [sys.executable, WORKER])],
                workers=1,
                console=Console(io.StringIO()),
            )
            try:
                async with rt:
                    box["port"] = rt.locator_port
                    stop["event"] = asyncio.Event()
                    stop["loop"] = asyncio.get_running_loop()
                    ready.set()
                    await stop["event"].wait()
            except BaseException as exc:
                box["error"] = exc
                ready.set()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20)
    if "error" in box:
        raise box["error"]
    try:
        yield box["port"]
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(20)
        assert not thread.is_alive()


def test_official_client_storage_and_app(runtime_port: int) -> None:
    off = _official()
    gen = off.gen
    endpoints = [["127.0.0.1", runtime_port]]
    results: dict[str, Any] = {}

    @gen.coroutine
    def drain(ch: Any) -> Any:
        out = []
        while True:
            try:
                out.append((yield ch.rx.get(timeout=10)))
            except off.ChokeEvent:
                return out

    @gen.coroutine
    def scenario() -> Any:
        storage = off.Service("storage", endpoints=endpoints)
        ch = yield storage.write("ns", "key", b"\x00\xffvalue", ["tag"])
        results["write"] = yield ch.rx.get(timeout=10)
        ch = yield storage.read("ns", "key")
        results["read"] = yield ch.rx.get(timeout=10)
        ch = yield storage.find("ns", ["tag"])
        results["find"] = yield ch.rx.get(timeout=10)
        ch = yield storage.read("ns", "missing")
        try:
            yield ch.rx.get(timeout=10)
        except off.ServiceError as exc:
            results["missing"] = exc
        app = off.Service("web", endpoints=endpoints)
        ch = yield app.enqueue("echo")
        yield ch.tx.write(b"hello ")
        yield ch.tx.write(b"world")
        yield ch.tx.close()
        results["echo"] = yield drain(ch)
        ch = yield app.enqueue("http")
        yield ch.tx.write(encode_request("GET", "/hello", [("Host", "x")], b"", generation=Generation.B))
        yield ch.tx.close()
        results["http"] = yield drain(ch)
        ch = yield app.info()
        results["info"] = yield ch.rx.get(timeout=10)
        nosuch = off.Service("nosuch", endpoints=endpoints)
        try:
            yield nosuch.connect()
        except Exception as exc:
            results["nosuch"] = exc

    off.IOLoop.current().run_sync(scenario, timeout=30)
    assert results["write"] == []
    assert results["read"] == b"\x00\xffvalue"
    assert results["find"] == [b"key"]
    assert "has not been found" in str(results["missing"])
    assert results["echo"][:2] == [b"hello ", b"world"]
    head, body = results["http"][0], results["http"][1]
    assert msgpack.unpackb(head, raw=False) == [200, [["Content-Type", "text/plain"]]]
    assert body == b"hello"
    assert results["info"][b"state"] == b"running"
    assert "not available" in str(results["nosuch"])
