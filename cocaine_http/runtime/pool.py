"""The local runtime's worker pool: :class:`~.engine.Engine` plus the policies a long-running runtime needs.

The engine already spawns workers with the runtime's argv, activates them,
echoes heartbeats, kills silent ones, queues up to ``queue_limit`` (then
refuses ``"the queue is full"``) and hands each event to the least-loaded
active worker. :class:`Pool` adds:

* **restart with backoff** -- a worker that dies after it was active is
  replaced (the first at once, repeated crashes within ``crash_window``
  seconds wait ``backoff_base * 2**(n-1)`` up to ``backoff_max``); a worker
  that never activates (exits at once, never handshakes, writes garbage) is
  not restarted on its own, only when events wait, with the same backoff;
  after ``max_start_failures`` failed starts in a row the waiting events fail
  with ``"the app failed to start: <reason>"`` instead of waiting forever;
* **growth** -- one spawn at a time while events wait and the pool is below
  ``pool_limit`` (the engine's rule), never twice during a backoff;
* **idle terminate** -- a worker without sessions for ``idle_timeout``
  seconds gets the runtime's terminate (A ``[2,0,[1,"slave is idle"]]``,
  B ``[1,1,[13,"slave is idle"]]``); 0 disables it;
* **tags** (A) -- ``open(event, tag=T)`` runs the event on the worker whose
  ``--uuid`` is ``T``, spawning it if needed, or refuses ``"the pool is
  full"``; B ignores tags, as node::v2 does (§3.11);
* **cancel** -- :meth:`cancel` withdraws a queued event or tells the worker
  the client went away (B: an error ``[[1, 103], reason]``, ECONNABORTED in
  the system category; A: a choke);
* **info()** -- the app service's ``info`` object (§2.6) plus a ``pool``
  section with per-worker load;
* worker output goes to the console as it arrives (and to the crash log).

It relies on the engine's ``expect``/``spawn``/``terminate`` and overrides
two internal hooks, ``_pump`` (to gate growth during a backoff) and
``_dead`` (to count failures); see docs/runtime.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import statistics
from collections.abc import Callable
from typing import Any

from ..protocol.frames import Generation
from .engine import Engine, Invocation, Slave, SlaveState

__all__ = ["CLIENT_GONE_B", "Pool", "Refused"]

log = logging.getLogger("cocaine_http.runtime.pool")

#: B error sent to a worker whose client went away: system category, ECONNABORTED.
CLIENT_GONE_B = (0x01, 103)


class Refused(Exception):
    """The engine refused an event: ``code`` as on the wire (A int, B pair), ``message`` its text."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _EchoLines(collections.deque):  # type: ignore[type-arg]
    """A crash-log ring that also shows each line as it arrives."""

    def __init__(self, maxlen: int, echo: Callable[[str, str], None]) -> None:
        super().__init__(maxlen=maxlen)
        self.echo = echo

    def append(self, item: Any) -> None:
        super().append(item)
        with contextlib.suppress(Exception):
            self.echo(*item)


async def _discard(inv: Invocation) -> None:
    while await inv.read() is not None:
        pass


class Pool(Engine):
    """An app's workers under the local runtime's policies (see the module docstring)."""

    def __init__(
        self,
        app: str,
        slave: str | list[str],
        *,
        min_workers: int = 0,
        idle_timeout: float = 600.0,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        crash_window: float = 30.0,
        max_start_failures: int = 3,
        profile_name: str = "default",
        output: Callable[[str, str, str], None] | None = None,
        **engine: Any,
    ) -> None:
        engine.setdefault("autospawn", True)
        engine["restart"] = False  # decided per death in _dead
        super().__init__(app, slave, **engine)
        self.min_workers = min_workers
        self.idle_timeout = idle_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.crash_window = crash_window
        self.max_start_failures = max_start_failures
        self.profile_name = profile_name
        self.output = output
        self.start_failures = 0
        self.restarts = 0
        self.state = "stopped"
        self._crashes: collections.deque[float] = collections.deque(maxlen=16)
        self._pending_spawns = 0
        self._busy_at: dict[str, float] = {}
        self._idle_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start_pool(self, *, wait: float | None = None) -> None:
        """Listen, start ``min_workers`` and the idle watcher; with *wait*, wait for them to activate."""
        await self.listen()
        self.state = "running"
        slaves = [await self.spawn() for _ in range(self.min_workers)]
        if self.idle_timeout > 0:
            self._idle_task = asyncio.get_running_loop().create_task(self._idle_watch())
        if wait and slaves:
            await asyncio.wait([asyncio.ensure_future(s.wait_active(wait)) for s in slaves], timeout=wait)

    async def stop(self) -> None:
        self.state = "stopping"
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        await super().stop()
        self.state = "stopped"

    # -- spawning ----------------------------------------------------------------------
    def expect(self, uuid: str) -> Slave:
        slave = super().expect(uuid)
        if self.output is not None:
            out = self.output
            slave.output = _EchoLines(self.crashlog_limit, lambda stream, line: out(uuid, stream, line))
        return slave

    def backoff(self) -> float:
        """Seconds to wait before the next spawn, from recent failures."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        recent = sum(1 for t in self._crashes if now - t < self.crash_window)
        failures = max(self.start_failures, recent - 1)
        if failures <= 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_base * 2 ** (failures - 1)))

    async def spawn(self, uuid: str | None = None) -> Slave:
        self._pending_spawns += 1
        try:
            delay = self.backoff()
            if delay:
                log.info("%s: starting a worker in %.1fs (backoff)", self.app, delay)
                await asyncio.sleep(delay)
            if not self._running:
                raise RuntimeError(f"{self.app}: the pool is stopping")
            slave = await super().spawn(uuid)
        finally:
            self._pending_spawns -= 1
        self._busy_at[slave.uuid] = asyncio.get_running_loop().time()
        return slave

    def _pump(self) -> None:
        autospawn = self.autospawn
        if self._pending_spawns:
            self.autospawn = False  # a spawn is already on its way (maybe sleeping a backoff)
        try:
            super()._pump()
        finally:
            self.autospawn = autospawn
        now = asyncio.get_running_loop().time()
        for slave in self.slaves.values():
            if slave.sessions:
                self._busy_at[slave.uuid] = now

    def _dead(self, slave: Slave) -> None:
        if slave.state is SlaveState.DEAD:
            return
        activated = (
            slave.activated.done() and not slave.activated.cancelled() and slave.activated.exception() is None
        )
        unexpected = not slave.terminated_by_engine
        if unexpected:
            if activated:
                self._crashes.append(asyncio.get_running_loop().time())
                self.restarts += 1
            else:
                self.start_failures += 1
        self.restart = unexpected and activated and self.state == "running"
        try:
            super()._dead(slave)
        finally:
            self.restart = False
            self._busy_at.pop(slave.uuid, None)
            # a long-running runtime must not keep every dead worker (nor every crash log)
            # (only while running: Engine.stop iterates the table across awaits)
            if self.state == "running" and self.slaves.get(slave.uuid) is slave:
                del self.slaves[slave.uuid]
            del self.crashlogs[:-20]
        if unexpected and not activated and self.start_failures >= self.max_start_failures and self.queue:
            reason = slave.death_reason or f"exit code {slave.returncode}"
            tail = "; ".join(line for _, line in list(slave.output)[-3:])
            message = f"the app failed to start: {reason}" + (f" ({tail})" if tail else "")
            log.error("%s: %s; failing %d waiting event(s)", self.app, message, len(self.queue))
            while self.queue:
                self.queue.popleft()._finish(self._refusal(message), False)

    def _activate(self, slave: Slave) -> None:
        self.start_failures = 0
        super()._activate(slave)

    # -- idle --------------------------------------------------------------------------
    async def _idle_watch(self) -> None:
        period = max(0.05, min(1.0, self.idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for slave in list(self.slaves.values()):
                if slave.state is not SlaveState.ACTIVE or slave.sessions:
                    continue
                if now - self._busy_at.get(slave.uuid, now) >= self.idle_timeout:
                    code = 1 if self.generation is Generation.A else 13
                    log.info("%s: worker %s is idle; terminating it", self.app, slave.uuid)
                    self._spawn_task(self.terminate(slave, code, "slave is idle"))

    # -- events ------------------------------------------------------------------------
    async def open_event(self, event: str, tag: str | None = None) -> Invocation:
        """Enqueue *event* (on the worker named *tag*, A only); raises :class:`Refused`."""
        if tag is not None and self.generation is Generation.A:
            inv = await self._open_tagged(event, tag)
        else:
            inv = await self.open(event)
        if inv.finished.done() and inv.error is not None and inv.slave is None:
            raise Refused(*inv.error)
        return inv

    async def _open_tagged(self, event: str, tag: str) -> Invocation:
        slave = self.slaves.get(tag)
        if slave is None or not slave.alive:
            live = sum(1 for s in self.slaves.values() if s.alive) + self._pending_spawns
            if not self._running:
                raise Refused(*self._refusal("the engine is not active"))
            if live >= self.pool_limit:
                raise Refused(*self._refusal("the pool is full"))
            if slave is not None:
                del self.slaves[tag]
            slave = await self.spawn(tag)
        try:
            await slave.wait_active(self.startup_timeout + 1.0)
        except Exception:
            raise Refused(*self._refusal(f"worker {tag} failed to activate")) from None
        return await self.open(event, slave=slave)

    def cancel(self, inv: Invocation, reason: str = "client disconnected") -> None:
        """The client is gone: withdraw a queued event, or tell its worker and discard the rest.

        While the request side is still open the worker is told (B: an error
        ``[[1, 103], reason]``; A: a choke). Once the client had closed its
        side nothing more may be sent on the session in either generation, so
        the worker finishes on its own; what it still sends is read and
        dropped, so nothing piles up and its slot is freed at its choke/close.
        """
        if inv.finished.done():
            return
        if inv.slave is None:
            with contextlib.suppress(ValueError):
                self.queue.remove(inv)
            inv._finish(self._refusal(reason), False)
            return
        if self.generation is Generation.A or inv._sent_end:
            self._spawn_task(inv.close())  # A: choke (a no-op when already sent)
            self._spawn_task(_discard(inv))
            return
        self._spawn_task(self._cancel_b(inv, reason))

    async def _cancel_b(self, inv: Invocation, reason: str) -> None:
        # B: the error ends the channel for the runtime; the worker sends nothing more
        # on it either (a revoked channel would cost it its connection), so forget it.
        await inv.send_error(CLIENT_GONE_B, reason)
        slave, session = inv.slave, inv.session
        if slave is not None and session is not None and slave.sessions.get(session) is inv:
            del slave.sessions[session]
            if slave.side is not None:
                slave.side.sessions.pop(session, None)
            inv._finish((CLIENT_GONE_B, reason), False)
            self._pump()

    # -- info --------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        active = [s for s in self.slaves.values() if s.state is SlaveState.ACTIVE]
        busy = [s for s in active if s.sessions]
        loads = [s.load for s in active]
        return {
            "load-median": int(statistics.median(loads)) if loads else 0,
            "profile": self.profile_name,
            "queue": {"capacity": self.queue_limit, "depth": len(self.queue)},
            "sessions": {"pending": len(self.queue) + sum(s.load for s in self.slaves.values())},
            "slaves": {"active": len(busy), "capacity": self.pool_limit, "idle": len(active) - len(busy)},
            "state": self.state,
            "pool": {
                "size": sum(1 for s in self.slaves.values() if s.alive),
                "spawning": self._pending_spawns
                + sum(
                    1 for s in self.slaves.values() if s.state in (SlaveState.SPAWNED, SlaveState.HANDSHAKEN)
                ),
                "concurrency": self.concurrency,
                "restarts": self.restarts,
                "workers": {
                    s.uuid: {"state": s.state.value, "load": s.load, "pid": s.pid or 0}
                    for s in self.slaves.values()
                    if s.alive
                },
            },
        }
