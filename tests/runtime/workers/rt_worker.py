#!/usr/bin/env python3
"""A worker for the local runtime's tests, built on cocaine_http.aio.worker.Worker.

``CH_RT_HEARTBEAT`` sets the heartbeat interval (a long one starves the
runtime's watchdog). ``CH_RT_MODE`` picks a start-up fault: ``exit`` (exit at once), ``silent``
(never connects), ``garbage`` (connects and writes bytes that are not a frame).
Events: ``http`` (paths below), ``echo``, ``pid``, ``crash``, ``flood``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

MODE = os.environ.get("CH_RT_MODE", "")
if MODE == "exit":  # before the imports: "at once" must beat the test's 0.4 s startup timeout
    print("exiting at once", flush=True)
    sys.exit(3)

from cocaine_http.aio.worker import Worker  # noqa: E402
from cocaine_http.config import WorkerConfig  # noqa: E402
from cocaine_http.http.envelope import ResponseEncoder, parse_request  # noqa: E402

if MODE == "silent":
    time.sleep(3600)
if MODE == "garbage":
    cfg = WorkerConfig.from_argv(sys.argv[1:])
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(cfg.endpoint)
    sock.sendall(b"\xc1\xc1 this is not msgpack")
    time.sleep(3600)

worker = Worker(
    heartbeat_interval=float(os.environ.get("CH_RT_HEARTBEAT", 1.0)), disown_timeout=10.0, grace_period=1.0
)
enc = ResponseEncoder(worker.config.generation)


async def send(response, status, headers, parts):
    await response.write(enc.head(status, headers))
    for part in parts:
        payload = enc.body(part)
        if payload is not None:
            await response.write(payload)


@worker.on("http")
async def http(request, response):
    blob = b"".join([chunk async for chunk in request])
    req = parse_request(blob)
    path = req.path.decode()
    if path == "/hello":
        await send(response, 200, [("Content-Type", "text/plain")], [b"hello"])
    elif path == "/pid":
        await send(response, 200, [], [str(os.getpid()).encode()])
    elif path == "/slow":
        await asyncio.sleep(float(req.query.decode().partition("=")[2] or 1))
        await send(response, 200, [], [str(os.getpid()).encode()])
    elif path == "/stream":
        await response.write(enc.head(200, [("X-Stream", "1")]))
        for i in range(3):
            await response.write(enc.body(b"tick%d\n" % i))
            await asyncio.sleep(0.02)
    elif path == "/crash":
        await response.write(enc.head(200, []))
        await asyncio.sleep(0.1)  # let the head go out first
        os._exit(7)
    elif path == "/crash-before-head":
        os._exit(7)
    elif path == "/error":
        await response.error(42, "requested failure")
    elif path == "/flood":
        await response.write(enc.head(200, []))
        chunk = b"x" * 65536
        for _ in range(int(req.query.decode().partition("=")[2] or 64)):
            await response.write(enc.body(chunk))
    elif path == "/echo":
        await send(response, 200, [(k, v) for k, v in req.headers], [req.body])
    elif path == "/garbage":
        await response.write(enc.head(200, []))
        await asyncio.sleep(0.1)  # let the head go out first
        worker._connection.channel.send(0, b"\xc1\xc1 not a frame")  # test-only: undecodable bytes
        await asyncio.sleep(5)
    elif path == "/forever":
        await response.write(enc.head(200, []))
        while True:
            await response.write(enc.body(b"." * 1024))
            await asyncio.sleep(0.001)
    else:
        await send(response, 404, [], [b"no such path " + req.path])


@worker.on("echo")
async def echo(request, response):
    async for chunk in request:
        await response.write(chunk)


@worker.on("pid")
async def pid(request, response):
    async for _ in request:
        pass
    await response.write(str(os.getpid()).encode())


if __name__ == "__main__":
    worker.run()
