"""The local runtime's B gaps (issue #16), against a real worker: the
per-invocation request timeout, a caller's headers forwarded to the worker,
and both ends forgetting a session the worker ended first."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import msgpack
from worker_helpers import COMMAND, make_engine, run

from cocaine_http.runtime import LocalRuntime
from cocaine_http.runtime.node import AppSpec

TIMED_OUT = (0x51FF, 3)


def ms(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_request_timeout_header_fails_both_sides(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir) as engine:
            [slave] = await engine.start(1)
            inv = await engine.open("echo", headers=[(b"request_timeout", ms(300))])
            await inv.write(b"a")  # and the request never ends
            reply = await inv.reply(5)
            assert reply.error == (TIMED_OUT, "the request timed out after 0.3 s")
            assert reply.data == b"a" and slave.load == 0
            assert inv.session not in slave.side.sessions
            # the worker got the error too: it no longer tracks the channel
            assert (await engine.invoke("open_sessions", [])).data == b"1"
            ok = await engine.invoke("echo", [b"still serving"])
            assert ok.data == b"still serving" and ok.error is None

    run(body())


def test_profile_request_timeout_and_the_header_wins(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir, request_timeout=0.3) as engine:
            await engine.start(1)
            silent = await engine.open("echo")
            assert (await silent.reply(5)).error == (TIMED_OUT, "the request timed out after 0.3 s")
            longer = await engine.open("slow", headers=[(b"request_timeout", ms(5000))])
            await longer.write(b"0.6")
            await longer.close()
            reply = await longer.reply(10)
            assert reply.error is None and reply.data == b"done after 0.6"

    run(body())


def test_a_has_no_request_timeout(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("A", runtime_dir, request_timeout=0.2) as engine:
            await engine.start(1)
            reply = await engine.invoke("slow", [b"0.5"])
            assert reply.error is None and reply.data == b"done after 0.5"

    run(body())


def test_caller_headers_reach_the_worker(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir) as engine:  # indexed tracing, as 0.12.3
            await engine.start(1)
            inv = await engine.open("describe", headers=[(b"x-user", b"bob"), (b"authorization", b"t")])
            await inv.close()
            info = json.loads((await inv.reply(5)).data)
            zero = "00" * 8
            assert info["headers"] == [
                ["trace_id", zero],
                ["span_id", zero],
                ["parent_id", zero],
                ["x-user", b"bob".hex()],
                ["authorization", b"t".hex()],
            ]
            # a caller's own tracing replaces the runtime's
            trace = [(b"trace_id", ms(7)), (b"span_id", ms(8)), (b"parent_id", ms(0))]
            inv = await engine.open("describe", headers=trace)
            await inv.close()
            info = json.loads((await inv.reply(5)).data)
            assert info["headers"] == [[k.decode(), v.hex()] for k, v in trace]

    run(body())


def test_worker_ending_first_is_forgotten_on_both_ends(gen: str, runtime_dir: str) -> None:
    """The worker answers without reading a request that never ends (or fails
    it): the runtime closes its side, and neither end keeps the session."""

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            for event in ["early", "early_error"] * 5:
                inv = await engine.open(event)
                await inv.write(b"unread")
                reply = await inv.reply(5)
                assert (reply.data, reply.error) in [
                    (b"early", None),
                    (b"", (7, "refused early")),
                    (b"", ((42, 7), "refused early")),
                ], reply
                assert inv.session not in slave.side.sessions
            assert slave.side.sessions == {} and slave.load == 0
            left = await engine.invoke("open_sessions", [])
            assert left.data == b"1"  # only the one asking
            assert not any("dropped a message" in line for line in slave.lines()), slave.lines()

    run(body())


def test_app_service_forwards_a_b_callers_headers(runtime_dir: str) -> None:
    """Through the real app service, from a raw socket speaking B."""

    async def body() -> None:
        spec = AppSpec(name="echo", argv=list(COMMAND), cwd=os.path.dirname(COMMAND[-1]))
        async with LocalRuntime("0.12", locator_port=0, bind=None, apps=[spec], workers=1) as rt:
            port = rt.port_of("echo")
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            pack = msgpack.Packer(use_bin_type=False).pack
            await loop.sock_sendall(
                sock,
                pack([1, 0, ["describe"], [[False, "x-user", "bob"]]])
                + pack([1, 0, [b"body"]])
                + pack([1, 2, []]),
            )
            unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
            frames = []
            while not frames or frames[-1][1] != 2:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
                assert data, frames
                unpacker.feed(data)
                frames.extend(unpacker)
            sock.close()
            info = json.loads(frames[0][2][0])
            assert ["x-user", b"bob".hex()] in info["headers"] and info["body"] == "body"

    run(body())


def test_stopping_an_app_lets_its_callers_get_what_is_in_flight(gen: str, runtime_dir: str) -> None:
    """node.pause_app / runtime stop: the app service used to close its callers'
    connections before the workers had drained, losing every reply in flight."""

    async def body() -> None:
        spec = AppSpec(name="echo", argv=list(COMMAND), cwd=os.path.dirname(COMMAND[-1]))
        async with LocalRuntime(gen, locator_port=0, bind=None, apps=[spec], workers=1) as rt:
            port = rt.port_of("echo")
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            pack = msgpack.Packer(use_bin_type=False).pack
            if gen == "A":  # enqueue(event, data) on session 1; replies chunk 4 / choke 6
                request, chunk, end = pack([0, 1, ["progress", b"1.0"]]), 4, 6
            else:  # enqueue(event), write, close on channel 1; replies write 0 / close 2
                request, chunk, end = (
                    pack([1, 0, ["progress"]]) + pack([1, 0, [b"1.0"]]) + pack([1, 2, []]),
                    0,
                    2,
                )
            await loop.sock_sendall(sock, request)
            unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
            frames: list = []
            stopping = None

            def kind(frame: list) -> int:
                return frame[0] if gen == "A" else frame[1]

            while not frames or kind(frames[-1]) != end:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
                assert data, f"connection closed after {frames}"
                unpacker.feed(data)
                frames.extend(unpacker)
                if stopping is None and frames:  # the worker holds the event: stop the app now
                    stopping = asyncio.ensure_future(rt.stop_app("echo"))
            assert [f[2] for f in frames if kind(f) == chunk] == [[b"started"], [b"done"]]
            assert stopping is not None and await stopping is True
            assert await loop.sock_recv(sock, 65536) == b""  # then the connection closes
            sock.close()

    run(body())
