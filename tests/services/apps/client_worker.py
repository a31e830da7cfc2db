"""A worker that is itself a service client (run by the local runtime in the runtime tests).

Its Client/SyncClient take every default from the worker's own argv
(--locator, --protocol, --app): nothing is configured here.
"""

from __future__ import annotations

import asyncio

from cocaine_http.aio.worker import Worker
from cocaine_http.services import Client, SyncClient

worker = Worker()
client = Client()
_sync: SyncClient | None = None
_worker_loop: asyncio.AbstractEventLoop | None = None


def sync_client() -> SyncClient:
    global _sync
    if _sync is None:
        _sync = SyncClient()  # no loop given: Worker.serve registered its own
    return _sync


async def remember_loop() -> None:
    # only recorded, so that store_sync can show which loop its SyncClient uses
    global _worker_loop
    _worker_loop = asyncio.get_running_loop()


worker.on_startup.append(remember_loop)


@worker.on("echo")
async def echo(request, response):
    async for chunk in request:
        await response.write(b"echo:" + chunk)


@worker.on("store")
async def store(request, response):
    body = await request.read_all()
    storage = await client.storage()
    await storage.write("fromworker", "async", body, ["w"])
    value = await storage.read("fromworker", "async")
    client.logger().info("stored %d bytes", len(value), via="async")
    await response.write(value)


@worker.on("store_sync")
def store_sync(request, response):
    body = request.read_all()
    cocaine = sync_client()
    storage = cocaine.storage()
    storage.write("fromworker", "sync", body, ["w"])
    response.write(storage.read("fromworker", "sync"))
    response.write(",".join(storage.find("fromworker", ["w"])).encode())
    shared = cocaine._thread is None and cocaine.loop is _worker_loop
    response.write(b"worker loop" if shared else b"private loop")


worker.run()
