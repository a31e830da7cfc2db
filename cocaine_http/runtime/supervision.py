"""How an engine watches its workers, and what it does when they fail, idle or die.

This module exists because a runtime that runs for days must bound what a
bad app can make it do: a crashing worker must not be respawned in a tight
loop, a worker that never starts must not keep events waiting forever, and
neither dead workers nor their crash logs may pile up.

* :class:`RestartPolicy` (sans-IO: time comes in as a number) says how long
  to wait before the next spawn, and when to give up.
* :class:`Supervisor` is the engine's watchdog: it keeps the registry of
  workers (live ones and the last ``history`` dead ones) and the crash logs,
  and runs the activation and heartbeat deadlines of §2.4.2/§3.4.2, the
  kill, the process watcher, the bookkeeping of a death (restart, give up,
  crash log, history) and the idle terminate.

The engine (:mod:`.engine`) owns one of each; their knobs are engine
arguments (docs/worker.md). The supervisor sees its engine only as a
:class:`Dispatcher`: the four things it may ask of it. That keeps what the
watchdog does to the engine in one place, and this module free of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import CallTimeoutError, SlaveCode
from ..protocol.frames import Generation
from .side import A_RESOURCE, B_SLAVE
from .slave import Slave, SlaveState

__all__ = ["Dispatcher", "RestartPolicy", "Supervisor"]

log = logging.getLogger("cocaine_http.runtime.engine")


@dataclass
class RestartPolicy:
    """Backoff and give-up rules, from the failures seen so far.

    * A worker that crashes after it was active counts as a *crash*. Crashes
      within ``crash_window`` seconds of each other make the next spawn wait
      ``backoff_base * 2**(n-1)`` seconds (n = recent crashes - 1), at most
      ``backoff_max``: the first replacement is immediate.
    * A worker that dies before activation (exits at once, never handshakes,
      writes garbage, cannot be executed) is a *failed start*. Failed starts
      in a row back off the same way, and after ``max_start_failures`` of them
      the engine has *given up*: the events waiting for a worker fail rather
      than wait forever. One activation resets the count.
    """

    backoff_base: float = 0.2
    backoff_max: float = 10.0
    crash_window: float = 30.0
    max_start_failures: int = 3
    #: Failed starts in a row (reset by an activation).
    start_failures: int = 0
    #: Crashes of active workers, ever (the app service reports it as ``restarts``).
    restarts: int = 0
    _crashes: deque[float] = field(default_factory=lambda: deque(maxlen=16))

    def activated(self) -> None:
        self.start_failures = 0

    def crashed(self, now: float) -> None:
        self.restarts += 1
        self._crashes.append(now)

    def failed_start(self) -> None:
        self.start_failures += 1

    @property
    def gave_up(self) -> bool:
        return self.start_failures >= self.max_start_failures

    def backoff(self, now: float) -> float:
        """Seconds to wait before the next spawn."""
        recent = sum(1 for t in self._crashes if now - t < self.crash_window)
        failures = max(self.start_failures, recent - 1)
        if failures <= 0:
            return 0.0
        return float(min(self.backoff_max, self.backoff_base * 2 ** (failures - 1)))


class Dispatcher(Protocol):
    """What a :class:`Supervisor` asks of the engine that hands its workers events."""

    def pump(self) -> None:
        """A worker became active or died: hand out queued events (and start a worker
        if events still wait)."""

    def replace_crashed(self) -> None:
        """An active worker died unexpectedly: start another, if the engine restarts
        workers and is running (the policy's backoff applies)."""

    def fail_waiting(self, message: str) -> None:
        """The app failed to start too often: end the events waiting for a worker with
        *message*, rather than have them wait forever."""

    def retire(self, slave: Slave, code: int, reason: str) -> None:
        """Terminate *slave* (its terminate, then signals) in the background."""


class Supervisor:
    """The watchdog of one engine's workers (see the module docstring)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        policy: RestartPolicy,
        *,
        app: str,
        generation: Generation,
        startup_timeout: float,
        heartbeat_timeout: float,
        idle_timeout: float,
        history: int,
    ) -> None:
        self.dispatcher = dispatcher
        self.policy = policy
        self.app = app
        self.generation = generation
        #: A: first heartbeat within startup-timeout; B: handshake within handshake-timeout.
        self.startup_timeout = startup_timeout
        self.heartbeat_timeout = heartbeat_timeout
        #: Terminate a worker without sessions for this many seconds; 0 = never.
        self.idle_timeout = idle_timeout
        #: How many dead workers (in :attr:`slaves`) and crash logs are kept.
        self.history = history
        #: Live workers, and the last ``history`` dead ones.
        self.slaves: dict[str, Slave] = {}
        #: ``(uuid, [(stream, line), ...])`` of the last ``history`` unexpected deaths.
        self.crashlogs: deque[tuple[str, list[tuple[str, str]]]] = deque(maxlen=history)
        self._watchers: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Task[None] | None = None

    # -- the registry --------------------------------------------------------------------
    def active(self) -> list[Slave]:
        return [s for s in self.slaves.values() if s.state is SlaveState.ACTIVE]

    def count_alive(self) -> int:
        return sum(1 for s in self.slaves.values() if s.alive)

    def count_starting(self) -> int:
        starting = (SlaveState.SPAWNED, SlaveState.HANDSHAKEN)
        return sum(1 for s in self.slaves.values() if s.state in starting)

    async def wait_active(self, n: int, timeout: float) -> list[Slave]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            active = self.active()
            if len(active) >= n:
                return active
            if loop.time() > deadline:
                raise CallTimeoutError(f"{len(active)} of {n} workers active after {timeout} s")
            await asyncio.sleep(0.01)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the idle watcher (when ``idle_timeout`` is set)."""
        if self.idle_timeout > 0 and self._idle is None:
            self._idle = asyncio.get_running_loop().create_task(self._idle_watch())

    async def stop_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            await asyncio.gather(self._idle, return_exceptions=True)
            self._idle = None

    async def reap(self) -> None:
        """The engine is stopping and its terminates are over: SIGKILL what still runs,
        stop the deadlines and the process watchers, and record every death."""
        for slave in list(self.slaves.values()):
            if slave.timer is not None:
                slave.timer.cancel()
            if slave.process is not None and slave.process.returncode is None:
                slave.terminated_by_engine = True
                slave.send_signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await slave.process.wait()
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for slave in list(self.slaves.values()):
            if slave.process is not None:
                self.dead(slave)  # a no-op for those already reaped

    def error(self, reason: str, *, timeout: bool = False) -> tuple[Any, str]:
        """The error a failed worker's sessions end with: A resource_error; B slave category,
        8 (timed out) or 2."""
        if self.generation is Generation.A:
            return (A_RESOURCE, reason)
        code = SlaveCode.HEARTBEAT_TIMEOUT if timeout else SlaveCode.DIED
        return ((B_SLAVE, code.value), reason)

    # -- deadlines ---------------------------------------------------------------------
    def expecting(self, slave: Slave) -> None:
        """Register *slave*, which must activate within ``startup_timeout``. A dead
        namesake (a tag reused) is replaced, and the new one goes to the end."""
        self.slaves.pop(slave.uuid, None)
        self.slaves[slave.uuid] = slave
        slave.timer = asyncio.get_running_loop().call_later(
            self.startup_timeout, self._activation_timeout, slave
        )

    def activate(self, slave: Slave) -> None:
        """A: the first heartbeat; B: the handshake (§2.4.2, §3.4.2)."""
        now = asyncio.get_running_loop().time()
        slave.state = SlaveState.ACTIVE
        slave.last_heartbeat = slave.last_busy = now
        self._arm_heartbeat(slave)
        if not slave.activated.done():
            slave.activated.set_result(None)
        self.policy.activated()
        self.dispatcher.pump()

    def heartbeat(self, slave: Slave) -> None:
        slave.heartbeats += 1
        slave.last_heartbeat = asyncio.get_running_loop().time()
        if slave.state is SlaveState.HANDSHAKEN:
            self.activate(slave)
        elif slave.state in (SlaveState.ACTIVE, SlaveState.TERMINATING):
            self._arm_heartbeat(slave)

    def _arm_heartbeat(self, slave: Slave) -> None:
        if slave.timer is not None:
            slave.timer.cancel()
        slave.timer = asyncio.get_running_loop().call_later(
            self.heartbeat_timeout, self._heartbeat_timeout, slave
        )

    def _activation_timeout(self, slave: Slave) -> None:
        if slave.state in (SlaveState.SPAWNED, SlaveState.HANDSHAKEN):
            self.kill(slave, "failed to activate")

    def _heartbeat_timeout(self, slave: Slave) -> None:
        if slave.state in (SlaveState.ACTIVE, SlaveState.TERMINATING):
            self.kill(slave, "slave has timed out")

    def kill(self, slave: Slave, reason: str) -> None:
        """SIGKILL *slave* and fail its sessions, with no terminate first (§2.4.3)."""
        log.warning("%s: worker %s: %s; killing it", self.app, slave.uuid, reason)
        slave.death_reason = reason
        slave.state = SlaveState.TERMINATING  # no new work for it
        slave.fail_sessions(self.error(reason, timeout=True))
        slave.send_signal(signal.SIGKILL)
        if slave.channel is not None:
            slave.channel.close()
        if slave.process is None:
            self.dead(slave)

    # -- deaths ------------------------------------------------------------------------
    def watch(self, slave: Slave) -> None:
        """Call :meth:`dead` once *slave*'s process has exited and its output is read."""
        task = asyncio.get_running_loop().create_task(self._watch(slave))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, slave: Slave) -> None:
        assert slave.process is not None
        await slave.process.wait()
        if slave.readers:
            await asyncio.wait(slave.readers, timeout=1.0)
        self.dead(slave)

    def dead(self, slave: Slave) -> None:
        """*slave* is gone for good: fail what it held, count it, maybe replace it."""
        if slave.state is SlaveState.DEAD:
            return
        was_active = slave.was_active
        slave.state = SlaveState.DEAD
        if slave.timer is not None:
            slave.timer.cancel()
        slave.fail_sessions(self.error(slave.death_reason or "the worker died"))
        if slave.channel is not None:
            slave.channel.close()
        if not slave.exited.done():
            slave.exited.set_result(slave.returncode)
        if not slave.activated.done():
            slave.activated.set_exception(CallTimeoutError(f"worker {slave.uuid} died before activation"))
            slave.activated.exception()  # retrieved: nobody may be waiting
        self._trim()
        if not slave.terminated_by_engine:
            self._unexpected(slave, was_active)
        self.dispatcher.pump()

    def _trim(self) -> None:
        """Forget all but the ``history`` most recent dead workers (live ones stay)."""
        slaves = self.slaves
        dead = [uuid for uuid, s in slaves.items() if s.state is SlaveState.DEAD]
        for uuid in dead[: max(0, len(dead) - self.history)]:
            del slaves[uuid]

    def _unexpected(self, slave: Slave, was_active: bool) -> None:
        log.warning(
            "%s: worker %s exited unexpectedly (code %s)%s",
            self.app,
            slave.uuid,
            slave.returncode,
            "; last output:\n" + "\n".join(line for _, line in slave.output) if slave.output else "",
        )
        self.crashlogs.append((slave.uuid, list(slave.output)))
        if was_active:
            self.policy.crashed(asyncio.get_running_loop().time())
            self.dispatcher.replace_crashed()
            return
        self.policy.failed_start()
        if self.policy.gave_up:
            reason = slave.death_reason or f"exit code {slave.returncode}"
            tail = "; ".join(line for _, line in list(slave.output)[-3:])
            message = f"the app failed to start: {reason}" + (f" ({tail})" if tail else "")
            self.dispatcher.fail_waiting(message)

    # -- idle --------------------------------------------------------------------------
    async def _idle_watch(self) -> None:
        """Terminate active workers without sessions for ``idle_timeout`` seconds
        (A ``[2,0,[1,"slave is idle"]]``, B ``[1,1,[13,"slave is idle"]]``, §2.4.5, §3.4.3)."""
        loop = asyncio.get_running_loop()
        while self.idle_timeout > 0:
            await asyncio.sleep(max(0.05, min(1.0, self.idle_timeout / 4)))
            now = loop.time()
            for slave in list(self.slaves.values()):
                if slave.state is not SlaveState.ACTIVE or slave.sessions:
                    continue
                if now - slave.last_busy >= self.idle_timeout:
                    code = 1 if self.generation is Generation.A else 13
                    log.info("%s: worker %s is idle; terminating it", self.app, slave.uuid)
                    slave.state = SlaveState.TERMINATING  # no new work while the terminate is on its way
                    self.dispatcher.retire(slave, code, "slave is idle")
