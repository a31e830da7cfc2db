"""The engine's IO: the app socket, and each worker connection's handshake, control frames, routing.

This module exists to keep the socket-facing glue in one place: a
:class:`WorkerConnection` owns the :class:`~cocaine_http.aio.frame_transport.FrameTransport`
and the sans-IO :class:`~.side.RuntimeSide` of one connection, binds the
handshake's uuid to the :class:`~.slave.Slave` the engine expects (an
unknown uuid drops the connection, §2.4.2), answers heartbeats, handles the
worker's terminate, and hands session frames to the slave. Deadlines and
deaths are the :class:`~.supervision.Supervisor`'s: a connection is given
the supervisor (whose registry it looks the uuid up in) and the engine's
connection knobs, not the engine. A :class:`Listener` is the app socket
that accepts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from ..aio.flow import InboundFlow
from ..aio.frame_transport import FrameTransport
from ..protocol.frames import Frame, Generation
from ..protocol.worker import Choke, Chunk, Error, Event, Heartbeat, Ignored, Terminate
from .side import Handshake, HeaderFlavour, LateFrame, RuntimeSide
from .slave import Slave, SlaveState
from .supervision import Supervisor

__all__ = ["Listener", "WorkerConnection"]

log = logging.getLogger("cocaine_http.runtime.engine")


class WorkerConnection:
    """One accepted worker connection, before and after its handshake."""

    __slots__ = ("channel", "reply_high_water", "side", "slave", "supervisor")

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        headers: HeaderFlavour,
        write_high_water: int,
        reply_high_water: int,
    ) -> None:
        self.supervisor = supervisor
        generation = supervisor.generation
        self.channel = FrameTransport(generation, self.on_frame, write_high_water=write_high_water)
        self.side = RuntimeSide(generation, headers)
        #: Reply bytes buffered per session before the worker is paused (x4: all sessions).
        self.reply_high_water = reply_high_water
        self.slave: Slave | None = None
        self.channel.on_close = self.on_close

    def protocol(self) -> asyncio.BaseProtocol:
        """For ``create_unix_server``: this connection's protocol."""
        return self.channel.make_protocol()

    def on_frame(self, frame: Frame) -> None:
        event = self.side.receive(frame)
        if self.slave is None:
            if not isinstance(event, Handshake):
                log.warning("dropping a worker connection: %s", getattr(event, "error", event))
                self.channel.close()
                return
            self.slave = self._bind(event.uuid)
            if self.slave is None:
                self.channel.close()
            return
        self._route(self.slave, event)

    def _bind(self, uuid: str) -> Slave | None:
        supervisor = self.supervisor
        slave = supervisor.slaves.get(uuid)
        if slave is None or slave.channel is not None or not slave.alive:
            log.warning("%s: dropping a connection with unknown uuid %r", supervisor.app, uuid)
            return None
        slave.channel, slave.side = self.channel, self.side
        slave.flow = InboundFlow(
            self.channel.pause_reading,
            self.channel.resume_reading,
            session_high=self.reply_high_water,
            high=4 * self.reply_high_water,
            low=self.reply_high_water,
        )
        if supervisor.generation is Generation.B:
            supervisor.activate(slave)  # node::v2 activates on the handshake (§3.4.2)
        else:
            slave.state = SlaveState.HANDSHAKEN  # A: on the first heartbeat (§2.4.2)
        return slave

    def _route(self, slave: Slave, event: Handshake | Event) -> None:
        if isinstance(event, (Chunk, Choke, Error)):
            slave.handle(event)
        elif isinstance(event, Heartbeat):
            if slave.answer_heartbeats:
                self.channel.send(0, self.side.heartbeat())  # echoed at once (§2.4.3, §3.3)
            self.supervisor.heartbeat(slave)
        elif isinstance(event, Terminate):
            slave.terminate_reply = (event.code, event.reason)
            if not slave.replied.done():
                slave.replied.set_result(None)
            if slave.state is not SlaveState.TERMINATING:
                # A worker-initiated terminate: drop it, fail its sessions, SIGTERM (§2.4.5, §3.11).
                log.info("worker %s terminated itself: %r (code %d)", slave.uuid, event.reason, event.code)
                slave.state = SlaveState.TERMINATING
                slave.terminated_by_engine = True
                slave.fail_sessions(self.supervisor.error(event.reason or "worker terminated"))
                slave.send_signal(signal.SIGTERM)
        elif isinstance(event, Ignored):
            level = logging.DEBUG if isinstance(event.error, LateFrame) else logging.WARNING
            log.log(level, "worker %s: dropped a message: %s", slave.uuid, event.error)

    def on_close(self, exc: BaseException | None) -> None:
        slave = self.slave
        if slave is None:
            return
        if not slave.disconnected.done():
            slave.disconnected.set_result(None)
        if slave.state is not SlaveState.DEAD:
            slave.state = SlaveState.TERMINATING  # no more work for it; the process watcher finishes it
        slave.fail_sessions(self.supervisor.error("the worker disconnected"))
        if slave.process is None:
            self.supervisor.dead(slave)


class Listener:
    """The app socket, ``<runtime_dir>/<app>.<pid>``: a :class:`WorkerConnection`
    from *connect* for each worker that connects."""

    def __init__(self, endpoint: str, connect: Callable[[], WorkerConnection]) -> None:
        self.endpoint = endpoint
        self.connect = connect
        self._server: asyncio.AbstractServer | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        """Listen at :attr:`endpoint`, removing a stale socket file first."""
        os.makedirs(os.path.dirname(self.endpoint), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: self.connect().protocol(), self.endpoint)

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)
