"""The blocking facade: from a thread next to a running loop, and from plain code with no loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cocaine_peers import Cloud
from svc_util import FAST, assert_no_leaks, protocol_of

from cocaine_http.errors import CallTimeoutError, MethodNotFoundError, ServiceError
from cocaine_http.services import SyncClient, set_default_loop
from cocaine_http.services.sync import SyncProxy, SyncStream

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BackgroundCloud:
    """A Cloud served by a loop in another thread (so the test thread has no loop)."""

    def __init__(self, gen: str, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.cloud = Cloud(gen, **kw)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Cloud:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.cloud.__aenter__(), self.loop).result(5)
        return self.cloud

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.cloud.__aexit__(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def bg_cloud(gen: str) -> Iterator[Cloud]:
    with BackgroundCloud(gen) as cloud:
        yield cloud


def exercise(cocaine: SyncClient, gen: str) -> None:
    storage = cocaine.storage()
    assert isinstance(storage, SyncProxy)
    storage.write("c", "k", b"\xff\x00\xc1", ["t"])
    assert storage.read("c", "k") == b"\xff\x00\xc1"
    assert storage.find("c", ["t"]) == ["k"]
    with pytest.raises(ServiceError):
        storage.read("c", "missing")
    raw = cocaine.service("storage")
    assert raw.read("c", "k") == b"\xff\x00\xc1"
    assert raw.pending == 0
    with pytest.raises(MethodNotFoundError):
        raw.nosuch  # noqa: B018
    app = cocaine.app("echo")
    stream = app.enqueue("ping")
    assert isinstance(stream, SyncStream)
    stream.write(b"ab")
    stream.close()
    chunks = list(stream)
    if gen == "B":
        assert chunks == [b"echo:ab", b"end:ping"]
    else:
        assert b"".join(chunks) == b"ab"
    assert app.call("x", b"data") is not None
    log = cocaine.logger("sync")
    log.info("from sync code", n=1)
    cocaine.flush()


def test_sync_facade_from_plain_code_without_a_loop(bg_cloud: Cloud, gen: str) -> None:
    with SyncClient(bg_cloud.locator_endpoint, protocol_of(gen), backoff=FAST, timeout=5) as cocaine:
        assert cocaine._thread is not None  # a private loop in a daemon thread
        exercise(cocaine, gen)
        services = [cocaine.client.locator, *cocaine.client._services]
    assert_no_leaks(*services)
    # flush() put the emit on the socket; the cloud's own thread may not have read it yet
    emitted = asyncio.run_coroutine_threadsafe(bg_cloud.logging.wait_emits(1), bg_cloud_loop(bg_cloud))
    assert [e[2] for e in emitted.result(10)] == [b"from sync code" if gen == "B" else b"from sync code n=1"]
    assert not cocaine.loop.is_running()


def test_sync_facade_from_worker_threads_uses_the_running_loop(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            loop = asyncio.get_running_loop()
            set_default_loop(loop)
            try:
                def handler() -> Any:  # what a sync WSGI handler in a worker thread would do
                    cocaine = SyncClient(cloud.locator_endpoint, protocol_of(gen), backoff=FAST, timeout=5)
                    assert cocaine._thread is None and cocaine.loop is loop
                    exercise(cocaine, gen)
                    return cocaine

                cocaine = await loop.run_in_executor(None, handler)
                # concurrent threads share the loop's connections
                results = await asyncio.gather(
                    *(
                        loop.run_in_executor(None, lambda i=i: cocaine.storage().read("c", "k"))
                        for i in range(8)
                    )
                )
                assert results == [b"\xff\x00\xc1"] * 8
                # calling the facade from the loop's own thread would deadlock: refused
                with pytest.raises(RuntimeError, match="own event loop"):
                    cocaine.storage()
                await cocaine.client.close()
            finally:
                set_default_loop(None)

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_sync_timeout(bg_cloud: Cloud, gen: str) -> None:
    from cocaine_peers import SilentPeer

    silent = SilentPeer(gen)
    asyncio.run_coroutine_threadsafe(silent.start(), bg_cloud_loop(bg_cloud)).result(5)
    bg_cloud.locator.register("silent", silent, "storage")
    with SyncClient(bg_cloud.locator_endpoint, protocol_of(gen), backoff=FAST, timeout=5) as cocaine:
        svc = cocaine.service("silent")
        with pytest.raises(CallTimeoutError):
            svc.read("c", "k", timeout=0.1)
        assert svc.pending == 0
    asyncio.run_coroutine_threadsafe(silent.stop(), bg_cloud_loop(bg_cloud)).result(5)


def bg_cloud_loop(cloud: Cloud) -> asyncio.AbstractEventLoop:
    server = cloud.locator.server
    assert server is not None
    return server.get_loop()


SCRIPT = """
import sys
from cocaine_http.services import SyncClient

cocaine = SyncClient(sys.argv[1], sys.argv[2])
storage = cocaine.storage()
storage.write("scripts", "blob", b"\\x00\\xff\\xfe")
print(storage.read("scripts", "blob").hex())
print(",".join(storage.find("scripts", [])))
cocaine.logger("script").warning("bye from %s", "script")
# no close(): the atexit hook flushes the logger and stops the private loop
"""


def test_plain_script_in_a_subprocess(bg_cloud: Cloud, gen: str) -> None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), bg_cloud.locator_endpoint, protocol_of(gen)],
        capture_output=True, text=True, timeout=20, env=env, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["00fffe", ""]
    assert bg_cloud.storage.data[b"scripts"][b"blob"][0] == b"\x00\xff\xfe"
    emitted = asyncio.run_coroutine_threadsafe(bg_cloud.logging.wait_emits(1), bg_cloud_loop(bg_cloud))
    assert [e[2] for e in emitted.result(10)] == [b"bye from script"]
    assert "Traceback" not in out.stderr


def test_a_served_worker_shares_its_loop_with_sync_handlers(gen: str, tmp_path: Any) -> None:
    """Worker.serve registers its loop: a SyncClient made in a sync handler (a worker
    thread) calls through it, with no private loop thread, and the registration ends
    with the worker."""
    import uuid as uuid_mod

    from cocaine_http.aio.worker import Worker
    from cocaine_http.runtime import Engine
    from cocaine_http.services.sync import get_default_loop

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with Cloud(gen) as cloud, Engine(
            "app", [sys.executable, "-c", "pass"], generation=gen, runtime_dir=str(tmp_path), autospawn=False
        ) as engine:
            uuid = str(uuid_mod.uuid4())
            slave = engine.expect(uuid)
            worker = Worker([], app="app", endpoint=engine.endpoint, uuid=uuid,
                            protocol=1 if gen == "B" else 0, handle_signals=False)
            seen: dict[str, Any] = {}

            @worker.on("read")
            def read(request: Any, response: Any) -> None:  # a plain def: runs in a worker thread
                cocaine = SyncClient(cloud.locator_endpoint, protocol_of(gen), backoff=FAST, timeout=5)
                seen.update(thread=threading.current_thread(), private=cocaine._thread, loop=cocaine.loop)
                storage = cocaine.storage()
                storage.write("c", "k", request.read_all())
                response.write(storage.read("c", "k"))
                seen["client"] = cocaine.client

            assert get_default_loop() is None
            task = asyncio.ensure_future(worker.serve())
            await slave.wait_active(5)
            assert get_default_loop() is loop
            reply = await engine.invoke("read", [b"\x00via the worker's loop\xff"])
            assert reply.error is None and b"".join(reply.chunks) == b"\x00via the worker's loop\xff"
            assert seen["thread"] is not threading.current_thread()
            assert seen["private"] is None and seen["loop"] is loop
            await seen["client"].close()
            await engine.terminate(slave)
            assert await asyncio.wait_for(task, 5) == 0
            assert get_default_loop() is None

    asyncio.run(asyncio.wait_for(scenario(), 20))
