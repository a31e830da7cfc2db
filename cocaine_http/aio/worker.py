"""The worker: a cocaine app process and its lifecycle.

A :class:`Worker` connects to the runtime's UNIX socket (``--endpoint``),
says who it is (handshake), keeps the runtime convinced it is alive
(heartbeats), runs a handler per invocation (through
:class:`~cocaine_http.aio.sessions.Sessions`) and leaves when asked
(terminate), all over one :class:`~cocaine_http.aio.channel.Channel` driven by
the sans-IO :class:`~cocaine_http.protocol.worker.WorkerProtocol`::

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
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..config import WorkerConfig
from ..errors import ConnectError, StartupError
from ..protocol.worker import Event, Heartbeat, Ignored, Terminate, WorkerProtocol
from .channel import Channel
from .events import EventEmitter
from .flow import InboundFlow, Outbox
from .sessions import Handler, Sessions
from .threads import HandlerThreads

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DISOWNED",
    "EXIT_LOST",
    "EXIT_OK",
    "EXIT_STARTUP",
    "Worker",
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


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


# Worker states
_NEW, _STARTING, _RUNNING, _DRAINING, _CLOSING, _DONE = range(6)


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
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._default: tuple[Handler, bool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol: WorkerProtocol | None = None
        self._channel: Channel | None = None
        self._flow: InboundFlow | None = None
        self._outbox: Outbox | None = None
        self._threads: HandlerThreads | None = None
        self._sessions: Sessions | None = None  # made with the connection
        self._state = _NEW
        self._done: asyncio.Future[int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._hurry: asyncio.Event | None = None
        self._terminate_received = False
        self._reply: tuple[int, str] = (1, SHUTDOWN_REASON)
        self._reply_sent = False
        self._hooks_ran = False
        self._started = False  # the on_startup hooks all completed
        self._conn_lost: asyncio.Future[None] | None = None
        self._last_resume = 0.0
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
        self._handlers[event] = (handler, _is_async(handler))
        return handler

    def on_default(self, handler: Handler | None = None) -> Any:
        """The handler of every event without its own (``request.event`` says which)."""
        if handler is None:

            def decorator(fn: F) -> F:
                self.on_default(fn)
                return fn

            return decorator
        self._default = (handler, _is_async(handler))
        return handler

    @property
    def handlers(self) -> dict[str, Handler]:
        return {name: h for name, (h, _) in self._handlers.items()}

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the worker runs on (None before :meth:`serve`)."""
        return self._loop

    @property
    def active_sessions(self) -> int:
        return len(self._sessions) if self._sessions is not None else 0

    @property
    def terminating(self) -> bool:
        return self._state >= _DRAINING

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
        if self._state != _NEW:
            raise RuntimeError("a Worker can be served once")
        self.config.validate_for_run()
        loop = self._loop = asyncio.get_running_loop()
        self._state = _STARTING
        self._done = loop.create_future()
        self._hurry = asyncio.Event()
        if self.handle_signals:
            self._install_signals()
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
        if self._state != _STARTING:  # a signal arrived during startup
            return EXIT_OK
        loop = self._loop
        assert loop is not None
        protocol = self._protocol = WorkerProtocol(
            cfg.generation,
            cfg.uuid,
            heartbeat_interval=cfg.heartbeat_interval,
            disown_timeout=cfg.disown_timeout,
            request_idle_timeout=cfg.request_idle_timeout,
        )
        channel = self._channel = Channel(
            cfg.generation,
            worker=protocol,
            max_frame_size=cfg.max_frame_size,
            write_high_water=cfg.write_high_water,
        )
        channel.on_close = self._on_close
        self._conn_lost = loop.create_future()
        self._outbox = Outbox(channel, loop)
        self._flow = InboundFlow(
            channel.pause_reading,
            self._resume_reading,
            session_high=cfg.session_read_high_water,
            high=cfg.read_high_water,
            low=cfg.read_low_water,
        )
        self._threads = HandlerThreads(max(cfg.threads, 1))  # 0: inline WSGI, def handlers get one
        sessions = self._sessions = Sessions(
            loop,
            protocol,
            self._outbox,
            self._flow,
            self._threads,
            find_handler=self._find_handler,
            control=self._on_control,
            max_sessions=cfg.max_sessions,
            sync_write_budget=cfg.sync_write_budget,
        )
        channel.sink = sessions
        channel.on_read_end = sessions.on_read_end
        try:
            await channel.connect(cfg.endpoint, unix=True)
        except ConnectError as exc:
            log.error("cannot connect to the runtime at %s: %s", cfg.endpoint, exc)
            self.events.emit("error", exc)
            return EXIT_LOST
        now = loop.time()
        self._last_resume = now
        channel.send(0, protocol.start(now))
        self._state = _RUNNING
        self._arm_timer()
        log.debug("connected to %s as %s (protocol %d)", cfg.endpoint, cfg.uuid, cfg.protocol)
        self.events.emit("connect")
        return None

    async def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._shutdown_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._sessions:
            self._sessions.accepting = False
            self._sessions.abort("the worker is exiting")
            await self._sessions.settle(0.1)
        if self._started:
            await self._run_shutdown_hooks()
        self._state = _DONE
        channel = self._channel
        if self._outbox is not None:
            self._outbox.flush()
        if channel is not None and not channel.closed:
            if self._reply_sent:
                # Let the terminate reply (and anything before it) reach the runtime.
                channel.close_gracefully()
                if self._conn_lost is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._conn_lost), 1.0)
            channel.close()
        if self._threads is not None:
            self._threads.shutdown()
        self._remove_signals()

    def _finish(self, code: int) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(code)

    # -- signals ---------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = self._loop
        assert loop is not None
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
        # The runtime SIGTERMs a worker right after its terminate reply
        # (PROTOCOL.md §3.11): from then on SIGTERM is the normal end and is
        # ignored. asyncio restores SIG_DFL when a handler is removed, so the
        # swap happens with SIGTERM blocked (handler threads block it always).
        ignore_term = self._reply_sent and signal.SIGTERM in self._signals
        if ignore_term:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            for sig in self._signals:
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)  # type: ignore[union-attr]
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        finally:
            if ignore_term:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        self._signals.clear()

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._state in (_STARTING, _RUNNING):
            log.info("%s: shutting down", name)
            self._request_stop(1, SHUTDOWN_REASON)
        elif self._state == _DRAINING:
            log.info("%s while draining: aborting the remaining sessions now", name)
            assert self._hurry is not None
            self._hurry.set()
        # after the drain (and after the reply, where the runtime's SIGTERM is expected): nothing to do

    def _request_stop(self, code: int, reason: str) -> None:
        if self._state == _STARTING:
            self._state = _DRAINING
            self._reply = (code, reason)
            self.events.emit("terminate", code, reason)
            return  # _startup sees the state and ends without connecting
        if self._state != _RUNNING:
            return
        self._reply = (code, reason)
        self.events.emit("terminate", code, reason)
        self._begin_shutdown()

    # -- timers ----------------------------------------------------------------
    def _arm_timer(self) -> None:
        protocol, loop = self._protocol, self._loop
        assert protocol is not None and loop is not None
        self._timer = loop.call_at(protocol.next_deadline(), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        protocol, channel, loop = self._protocol, self._channel, self._loop
        assert protocol is not None and channel is not None and loop is not None
        if channel.closed or self._state >= _DONE:
            return
        now = loop.time()
        beat = protocol.tick(now)
        if beat:
            channel.send(0, beat)
        if protocol.disowned(now) and not self._reading_paused(now):
            self._disown(now)
            return
        flow, sessions = self._flow, self._sessions
        idle = protocol.idle_sessions(now, paused=flow is not None and flow.paused)
        if idle and sessions is not None:
            for s in idle:
                sessions.expire(s, protocol.request_idle_timeout)
            if self._outbox is not None:
                self._outbox.flush()
        deadline = protocol.next_deadline()
        if deadline <= now:  # disowned but reading is paused: look again soon
            deadline = now + min(1.0, self.config.heartbeat_interval)
        self._timer = loop.call_at(deadline, self._on_timer)

    def _reading_paused(self, now: float) -> bool:
        """While we hold reading back we cannot see the runtime's answers: no disown then,
        and a full disown period after reading resumed."""
        flow = self._flow
        if flow is not None and flow.paused:
            return True
        return now - self._last_resume < self.config.disown_timeout

    def _resume_reading(self) -> None:
        assert self._channel is not None and self._loop is not None
        self._last_resume = self._loop.time()
        self._channel.resume_reading()

    def _disown(self, now: float) -> None:
        log.error(
            "the runtime has not answered for %.1f s: disowned, exiting (%d sessions in flight)",
            self.config.disown_timeout,
            self.active_sessions,
        )
        self.events.emit("disown")
        if self._sessions is not None:
            self._sessions.abort("the worker was disowned by the runtime")
        self._finish(EXIT_DISOWNED)

    # -- the connection ---------------------------------------------------------
    def _on_close(self, exc: BaseException | None) -> None:
        if self._conn_lost is not None and not self._conn_lost.done():
            self._conn_lost.set_result(None)
        if self._state >= _DONE or (self._done is not None and self._done.done()):
            return
        in_flight = self.active_sessions
        clean = self._terminate_received and in_flight == 0
        what = f"the runtime connection was lost ({exc})" if exc else "the runtime closed the connection"
        if clean or self._reply_sent:
            log.info("%s after terminate; exiting", what)
        else:
            log.warning(
                "%s; exiting (%d sessions in flight%s)",
                what,
                in_flight,
                "" if self._terminate_received else ", no terminate received",
            )
        if exc is not None:
            self.events.emit("error", exc)
        if self._sessions is not None:
            self._sessions.abort("the runtime connection was lost")
        self._finish(EXIT_OK if clean or self._reply_sent else EXIT_LOST)

    def _on_control(self, event: Event) -> None:
        """The events that are not about one session (those go to :class:`Sessions`)."""
        if type(event) is Heartbeat:
            pass  # WorkerProtocol already noted the sign of life
        elif type(event) is Terminate:
            self._on_terminate(event)
        elif type(event) is Ignored:
            log.warning("dropped a message from the runtime: %s", event.error)

    def _find_handler(self, event: str) -> tuple[Handler, bool] | None:
        return self._handlers.get(event) or self._default

    def _on_terminate(self, event: Terminate) -> None:
        log.info("the runtime asked to terminate: %r (code %d)", event.reason, event.code)
        self._terminate_received = True
        if self._reply_sent:
            return
        first = self._state == _RUNNING
        self._reply = (event.code, event.reason)  # echo the runtime's words
        if first:
            self.events.emit("terminate", event.code, event.reason)
            self._begin_shutdown()

    # -- terminate ---------------------------------------------------------------
    def _begin_shutdown(self) -> None:
        assert self._loop is not None
        self._state = _DRAINING
        if self._sessions is not None:
            self._sessions.accepting = False  # from now on invokes are refused, retryably
        self._shutdown_task = self._loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        loop = self._loop
        assert loop is not None and self._hurry is not None
        grace = self.config.grace_period
        sessions = self._sessions
        assert sessions is not None
        if sessions:
            log.info("draining %d sessions (up to %.1f s)", len(sessions), grace)
            hurry = loop.create_task(self._hurry.wait())
            try:
                idle = sessions.idle()
                await asyncio.wait([idle, hurry], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hurry.cancel()
        if sessions:
            log.warning("aborting %d sessions still running after the grace period", len(sessions))
            sessions.abort("the worker is shutting down")
            await sessions.settle(0.25)
        self._state = _CLOSING
        await self._run_shutdown_hooks()
        channel, protocol = self._channel, self._protocol
        assert channel is not None and protocol is not None
        if not channel.closed:
            code, reason = self._reply
            assert self._outbox is not None
            self._outbox.flush()  # every session frame goes before the goodbye
            channel.send(0, protocol.send_terminate(code, reason))
            self._reply_sent = True
            log.info("sent terminate (%d, %r); exiting", code, reason)
        self._finish(EXIT_OK)

    async def _run_shutdown_hooks(self) -> None:
        if self._hooks_ran:
            return
        self._hooks_ran = True
        if not self.on_shutdown:
            return
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + self.config.shutdown_timeout
        for hook in list(self.on_shutdown):
            try:
                await asyncio.wait_for(hook(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                log.error("shutdown hook %r did not finish within the shutdown timeout", hook)
                break
            except Exception:
                log.exception("shutdown hook %r failed", hook)
