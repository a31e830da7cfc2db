"""The worker's connection to the runtime: everything that exists only once connected.

A :class:`RuntimeConnection` is made by :meth:`RuntimeConnection.open`, which
returns it connected (or raises :class:`~cocaine_http.errors.ConnectError`).
It holds the parts of a connected worker, none of which exists before:

    protocol    the sans-IO :class:`~cocaine_http.protocol.worker.WorkerProtocol`
    channel     the transport the protocol's bytes travel on
    outbox      what the sessions write, batched per loop turn
    flow        inbound flow control (pauses reading when requests buffer too much)
    threads     the pool that runs plain ``def`` handlers
    sessions    the invocations in flight (:class:`~cocaine_http.aio.sessions.Sessions`)

and does the connection's own work: the handshake, heartbeats, the disown
watch and the idle-request sweep on one timer, the terminate reply, the close.
What these mean for the process (log lines about leaving, exit codes, the
shutdown) is the :class:`~cocaine_http.aio.worker.Worker`'s: the connection
tells it through three callbacks, ``on_terminate``, ``on_disown`` and
``on_lost``, each given the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..config import WorkerConfig
from ..protocol.worker import Event, Heartbeat, Ignored, Terminate, WorkerProtocol
from .flow import InboundFlow, Outbox
from .handlers import Registered
from .sessions import Sessions
from .threads import HandlerThreads
from .worker_transport import WorkerTransport

__all__ = ["RuntimeConnection"]

log = logging.getLogger("cocaine_http.worker")


class RuntimeConnection:
    """One connected worker's link to the runtime (see the module docstring).

    *find_handler* maps an event name to what the worker registered for it
    (:func:`~.handlers.registered`);
    *on_terminate* is called with the runtime's terminate (not after our
    reply), *on_disown* when the runtime stopped answering heartbeats,
    *on_lost* when the connection closed, whoever closed it.
    """

    def __init__(
        self,
        config: WorkerConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        find_handler: Callable[[str], Registered | None],
        on_terminate: Callable[[RuntimeConnection, Terminate], None],
        on_disown: Callable[[RuntimeConnection], None],
        on_lost: Callable[[RuntimeConnection, BaseException | None], None],
    ) -> None:
        cfg = self.config = config
        self.loop = loop
        self._on_terminate = on_terminate
        self._on_disown = on_disown
        self._on_lost = on_lost
        self.protocol = WorkerProtocol(
            cfg.generation,
            cfg.uuid,
            heartbeat_interval=cfg.heartbeat_interval,
            disown_timeout=cfg.disown_timeout,
            request_idle_timeout=cfg.request_idle_timeout,
        )
        #: Done once the connection has closed (the terminate reply is then out, or lost).
        self.lost: asyncio.Future[None] = loop.create_future()
        #: The runtime asked us to terminate; we sent our reply.
        self.terminate_received = False
        self.reply_sent = False
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False  # the timer is off for good (stop_timer)
        self._last_resume = 0.0
        self.threads = HandlerThreads(max(cfg.threads, 1))  # 0: inline WSGI, def handlers get one
        # The worker's transport, and what it delivers to. (The outbox and the
        # flow need the transport, and the transport delivers to the sessions,
        # which need both: it is made first and told its sink last.)
        channel = self.channel = WorkerTransport(
            cfg.generation,
            self.protocol,
            max_frame_size=cfg.max_frame_size,
            write_high_water=cfg.write_high_water,
        )
        channel.on_close = self._on_close
        self.outbox = Outbox(channel, loop)
        self.flow = InboundFlow(
            channel.pause_reading,
            self._resume_reading,
            session_high=cfg.session_read_high_water,
            high=cfg.read_high_water,
            low=cfg.read_low_water,
        )
        sessions = self.sessions = Sessions(
            loop,
            self.protocol,
            self.outbox,
            self.flow,
            self.threads,
            find_handler=find_handler,
            control=self._on_control,
            max_sessions=cfg.max_sessions,
            sync_write_budget=cfg.sync_write_budget,
        )
        channel.sink = sessions
        channel.on_read_end = sessions.on_read_end

    @classmethod
    async def open(
        cls,
        config: WorkerConfig,
        *,
        find_handler: Callable[[str], Registered | None],
        on_terminate: Callable[[RuntimeConnection, Terminate], None],
        on_disown: Callable[[RuntimeConnection], None],
        on_lost: Callable[[RuntimeConnection, BaseException | None], None],
    ) -> RuntimeConnection:
        """A connection to the runtime at ``config.endpoint``, connected; the handshake
        is not sent yet (:meth:`start`). Raises :class:`~cocaine_http.errors.ConnectError`."""
        conn = cls(
            config,
            asyncio.get_running_loop(),
            find_handler=find_handler,
            on_terminate=on_terminate,
            on_disown=on_disown,
            on_lost=on_lost,
        )
        try:
            await conn.channel.connect(config.endpoint, unix=True)
        except BaseException:
            conn.threads.shutdown()
            raise
        return conn

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    def start(self) -> None:
        """Say who we are (the handshake and the first heartbeat) and start the timer."""
        loop = self.loop
        now = loop.time()
        self._last_resume = now
        self.channel.send(0, self.protocol.start(now))
        self._timer = loop.call_at(self.protocol.next_deadline(), self._on_timer)

    def stop_timer(self) -> None:
        """No more heartbeats, disown checks or idle sweeps (the worker is leaving)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def send_terminate(self, code: int, reason: str) -> None:
        """Our terminate reply, after every session frame still in the outbox."""
        if self.channel.closed:
            return
        self.outbox.flush()  # every session frame goes before the goodbye
        self.channel.send(0, self.protocol.send_terminate(code, reason))
        self.reply_sent = True
        log.info("sent terminate (%d, %r); exiting", code, reason)

    async def close(self) -> None:
        """Send what is left and close; after our terminate reply, give the runtime
        up to a second to read it (and what went before it). Stops the handler threads."""
        channel = self.channel
        self.outbox.flush()
        if not channel.closed:
            if self.reply_sent:
                channel.close_gracefully()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.lost), 1.0)
            channel.close()
        self.threads.shutdown()

    # -- the timer: heartbeats, disown, idle requests ------------------------------
    def _on_timer(self) -> None:
        self._timer = None
        protocol, channel, loop = self.protocol, self.channel, self.loop
        if channel.closed or self._stopped:
            return
        now = loop.time()
        beat = protocol.tick(now)
        if beat:
            channel.send(0, beat)
        if protocol.disowned(now) and not self._reading_paused(now):
            self._on_disown(self)
            return
        idle = protocol.idle_sessions(now, paused=self.flow.paused)
        if idle:
            for s in idle:
                self.sessions.expire(s, protocol.request_idle_timeout)
            self.outbox.flush()
        deadline = protocol.next_deadline()
        if deadline <= now:  # disowned but reading is paused: look again soon
            deadline = now + min(1.0, self.config.heartbeat_interval)
        self._timer = loop.call_at(deadline, self._on_timer)

    def _reading_paused(self, now: float) -> bool:
        """While we hold reading back we cannot see the runtime's answers: no disown then,
        and a full disown period after reading resumed."""
        if self.flow.paused:
            return True
        return now - self._last_resume < self.config.disown_timeout

    def _resume_reading(self) -> None:
        self._last_resume = self.loop.time()
        self.channel.resume_reading()

    # -- what the runtime says that is not about one session ------------------------
    def _on_control(self, event: Event) -> None:
        """The events that are not about one session (those go to :class:`Sessions`)."""
        if type(event) is Heartbeat:
            pass  # WorkerProtocol already noted the sign of life
        elif type(event) is Terminate:
            log.info("the runtime asked to terminate: %r (code %d)", event.reason, event.code)
            self.terminate_received = True
            if not self.reply_sent:
                self._on_terminate(self, event)
        elif type(event) is Ignored:
            log.warning("dropped a message from the runtime: %s", event.error)

    def _on_close(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_lost(self, exc)
