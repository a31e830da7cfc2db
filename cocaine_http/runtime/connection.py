"""One accepted worker connection, as the engine's IO: handshake, control frames, routing.

This module exists to keep the socket-facing glue in one place: a
:class:`WorkerConnection` owns the :class:`~cocaine_http.aio.frame_transport.FrameTransport`
and the sans-IO :class:`~.side.RuntimeSide` of one connection, binds the
handshake's uuid to the :class:`~.slave.Slave` the engine expects (an
unknown uuid drops the connection, §2.4.2), answers heartbeats, handles the
worker's terminate, and hands session frames to the slave. Deadlines and
deaths are the :class:`~.supervision.Supervisor`'s.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

from ..aio.flow import InboundFlow
from ..aio.frame_transport import FrameTransport
from ..protocol.frames import Frame, Generation
from ..protocol.worker import Choke, Chunk, Error, Heartbeat, Ignored, Terminate
from .side import Handshake, LateFrame, RuntimeSide
from .slave import Slave, SlaveState

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["WorkerConnection"]

log = logging.getLogger("cocaine_http.runtime.engine")


class WorkerConnection:
    """One accepted worker connection, before and after its handshake."""

    __slots__ = ("channel", "engine", "side", "slave")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.channel = FrameTransport(
            engine.generation, self.on_frame, write_high_water=engine.write_high_water
        )
        self.side = RuntimeSide(engine.generation, engine.headers)
        self.slave: Slave | None = None
        self.channel.on_close = self.on_close

    @classmethod
    def protocol_factory(cls, engine: Engine) -> asyncio.BaseProtocol:
        """For ``create_unix_server``: a new connection's protocol."""
        return cls(engine).channel.make_protocol()

    def on_frame(self, frame: Frame) -> None:
        event = self.side.receive(frame)
        if self.slave is None:
            if type(event) is not Handshake:
                log.warning("dropping a worker connection: %s", getattr(event, "error", event))
                self.channel.close()
                return
            self.slave = self._bind(event.uuid)
            if self.slave is None:
                self.channel.close()
            return
        self._route(self.slave, event)

    def _bind(self, uuid: str) -> Slave | None:
        engine = self.engine
        slave = engine.slaves.get(uuid)
        if slave is None or slave.channel is not None or not slave.alive:
            log.warning("%s: dropping a connection with unknown uuid %r", engine.app, uuid)
            return None
        slave.channel, slave.side = self.channel, self.side
        slave.flow = InboundFlow(
            self.channel.pause_reading,
            self.channel.resume_reading,
            session_high=engine.reply_high_water,
            high=4 * engine.reply_high_water,
            low=engine.reply_high_water,
        )
        if engine.generation is Generation.B:
            engine.supervisor.activate(slave)  # node::v2 activates on the handshake (§3.4.2)
        else:
            slave.state = SlaveState.HANDSHAKEN  # A: on the first heartbeat (§2.4.2)
        return slave

    def _route(self, slave: Slave, event: Any) -> None:
        kind = type(event)
        if kind is Chunk or kind is Choke or kind is Error:
            slave.handle(event)
        elif kind is Heartbeat:
            if slave.answer_heartbeats:
                self.channel.send(0, self.side.heartbeat())  # echoed at once (§2.4.3, §3.3)
            self.engine.supervisor.heartbeat(slave)
        elif kind is Terminate:
            slave.terminate_reply = (event.code, event.reason)
            if not slave.replied.done():
                slave.replied.set_result(None)
            if slave.state is not SlaveState.TERMINATING:
                # A worker-initiated terminate: drop it, fail its sessions, SIGTERM (§2.4.5, §3.11).
                log.info("worker %s terminated itself: %r (code %d)", slave.uuid, event.reason, event.code)
                slave.state = SlaveState.TERMINATING
                slave.terminated_by_engine = True
                slave.fail_sessions(self.engine.supervisor.error(event.reason or "worker terminated"))
                slave.send_signal(signal.SIGTERM)
        elif kind is Ignored:
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
        slave.fail_sessions(self.engine.supervisor.error("the worker disconnected"))
        if slave.process is None:
            self.engine.supervisor.dead(slave)
