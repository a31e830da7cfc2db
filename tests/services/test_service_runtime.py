"""The service clients against cocaine_http's own local runtime (PROTOCOL.md §6), both generations."""

from __future__ import annotations

import io
import os
import sys

import pytest
from helpers.waiting import until
from svc_util import FAST, all_services, assert_no_leaks, protocol_of, run

from cocaine_http.errors import ServiceError, ServiceNotFoundError
from cocaine_http.services import Client

runtime = pytest.importorskip("cocaine_http.runtime")
from cocaine_http.runtime.local import LocalRuntime  # noqa: E402
from cocaine_http.runtime.logging import Console  # noqa: E402
from cocaine_http.runtime.node import AppSpec  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "client_worker.py")


def client_for(rt: LocalRuntime, gen: str) -> Client:
    return Client(f"127.0.0.1:{rt.locator_port}", protocol_of(gen), backoff=FAST, timeout=10)


def test_storage_logging_node_against_the_local_runtime(gen: str) -> None:
    async def scenario() -> None:
        out = io.StringIO()
        async with (
            LocalRuntime(gen, locator_port=0, bind=None, console=Console(out, level="info")) as rt,
            client_for(rt, gen) as client,
        ):
            storage = await client.storage()
            values = {"bin": bytes(range(256)), "bad-utf8": b"\xff\xfe\xc3\x28", "empty": b"",
                      "nested": b"\x81\xa5slave\xa7echo.py"}
            for k, v in values.items():
                await storage.write("blobs", k, v, ["t", k])
            for k, v in values.items():
                assert await storage.read("blobs", k) == v
            assert await storage.find("blobs", ["t"]) == sorted(values)
            assert await storage.find("blobs", ["t", "bin"]) == ["bin"]
            await storage.write_object("manifests", "web", {"slave": "web.py"}, ["app"])
            assert await storage.read_object("manifests", "web") == {b"slave": b"web.py"}
            await storage.remove("blobs", "empty")
            with pytest.raises(ServiceError) as info:
                await storage.read("blobs", "empty")
            assert info.value.service == "storage" and info.value.method == "read"
            with pytest.raises(ServiceNotFoundError):
                await client.service("nosuch")
            node = await client.node()
            assert await node.list() == []
            log = client.logger("rt-test")
            log.debug("not shown")  # the runtime's verbosity is info (console level)
            log.info("hello %s", "runtime", request=7)
            log.error("bad")
            await log.flush()
            await until(lambda: "rt-test: bad" in out.getvalue(), what="the runtime printed the messages")
            text = out.getvalue()
            assert "rt-test: hello runtime" in text and "rt-test: bad" in text
            assert "not shown" not in text and log.filtered == 1
            if gen == "B":
                assert "request=7" in text
            assert_no_leaks(*all_services(client))

    run(scenario(), 30)


def test_enqueue_to_a_worker_that_is_itself_a_client(gen: str) -> None:
    async def scenario() -> None:
        out = io.StringIO()
        env = {"PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        spec = AppSpec("clientapp", [sys.executable, WORKER], cwd=ROOT, env=env)
        async with LocalRuntime(gen, locator_port=0, bind=None, console=Console(out, level="info")) as rt:
            await rt.start_app(spec, pool_size=1)
            async with client_for(rt, gen) as client:
                app = await client.app("clientapp")
                # streaming both ways
                stream = await app.enqueue("echo")
                await stream.write(b"one")
                await stream.write(b"\xff\x00")
                await stream.close()
                chunks = await stream.collect()
                if gen == "B":
                    assert chunks == [b"echo:one", b"echo:\xff\x00"]
                else:  # A takes the whole request in the enqueue call: one chunk
                    assert chunks == [b"echo:one\xff\x00"]
                # the worker resolves storage and logs through its own --locator/--protocol
                assert await app.call("store", b"\x00payload\xff") == [b"\x00payload\xff"]
                storage = await client.storage()
                assert await storage.read("fromworker", "async") == b"\x00payload\xff"
                # a sync handler in a worker thread: its SyncClient runs on the worker's loop,
                # which Worker.serve registered (the app does nothing for it)
                replies = await app.call("store_sync", b"sync!")
                assert replies == [b"sync!", b"async,sync", b"worker loop"]
                source = "app/clientapp" if gen == "A" else "clientapp"  # the default log source
                await until(lambda: f"{source}: stored 9 bytes" in out.getvalue(), what="the log line")
                assert_no_leaks(*all_services(client))

    run(scenario(), 40)
