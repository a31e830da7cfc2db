#!/usr/bin/env python3
"""A test worker with one handler per behaviour the tests exercise.

Timers come from the environment so tests can shrink them:
CH_TEST_HEARTBEAT, CH_TEST_DISOWN, CH_TEST_GRACE, CH_TEST_IDLE (seconds), CH_TEST_THREADS,
CH_TEST_MAX_SESSIONS.
Lifecycle events are printed to stdout as ``EVENT <name> ...`` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from cocaine_http.aio.worker import Worker


def _opt(name: str, default: float) -> float:
    return float(os.environ.get("CH_TEST_" + name, default))


worker = Worker(
    heartbeat_interval=_opt("HEARTBEAT", 5.0),
    disown_timeout=_opt("DISOWN", 30.0),
    grace_period=_opt("GRACE", 4.0),
    threads=int(_opt("THREADS", 8)),
    request_idle_timeout=_opt("IDLE", 60.0),
    max_sessions=int(_opt("MAX_SESSIONS", 4096)),
)


def say(*words: object) -> None:
    print("EVENT", *words, flush=True)


async def startup() -> None:
    say("startup")


async def shutdown() -> None:
    say("shutdown")


worker.on_startup.append(startup)
worker.on_shutdown.append(shutdown)
worker.events.on("connect", lambda: say("connect"))
worker.events.on("terminate", lambda code, reason: say("terminate", code, reason))
worker.events.on("disown", lambda: say("disown"))


@worker.on("echo")
async def echo(request, response):
    async for chunk in request:
        await response.write(chunk)


@worker.on("echo_sync")
def echo_sync(request, response):
    for chunk in request:
        response.write(chunk)


@worker.on("boom")
async def boom(request, response):
    await request.read_all()
    raise ValueError("it broke on purpose")


@worker.on("boom_sync")
def boom_sync(request, response):
    request.read_all()
    response.write(b"partial")
    raise RuntimeError("sync handler broke")


@worker.on("slow")
async def slow(request, response):
    delay = float(await request.read_all() or 0.5)
    await asyncio.sleep(delay)
    await response.write(b"done after %g" % delay)


@worker.on("slow_sync")
def slow_sync(request, response):
    delay = float(request.read_all() or 0.5)
    time.sleep(delay)
    response.write(b"done after %g" % delay)
    response.close()


@worker.on("count")
async def count(request, response):
    """Reads everything, answers the byte count: an inbound-only stream."""
    total = 0
    async for chunk in request:
        total += len(chunk)
    await response.write(str(total).encode())


@worker.on("generate")
async def generate(request, response):
    """Writes the number of bytes asked for, in 64 KiB chunks: an outbound-only stream."""
    size = int(await request.read_all())
    block = b"x" * 65536
    while size > 0:
        n = min(size, len(block))
        await response.write(block[:n])
        size -= n


@worker.on("describe")
async def describe(request, response):
    body = await request.read_all()
    await response.write(
        json.dumps(
            {
                "event": request.event,
                "session": request.session,
                "headers": [[k.decode("latin-1"), v.hex()] for k, v in request.headers],
                "body": body.decode("latin-1"),
                "thread": threading.current_thread().name,
            }
        ).encode()
    )


@worker.on("where_sync")
def where_sync(request, response):
    request.read_all()
    response.write(threading.current_thread().name.encode())


@worker.on("error_reply")
async def error_reply(request, response):
    await request.read_all()
    await response.write(b"before")
    await response.error(7, "explicit error")


@worker.on("early")
async def early(request, response):
    """Answers and ends without reading the request (which may never end)."""
    await response.write(b"early")


@worker.on("early_error")
async def early_error(request, response):
    await response.error(7, "refused early")


@worker.on("open_sessions")
async def open_sessions(request, response):
    """How many sessions the worker's protocol still tracks, this one included."""
    await request.read_all()
    await response.write(str(len(worker._connection.protocol.sessions)).encode())


@worker.on("progress")
async def progress(request, response):
    """Says it started, then answers after the delay the request gives."""
    await response.write(b"started")
    await asyncio.sleep(float(await request.read_all()))
    await response.write(b"done")


@worker.on("hang")
async def hang(request, response):
    await response.write(b"started")
    await asyncio.sleep(3600)


if __name__ == "__main__":
    worker.run()
