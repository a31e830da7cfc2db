"""The worker: a cocaine app process and its lifecycle.

A :class:`Worker` connects to the runtime's UNIX socket (``--endpoint``),
says who it is (handshake), keeps the runtime convinced it is alive
(heartbeats), runs a handler per invocation (through
:class:`~cocaine_http.aio.sessions.Sessions`) and leaves when asked
(terminate)::

    worker = Worker()                 # runtime flags from sys.argv

    @worker.on("echo")
    async def echo(request, response):
        async for chunk in request:
            await response.write(chunk)
        # returning closes the response

    worker.run()                      # blocks; exits the process with the code below

Lifecycle (docs/worker.md has the whole story)::

    on_startup hooks -> connect -> handshake + heartbeat -> "connect"
      -> sessions ...  (heartbeat every heartbeat_interval)
      -> terminate from the runtime, SIGTERM or SIGINT: "terminate";
         refuse new invokes; in-flight sessions get grace_period, then are
         aborted; on_shutdown hooks; terminate reply; exit 0
      -> no answer for disown_timeout: "disown", exit 3
      -> connection lost: one log line, exit 0 after a terminate, else 1

Exit codes: :data:`EXIT_OK` 0, :data:`EXIT_LOST` 1, :data:`EXIT_CONFIG` 2,
:data:`EXIT_DISOWNED` 3, :data:`EXIT_STARTUP` 4.

This module is the process: its public API, its states
(:class:`WorkerState`), signals, hooks and exit codes. What exists only once
connected (the channel, the sans-IO
:class:`~cocaine_http.protocol.worker.WorkerProtocol`, the sessions, flow
control, the handler threads) lives on one
:class:`~cocaine_http.aio.connection.RuntimeConnection`, which tells the
worker when the runtime asks to terminate, stops answering, or goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..config import WorkerConfig
from ..errors import ConnectError, StartupError
from ..protocol.worker import Terminate
from .connection import RuntimeConnection
from .events import EventEmitter
from .handlers import Handler, Registered, registered

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DISOWNED",
    "EXIT_LOST",
    "EXIT_OK",
    "EXIT_STARTUP",
    "Worker",
    "WorkerState",
]

log = logging.getLogger("cocaine_http.worker")

EXIT_OK = 0
#: The runtime connection was lost (or never made) without a terminate.
EXIT_LOST = 1
EXIT_CONFIG = 2
#: The runtime stopped answering heartbeats.
EXIT_DISOWNED = 3
#: An ``on_startup`` hook failed.
EXIT_STARTUP = 4

#: The reason we give when we end the worker ourselves (signal, :meth:`Worker.stop`).
SHUTDOWN_REASON = "worker shut down"

Hook = Callable[[], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])


def _share_loop(
    loop: asyncio.AbstractEventLoop | None, ours: asyncio.AbstractEventLoop | None = None
) -> None:
    """Register *loop* as the services' sync facade default (``None``: withdraw *ours*).

    Sync handlers run in the worker's threads; a ``SyncClient`` made there then
    calls through the worker's loop and shares its connections instead of
    starting a private loop thread. Imported here, not at the top: the service
    clients are optional for a worker, and ``import cocaine_http.aio.worker`` stays
    free of them (and of any import cycle they might grow).
    """
    try:
        from ..services import sync
    except ImportError:  # pragma: no cover - services are part of the package
        return
    if loop is not None:
        sync.set_default_loop(loop)
    elif sync.get_default_loop() is ours:  # a registration made since is not ours to clear
        sync.set_default_loop(None)


class WorkerState(enum.IntEnum):
    """Where a :class:`Worker` is in its life, in order (each state follows the one above)."""

    #: Made, not served yet.
    NEW = 0
    #: Running the ``on_startup`` hooks, then connecting.
    STARTING = 1
    #: Connected: taking sessions, heartbeating.
    RUNNING = 2
    #: Asked to stop (by the runtime, a signal or :meth:`Worker.stop`): new invokes
    #: are refused, the sessions in flight get the grace period.
    DRAINING = 3
    #: The drain is over: the ``on_shutdown`` hooks, then the terminate reply.
    CLOSING = 4
    #: Left: the connection is closed or closing, the exit code is known.
    DONE = 5


class Worker:
    """A cocaine worker process (see the module docstring).

    ``Worker(argv=None, *, config=None, handle_signals=True, **options)``:
    the runtime's flags come from *argv* (``sys.argv[1:]`` by default), then
    *config* replaces them if given, then *options* override single fields
    of :class:`~cocaine_http.config.WorkerConfig` (``app``, ``endpoint``,
    ``locator``, ``uuid``, ``protocol``/``generation``, ``heartbeat_interval``,
    ``disown_timeout``, ``grace_period``, ``threads``, ``max_sessions``,
    the read/write marks ...).
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        config: WorkerConfig | None = None,
        handle_signals: bool = True,
        **options: Any,
    ) -> None:
        base = config if config is not None else WorkerConfig.from_argv(argv)
        self.config: WorkerConfig = base.replace(**options)
        self.handle_signals = handle_signals
        #: ``connect``, ``error`` (exc), ``terminate`` (code, reason), ``disown``.
        self.events = EventEmitter()
        #: Async callables run before the handshake, in order; one failing ends the worker (exit 4).
        self.on_startup: list[Hook] = []
        #: Async callables run after the terminate drain (or on any other exit), before the reply.
        self.on_shutdown: list[Hook] = []
        self._handlers: dict[str, Registered] = {}
        self._default: Registered | None = None
        self._state = WorkerState.NEW
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of serve()
        self._done: asyncio.Future[int] | None = None  # serve()'s exit code
        #: The runtime connection: None until connected (and if connecting failed).
        self._connection: RuntimeConnection | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # a second signal while draining: abort now
        self._reply: tuple[int, str] = (1, SHUTDOWN_REASON)
        self._started = False  # the on_startup hooks all completed
        self._hooks_ran = False  # the on_shutdown hooks ran (they run once)
        self._signals: list[int] = []

    def __repr__(self) -> str:
        c = self.config
        return f"<Worker app={c.app!r} uuid={c.uuid!r} protocol={c.protocol} sessions={self.active_sessions}>"

    # -- registration ----------------------------------------------------------
    def on(self, event: str, handler: Handler | None = None) -> Any:
        """Register the handler of *event*: ``worker.on("x", fn)`` or ``@worker.on("x")``.

        ``async def fn(request, response)`` runs on the loop; ``def fn(request,
        response)`` runs in the handler thread pool with blocking streams.
        """
        if handler is None:

            def decorator(fn: F) -> F:
                self.on(event, fn)
                return fn

            return decorator
        if not callable(handler):
            raise TypeError(f"handler for {event!r} is not callable")
        self._handlers[event] = registered(handler)
        return handler

    def on_default(self, handler: Handler | None = None) -> Any:
        """The handler of every event without its own (``request.event`` says which)."""
        if handler is None:

            def decorator(fn: F) -> F:
                self.on_default(fn)
                return fn

            return decorator
        self._default = registered(handler)
        return handler

    @property
    def handlers(self) -> dict[str, Handler]:
        return {name: entry[0] for name, entry in self._handlers.items()}

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the worker runs on (None before :meth:`serve`)."""
        return self._loop

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def active_sessions(self) -> int:
        return self._connection.active_sessions if self._connection is not None else 0

    @property
    def terminating(self) -> bool:
        return self._state >= WorkerState.DRAINING

    # -- running ---------------------------------------------------------------
    def run(self, *, exit: bool = True) -> int:
        """Run the worker on a fresh event loop until it ends; returns the exit code.

        With ``exit=True`` (default) a non-zero code raises ``SystemExit(code)``,
        so a script whose last line is ``worker.run()`` exits the way the
        runtime expects.
        """
        try:
            code = asyncio.run(self.serve())
        except StartupError as exc:
            log.error("cannot start: %s", exc)
            code = exc.exit_code
        if exit and code:
            raise SystemExit(code)
        return code

    async def serve(self) -> int:
        """Run the worker on the current loop until it ends; returns the exit code.

        Raises :class:`~cocaine_http.errors.ConfigError` when the runtime's
        arguments are missing.
        """
        if self._state is not WorkerState.NEW:
            raise RuntimeError("a Worker can be served once")
        self.config.validate_for_run()
        loop = self._loop = asyncio.get_running_loop()
        self._state = WorkerState.STARTING
        self._done = loop.create_future()
        if self.handle_signals:
            self._install_signals(loop)
        _share_loop(loop)
        try:
            code = await self._startup()
            if code is None:
                code = await self._done
        finally:
            try:
                await self._teardown()
            finally:
                _share_loop(None, loop)
        return code

    def stop(self, code: int = 1, reason: str = SHUTDOWN_REASON) -> None:
        """Begin the graceful shutdown as if the runtime had asked; safe from any thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._request_stop(code, reason)
        else:
            loop.call_soon_threadsafe(self._request_stop, code, reason)

    async def _startup(self) -> int | None:
        """The on_startup hooks, then the connection; an exit code if the worker ends here."""
        cfg = self.config
        for hook in list(self.on_startup):
            try:
                await hook()
            except StartupError as exc:
                log.error("startup hook %r failed: %s", hook, exc)
                return exc.exit_code
            except Exception:
                log.exception("startup hook %r failed", hook)
                return EXIT_STARTUP
        self._started = True
        if self._state is not WorkerState.STARTING:  # a signal arrived during startup
            return EXIT_OK
        try:
            connection = await RuntimeConnection.open(
                cfg,
                find_handler=self._find_handler,
                on_terminate=self._on_terminate,
                on_disown=self._on_disown,
                on_lost=self._on_lost,
            )
        except ConnectError as exc:
            log.error("cannot connect to the runtime at %s: %s", cfg.endpoint, exc)
            self.events.emit("error", exc)
            return EXIT_LOST
        self._connection = connection
        connection.start()
        stopping = self.state is WorkerState.DRAINING  # stop() or a signal during the connect
        self._state = WorkerState.RUNNING
        log.debug("connected to %s as %s (protocol %d)", cfg.endpoint, cfg.uuid, cfg.protocol)
        self.events.emit("connect")
        if stopping:
            log.info("stopping as asked while connecting")
            self._begin_shutdown(connection)
        return None

    async def _teardown(self) -> None:
        connection = self._connection
        if connection is not None:
            connection.stop_timer()
        task = self._shutdown_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if connection is not None and connection.sessions:
            connection.sessions.accepting = False
            connection.sessions.abort("the worker is exiting")
            await connection.sessions.settle(0.1)
        if self._started:
            await self._run_shutdown_hooks()
        self._state = WorkerState.DONE
        if connection is not None:
            await connection.close()
        self._remove_signals()

    def _finish(self, code: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    def _find_handler(self, event: str) -> Registered | None:
        return self._handlers.get(event) or self._default

    # -- signals ---------------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._signals.append(sig)

    def _remove_signals(self) -> None:
        loop = self._loop
        if loop is None or not self._signals:
            return
        # The runtime SIGTERMs a worker right after its terminate reply
        # (PROTOCOL.md §3.11): from then on SIGTERM is the normal end and is
        # ignored. asyncio restores SIG_DFL when a handler is removed, so the
        # swap happens with SIGTERM blocked (handler threads block it always).
        replied = self._connection is not None and self._connection.reply_sent
        ignore_term = replied and signal.SIGTERM in self._signals
        if ignore_term:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            # A SIGTERM that came just before the block may be caught but not
            # yet run by Python: signal.signal() runs it first, and once the
            # handler has become SIG_DFL, CPython reports it as "ignored due to
            # race condition" (a traceback on stderr). Setting SIG_IGN while
            # asyncio's handler is still in place lets it run as usual first.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for sig in self._signals:
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        finally:
            if ignore_term:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        self._signals.clear()

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._state in (WorkerState.STARTING, WorkerState.RUNNING):
            log.info("%s: shutting down", name)
            self._request_stop(1, SHUTDOWN_REASON)
        elif self._state is WorkerState.DRAINING:
            log.info("%s while draining: aborting the remaining sessions now", name)
            self._hurry.set()
        # after the drain (and after the reply, where the runtime's SIGTERM is expected): nothing to do

    def _request_stop(self, code: int, reason: str) -> None:
        if self._state is WorkerState.STARTING:
            self._state = WorkerState.DRAINING
            self._reply = (code, reason)
            self.events.emit("terminate", code, reason)
            return  # _startup sees it: ends before connecting, or replies once connected
        connection = self._connection
        if self._state is not WorkerState.RUNNING or connection is None:
            return
        self._reply = (code, reason)
        self.events.emit("terminate", code, reason)
        self._begin_shutdown(connection)

    # -- what the connection tells ------------------------------------------------
    def _on_terminate(self, connection: RuntimeConnection, event: Terminate) -> None:
        """The runtime asked us to terminate (and we have not replied yet)."""
        first = self._state is WorkerState.RUNNING
        self._reply = (event.code, event.reason)  # echo the runtime's words
        if first:
            self.events.emit("terminate", event.code, event.reason)
            self._begin_shutdown(connection)

    def _on_disown(self, connection: RuntimeConnection) -> None:
        log.error(
            "the runtime has not answered for %.1f s: disowned, exiting (%d sessions in flight)",
            self.config.disown_timeout,
            connection.active_sessions,
        )
        self.events.emit("disown")
        connection.sessions.abort("the worker was disowned by the runtime")
        self._finish(EXIT_DISOWNED)

    def _on_lost(self, connection: RuntimeConnection, exc: BaseException | None) -> None:
        if self._state is WorkerState.DONE or (self._done is not None and self._done.done()):
            return
        in_flight = connection.active_sessions
        terminated = connection.terminate_received
        clean = terminated and in_flight == 0
        what = f"the runtime connection was lost ({exc})" if exc else "the runtime closed the connection"
        if clean or connection.reply_sent:
            log.info("%s after terminate; exiting", what)
        else:
            log.warning(
                "%s; exiting (%d sessions in flight%s)",
                what,
                in_flight,
                "" if terminated else ", no terminate received",
            )
        if exc is not None:
            self.events.emit("error", exc)
        connection.sessions.abort("the runtime connection was lost")
        self._finish(EXIT_OK if clean or connection.reply_sent else EXIT_LOST)

    # -- terminate ---------------------------------------------------------------
    def _begin_shutdown(self, connection: RuntimeConnection) -> None:
        self._state = WorkerState.DRAINING
        connection.sessions.accepting = False  # from now on invokes are refused, retryably
        self._shutdown_task = connection.loop.create_task(self._shutdown(connection))

    async def _shutdown(self, connection: RuntimeConnection) -> None:
        grace = self.config.grace_period
        sessions = connection.sessions
        if sessions:
            log.info("draining %d sessions (up to %.1f s)", len(sessions), grace)
            hurry = connection.loop.create_task(self._hurry.wait())
            try:
                waiters: list[asyncio.Future[Any]] = [sessions.idle(), hurry]
                await asyncio.wait(waiters, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hurry.cancel()
        if sessions:
            log.warning("aborting %d sessions still running after the grace period", len(sessions))
            sessions.abort("the worker is shutting down")
            await sessions.settle(0.25)
        self._state = WorkerState.CLOSING
        await self._run_shutdown_hooks()
        connection.send_terminate(*self._reply)
        self._finish(EXIT_OK)

    async def _run_shutdown_hooks(self) -> None:
        if self._hooks_ran:
            return
        self._hooks_ran = True
        if not self.on_shutdown:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        for hook in list(self.on_shutdown):
            try:
                await asyncio.wait_for(hook(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                log.error("shutdown hook %r did not finish within the shutdown timeout", hook)
                break
            except Exception:
                log.exception("shutdown hook %r failed", hook)
