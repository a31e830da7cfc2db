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
:mod:`.supervision` (the registry of workers, deadlines, deaths, backoff,
idle) and :mod:`.pool` (the local runtime's additions: tags, ``info()``).
None of them imports this one: slaves and invocations are given callables,
connections the supervisor, which sees the engine as a :class:`~.supervision.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid as uuid_mod
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from ..config import runtime_argv
from ..protocol.endpoints import format_endpoint, parse_locators
from ..protocol.frames import Generation
from .connection import Listener, WorkerConnection
from .invocation import Invocation, Reply
from .side import B_REQUEST_TIMEOUT, CLIENT_GONE_B, Handshake, HeaderFlavour, RuntimeSide, refusal
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
        self.locator = locator if isinstance(locator, str) else (",".join(locator) if b else locator[0])
        if b:  # B passes every locator endpoint, formatted as boost does
            self.locator = ",".join(format_endpoint(ep) for ep in parse_locators(self.locator))
        self.pool_limit = pool_limit
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        #: A: first heartbeat within startup-timeout (10 s); B: handshake within handshake-timeout
        #: (5 s). Either keyword sets it.
        activation = startup_timeout if startup_timeout is not None else handshake_timeout
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
        #: B: an invocation not over this long after it reached a worker gets an error on
        #: both sides (the profile's request-timeout, 86400 s; a caller's ``request_timeout``
        #: header wins). ``None``: only the header's.
        self.request_timeout = request_timeout
        self.crashlog_limit = crashlog_limit
        self.answer_heartbeats = answer_heartbeats
        self.reply_high_water = reply_high_water
        self.write_high_water = write_high_water
        self.output = output
        self.endpoint = os.path.join(runtime_dir, f"{app}.{os.getpid()}")
        self.listener = Listener(self.endpoint, self._connection)
        self.queue: deque[Invocation] = deque()
        #: Processes started, ever.
        self.spawns = 0
        self._pending_spawns = 0
        self._next_session = 1  # A: one counter per engine, shared by its slaves (§2.3)
        self._running = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.supervisor = Supervisor(
            self,
            RestartPolicy(backoff_base, backoff_max, crash_window, max_start_failures),
            app=app,
            generation=self.generation,
            startup_timeout=activation if activation is not None else (5.0 if b else 10.0),
            heartbeat_timeout=heartbeat_timeout,
            idle_timeout=idle_timeout,
            history=history,
        )

    # -- the supervisor's registry, records and knobs (see there), read here --------
    @property
    def slaves(self) -> dict[str, Slave]:
        return self.supervisor.slaves

    @property
    def crashlogs(self) -> deque[tuple[str, list[tuple[str, str]]]]:
        return self.supervisor.crashlogs

    @property
    def policy(self) -> RestartPolicy:
        return self.supervisor.policy

    @property
    def startup_timeout(self) -> float:
        return self.supervisor.startup_timeout

    @property
    def heartbeat_timeout(self) -> float:
        return self.supervisor.heartbeat_timeout

    @property
    def idle_timeout(self) -> float:
        return self.supervisor.idle_timeout

    @property
    def history(self) -> int:
        return self.supervisor.history

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
        if self.listener.listening:
            return
        await self.listener.open()
        self._running = True
        self.supervisor.start()

    def _connection(self) -> WorkerConnection:
        return WorkerConnection(
            self.supervisor,
            headers=self.headers,
            write_high_water=self.write_high_water,
            reply_high_water=self.reply_high_water,
        )

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
        await asyncio.gather(*(self.terminate(s) for s in live), return_exceptions=True)
        for task in list(self._tasks):  # pending spawns and restarts included
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.supervisor.reap()
        self.listener.close()

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
        slave = Slave(
            uuid,
            None if out is None else lambda stream, line: out(uuid, stream, line),
            slot_freed=self.pump,
            crashlog_limit=self.crashlog_limit,
            answer_heartbeats=self.answer_heartbeats,
        )
        self.supervisor.expecting(slave)  # a dead namesake (a tag reused) goes to the end
        return slave

    async def wait_active(self, n: int = 1, timeout: float = 10.0) -> list[Slave]:
        """Wait until *n* workers are active (:class:`CallTimeoutError` after *timeout*)."""
        return await self.supervisor.wait_active(n, timeout)

    def active_slaves(self) -> list[Slave]:
        return self.supervisor.active()

    def live_count(self) -> int:
        """Workers alive or on their way (spawns waiting out a backoff included)."""
        return self.supervisor.count_alive() + self._pending_spawns

    def starting_count(self) -> int:
        """Workers not active yet (spawns waiting out a backoff included)."""
        return self.supervisor.count_starting() + self._pending_spawns

    async def terminate(
        self, slave: Slave, code: int = 1, reason: str = "the engine is shutting down"
    ) -> int | None:
        """Ask *slave* to terminate; SIGTERM it after its reply (B) or after the
        termination timeout; SIGKILL after ``kill_timeout`` more. Returns its exit code."""
        return await slave.terminate(
            code, reason, termination_timeout=self.termination_timeout, kill_timeout=self.kill_timeout
        )

    def retire(self, slave: Slave, code: int, reason: str) -> None:
        """:meth:`terminate` *slave* in the background (the supervisor's idle terminate)."""
        self.background(self.terminate(slave, code, reason))

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
        inv = Invocation(event, headers, generation=self.generation, withdraw=self.withdraw)
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
        """The runtime's error for an event it will not run (see :func:`.side.refusal`)."""
        return refusal(self.generation, what, queue_full=queue_full)

    def withdraw(self, inv: Invocation, error: tuple[Any, str]) -> None:
        """Take a queued *inv* out of the queue and end it with *error*."""
        with contextlib.suppress(ValueError):
            self.queue.remove(inv)
        inv.finish(error, False)

    def fail_waiting(self, message: str) -> None:
        """The app failed to start (the supervisor gave up): end every queued event."""
        if self.queue:
            log.error("%s: %s; failing %d waiting event(s)", self.app, message, len(self.queue))
        for inv in list(self.queue):
            self.withdraw(inv, self.refusal(message))

    def cancel(self, inv: Invocation, reason: str = "client disconnected") -> None:
        """The client is gone: withdraw a queued event, or tell its worker and drop the rest.

        While the request is open the worker is told (B: an error ``[[1, 103], reason]``,
        ECONNABORTED, which ends the channel and frees the slot at once; A: a choke). Once
        it was closed nothing more may be sent on the session in either generation, so the
        worker finishes on its own; what it still sends is dropped, and its slot is freed
        at its choke/close."""
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

    def replace_crashed(self) -> None:
        """An active worker died unexpectedly: with ``restart``, start another."""
        if self.restart and self._running:
            self.spawn_soon()

    def pump(self) -> None:
        """Give queued events to the least-loaded active workers below ``concurrency``;
        with ``autospawn``, start a worker (one at a time) while events still wait."""
        while self.queue:
            candidates = [s for s in self.supervisor.active() if s.load < self.concurrency]
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
        session = slave.take(inv, inv.a_session)
        if self.generation is Generation.B:
            timeout = inv.timeout if inv.timeout is not None else self.request_timeout
            if timeout is not None:
                inv.timer = asyncio.get_running_loop().call_later(
                    timeout, self._request_timed_out, inv, slave, timeout
                )
        inv.bind(slave, session)

    def _request_timed_out(self, inv: Invocation, slave: Slave, timeout: float) -> None:
        """B: the invocation (on *slave*) ran out of time: an error to the worker and to
        the caller (PROTOCOL.md §3.3), and the slot is free."""
        inv.timer = None
        session = inv.session
        if inv.ended or session is None:
            return
        error = (B_REQUEST_TIMEOUT, f"the request timed out after {timeout:g} s")
        log.info("%s: %s (channel %d of worker %s)", self.app, error[1], session, slave.uuid)
        slave.abort(session, error)
