"""The app service: one per running app, backed by its :class:`~.pool.Pool` (PROTOCOL.md §2.6, §3.7).

* A: ``0 enqueue(event, data[, tag])`` forwards the worker's chunks, error
  and choke **verbatim** under the caller's session id (the engine's session
  ids, from 1 per app, are the worker's business); ``1 info()`` →
  chunk(msgpack(object)). Refusals answer ``[5,s,[2,"the queue is full" |
  "the pool is full" | "the engine is not active"]]`` + choke.
* B: ``0 enqueue(event[, tag])`` streams both ways: the caller's
  ``write``/``close``/``error`` go to the worker, the worker's come back;
  ``1 info()`` → ``[object]``; ``2 control()`` takes a stream of desired
  worker counts (the pool grows to them). Refusals: ``[[0x52FF, 1], "the
  queue is full"]`` and the engine's other overseer codes.

A caller that disconnects mid-call cancels its event (see
:meth:`~.pool.Pool.cancel`). The HTTP front uses the same
:meth:`AppService.open` as the TCP service.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..protocol.frames import Generation
from .converters import integer, raw, text
from .engine import Invocation
from .pool import Pool, Refused
from .service import Fault, Method, Reply, Service
from .service_connection import Call
from .specs import AppSpec

__all__ = ["AppCall", "AppService"]


class AppCall:
    """One event from the caller's side: write the request, then read ``next()`` until the end.

    ``next()`` returns ``("chunk", data)``, then ``("error", code, message)``
    or ``("close",)`` once the worker finished (or died: the engine turns a
    death into an error).
    """

    __slots__ = ("inv", "pool")

    def __init__(self, pool: Pool, inv: Invocation) -> None:
        self.pool = pool
        self.inv = inv

    @property
    def done(self) -> bool:
        return self.inv.finished.done()

    async def write(
        self, data: bytes | bytearray | memoryview, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self.inv.write(data, headers)

    async def close(self) -> None:
        await self.inv.close()

    async def send_error(self, code: Any, message: str) -> None:
        await self.inv.send_error(code, message)

    def abort(self, reason: str = "client disconnected") -> None:
        self.pool.cancel(self.inv, reason)

    async def next(self) -> tuple[Any, ...]:
        data = await self.inv.read()
        if data is not None:
            return ("chunk", data)
        if self.inv.error is not None:
            code, message = self.inv.error
            return ("error", code, message)
        return ("close",)


class AppService(Service):
    kind = "app"

    def __init__(self, generation: Generation | str, spec: AppSpec, pool: Pool) -> None:
        super().__init__(spec.name, generation)
        self.spec = spec
        self.pool = pool
        if self.is_a:
            self.methods = {
                0: Method("enqueue", self.enqueue_a, Reply.STREAM, (text, raw), (text,)),
                1: Method("info", self.info_call, Reply.VALUE),
            }
        else:
            self.methods = {
                0: Method("enqueue", self.enqueue_b, Reply.STREAM, (text,), (text,), streaming_in=True),
                1: Method("info", self.info_call, Reply.VALUE),
                2: Method("control", self.control_call, Reply.VOID, streaming_in=True),
            }

    async def open(
        self, event: str, tag: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> AppCall:
        """Enqueue *event* (B: with the caller's *headers*); raises
        :class:`~.pool.Refused` when the engine refuses it."""
        return AppCall(self.pool, await self.pool.open_event(event, tag, headers))

    async def _open_or_fault(
        self, event: str, tag: str | None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> AppCall:
        try:
            return await self.open(event, tag, headers)
        except Refused as exc:
            raise Fault(exc.code, exc.message) from None

    async def _pipe_out(self, call: Call, ac: AppCall) -> None:
        while True:
            item = await ac.next()
            if item[0] == "chunk":
                call.write(item[1])
                await call.drain()
            elif item[0] == "error":
                call.error(item[1], item[2])
                return
            else:
                call.close()
                return

    async def enqueue_a(self, call: Call, event: str, data: bytes, tag: str | None = None) -> None:
        ac = await self._open_or_fault(event, tag)
        try:
            await ac.write(data)
            await ac.close()
            await self._pipe_out(call, ac)
        finally:
            if not ac.done:
                ac.abort("client disconnected")

    async def enqueue_b(self, call: Call, event: str, tag: str | None = None) -> None:
        # tags are deprecated in node::v2 (§3.7); the caller's headers go to the worker (§3.3)
        ac = await self._open_or_fault(event, None, call.headers)

        async def pipe_in() -> None:
            while True:
                item = await call.receive()
                if item[0] == "write":
                    data = item[1]
                    await ac.write(data if isinstance(data, bytes) else str(data).encode(), item[2])
                elif item[0] == "close":
                    await ac.close()
                    return
                elif item[0] == "error":
                    await ac.send_error(item[1], item[2])
                    return
                else:  # the caller disconnected
                    ac.abort("client disconnected")
                    return

        inbound = asyncio.get_running_loop().create_task(pipe_in())
        try:
            await self._pipe_out(call, ac)
        finally:
            if not ac.done:
                ac.abort("client disconnected")
            if not inbound.done():
                inbound.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await inbound

    def info(self) -> dict[str, Any]:
        return self.pool.info()

    async def info_call(self, call: Call) -> dict[str, Any]:
        return self.info()

    def control(self, workers: int) -> None:
        """Grow the pool to *workers* (bounded by its limit); it never shrinks here."""
        self.pool.min_workers = max(0, min(workers, self.pool.pool_limit))
        live = sum(1 for s in self.pool.slaves.values() if s.alive)
        for _ in range(self.pool.min_workers - live):
            self.pool.spawn_soon()

    async def control_call(self, call: Call) -> None:
        while True:
            item = await call.receive()
            if item[0] != "write":
                return
            with contextlib.suppress(Exception):
                self.control(integer(item[1]))

    async def shutdown(self) -> None:
        await self.pool.stop()
