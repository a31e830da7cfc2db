"""The worker's bytes on the wire, checked against PROTOCOL.md §7 with a raw socket as the runtime."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from worker_helpers import WORKER, run

from cocaine_http.protocol.wire import packb

UUID = "8f0a6d4e-1c2b-4a55-9e0e-2f2b8e3f6a11"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("\n", " "))


A1 = h(
    "93 00 00 91 da 00 24 38 66 30 61 36 64 34 65 2d 31 63 32 62 2d 34 61 35 35 2d 39 65 30 65 2d 32 66 32 62"
    " 38 65 33 66 36 61 31 31"
)
B1 = h(
    "93 01 00 91 da 00 24 38 66 30 61 36 64 34 65 2d 31 63 32 62 2d 34 61 35 35 2d 39 65 30 65 2d 32 66 32 62"
    " 38 65 33 66 36 61 31 31"
)
A2 = h("93 01 00 90")
A4 = h("93 04 11 91 a5 00 80 c4 d9 ff")
A5 = h("93 06 11 90")
A6 = h(
    "93 05 11 92 d0 9c da 00 24 74 68 65 72 65 20 69 73 20 6e 6f 20 68 61 6e 64 6c 65 72 20 66 6f 72 20 65 76"
    " 65 6e 74 20 6e 6f 73 75 63 68"
)
A7 = h("93 02 00 92 01 ad 73 6c 61 76 65 20 69 73 20 69 64 6c 65")
B3 = h(
    "94 02 00 91 a4 68 74 74 70 93 cf 00 00 00 00 00 00 00 50 cf 00 00 00 00 00 00 00 51 cf 00 00 00 00 00 00"
    " 00 52"
)
H_INDEXED = B3[9:]
B6 = h("93 01 01 92 0d ad 73 6c 61 76 65 20 69 73 20 69 64 6c 65")


async def raw_runtime(gen: str, runtime_dir: str, script) -> int:
    """Listen like the runtime, start the worker with its exact argv, run *script*, return the exit code."""
    endpoint = os.path.join(runtime_dir, f"app.{os.getpid()}")
    accepted: asyncio.Queue = asyncio.Queue()
    server = await asyncio.start_unix_server(lambda r, w: accepted.put_nowait((r, w)), endpoint)
    argv = ["--app", "app", "--endpoint", endpoint, "--locator", "127.0.0.1:10053"]
    if gen == "B":
        argv += ["--protocol", "1"]
    argv += ["--uuid", UUID]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        WORKER,
        *argv,
        env={**os.environ, "CH_TEST_HEARTBEAT": "60"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        reader, writer = await asyncio.wait_for(accepted.get(), 10)
        await script(reader, writer, proc)
        code = await asyncio.wait_for(proc.wait(), 5)
        stderr = await proc.stderr.read()
        assert b"Traceback" not in stderr, stderr.decode()
        writer.close()
        return code
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()


async def expect(reader: asyncio.StreamReader, data: bytes) -> None:
    got = await asyncio.wait_for(reader.readexactly(len(data)), 5)
    assert got.hex(" ") == data.hex(" ")


def test_a_first_bytes_unknown_event_echo_and_terminate(runtime_dir: str) -> None:
    async def script(reader, writer, proc) -> None:
        await expect(reader, A1 + A2)  # handshake (uuid as raw16), then a heartbeat at once
        writer.write(A2)  # the echo activates the worker
        writer.write(h("93 03 11 91 a6 6e 6f 73 75 63 68") + A4 + A5)  # invoke "nosuch" on session 17
        await expect(reader, A6 + A5)  # error -100 then the choke A needs
        writer.write(
            h("93 03 12 91 a4 65 63 68 6f") + A4.replace(b"\x11", b"\x12", 1) + A5.replace(b"\x11", b"\x12")
        )
        await expect(
            reader, h("93 04 12 91 a5 00 80 c4 d9 ff 93 06 12 90")
        )  # echo of A4's bytes on session 18
        writer.write(A7)
        await expect(reader, A7)  # terminate echoed with the same code and reason
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the worker closes and exits

    assert run(raw_runtime("A", runtime_dir, script)) == 0


def test_b_first_bytes_unknown_event_echo_and_terminate(runtime_dir: str) -> None:
    async def script(reader, writer, proc) -> None:
        await expect(reader, B1 + A2)  # handshake opens channel 1, then a heartbeat
        writer.write(h("94 01 00 90") + H_INDEXED)  # the 0.12.3 heartbeat reply
        writer.write(B3)  # invoke "http" on channel 2 with indexed headers: no handler
        no_handler = packb([2, 1, [[42, 200], "no handler for event http"]])
        assert no_handler == h("93 02 01 92 92 2a cc c8 b9") + b"no handler for event http"
        await expect(reader, no_handler)  # terminal: no close after it
        writer.write(
            h("94 02 00 91 a5 00 80 c4 d9 ff") + H_INDEXED + h("94 02 02 90") + H_INDEXED
        )  # late data: dropped
        writer.write(h("94 03 00 91 a4 65 63 68 6f") + H_INDEXED)  # invoke "echo" on channel 3
        writer.write(h("93 03 00 91 a5 00 80 c4 d9 ff 93 03 02 90"))
        await expect(reader, h("93 03 00 91 a5 00 80 c4 d9 ff 93 03 02 90"))
        writer.write(B6)
        await expect(reader, B6)  # nothing else came in between
        proc.send_signal(signal.SIGTERM)  # as node::v2 does right after the reply (§3.11)

    assert run(raw_runtime("B", runtime_dir, script)) == 0


def test_nothing_is_sent_before_the_handshake_even_with_an_early_invoke(runtime_dir: str) -> None:
    """B: an invoke may arrive 1 ms after the handshake, before any heartbeat reply (§3.11)."""

    async def script(reader, writer, proc) -> None:
        await expect(reader, B1 + A2)
        writer.write(h("93 02 00 91 a4 65 63 68 6f 93 02 00 91 a2 68 69 93 02 02 90"))
        await expect(reader, h("93 02 00 91 a2 68 69 93 02 02 90"))
        writer.write(B6)
        await expect(reader, B6)

    assert run(raw_runtime("B", runtime_dir, script)) == 0
