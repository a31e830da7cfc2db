"""The local runtime end to end: real worker processes, the HTTP front over httpx, apps over TCP."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from typing import Any

import httpx
import msgpack
import pytest
from helpers.waiting import until
from rt_helpers import RawPeer, alive, run, tcp

from cocaine_http.protocol.wire import packb
from cocaine_http.runtime.local import LocalRuntime
from cocaine_http.runtime.logging import Console
from cocaine_http.runtime.node import AppSpec

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "rt_worker.py")
GENS = ["0.11", "0.12"]


def spec(name: str = "web", **env: str) -> AppSpec:
    return AppSpec(name, [sys.executable, WORKER], cwd=os.path.dirname(WORKER), env=dict(env))


def runtime(
    gen: str, apps: list[Any], *, workers: int | None = 1, out: io.StringIO | None = None, **kw: Any
) -> LocalRuntime:
    kw.setdefault("bind", "127.0.0.1:0")
    return LocalRuntime(
        gen,
        locator_port=0,
        apps=apps,
        workers=workers,
        console=Console(out if out is not None else io.StringIO()),
        **kw,
    )


@pytest.mark.parametrize("gen", GENS)
def test_front_to_real_worker(gen: str) -> None:
    async def main() -> list[int]:
        async with runtime(gen, [spec()]) as rt:
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                r = await client.get("/hello")
                assert (r.status_code, r.text, r.headers["content-type"]) == (200, "hello", "text/plain")
                r = await client.get("/stream")
                assert r.text == "tick0\ntick1\ntick2\n" and r.headers["x-stream"] == "1"
                r = await client.post("/echo", content=b"\x00\xffbinary", headers={"X-Thing": "a"})
                assert r.content == b"\x00\xffbinary"
                assert r.headers["x-thing"] == "a"
                r = await client.get("/error")
                assert r.status_code == 502 and "requested failure" in r.text
                r = await client.get("/web/http/hello")  # the proxies' URL form
                assert r.text == "hello"
                r = await client.get("/nope")
                assert r.status_code == 404
            pids = [s.pid for s in rt.apps["web"].pool.slaves.values()]
            runtime_dir = rt.runtime_dir
        # clean shutdown: workers gone, runtime directory removed
        assert not os.path.exists(runtime_dir)  # noqa: ASYNC240 - checked after shutdown, nothing to block
        return pids

    for pid in run(main()):
        assert not alive(pid)


@pytest.mark.parametrize("gen", GENS)
def test_app_service_over_tcp(gen: str) -> None:
    async def main() -> None:
        async with runtime(gen, [spec()], bind=None) as rt:
            port = rt.port_of("web")
            peer = await RawPeer.connect(port)
            if gen == "0.11":
                peer.send([0, 7, ["echo", b"hello-world"]])
                assert await peer.recv() == [4, 7, [b"hello-world"]]  # verbatim, under our session id
                assert await peer.recv() == [6, 7, []]
                peer.send([0, 8, ["nosuch", b""]])
                err = await peer.recv()
                assert err[:2] == [5, 8] and b"nosuch" in err[2][1]
                assert await peer.recv() == [6, 8, []]
                peer.send([1, 9, []])
                info = msgpack.unpackb((await peer.recv())[2][0], raw=False)
                assert await peer.recv() == [6, 9, []]
            else:
                peer.send([1, 0, ["echo"]], [1, 0, [b"a"]], [1, 0, [b"b"]], [1, 2, []])
                assert await peer.recv() == [1, 0, [b"a"]]
                assert await peer.recv() == [1, 0, [b"b"]]
                assert await peer.recv() == [1, 2, []]
                peer.send([2, 1, []])
                reply = await peer.recv()
                assert reply[:2] == [2, 0]
                info = {k.decode(): v for k, v in reply[2][0].items()}
                info["queue"] = {k.decode(): v for k, v in info["queue"].items()}
            assert info["queue"]["capacity"] == 100
            assert set(info) >= {"load-median", "profile", "queue", "sessions", "slaves", "state", "pool"}
            await peer.aclose()

    run(main())


def test_a_refusals_and_tags() -> None:
    async def main() -> None:
        async with runtime("0.11", [spec()], bind=None, workers=1) as rt:
            pool = rt.apps["web"].pool
            peer = await RawPeer.connect(rt.port_of("web"))
            # a tag names the worker: with a pool of one that is taken, a new name is refused
            peer.send([0, 1, ["pid", b"", "sticky"]])
            assert await peer.recv() == [5, 1, [2, b"the pool is full"]]
            assert await peer.recv() == [6, 1, []]
            pool.pool_limit = 2
            peer.send([0, 2, ["pid", b"", "sticky"]])
            pid = int((await peer.recv())[2][0])
            assert await peer.recv() == [6, 2, []]
            assert pool.slaves["sticky"].pid == pid  # spawned with --uuid sticky
            pool.queue_limit = 0
            peer.send([0, 3, ["pid", b""]])
            assert await peer.recv() == [5, 3, [2, b"the queue is full"]]
            assert await peer.recv() == [6, 3, []]

    run(main())


def test_b_queue_full_refusal() -> None:
    async def main() -> None:
        async with runtime("0.12", [spec()], bind=None) as rt:
            rt.apps["web"].pool.queue_limit = 0
            peer = await RawPeer.connect(rt.port_of("web"))
            peer.send([1, 0, ["pid"]])
            assert await peer.recv() == [1, 1, [[0x52FF, 1], b"the queue is full"]]

    run(main())


def test_pool_shares_load_and_replaces_crashed_workers() -> None:
    async def main() -> None:
        async with runtime("0.12", [spec()], workers=2) as rt:
            pool = rt.apps["web"].pool
            await pool.wait_active(2)
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                replies = await asyncio.gather(*(client.get("/slow?s=0.3") for _ in range(4)))
                pids = {r.text for r in replies}
                assert len(pids) == 2, pids  # least-loaded dispatch used both workers
                # a crash before the head: 502; after the head: the connection is cut
                r = await client.get("/crash-before-head")
                assert r.status_code == 502
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/crash")
                await pool.wait_active(2, timeout=10)
                assert pool.policy.restarts == 2
                new = {(await client.get("/pid")).text for _ in range(4)}
                assert new and not new & pids
                assert all(
                    r.status_code == 200
                    for r in await asyncio.gather(*(client.get("/hello") for _ in range(10)))
                )
            info = rt.apps["web"].info()
            assert info["pool"]["size"] == 2 and info["pool"]["restarts"] == 2

    run(main())


@pytest.mark.parametrize("mode", ["exit", "silent", "garbage"])
def test_worker_that_never_starts_gets_a_clear_error(mode: str) -> None:
    out = io.StringIO()

    async def main() -> None:
        async with runtime(
            "0.12",
            [spec(CH_RT_MODE=mode)],
            out=out,
            profile={"startup-timeout": 0.4},
            front_options={"timeout": 20},
        ) as rt:
            rt.apps["web"].pool.policy.backoff_base = 0.05
            async with httpx.AsyncClient(base_url=rt.front_url, timeout=20) as client:
                r = await client.get("/hello")
                assert r.status_code == 502, r.text
                assert "failed to start" in r.text
            assert not rt.apps["web"].pool.queue

    run(main(), timeout=30)
    if mode == "exit":
        assert "exiting at once" in out.getvalue()  # the worker's output reaches the console


def test_garbage_mid_session_and_silent_heartbeats() -> None:
    async def main() -> None:
        quiet = spec("quiet", CH_RT_HEARTBEAT="100")
        async with runtime("0.12", [spec(), quiet], profile={"heartbeat-timeout": 0.6}) as rt:
            web, silent = rt.apps["web"].pool, rt.apps["quiet"].pool
            await web.wait_active(1)
            first = next(iter(web.slaves.values()))
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                # bytes that are not a frame: the runtime drops that worker's connection, the
                # request fails, the worker is replaced and the app keeps serving
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get("/web/http/garbage")
                await asyncio.wait_for(asyncio.shield(first.exited), 5)
                assert (await client.get("/web/http/hello")).text == "hello"
                assert web.policy.restarts == 1
                # no heartbeat within heartbeat-timeout: killed, its request fails with 502
                r = await client.get("/quiet/http/slow?s=3")
                assert r.status_code == 502 and "timed out" in r.text
                for _ in range(100):  # the kill is reaped, then the worker replaced
                    if silent.policy.restarts:
                        break
                    await asyncio.sleep(0.02)
                assert silent.policy.restarts >= 1

    run(main())


def test_flood_is_streamed_with_bounded_buffering() -> None:
    async def main() -> None:
        async with runtime("0.12", [spec()]) as rt, httpx.AsyncClient(base_url=rt.front_url) as client:
            total = 0
            async with client.stream("GET", "/flood?n=160") as r:  # 10 MiB
                async for part in r.aiter_bytes():
                    total += len(part)
                    if total < 4 << 20:
                        await asyncio.sleep(0.002)  # a slow reader at first
            assert total == 160 * 65536
            slave = next(iter(rt.apps["web"].pool.slaves.values()))
            assert slave.flow is not None and slave.flow.pauses >= 1  # the worker's socket was paused
            assert (await client.get("/hello")).text == "hello"

    run(main(), timeout=40)


def test_client_disconnect_frees_everything() -> None:
    async def main() -> None:
        async with runtime("0.12", [spec()]) as rt:
            pool = rt.apps["web"].pool
            # (1) gone while waiting for the reply: the worker finishes, its output is dropped
            reader, writer = await tcp(rt.front.port)
            writer.write(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
            await until(lambda: rt.front.requests == 1, what="the request in hand")
            writer.close()
            # (2) gone during an endless response: the stream is read and dropped
            reader, writer = await tcp(rt.front.port)
            writer.write(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            writer.close()
            # (3) gone in the middle of the request body: nothing was enqueued
            reader, writer = await tcp(rt.front.port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            await until(lambda: any(c.body_seen == 3 for c in rt.front.connections), what="the body begun")
            writer.close()
            await until(
                lambda: not rt.front.connections and sum(s.load for s in pool.slaves.values()) <= 1,
                what="the connections gone",
            )
            # only the endless session is still running in the worker
            assert sum(s.load for s in pool.slaves.values()) == 1
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                assert (await client.get("/hello")).text == "hello"

    run(main())


def test_b_caller_disconnect_tells_the_worker() -> None:
    async def main() -> None:
        async with runtime("0.12", [spec()], bind=None) as rt:
            pool = rt.apps["web"].pool
            await pool.wait_active(1)
            slave = next(iter(pool.slaves.values()))
            sent: list[bytes] = []
            send = slave.channel.send
            slave.channel.send = lambda s, data: (sent.append(bytes(data)), send(s, data))[1]
            peer = await RawPeer.connect(rt.port_of("web"))
            peer.send([1, 0, ["echo"]], [1, 0, [b"a"]])
            assert await peer.recv() == [1, 0, [b"a"]]
            assert sum(s.load for s in pool.slaves.values()) == 1
            await peer.aclose()  # gone before closing its side: the worker gets an error
            for _ in range(100):
                if sum(s.load for s in pool.slaves.values()) == 0:
                    break
                await asyncio.sleep(0.02)
            assert sum(s.load for s in pool.slaves.values()) == 0
            # the worker was told: [ch, 1, [[1, 103], "client disconnected"]] (ECONNABORTED)
            assert packb([2, 1, [[1, 103], "client disconnected"]]) in sent
            # and it keeps serving on the same connection
            other = await RawPeer.connect(rt.port_of("web"))
            other.send([1, 0, ["echo"]], [1, 0, [b"b"]], [1, 2, []])
            assert await other.recv() == [1, 0, [b"b"]]

    run(main())


def test_idle_workers_are_terminated() -> None:
    async def main() -> None:
        async with runtime("0.11", [spec()], bind=None, profile={"idle-timeout": 0.3}) as rt:
            pool = rt.apps["web"].pool
            await pool.wait_active(1)
            slave = next(iter(pool.slaves.values()))
            code = await asyncio.wait_for(asyncio.shield(slave.exited), 5)
            assert code == 0 and slave.terminate_sent == (1, "slave is idle")
            assert not [s for s in pool.slaves.values() if s.alive]
            # the next event starts a worker again
            peer = await RawPeer.connect(rt.port_of("web"))
            peer.send([0, 1, ["echo", b"again"]])
            assert await peer.recv() == [4, 1, [b"again"]]

    run(main())


def test_node_starts_apps_from_storage_and_runlist(tmp_path: Any) -> None:
    manifest = packb({"slave": WORKER})

    async def main() -> None:
        from cocaine_http.runtime.storage import FileBackend

        store = FileBackend(tmp_path)
        store.write("manifests", "stored", manifest, ["app"])
        store.write("profiles", "fast", packb({"pool-limit": 1}), ["profile"])
        store.write("runlists", "default", packb({"stored": "fast"}), [])
        async with runtime("0.11", [], workers=None, bind=None, storage_dir=tmp_path) as rt:
            assert "stored" in rt.apps and rt.apps["stored"].pool.pool_limit == 1
            node = await RawPeer.connect(rt.port_of("node"))
            node.send([2, 1, []])
            assert msgpack.unpackb((await node.recv())[2][0]) == ["stored"]
            await node.recv()
            node.send([1, 2, [["stored", "nosuch"]]])
            assert msgpack.unpackb((await node.recv())[2][0]) == {
                "stored": "the app has been stopped",
                "nosuch": "the app is not running",
            }
            await node.recv()
            node.send([0, 3, [{"stored": "fast"}]])
            assert msgpack.unpackb((await node.recv())[2][0]) == {"stored": "the app has been started"}
            await node.recv()
            node.send([0, 4, [{"ghost": "default"}]])
            status = msgpack.unpackb((await node.recv())[2][0])["ghost"]
            assert status == "object 'ghost' has not been found in 'manifests'"
            await node.recv()
            app = await RawPeer.connect(rt.port_of("stored"))
            app.send([0, 1, ["echo", b"x"]])
            assert await app.recv() == [4, 1, [b"x"]]

    run(main())


def test_node_b_methods(tmp_path: Any) -> None:
    async def main() -> None:
        async with runtime("0.12", [], workers=None, bind=None) as rt:
            rt.storage.write("manifests", "stored", packb({"slave": WORKER}), ["app"])
            node = await RawPeer.connect(rt.port_of("node"))
            node.send([1, 0, ["stored", "default"]])
            assert await node.recv() == [1, 0, []]
            node.send([2, 0, ["stored", "default"]])
            assert await node.recv() == [2, 1, [[0x51FF, 5], b"the app is already running"]]
            node.send([3, 2, []])
            assert await node.recv() == [3, 0, [[b"stored"]]]
            node.send([4, 3, ["stored"]])
            reply = await node.recv()
            assert reply[:2] == [4, 0] and reply[2][0][b"state"] == b"running"
            # enqueue through node (5): streams both ways like app.enqueue
            node.send([5, 5, ["stored", "echo"]], [5, 0, [b"via node"]], [5, 2, []])
            assert await node.recv() == [5, 0, [b"via node"]]
            assert await node.recv() == [5, 2, []]
            node.send([6, 1, ["stored"]])
            assert await node.recv() == [6, 0, []]
            node.send([7, 1, ["stored"]])
            assert await node.recv() == [7, 1, [[0x51FF, 6], b"the app is not running"]]
            node.send([8, 0, ["ghost", "default"]])
            reply = await node.recv()
            assert reply[:2] == [8, 1] and b"has not been found" in reply[2][1]

    run(main())


def test_many_idle_keepalive_connections() -> None:
    import resource

    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 256
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    async def main() -> None:
        async with runtime("0.12", [spec()]) as rt:
            conns = []
            for _ in range(n):
                conns.append(await tcp(rt.front.port))
            for _ in range(100):
                if len(rt.front.connections) == n:
                    break
                await asyncio.sleep(0.02)
            assert len(rt.front.connections) == n
            async with httpx.AsyncClient(base_url=rt.front_url) as client:
                assert (await client.get("/hello")).text == "hello"
            # a few of the idle ones are still usable
            for reader, writer in conns[:: n // 4]:
                writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await reader.readuntil(b"hello")).startswith(b"HTTP/1.1 200")
            for _, writer in conns:
                writer.close()
            for _ in range(200):
                if not rt.front.connections:
                    break
                await asyncio.sleep(0.02)
            assert not rt.front.connections

    try:
        run(main(), timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
