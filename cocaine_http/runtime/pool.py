"""The local runtime's worker pool: an :class:`~.engine.Engine` with what the app service adds.

The engine already spawns, activates and supervises workers: it restarts
crashed ones with backoff, gives up on an app whose workers never start
(waiting events fail with ``"the app failed to start: <reason>"``),
terminates idle ones, queues up to ``queue_limit`` and hands each event to
the least-loaded active worker (see :mod:`.engine`, :mod:`.supervision`).
A :class:`Pool` turns those on with the local runtime's defaults and adds
what only the app service needs:

* **min_workers** started by :meth:`Pool.start_pool`;
* **tags** (A) -- :meth:`Pool.open_event` with ``tag=T`` runs the event on the
  worker whose ``--uuid`` is ``T``, spawning it if needed, or refuses ``"the
  pool is full"``; B ignores tags, as node::v2 does (§3.11);
* **refusals as exceptions** -- :class:`Refused`, with the wire code;
* **info()** -- the app service's ``info`` object (§2.6) plus a ``pool``
  section with per-worker load.

It uses the engine's public API only.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from typing import Any

from ..protocol.frames import Generation
from .engine import CLIENT_GONE_B, Engine, Invocation

__all__ = ["CLIENT_GONE_B", "Pool", "Refused"]


class Refused(Exception):
    """The engine refused an event: ``code`` as on the wire (A int, B pair), ``message`` its text."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Pool(Engine):
    """An app's workers under the local runtime's policies (see the module docstring).

    Engine keywords pass through; ``restart`` defaults to on and
    ``idle_timeout`` to the profile default, 600 s.
    """

    def __init__(
        self,
        app: str,
        slave: str | Sequence[str],
        *,
        min_workers: int = 0,
        profile_name: str = "default",
        **engine: Any,
    ) -> None:
        engine.setdefault("restart", True)
        engine.setdefault("idle_timeout", 600.0)
        super().__init__(app, slave, **engine)
        self.min_workers = min_workers
        self.profile_name = profile_name
        self.state = "stopped"

    # -- lifecycle -------------------------------------------------------------------
    async def start_pool(self, *, wait: float | None = None) -> None:
        """Listen and start ``min_workers``; with *wait*, wait (that long) for them to activate."""
        await self.listen()
        self.state = "running"
        slaves = [await self.spawn() for _ in range(self.min_workers)]
        if wait and slaves:
            await asyncio.wait([asyncio.ensure_future(s.wait_active(wait)) for s in slaves], timeout=wait)

    async def stop(self) -> None:
        self.state = "stopping"
        await super().stop()
        self.state = "stopped"

    # -- events ------------------------------------------------------------------------
    async def open_event(
        self, event: str, tag: str | None = None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> Invocation:
        """Enqueue *event* (on the worker named *tag*, A only; B with the caller's
        *headers*); raises :class:`Refused`."""
        if tag is not None and self.generation is Generation.A:
            inv = await self._open_tagged(event, tag)
        else:
            inv = await self.open(event, headers=headers)
        if inv.finished.done() and inv.error is not None and inv.slave is None:
            raise Refused(*inv.error)
        return inv

    async def _open_tagged(self, event: str, tag: str) -> Invocation:
        slave = self.slaves.get(tag)
        if slave is None or not slave.alive:
            if not self.running:
                raise Refused(*self.refusal("the engine is not active"))
            if self.live_count() >= self.pool_limit:
                raise Refused(*self.refusal("the pool is full"))
            slave = await self.spawn(tag)
        try:
            await slave.wait_active(self.startup_timeout + 1.0)
        except Exception:
            raise Refused(*self.refusal(f"worker {tag} failed to activate")) from None
        return await self.open(event, slave=slave)

    # -- info --------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        active = self.active_slaves()
        busy = [s for s in active if s.sessions]
        loads = [s.load for s in active]
        live = [s for s in self.slaves.values() if s.alive]
        return {
            "load-median": int(statistics.median(loads)) if loads else 0,
            "profile": self.profile_name,
            "queue": {"capacity": self.queue_limit, "depth": len(self.queue)},
            "sessions": {"pending": len(self.queue) + sum(s.load for s in live)},
            "slaves": {"active": len(busy), "capacity": self.pool_limit, "idle": len(active) - len(busy)},
            "state": self.state,
            "pool": {
                "size": len(live),
                "spawning": self.starting_count(),
                "concurrency": self.concurrency,
                "restarts": self.policy.restarts,
                "workers": {
                    s.uuid: {"state": s.state.value, "load": s.load, "pid": s.pid or 0}
                    for s in live
                },
            },
        }
