"""One app's engine: the runtime's peer for its workers, for tests and the local runtime.

An :class:`Engine` does for one app what cocaine-core's engine (A) or
node::v2's overseer (B) does (PROTOCOL.md §2.4, §3.4, §6): it listens on
``<runtime_dir>/<app>.<pid>``, spawns worker processes with exactly the
runtime's argv, matches each handshake to the process it spawned, activates
the worker (A: first heartbeat; B: handshake), echoes heartbeats, kills
workers that fall silent, and hands out invocations to the least-loaded
active worker, queueing up to ``queue_limit``::

    async with Engine("echo", [sys.executable, "worker.py"], generation="B",
                      runtime_dir=tmp) as engine:
        await engine.start(workers=1)
        reply = await engine.invoke("echo", [b"hi"])        # Reply(chunks, error, closed)
        inv = await engine.open("echo")                      # streaming both ways
        await inv.write(b"a"); await inv.close()
        async for chunk in inv: ...

It also supervises them, within bounds: restarts with backoff, gives up
on an app whose workers never start, terminates idle workers, and keeps only
the last ``history`` dead workers and crash logs.

This module is the app-level coordination: who runs, who gets which event,
and the queue. The rest has its own module: :mod:`.side` (the sans-IO
protocol of one connection), :mod:`.connection` (its IO), :mod:`.slave` (one
worker: process, output, sessions), :mod:`.invocation` (one event),
:mod:`.supervision` (deadlines, deaths, backoff, idle) and :mod:`.pool` (the
local runtime's additions: tags, ``info()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid as uuid_mod
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from ..config import runtime_argv
from ..errors import CallTimeoutError, CocaineError
from ..protocol.endpoints import format_endpoint, parse_locators
from ..protocol.frames import Generation
from .connection import WorkerConnection
from .invocation import Invocation, Reply
from .side import A_RESOURCE, B_OVERSEER, Handshake, HeaderFlavour, RuntimeSide
from .slave import Slave, SlaveState
from .supervision import RestartPolicy, Supervisor

__all__ = [
    "CLIENT_GONE_B",
    "Engine",
    "Handshake",
    "HeaderFlavour",
    "Invocation",
    "Reply",
    "RuntimeSide",
    "Slave",
    "SlaveState",
]

log = logging.getLogger("cocaine_http.runtime.engine")

MiB = 1 << 20
#: B error sent to a worker whose client went away: system category, ECONNABORTED.
CLIENT_GONE_B = (0x01, 103)
#: B error for an invocation over its request-timeout: node category, 3 "timeout" (PROTOCOL.md §3.8).
B_REQUEST_TIMEOUT = (0x51FF, 3)


class Engine:
    """One app's engine; see the module docstring. Use as ``async with``.

    ``slave`` is the executable (a path, started as-is, like the runtime
    does) or a command prefix (``[sys.executable, "worker.py"]``); the
    runtime's flags are appended. ``env`` is the manifest's environment,
    added to the engine's own (the engine's value wins on a clash, as the
    runtime's does, §2.4.1). ``output(uuid, stream, line)`` sees each line a
    worker prints. See docs/worker.md for every knob.
    """

    def __init__(
        self,
        app: str,
        slave: str | Sequence[str],
        *,
        generation: Generation | str = Generation.A,
        runtime_dir: str,
        locator: str | Sequence[str] = "127.0.0.1:10053",
        pool_limit: int = 10,
        concurrency: int = 10,
        queue_limit: int = 100,
        heartbeat_timeout: float = 30.0,
        startup_timeout: float | None = None,
        handshake_timeout: float | None = None,
        termination_timeout: float | None = None,
        kill_timeout: float = 2.0,
        headers: HeaderFlavour | str = HeaderFlavour.NONE,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        restart: bool = False,
        autospawn: bool = True,
        idle_timeout: float = 0.0,
        request_timeout: float | None = None,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        crash_window: float = 30.0,
        max_start_failures: int = 3,
        history: int = 20,
        crashlog_limit: int = 50,
        answer_heartbeats: bool = True,
        reply_high_water: int = 4 * MiB,
        write_high_water: int = 1 * MiB,
        output: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.command = [slave] if isinstance(slave, str) else list(slave)
        self.generation = Generation.parse(generation)
        b = self.generation is Generation.B
        self.runtime_dir = runtime_dir
        if isinstance(locator, str):
            self.locator = locator
        else:
            self.locator = ",".join(locator) if b else locator[0]
        if b:  # B passes every locator endpoint, formatted as boost does
            self.locator = ",".join(format_endpoint(ep) for ep in parse_locators(self.locator))
        self.pool_limit = pool_limit
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self.heartbeat_timeout = heartbeat_timeout
        #: A: first heartbeat within startup-timeout (10 s); B: handshake within handshake-timeout
        #: (5 s). Either keyword sets it.
        activation = startup_timeout if startup_timeout is not None else handshake_timeout
        self.startup_timeout = activation if activation is not None else (5.0 if b else 10.0)
        #: A: termination-timeout (5 s); B: terminate-timeout (10 s).
        self.termination_timeout = (
            termination_timeout if termination_timeout is not None else (10.0 if b else 5.0)
        )
        self.kill_timeout = kill_timeout
        self.headers = HeaderFlavour(headers)
        self.env = dict(env or {})
        #: The app directory: the worker's cwd (default: the script's directory).
        self.cwd = cwd or os.path.dirname(os.path.abspath(self.command[-1])) or None
        #: Replace a worker that dies unexpectedly after activation (with the policy's backoff).
        self.restart = restart
        #: Start a worker (one at a time, up to ``pool_limit``) while events wait.
        self.autospawn = autospawn
        #: Terminate a worker without sessions for this many seconds; 0 = never.
        self.idle_timeout = idle_timeout
        #: B: an invocation not over this long after it reached a worker gets an error on
        #: both sides (the profile's request-timeout, 86400 s; a caller's ``request_timeout``
        #: header wins). ``None``: only the header's.
        self.request_timeout = request_timeout
        self.policy = RestartPolicy(backoff_base, backoff_max, crash_window, max_start_failures)
        #: How many dead workers (in :attr:`slaves`) and crash logs are kept.
        self.history = history
        self.crashlog_limit = crashlog_limit
        self.answer_heartbeats = answer_heartbeats
        self.reply_high_water = reply_high_water
        self.write_high_water = write_high_water
        self.output = output
        self.endpoint = os.path.join(runtime_dir, f"{app}.{os.getpid()}")
        #: Live workers, and the last ``history`` dead ones.
        self.slaves: dict[str, Slave] = {}
        self.queue: deque[Invocation] = deque()
        #: ``(uuid, [(stream, line), ...])`` of the last ``history`` unexpected deaths.
        self.crashlogs: deque[tuple[str, list[tuple[str, str]]]] = deque(maxlen=history)
        #: Processes started, ever.
        self.spawns = 0
        self._pending_spawns = 0
        self._next_session = 1  # A: one counter per engine, shared by its slaves (§2.3)
        self._server: asyncio.AbstractServer | None = None
        self._running = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.supervisor = Supervisor(self)

    # -- lifecycle --------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Listening and not stopping."""
        return self._running

    async def listen(self) -> None:
        """Listen on the app socket (removing a stale one)."""
        if self._server is not None:
            return
        os.makedirs(self.runtime_dir, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: WorkerConnection.protocol_factory(self), self.endpoint
        )
        self._running = True
        self.supervisor.start()

    async def start(self, workers: int = 1, *, timeout: float = 10.0) -> list[Slave]:
        """Listen, spawn *workers* and wait until they are active."""
        await self.listen()
        slaves = [await self.spawn() for _ in range(workers)]
        await asyncio.gather(*(s.wait_active(timeout) for s in slaves))
        return slaves

    async def stop(self) -> None:
        """Terminate every worker (SIGTERM after the termination timeout, SIGKILL after
        ``kill_timeout`` more), fail queued events, stop listening."""
        self._running = False
        await self.supervisor.stop_idle()
        for inv in list(self.queue):
            self.withdraw(inv, self.refusal("engine is shutting down"))
        live = [s for s in self.slaves.values() if s.alive]
        await asyncio.gather(
            *(self.terminate(s, 1, "the engine is shutting down") for s in live), return_exceptions=True
        )
        for task in list(self._tasks):  # pending spawns and restarts included
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slave in list(self.slaves.values()):
            if slave.timer is not None:
                slave.timer.cancel()
            if slave.process is not None and slave.process.returncode is None:
                slave.terminated_by_engine = True
                slave.send_signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await slave.process.wait()
        await self.supervisor.stop_watching()
        for slave in list(self.slaves.values()):
            if slave.process is not None:
                self.supervisor.dead(slave)  # a no-op for those already reaped
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)

    # -- workers ------------------------------------------------------------------
    def argv(self, uuid: str) -> list[str]:
        """The runtime's argv for a worker (sorted flags, separate items)."""
        return runtime_argv(self.app, self.endpoint, self.locator, uuid, self.generation)

    async def spawn(self, uuid: str | None = None) -> Slave:
        """Start one worker process; returns at once (see :meth:`Slave.wait_active`).

        It first waits out the policy's current backoff. A command that cannot
        be executed counts as a failed start, and the error is raised."""
        self._pending_spawns += 1
        return await self._spawn(uuid)

    def spawn_soon(self) -> None:
        """Start a worker in the background. It counts as on its way at once, so
        :meth:`pump` never schedules a second one before the first has begun."""
        self._pending_spawns += 1
        started = False

        async def run() -> None:
            nonlocal started
            started = True
            with contextlib.suppress(OSError):  # a failed start: counted and logged already
                await self._spawn(None)

        def done(_: object) -> None:
            if not started:  # cancelled before it ran
                self._pending_spawns -= 1

        self.background(run()).add_done_callback(done)

    async def _spawn(self, uuid: str | None) -> Slave:
        """:meth:`spawn` once counted in ``_pending_spawns``, which this uncounts."""
        try:
            await self.listen()
            delay = self.policy.backoff(asyncio.get_running_loop().time())
            if delay:
                log.info("%s: starting a worker in %.2fs (backoff)", self.app, delay)
                await asyncio.sleep(delay)
                if not self._running:
                    raise RuntimeError(f"{self.app}: the engine is stopping")
            slave = self.expect(uuid or str(uuid_mod.uuid4()))
            argv = [*self.command, *self.argv(slave.uuid)]
            try:
                await slave.launch(argv, cwd=self.cwd, env={**self.env, **os.environ})
            except OSError as exc:
                slave.death_reason = f"cannot start {self.command[0]!r}: {exc}"
                failed: OSError | None = exc
            else:
                failed = None
        finally:
            self._pending_spawns -= 1
        if failed is not None:
            self.supervisor.dead(slave)  # a failed start, as if it had exited at once
            raise failed
        self.spawns += 1
        self.supervisor.watch(slave)
        return slave

    def expect(self, uuid: str) -> Slave:
        """Register a worker the engine did not start (it connects to :attr:`endpoint` itself)."""
        if uuid in self.slaves and self.slaves[uuid].alive:
            raise ValueError(f"a worker with uuid {uuid!r} already exists")
        out = self.output
        slave = Slave(self, uuid, None if out is None else lambda stream, line: out(uuid, stream, line))
        self.slaves.pop(uuid, None)  # a dead namesake (a tag reused) goes to the end
        self.slaves[uuid] = slave
        self.supervisor.expecting(slave)
        return slave

    async def wait_active(self, n: int = 1, timeout: float = 10.0) -> list[Slave]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            active = self.active_slaves()
            if len(active) >= n:
                return active
            if loop.time() > deadline:
                raise CallTimeoutError(f"{len(active)} of {n} workers active after {timeout} s")
            await asyncio.sleep(0.01)

    def active_slaves(self) -> list[Slave]:
        return [s for s in self.slaves.values() if s.state is SlaveState.ACTIVE]

    def live_count(self) -> int:
        """Workers alive or on their way (spawns waiting out a backoff included)."""
        return sum(1 for s in self.slaves.values() if s.alive) + self._pending_spawns

    def starting_count(self) -> int:
        """Workers not active yet (spawns waiting out a backoff included)."""
        starting = (SlaveState.SPAWNED, SlaveState.HANDSHAKEN)
        return sum(1 for s in self.slaves.values() if s.state in starting) + self._pending_spawns

    async def terminate(
        self, slave: Slave, code: int = 1, reason: str = "the engine is shutting down"
    ) -> int | None:
        """Ask *slave* to terminate; SIGTERM it after its reply (B) or after the
        termination timeout; SIGKILL after ``kill_timeout`` more. Returns its exit code."""
        return await slave.terminate(
            code, reason, termination_timeout=self.termination_timeout, kill_timeout=self.kill_timeout
        )

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run *coro* as the engine's task: errors are logged, :meth:`stop` cancels it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task


    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: engine task failed", self.app, exc_info=task.exception())

    # -- events ---------------------------------------------------------------------
    async def open(
        self,
        event: str,
        *,
        slave: Slave | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Invocation:
        """Enqueue *event* (or give it to *slave*, bypassing the queue and ``concurrency``);
        returns at once. Write the request, then iterate the reply. A refused event
        comes back finished, with the runtime's words in ``error``. B sends *headers*
        (a caller's) with the invoke."""
        inv = Invocation(self, event, headers)
        if self.generation is Generation.A:
            inv.a_session = self._next_session  # taken even if refused (§2.3)
            self._next_session += 1
        if slave is not None:
            if slave.state is not SlaveState.ACTIVE:
                inv.finish(self.refusal("the engine is not active"), False)
            else:
                self._assign(inv, slave)
            return inv
        if not self._running:
            inv.finish(self.refusal("the engine is not active"), False)
        elif len(self.queue) >= self.queue_limit:
            inv.finish(self.refusal("the queue is full", queue_full=True), False)
        else:
            self.queue.append(inv)
            self.pump()
        return inv

    async def invoke(
        self,
        event: str,
        chunks: Iterable[bytes] = (),
        *,
        close: bool = True,
        timeout: float | None = 30.0,
        slave: Slave | None = None,
    ) -> Reply:
        """Send *event* with *chunks* (then choke/close if *close*) and collect the reply."""
        inv = await self.open(event, slave=slave)
        for chunk in chunks:
            await inv.write(chunk)
        if close:
            await inv.close()
        return await inv.reply(timeout)

    def refusal(self, what: str, *, queue_full: bool = False) -> tuple[Any, str]:
        """The runtime's error for an event it will not run: A ``(2, what)``
        (resource_error), B ``((0x52FF, 1 | 2), what)`` (overseer: queue full | other)."""
        if self.generation is Generation.A:
            return (A_RESOURCE, what)
        return ((B_OVERSEER, 1 if queue_full else 2), what)

    def withdraw(self, inv: Invocation, error: tuple[Any, str]) -> None:
        """Take a queued *inv* out of the queue and end it with *error*."""
        with contextlib.suppress(ValueError):
            self.queue.remove(inv)
        inv.finish(error, False)

    def cancel(self, inv: Invocation, reason: str = "client disconnected") -> None:
        """The client is gone: withdraw a queued event, or tell its worker and drop the rest.

        While the request side is still open the worker is told (B: an error
        ``[[1, 103], reason]``, ECONNABORTED, which ends the channel and frees
        the slot at once; A: a choke). Once the request had been closed
        nothing more may be sent on the session in either generation, so the
        worker finishes on its own; what it still sends is dropped, and its
        slot is freed at its choke/close.
        """
        if inv.finished.done():
            return
        if inv.slave is None:
            self.withdraw(inv, self.refusal(reason))
            return
        inv.discard()
        if self.generation is Generation.A or inv.request_closed:
            self.background(inv.close())  # A: choke (a no-op when already sent)
        else:
            self.background(inv.send_error(CLIENT_GONE_B, reason))

    def pump(self) -> None:
        """Give queued events to the least-loaded active workers below ``concurrency``;
        with ``autospawn``, start a worker (one at a time) while events still wait."""
        while self.queue:
            candidates = [s for s in self.active_slaves() if s.load < self.concurrency]
            if not candidates:
                break
            inv = self.queue.popleft()
            if not inv.ended:  # not given up while queued
                self._assign(inv, min(candidates, key=lambda s: s.load))
        if (
            self.queue
            and self.autospawn
            and self._running
            and not self.starting_count()
            and self.live_count() < self.pool_limit
        ):
            self.spawn_soon()

    def _assign(self, inv: Invocation, slave: Slave) -> None:
        side, channel = slave.side, slave.channel
        assert side is not None and channel is not None
        session = side.next_channel() if self.generation is Generation.B else inv.a_session
        assert session is not None
        slave.sessions[session] = inv
        loop = asyncio.get_running_loop()
        slave.last_busy = loop.time()
        channel.send(session, side.invoke(session, inv.event, inv.headers))
        if self.generation is Generation.B:
            timeout = inv.timeout if inv.timeout is not None else self.request_timeout
            if timeout is not None:
                inv.timer = loop.call_later(timeout, self._request_timed_out, inv, timeout)
        inv.bind(slave, session)

    def _request_timed_out(self, inv: Invocation, timeout: float) -> None:
        """B: the invocation ran out of time: an error to the worker and to the caller
        (PROTOCOL.md §3.3), and the slot is free."""
        inv.timer = None
        slave, session = inv.slave, inv.session
        if inv.ended or slave is None or session is None:
            return
        error = (B_REQUEST_TIMEOUT, f"the request timed out after {timeout:g} s")
        log.info("%s: %s (channel %d of worker %s)", self.app, error[1], session, slave.uuid)
        side, channel = slave.side, slave.channel
        if side is not None and channel is not None and not channel.closed:
            try:
                channel.send(session, side.error(session, *error))
            except CocaineError:  # our side had already closed: nothing may be sent
                side.sessions.pop(session, None)  # the worker's late frames are dropped
        slave.release(session, error, False)


def default_python_command(script: str) -> list[str]:
    """``[sys.executable, script]``: a command prefix for a Python worker script."""
    return [sys.executable, script]
