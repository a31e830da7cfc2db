"""How the local runtime's HTTP front holds many idle keep-alive connections.

    python bench/runtime_idle_connections.py [N]        (default 10000)

Starts a LocalRuntime (protocol 0.12, examples/flask_app, one worker) in this
process and a client in a child process (so each side needs only N file
descriptors), opens N connections that send nothing, then measures a request
on a fresh connection and on a sample of the idle ones. Prints the front's
resident memory before and after, and the per-connection cost.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cocaine_http.runtime.local import LocalRuntime  # noqa: E402
from cocaine_http.runtime.logging import Console  # noqa: E402
from cocaine_http.runtime.node import spec_from_target  # noqa: E402

CLIENT = r"""
import asyncio, json, resource, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
async def main():
    t0 = time.perf_counter()
    conns = []
    for i in range(0, n, 500):
        batch = min(500, n - i)
        conns += await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(batch)))
    opened = time.perf_counter() - t0
    print(json.dumps({"opened": opened}), flush=True)
    sys.stdin.readline()  # the parent measures while everything is open
    lat = []
    for reader, writer in conns[:: max(1, n // 20)]:
        t = time.perf_counter()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"Hello, world!\n")
        lat.append(time.perf_counter() - t)
    print(json.dumps({"idle_sample_ms": 1000 * sum(lat) / len(lat)}), flush=True)
    for _, writer in conns:
        writer.close()
asyncio.run(main())
"""


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def main(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 512)), hard))
    spec = spec_from_target("examples.flask_app.app:app")
    spec.cwd = ROOT
    async with LocalRuntime(
        "0.12", locator_port=0, bind="127.0.0.1:0", apps=[spec], workers=1, console=Console(io.StringIO())
    ) as rt:
        await rt.apps["flask_app"].pool.wait_active(1)
        before = rss_kib()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            str(n),
            str(rt.front.port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdin is not None
        opened = json.loads(await proc.stdout.readline())["opened"]
        while len(rt.front.connections) < n:  # noqa: ASYNC110 - polling someone else's counter
            await asyncio.sleep(0.05)
        held = rss_kib()
        held_conns = len(rt.front.connections)
        import httpx

        async with httpx.AsyncClient(base_url=rt.front_url) as client:
            t = time.perf_counter()
            for _ in range(20):
                assert (await client.get("/")).status_code == 200
            fresh_ms = (time.perf_counter() - t) * 1000 / 20
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        sample = json.loads(await proc.stdout.readline())["idle_sample_ms"]
        await proc.wait()
        print(f"{n} idle keep-alive connections opened in {opened:.2f}s; front held {held_conns}")
        print(
            f"runtime RSS {before / 1024:.1f} MiB -> {held / 1024:.1f} MiB "
            f"(~{(held - before) / n:.1f} KiB per idle connection)"
        )
        print(
            f"request on a fresh connection while they are open: {fresh_ms:.2f} ms; "
            f"on an idle one: {sample:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000))
