"""A worker that is itself a service client (run by the local runtime in the runtime tests).

Its Client/SyncClient take every default from the worker's own argv
(--locator, --protocol, --app): nothing is configured here.
"""

from __future__ import annotations

import asyncio

from cocaine_http.services import Client, SyncClient, set_default_loop
from cocaine_http.worker import Worker

worker = Worker()
client = Client()
_sync: SyncClient | None = None


def sync_client() -> SyncClient:
    global _sync
    if _sync is None:
        _sync = SyncClient()  # the loop registered below: the worker's own
    return _sync


async def share_loop() -> None:
    # sync handlers run in the worker's threads; let their SyncClient use this loop
    set_default_loop(asyncio.get_running_loop())


worker.on_startup.append(share_loop)


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


worker.run()
