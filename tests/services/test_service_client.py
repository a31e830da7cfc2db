"""Client, Locator, Service and BaseService against real TCP peers on loopback, both generations."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from cocaine_peers import AppPeer, Cloud, HangupPeer, LocatorPeer, SilentPeer, StoragePeer, pack
from helpers.oldspec import assert_old_spec
from helpers.waiting import until
from svc_util import FAST, all_services, assert_no_leaks, make_client, protocol_of, run

from cocaine_http.errors import (
    CallTimeoutError,
    ChannelClosedError,
    ConnectError,
    DisconnectedError,
    MethodNotFoundError,
    RemoteProtocolError,
    ServiceError,
    ServiceNotFoundError,
)
from cocaine_http.protocol.states import ServiceInput, ServiceState
from cocaine_http.services import Client, ResolveFormatError, Service, Stream

NESTED = pack({"slave": "echo.py", "environment": {"A": "1"}, "blob": b"\xc1\xd9\xff"})
VALUES = {
    "binary": bytes(range(256)),
    "invalid-utf8": b"\xff\xfe\xc3\x28\xa0\xa1",
    "nested-msgpack": NESTED,
    "empty": b"",
    "large": b"\x00\x80" * 70_000,
}


# -- resolve -------------------------------------------------------------------------------------


def test_resolve_and_request_bytes(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            client = make_client(cloud)
            r = await client.resolve("storage")
            assert r.endpoints == (cloud.storage.endpoint,)
            assert set(r.methods(client.generation)) == {"read", "write", "remove", "find"}
            # the resolve request on the wire: A8 / B7 exactly
            vector = (
                "93 00 01 91 a7 73 74 6f 72 61 67 65" if gen == "A" else "93 01 00 91 a7 73 74 6f 72 61 67 65"
            )
            assert bytes(cloud.locator.raw) == bytes.fromhex(vector)
            # the storage read request of §2.9.2 / §3.10.2, first call on the storage connection
            cloud.storage.data[b"manifests"] = {b"web": (b"M", [])}
            storage = await client.service("storage")
            assert await storage.read("manifests", "web") == b"M"
            expected = [0, 1, [b"manifests", b"web"]] if gen == "A" else [1, 0, [b"manifests", b"web"]]
            assert msgpack.unpackb(bytes(cloud.storage.raw), raw=True) == expected
            assert_old_spec(bytes(cloud.storage.raw))
            assert_no_leaks(*all_services(client))
            await client.close()

    run(scenario())


def test_unknown_service(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            with pytest.raises(ServiceNotFoundError) as info:
                await client.service("nosuch")
            exc = info.value
            assert exc.service == "nosuch" and "nosuch" in str(exc)
            assert (exc.category, exc.code) == ((None, 1) if gen == "A" else (10, 1))
            assert not client._cache
            # the locator connection survived and still answers
            assert (await client.service("storage")).connected
            assert_no_leaks(*all_services(client))

    run(scenario())


def _garbage_a(kind: str) -> Any:
    def reply(conn: Any, sid: int) -> None:
        if kind == "not-msgpack":
            conn.chunk(sid, b"\xc1\xc1", raw=True)
        elif kind == "shape":
            conn.chunk(sid, {"host": "x"})
        elif kind == "keys":
            conn.chunk(sid, [["127.0.0.1", 1], 1, {"read": 0}])
        elif kind == "frame":
            conn.writer.write(b"\x92\x01\x02")  # a 2-element frame: not a cocaine message
            return
        conn.choke(sid)

    return reply


def _garbage_b(kind: str) -> Any:
    def reply(conn: Any, ch: int) -> None:
        if kind == "not-msgpack":
            conn.value(ch, b"\xc1\xc1")
        elif kind == "shape":
            conn.value(ch, [["127.0.0.1", 1]], 1)
        elif kind == "keys":
            conn.value(ch, [["127.0.0.1", 1]], 1, {"read": ["read", {}, {}]})
        elif kind == "frame":
            conn.writer.write(b"\x93\x01\x00\xc1")

    return reply


@pytest.mark.parametrize("kind", ["not-msgpack", "shape", "keys", "frame"])
def test_locator_garbage_is_a_typed_error_naming_the_service(gen: str, kind: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            cloud.locator.canned["weird"] = (_garbage_a if gen == "A" else _garbage_b)(kind)
            async with make_client(cloud) as client:
                with pytest.raises(RemoteProtocolError) as info:
                    await client.service("weird")
                assert isinstance(info.value, ResolveFormatError), repr(info.value)
                assert "'weird'" in str(info.value) and info.value.service == "weird"
                assert_no_leaks(*all_services(client))
                # the client is still usable for well-formed services
                assert await (await client.service("storage")).call("find", "c", ["t"]) == []

    run(scenario())


def test_connect_falls_through_every_endpoint(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            dead = StoragePeer(gen)
            await dead.start()
            dead_ep = dead.endpoint
            await dead.stop()  # nothing listens there any more
            if gen == "B":
                cloud.locator.register("storage", cloud.storage, endpoints=[dead_ep, cloud.storage.endpoint])
                async with make_client(cloud) as client:
                    storage = await client.service("storage")
                    link = storage.link
                    assert link is not None and link.channel.endpoint == cloud.storage.endpoint
            # the locator list is fallen through too
            client = Client([dead_ep, cloud.locator.endpoint], protocol_of(gen), backoff=FAST, timeout=5)
            async with client:
                assert (await client.resolve("storage")).name == "storage"
                link = client.locator.link
                assert link is not None and link.channel.endpoint == cloud.locator.endpoint

    run(scenario())


def test_no_endpoint_answers_is_a_connect_error(gen: str) -> None:
    async def scenario() -> None:
        dead = LocatorPeer(gen)
        await dead.start()
        ep = dead.endpoint
        await dead.stop()
        async with Client([ep], protocol_of(gen), backoff=FAST, timeout=5) as client:
            with pytest.raises(ConnectError, match="cannot connect"):
                await client.service("storage")
            assert client.locator.state is ServiceState.ERROR

    run(scenario())


# -- storage -------------------------------------------------------------------------------------


def test_storage_round_trip_of_binary_values(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            storage = await client.storage()
            for key, value in VALUES.items():
                await storage.write("blobs", key, value, ["bin", key])
            for key, value in VALUES.items():
                got = await storage.read("blobs", key)
                assert type(got) is bytes and got == value, key
            assert await storage.read_object("blobs", "nested-msgpack") == msgpack.unpackb(NESTED, raw=True)
            await storage.write_object("manifests", "web", {"slave": "web.py"}, ["app"])
            assert cloud.storage.data[b"manifests"][b"web"][0] == pack({"slave": "web.py"})
            # find by tags: all tags must match; sorted; empty -> []
            assert await storage.find("blobs", ["bin"]) == sorted(VALUES)
            assert await storage.find("blobs", ["bin", "empty"]) == ["empty"]
            assert await storage.find("blobs", ["nope"]) == []
            await storage.remove("blobs", "empty")
            assert await storage.find("blobs", ["empty"]) == []
            with pytest.raises(ServiceError) as info:
                await storage.read("blobs", "empty")
            exc = info.value
            assert exc.service == "storage" and exc.method == "read" and "storage.read" in str(exc)
            assert (exc.category, exc.code) == ((None, 1) if gen == "A" else (0x0C, 2))
            assert "has not been found" in exc.message
            # every frame the client sent was old-spec msgpack
            assert_old_spec(bytes(cloud.storage.raw))
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_generated_methods_and_unknown_method(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            storage = await client.service("storage")
            assert {"read", "write", "remove", "find"} <= set(dir(storage))
            await storage.write("c", "k", b"v")
            assert await storage.read("c", "k") == b"v"
            assert await storage.call("read", "c", "k") == b"v"
            with pytest.raises(MethodNotFoundError):
                storage.nosuch  # noqa: B018
            with pytest.raises(AttributeError):
                storage.nosuch  # noqa: B018
            assert not hasattr(storage, "nosuch") and getattr(storage, "nosuch", None) is None
            with pytest.raises(MethodNotFoundError, match="'nosuch'"):
                await storage.call("nosuch")
            assert storage.state is ServiceState.CONNECTED
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_service_cache_and_its_drop_when_the_locator_connection_drops(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            a, b = await asyncio.gather(client.service("storage"), client.service("storage"))
            assert a is b and await client.service("storage") is a
            assert cloud.locator.resolves == ["storage"]
            # the locator restarts: cache dropped, next service() resolves again
            port = cloud.locator.port
            await cloud.locator.stop()
            await until(lambda: not client._cache, what="the cache dropped")
            await cloud.locator.start(port)
            c = await client.service("storage")
            assert c is not a and cloud.locator.resolves == ["storage", "storage"]
            # the old object keeps working on its own connection
            assert await a.call("find", "x", []) in ([], None)
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_calls_made_while_connecting_are_queued(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            cloud.storage.data[b"c"] = {b"k": (b"v", [])}
            svc = Service(
                "storage", generation=client.generation, resolver=client.locator.resolve, backoff=FAST
            )
            results = await asyncio.gather(*(svc.read("c", "k") for _ in range(50)))
            assert results == [b"v"] * 50
            assert cloud.storage.accepted == 1 and cloud.locator.resolves == ["storage"]
            ids = [f[1] if gen == "A" else f[0] for f in cloud.storage.frames]
            assert ids == list(range(1, 51))
            assert_no_leaks(svc, *all_services(client))
            svc.close()

    run(scenario())


def test_many_calls_in_flight_on_one_connection(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            storage = await client.storage()
            await asyncio.gather(*(storage.write("c", f"k{i}", bytes([i % 256]) * i) for i in range(256)))
            got = await asyncio.gather(*(storage.read("c", f"k{i}") for i in range(256)))
            assert got == [bytes([i % 256]) * i for i in range(256)]
            assert_no_leaks(*all_services(client))

    run(scenario())


@pytest.mark.parametrize("headers", ["indexed", "h0"])
def test_b_reply_headers_are_decoded(headers: str) -> None:
    async def scenario() -> None:
        async with Cloud("B", headers=headers) as cloud, make_client(cloud) as client:
            storage = await client.storage()
            await storage.write("c", "k", b"\x00v")
            assert await storage.read("c", "k") == b"\x00v"
            assert_no_leaks(*all_services(client))

    run(scenario())


# -- failures ------------------------------------------------------------------------------------


def test_timeout_on_a_silent_peer(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, SilentPeer(gen) as silent:
            cloud.locator.register("silent", silent, "storage")
            async with make_client(cloud) as client:
                svc = await client.service("silent")
                with pytest.raises(CallTimeoutError, match=r"silent\.read"):
                    await svc.read("c", "k", timeout=0.1)
                assert_no_leaks(svc)
                # the connection is still usable and ids keep increasing
                with pytest.raises(CallTimeoutError):
                    await svc.read("c", "k", timeout=0.05)
                ids = [f[1] if gen == "A" else f[0] for f in silent.frames]
                assert ids == [1, 2] and svc.connected
                assert_no_leaks(*all_services(client))

    run(scenario())


def test_deadlines_leave_nothing_behind_and_name_the_call(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, SilentPeer(gen) as silent:
            cloud.locator.register("silent", silent, "storage")
            async with make_client(cloud) as client:
                storage = await client.service("storage")
                for i in range(200):  # answered calls take their futures out of the buckets
                    await storage.write("c", str(i), b"v")
                assert storage.link is not None and storage.link.deadlines.waiting == 0
                svc = await client.service("silent")
                loop = asyncio.get_running_loop()
                start = loop.time()
                with pytest.raises(CallTimeoutError, match=r"^silent\.read: no reply within 0\.05 s$"):
                    await svc.read("c", "k", timeout=0.05)
                assert loop.time() - start >= 0.04  # not before its deadline (less one 5 ms bucket)
                with pytest.raises(CallTimeoutError, match="no reply within 0 s"):
                    await svc.read("c", "k", timeout=0)
                assert_no_leaks(svc)
                assert svc.link is not None and svc.link.deadlines.waiting == 0
                # the buckets' timers fire: nothing is kept
                link = svc.link
                await until(lambda: link.deadlines.timers == 0, what="the deadline buckets emptied")

    run(scenario())


def test_cancelling_the_awaiting_task_ends_the_session(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, SilentPeer(gen) as silent:
            cloud.locator.register("silent", silent, "storage")
            async with make_client(cloud) as client:
                svc = await client.service("silent")
                task = asyncio.ensure_future(svc.read("c", "k"))
                await until(lambda: svc.pending == 1, what="the call pending")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert_no_leaks(svc)
                assert len(silent.frames) == 1  # a unary B call has nothing to send after the request

    run(scenario())


def test_peer_closing_mid_reply_is_a_disconnect(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, HangupPeer(gen) as hang:
            cloud.locator.register("hang", hang, "storage")
            async with make_client(cloud) as client:
                svc = await client.service("hang")
                results = await asyncio.gather(
                    svc.read("c", "k"), svc.read("c", "k2"), return_exceptions=True
                )
                assert all(isinstance(r, DisconnectedError) for r in results), results
                assert "hang.read" in str(results[0])
                assert svc.state is ServiceState.ERROR
                assert_no_leaks(svc)

    run(scenario())


def test_reconnect_after_the_service_restarts(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, SilentPeer(gen) as silent, make_client(cloud) as client:
            storage = await client.service("storage")
            await storage.write("c", "k", b"v1")
            port = cloud.storage.port
            # calls in flight when a service dies fail with DisconnectedError
            cloud.locator.register("silent", silent, "storage")
            hung = await client.service("silent")
            inflight = [asyncio.ensure_future(hung.read("c", str(i))) for i in range(3)]
            await until(lambda: hung.pending == 3, what="three calls pending")
            await silent.stop()
            for fut in inflight:
                with pytest.raises(DisconnectedError, match=r"connection to .* lost"):
                    await fut
            assert_no_leaks(hung)
            await cloud.storage.stop()
            await until(lambda: storage.state is ServiceState.ERROR, what="the disconnect noticed")
            assert_no_leaks(storage)
            # while it is down: a connect error after the backoff rounds (and a re-resolve)
            with pytest.raises(ConnectError):
                await storage.read("c", "k")
            assert storage.fsm.state is ServiceState.ERROR
            # it comes back on the same port: the next call reconnects
            await cloud.storage.start(port)
            await storage.write("c", "k", b"v2")
            assert await storage.read("c", "k") == b"v2"
            assert storage.connected and cloud.storage.accepted == 2
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_backoff_grows_and_is_capped(gen: str) -> None:
    async def scenario() -> None:
        dead = LocatorPeer(gen)
        await dead.start()
        ep = dead.endpoint
        await dead.stop()
        from cocaine_http.protocol.states import Backoff

        client = Client([ep], protocol_of(gen), backoff=Backoff(initial=0.02, factor=2, cap=0.05, attempts=3))
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectError):
            await client.resolve("x")
        first = loop.time() - start  # 0 + 0.02 + 0.04
        assert first >= 0.05  # it did back off between the attempts
        start = loop.time()
        with pytest.raises(ConnectError):
            await client.resolve("x")
        second = loop.time() - start  # capped: 0.05 * 3 at most (plus connect time)
        assert second < 1.0 and client.locator._failures == 6
        await client.close()

    run(scenario())


def test_close_fails_pending_calls_and_the_service_reopens(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, SilentPeer(gen) as silent:
            cloud.locator.register("silent", silent, "storage")
            async with make_client(cloud) as client:
                svc = await client.service("silent")
                task = asyncio.ensure_future(svc.read("c", "k"))
                await until(lambda: svc.pending == 1, what="the call pending")
                svc.close()
                with pytest.raises(DisconnectedError, match="closed"):
                    await task
                assert svc.state is ServiceState.CLOSED
                storage = await client.service("storage")
                storage.close()
                assert await storage.call("find", "c", ["t"]) == []
                assert storage.connected and storage.fsm.history is None

    run(scenario())


# -- streaming -----------------------------------------------------------------------------------


def test_streaming_enqueue_with_streamed_chunks(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            app = await client.app("echo")
            stream = await app.enqueue("ping")
            await stream.write(b"abc")
            await stream.write(b"\xff\x00")
            await stream.close()
            chunks = [c async for c in stream]
            if gen == "B":
                assert chunks == [b"echo:abc", b"echo:\xff\x00", b"end:ping"]
                # the request went out as enqueue, write, write, close on one channel
                assert cloud.app.frames == [
                    [1, 0, [b"ping"]],
                    [1, 0, [b"abc"]],
                    [1, 0, [b"\xff\x00"]],
                    [1, 2, []],
                ]
            else:
                assert b"".join(chunks) == b"abc\xff\x00" and len(chunks) == 5  # streamed one by one
                assert cloud.app.frames == [[0, 1, [b"ping", b"abc\xff\x00"]]]
            # a complete request in one call
            replies = await app.call("ev", b"0123456789")
            if gen == "B":
                assert replies == [b"echo:0123456789", b"end:ev"]
            else:
                assert b"".join(replies) == b"0123456789"
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_b_stream_reads_while_writing() -> None:
    async def scenario() -> None:
        async with Cloud("B") as cloud, make_client(cloud) as client:
            svc = await client.service("echo")
            stream = await svc.enqueue("chat")
            assert isinstance(stream, Stream)
            for i in range(5):
                await stream.write(f"m{i}".encode())
                assert await stream.recv(timeout=2) == f"echo:m{i}".encode()
            await stream.close()
            assert await stream.collect() == [b"end:chat"]
            with pytest.raises(ChannelClosedError):
                await stream.write(b"late")  # nothing after our terminal message
            assert_no_leaks(*all_services(client))
            assert not cloud.app.violations

    run(scenario())


def test_stream_error_from_the_app(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            app = await client.app("echo")
            stream = await app.enqueue("fail", b"x")
            with pytest.raises(ServiceError) as info:
                await stream.collect()
            exc = info.value
            assert exc.service == "echo" and exc.method == "enqueue"
            assert (exc.category, exc.code) == ((None, 2) if gen == "A" else (42, 1))
            await app.info()  # a round trip: whatever we sent after the error has reached the app
            assert_no_leaks(*all_services(client))
            assert not cloud.app.violations

    run(scenario())


def test_abandoning_a_b_stream_ends_our_side_with_an_error() -> None:
    async def scenario() -> None:
        async with Cloud("B") as cloud, make_client(cloud) as client:
            svc = await client.service("echo")
            async with await svc.enqueue("slow") as stream:
                await stream.write(b"x")
                with pytest.raises(CallTimeoutError):
                    await stream.recv(timeout=0.05)
            assert_no_leaks(svc)
            await until(lambda: cloud.app.client_errors, what="the app told of the abandon")
            assert cloud.app.client_errors == [(1, [[13, 1], b"cancelled by the client"])]
            # cancellation of a task iterating a stream abandons it too
            stream = await svc.enqueue("slow")
            task = asyncio.ensure_future(stream.collect())
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_no_leaks(svc)
            with pytest.raises(ChannelClosedError):
                await stream.write(b"after")
            await until(lambda: len(cloud.app.client_errors) >= 2, what="the app told of the second abandon")
            assert [ch for ch, _ in cloud.app.client_errors] == [1, 2]
            assert not cloud.app.violations  # never anything after a terminal message, never a reused id

    run(scenario())


def test_stream_backpressure_pauses_reading() -> None:
    async def scenario() -> None:
        async with Cloud("B") as cloud, make_client(cloud) as client:
            svc = await client.service("echo")
            svc.stream_high_water = 4
            stream = await svc.enqueue("flood")
            for i in range(10):
                await stream.write(b"%d" % i)
            await stream.close()
            # over the mark: the connection stops reading
            await until(lambda: svc.link is not None and svc.link.paused, what="reading paused")
            items = await stream.collect()
            assert len(items) == 11 and not svc.link.paused
            assert_no_leaks(svc)

    run(scenario())


# -- definitions ---------------------------------------------------------------------------------


class StorageDefinition:
    """Override ``read``, add a helper; declare ``find`` streaming."""

    streaming = {"find"}  # noqa: RUF012 - read-only declaration, as a definition writes it

    async def read(self: Any, collection: str, key: str, **kw: Any) -> str:
        value = await self.call("read", collection, key, **kw)
        return value.decode("latin-1").upper()

    async def read_both(self: Any, key: str) -> tuple[str, str]:
        return await self.read("a", key), await self.read("b", key)


def test_definitions_override_add_helpers_declare_streaming(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            cloud.storage.data = {b"a": {b"k": (b"one", [b"t"])}, b"b": {b"k": (b"two", [])}}
            svc = await client.service("storage", StorageDefinition)
            assert isinstance(svc, Service) and isinstance(svc, StorageDefinition)
            assert await svc.read("a", "k") == "ONE"
            assert await svc.read_both("k") == ("ONE", "TWO")
            stream = await svc.find("a", ["t"])
            assert isinstance(stream, Stream) and await stream.collect() == [[b"k"]]
            plain = await client.service("storage")
            assert plain is not svc and await plain.read("a", "k") == b"one"
            # a mapping definition
            mapped = await client.service("storage", {"methods": {"shout": _shout}})
            assert await mapped.shout() == b"TWO"
            assert_no_leaks(*all_services(client))

    run(scenario())


async def _shout(self: Any) -> bytes:
    return (await self.read("b", "k")).upper()


def test_state_history_with_resolving_flag(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            svc = Service(
                "storage", generation=client.generation, resolver=client.locator.resolve, backoff=FAST
            )
            svc.fsm.history = []
            await svc.connect()
            port = cloud.storage.port
            await cloud.storage.stop()
            await until(lambda: svc.state is ServiceState.ERROR, what="the disconnect noticed")
            await cloud.storage.start(port)
            await svc.call("find", "c", [])
            svc.close()
            assert [(e, s.value, r) for e, s, r in svc.fsm.history] == [
                (ServiceInput.RESOLVE, "closed", True),
                (ServiceInput.RESOLVED, "connecting", False),
                (ServiceInput.CONNECTED, "connected", False),
                (ServiceInput.DISCONNECTED, "error", False),
                (ServiceInput.RETRY, "connecting", False),
                (ServiceInput.CONNECTED, "connected", False),
                (ServiceInput.CLOSE, "closed", False),
            ]

    run(scenario())


def test_node_helpers(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            node = await client.node()
            first = await node.start_app("web", "default")
            assert await node.list() == ["web"]
            if gen == "A":
                assert first == "the app has been started"
                assert await node.start_app("web") == "the app is already running"
                assert await node.pause_app("web") == "the app has been stopped"
            else:
                assert first is None
                with pytest.raises(ServiceError) as info:
                    await node.start_app("web")
                assert (info.value.category, info.value.code) == (0x51FF, 5)
                assert await node.pause_app("web") is None
            assert await node.list() == []
            app = await client.app("echo")
            assert (await app.info())["state"] == "running"
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_peer_saw_no_violations(gen: str) -> None:
    """A mixed workload; the B peers enforce the runtime's channel rules."""

    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            storage = await client.storage()
            app = await client.app("echo")

            async def one(i: int) -> None:
                await storage.write("c", f"k{i}", b"x")
                s = await app.enqueue(f"e{i}", b"data")
                await s.collect()

            await asyncio.gather(*(one(i) for i in range(20)))
            for peer in (cloud.storage, cloud.app, cloud.locator):
                assert not peer.violations
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_app_peer_type_reexport() -> None:
    assert AppPeer.name == "app"


def test_cancelling_one_caller_of_service_does_not_fail_the_others(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            loop = asyncio.get_running_loop()
            real = cloud.locator.on_a if gen == "A" else cloud.locator.on_b

            def slow(conn: Any, sid: int) -> None:  # answer the resolve 50 ms later
                del cloud.locator.canned["storage"]
                loop.call_later(0.05, lambda: asyncio.ensure_future(real(conn, sid, 0, [b"storage"])))

            cloud.locator.canned["storage"] = slow
            first = asyncio.ensure_future(client.service("storage"))
            second = asyncio.ensure_future(client.service("storage"))
            await until(lambda: "storage" not in cloud.locator.canned, what="the resolve at the locator")
            first.cancel()  # well before the answer: the locator holds it back 50 ms
            svc = await second
            assert first.cancelled() and svc.connected
            assert await client.service("storage") is svc
            assert_no_leaks(*all_services(client))

    run(scenario())


def test_close_while_resolving_fails_the_waiting_calls(gen: str) -> None:
    async def scenario() -> None:
        async with SilentPeer(gen) as silent:  # a locator that never answers
            client = Client([silent.endpoint], protocol_of(gen), backoff=FAST, timeout=5)
            svc = Service(
                "storage", generation=client.generation, resolver=client.locator.resolve, backoff=FAST
            )
            svc.fsm.history = []
            calls = [asyncio.ensure_future(svc.read("c", "k")) for _ in range(3)]
            await until(lambda: svc.fsm.resolving, what="resolving")
            svc.close()
            for call in calls:
                with pytest.raises(DisconnectedError, match="closed"):
                    await call
            assert svc.state is ServiceState.CLOSED and not svc.fsm.resolving
            await asyncio.sleep(FAST.cap)  # past any retry timer the backoff could have armed
            assert svc.state is ServiceState.CLOSED  # nothing reconnected behind our back
            assert_no_leaks(svc, client.locator)  # the cancelled resolve left nothing behind
            await client.close()

    run(scenario())
