"""The local runtime's built-in services over real TCP, byte for byte where PROTOCOL.md §7 has vectors."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import msgpack
import pytest
from helpers.oldspec import assert_old_spec
from rt_helpers import RawPeer, hx, run

from cocaine_http.protocol.wire import packb
from cocaine_http.runtime.local import LocalRuntime
from cocaine_http.runtime.logging import Console

# §7 A9, A10, B8 (ports substituted where the vector's port differs from ours)
A9 = hx(
    "93 04 01 91 da 00 2c 93 92 a9 31 32 37 2e 30 2e 30 2e 31 cd 27 78 01 84 00 a4 72 65 61 64 01 a5 "
    "77 72 69 74 65 02 a6 72 65 6d 6f 76 65 03 a4 66 69 6e 64 93 06 01 90"
)
A10 = hx(
    "93 05 01 92 01 bf 73 65 72 76 69 63 65 20 6e 6f 73 75 63 68 20 69 73 20 6e 6f 74 20 61 76 61 69 "
    "6c 61 62 6c 65 93 06 01 90"
)
B8 = hx(
    "93 01 00 93 92 92 a9 31 32 37 2e 30 2e 30 2e 31 cd a8 ca 92 a3 3a 3a 31 cd a8 ca 01 84 00 93 a4 "
    "72 65 61 64 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 01 93 a5 77 72 69 74 65 "
    "80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 02 93 a6 72 65 6d 6f 76 65 80 82 00 "
    "92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80 03 93 a4 66 69 6e 64 80 82 00 92 a5 76 61 6c "
    "75 65 80 01 92 a5 65 72 72 6f 72 80"
)


def port_bytes(port: int) -> bytes:
    assert 256 <= port <= 0xFFFF
    return b"\xcd" + port.to_bytes(2, "big")


def runtime(gen: str, **kw: Any) -> LocalRuntime:
    kw.setdefault("console", Console(io.StringIO()))
    return LocalRuntime(gen, locator_port=0, bind=None, **kw)


async def resolve_a(rt: LocalRuntime, name: str) -> Any:
    peer = await RawPeer.connect(rt.locator_port)
    peer.send([0, 1, [name]])
    chunk = await peer.recv()
    assert chunk[0] == 4, chunk
    assert await peer.recv() == [6, 1, []]
    await peer.aclose()
    return msgpack.unpackb(chunk[2][0], raw=False, strict_map_key=False)


async def resolve_b(rt: LocalRuntime, name: str) -> Any:
    peer = await RawPeer.connect(rt.locator_port)
    peer.send([1, 0, [name]])
    reply = await peer.recv()
    await peer.aclose()
    assert reply[:2] == [1, 0], reply
    return reply[2]


# -- locator ---------------------------------------------------------------------------------------


def test_a9_a10_locator_bytes() -> None:
    async def main() -> None:
        async with runtime("0.11", port_range=(24100, 24200)) as rt:
            port = rt.port_of("storage")
            peer = await RawPeer.connect(rt.locator_port)
            peer.send(hx("93 00 01 91 a7 73 74 6f 72 61 67 65"))  # A8
            got = await peer.recv_bytes(len(A9))
            assert got == A9.replace(hx("cd 27 78"), port_bytes(port))
            assert_old_spec(got)
            # same connection: many requests per connection
            peer.send([0, 1, ["nosuch"]])
            assert await peer.recv_bytes(len(A10)) == A10
            peer.send([0, 2, ["locator"]])
            assert await peer.recv() == [5, 2, [1, b"service locator is not available"]]
            assert await peer.recv() == [6, 2, []]
            await peer.aclose()

    run(main())


def test_b8_locator_bytes_and_unknown() -> None:
    async def main() -> None:
        async with runtime("0.12", advertise=("127.0.0.1", "::1")) as rt:
            port = rt.port_of("storage")
            peer = await RawPeer.connect(rt.locator_port)
            peer.send(hx("93 01 00 91 a7 73 74 6f 72 61 67 65"))  # B7
            got = await peer.recv_bytes(len(B8))
            assert got == B8.replace(hx("cd a8 ca"), port_bytes(port))
            assert_old_spec(got)
            peer.send([2, 0, ["nosuch"]])
            assert await peer.recv() == [2, 1, [[10, 1], b"service is not available"]]
            peer.send([3, 0, ["locator"]])
            assert await peer.recv() == [3, 1, [[10, 1], b"service is not available"]]
            await peer.aclose()

    run(main())


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_every_service_resolves_with_its_table(gen: str) -> None:
    from cocaine_http.protocol.definitions import GRAPHS_B, TABLES_A

    async def main() -> None:
        async with runtime(gen) as rt:
            for name in ("logging", "storage", "node"):
                if gen == "0.11":
                    (host, port), version, table = await resolve_a(rt, name)
                    assert (host, version, table) == ("127.0.0.1", 1, TABLES_A[name])
                else:
                    endpoints, version, graph = await resolve_b(rt, name)
                    assert endpoints == [[b"127.0.0.1", rt.port_of(name)]]
                    assert graph == msgpack.unpackb(packb(GRAPHS_B[name]), raw=True, strict_map_key=False)
                    port = endpoints[0][1]
                assert port == rt.port_of(name)

    run(main())


def test_ports_lowest_free_first_in_start_order() -> None:
    async def main() -> None:
        async with runtime("0.11", port_range=(24300, 24310)) as rt:
            assert [rt.port_of(n) for n in ("logging", "node", "storage")] == [24300, 24301, 24302]

    run(main())


# -- storage ---------------------------------------------------------------------------------------


def test_storage_a_roundtrip_and_errors() -> None:
    async def main() -> None:
        async with runtime("0.11") as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            manifest = packb({"slave": "echo.py"})
            peer.send([1, 1, ["manifests", "echo", manifest, ["app"]]])
            assert await peer.recv() == [6, 1, []]  # void: bare choke
            peer.send([0, 2, ["manifests", "echo"]])
            # §7 A11: the stored bytes come back wrapped once more
            assert await peer.recv_bytes(25) == hx(
                "93 04 02 91 b0 af 81 a5 73 6c 61 76 65 a7 65 63 68 6f 2e 70 79 93 06 02 90"
            )
            peer.send([0, 3, ["manifests", "nope"]])
            assert await peer.recv() == [5, 3, [1, b"object 'nope' has not been found in 'manifests'"]]
            assert await peer.recv() == [6, 3, []]
            peer.send([3, 4, ["manifests", ["app"]]])
            assert await peer.recv() == [4, 4, [packb(["echo"])]]
            assert await peer.recv() == [6, 4, []]
            peer.send([3, 5, ["manifests", []]])
            assert await peer.recv() == [4, 5, [packb([])]]
            assert await peer.recv() == [6, 5, []]
            # observed wordings for protocol mistakes; the connection stays open
            peer.send([9, 6, []])
            assert await peer.recv() == [5, 6, [1, b"unknown message type"]]
            assert await peer.recv() == [6, 6, []]
            peer.send([0, 7, ["manifests"]])
            assert await peer.recv() == [
                5,
                7,
                [1, b"argument sequence length mismatch - expected at least 2, got 1"],
            ]
            assert await peer.recv() == [6, 7, []]
            peer.send([2, 8, ["manifests", "echo"]])
            assert await peer.recv() == [6, 8, []]
            peer.send([0, 9, ["manifests", "echo"]])
            assert (await peer.recv())[0] == 5
            await peer.aclose()

    run(main())


def test_storage_binary_values_kept_byte_for_byte_b() -> None:
    blob = bytes(range(256)) * 3

    async def main() -> None:
        async with runtime("0.12") as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            peer.send([1, 1, ["c", "k", blob, ["t1", "t2"]]])
            assert await peer.recv() == [1, 0, []]
            peer.send([2, 1, ["c", "j", b"x", ["t1"]]])
            assert await peer.recv() == [2, 0, []]
            peer.send([3, 0, ["c", "k"]])
            assert await peer.recv() == [3, 0, [blob]]
            peer.send([4, 3, ["c", ["t1"]]])
            assert await peer.recv() == [4, 0, [[b"j", b"k"]]]
            peer.send([5, 3, ["c", ["t1", "t2"]]])
            assert await peer.recv() == [5, 0, [[b"k"]]]
            peer.send([6, 3, ["c", ["zzz"]]])
            assert await peer.recv() == [6, 0, [[]]]
            peer.send([7, 0, ["c", "missing"]])
            assert await peer.recv() == [7, 1, [[0x0C, 2], b"object 'missing' has not been found in 'c'"]]
            await peer.aclose()

    run(main())


def test_storage_files_backend_persists(tmp_path: Any) -> None:
    async def write_then_read() -> None:
        async with runtime("0.12", storage_dir=str(tmp_path)) as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            peer.send([1, 1, ["col/with/slash", "../../etc/passwd", b"\x00bin", ["t"]]])
            assert await peer.recv() == [1, 0, []]
        async with runtime("0.12", storage_dir=str(tmp_path)) as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            peer.send([1, 0, ["col/with/slash", "../../etc/passwd"]])
            assert await peer.recv() == [1, 0, [b"\x00bin"]]
            peer.send([2, 3, ["col/with/slash", ["t"]]])
            assert await peer.recv() == [2, 0, [[b"../../etc/passwd"]]]

    run(write_then_read())
    # nothing escaped the storage directory
    assert all(str(p).startswith(str(tmp_path)) for p in tmp_path.rglob("*"))


# -- B channel rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        [1, 0, ["c", "k"]],  # channel 1 again after it was used: revoked
        [5, 9, []],  # unknown method
        [5, 0, ["c"]],  # wrong argument count
        [5, 0, [1, 2]],  # wrong argument types
    ],
)
def test_b_violations_drop_the_connection(bad: list[Any]) -> None:
    async def main() -> None:
        async with runtime("0.12") as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            peer.send([1, 1, ["c", "k", b"v"]])
            assert await peer.recv() == [1, 0, []]
            peer.send(bad)
            assert await peer.closed()
            # the service keeps serving others
            other = await RawPeer.connect(rt.port_of("storage"))
            other.send([1, 0, ["c", "k"]])
            assert await other.recv() == [1, 0, [b"v"]]
            await other.aclose()

    run(main())


@pytest.mark.parametrize("gen", ["0.11", "0.12"])
def test_malformed_frame_drops_only_that_connection(gen: str) -> None:
    async def main() -> None:
        async with runtime(gen) as rt:
            good = await RawPeer.connect(rt.port_of("storage"))
            bad = await RawPeer.connect(rt.port_of("storage"))
            bad.send(b"\xc1garbage")
            assert await bad.closed()
            bad2 = await RawPeer.connect(rt.port_of("storage"))
            bad2.send(packb([1, 2, 3, 4, 5]) if gen == "0.11" else packb({"not": "a frame"}))
            assert await bad2.closed()
            good.send([3, 1, ["c", []]] if gen == "0.11" else [1, 3, ["c", []]])
            reply = await good.recv()
            assert reply[0 if gen == "0.12" else 1] == 1
            await good.aclose()

    run(main())


def test_b_headers_are_decoded_and_optionally_sent() -> None:
    async def main() -> None:
        async with runtime("0.12", send_headers=True) as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            # an indexed header with store=true, then a reference to the dynamic entry
            peer.send([1, 1, ["c", "k", b"v"], [[True, b"x-trace", b"1"]]])
            frame = await peer.recv()
            assert frame[:3] == [1, 0, []]
            assert [h[1] for h in frame[3]] == [b"trace_id", b"span_id", b"parent_id"]
            assert all(h[0] is False and h[2] == b"\0" * 8 for h in frame[3])
            peer.send([2, 0, ["c", "k"], [83]])
            assert (await peer.recv())[:3] == [2, 0, [b"v"]]
            peer.send([3, 0, ["c", "k"], [99]])  # index not in the table: hpack error
            assert await peer.closed()

    run(main())


# -- logging ---------------------------------------------------------------------------------------


def test_logging_a_emit_chokes_and_verbosity() -> None:
    out = io.StringIO()

    async def main() -> None:
        async with runtime("0.11", console=Console(out, level="info")) as rt:
            peer = await RawPeer.connect(rt.port_of("logging"))
            peer.send([0, 1, [3, "app/echo", "hello from A"]])
            assert await peer.recv() == [6, 1, []]
            peer.send([0, 2, [4, "app/echo", "debug line hidden"]])
            assert await peer.recv() == [6, 2, []]
            peer.send([1, 3, []])
            assert await peer.recv_bytes(10) == hx("93 04 03 91 a1 03 93 06 03 90")  # info = 3 in A

    run(main())
    text = out.getvalue()
    assert "INFO" in text and "app/echo: hello from A" in text
    assert "hidden" not in text


def test_logging_b_emit_is_mute() -> None:
    out = io.StringIO()

    async def main() -> None:
        async with runtime("0.12", console=Console(out, level="debug")) as rt:
            peer = await RawPeer.connect(rt.port_of("logging"))
            peer.send([1, 0, [1, "app", "hello from B", [["user", "bob"], ["n", 3]]]])
            peer.send([2, 0, [3, "app", "an error"]])
            assert await peer.nothing(0.3)  # mute: no reply at all
            peer.send([3, 1, []])
            assert await peer.recv() == [3, 0, [0]]  # debug = 0 in B
            peer.send([4, 2, [2]])
            assert await peer.recv() == [4, 0, []]
            peer.send([5, 0, [1, "app", "info now hidden"]])
            peer.send([6, 1, []])
            assert await peer.recv() == [6, 0, [2]]

    run(main())
    text = out.getvalue()
    assert "INFO" in text and "app: hello from B  user=bob n=3" in text
    assert "ERROR" in text and "an error" in text
    assert "now hidden" not in text


def test_old_spec_everywhere_a() -> None:
    async def main() -> None:
        async with runtime("0.11") as rt:
            peer = await RawPeer.connect(rt.port_of("storage"))
            peer.send([1, 1, ["c", "k" * 40, b"v" * 40, ["t" * 40]]])
            await peer.recv()
            peer.send([3, 2, ["c", ["t" * 40]]])
            peer.writer.write(b"")
            raw = await peer.reader.read(4096)
            assert_old_spec(raw)
            assert b"\xd9" not in raw

    run(main())


def test_runtime_stops_cleanly_with_open_connections() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        rt = runtime("0.12")
        async with rt:
            peers = [await RawPeer.connect(rt.port_of("storage")) for _ in range(5)]
        for peer in peers:
            assert await peer.closed(2)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()

    run(main())
