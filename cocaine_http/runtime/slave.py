"""One worker as the runtime holds it: the process, its output, its connection, its sessions.

This module exists so that everything about a *single* worker -- signals,
the crash-log ring, the terminate-then-SIGTERM-then-SIGKILL sequence, the
frames of its sessions -- lives apart from the engine, which decides *which*
worker gets what and when workers come and go. A :class:`Slave` is made by
:meth:`Engine.expect <cocaine_http.runtime.engine.Engine.expect>` (or
``spawn``); it tells its engine about freed session slots through the
``slot_freed`` callable it is given (the engine's ``pump``), and knows
nothing else of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
from collections import deque
from collections.abc import Callable
from typing import Any

from ..aio.flow import InboundFlow
from ..aio.frame_transport import FrameTransport
from ..errors import CocaineError
from ..protocol.frames import Generation
from ..protocol.worker import Choke, Chunk, Error
from .invocation import Invocation
from .side import RuntimeSide

__all__ = ["Slave", "SlaveState"]

#: Longest stdout/stderr line kept whole; longer ones are kept in pieces.
MAX_LINE = 65536


class SlaveState(enum.Enum):
    SPAWNED = "spawned"  #: started (or expected), no handshake yet
    HANDSHAKEN = "handshaken"  #: A: handshake seen, waiting for the first heartbeat
    ACTIVE = "active"
    TERMINATING = "terminating"
    DEAD = "dead"


class Slave:
    """One worker process (or, with :meth:`Engine.expect`, a worker run elsewhere).

    ``slot_freed`` is called when sessions end (its engine hands out queued
    events then); ``on_line(stream, line)`` sees each line the worker prints.
    """

    def __init__(
        self,
        uuid: str,
        on_line: Callable[[str, str], None] | None = None,
        *,
        slot_freed: Callable[[], None],
        crashlog_limit: int = 50,
        answer_heartbeats: bool = True,
    ) -> None:
        self.uuid = uuid
        self._slot_freed = slot_freed
        self.state = SlaveState.SPAWNED
        self.process: asyncio.subprocess.Process | None = None
        self.channel: FrameTransport | None = None
        self.side: RuntimeSide | None = None
        self.flow: InboundFlow | None = None
        self.sessions: dict[int, Invocation] = {}
        #: The crash-log ring: ``(stream, line)``, the last ``crashlog_limit`` lines.
        self.output: deque[tuple[str, str]] = deque(maxlen=crashlog_limit)
        self.on_line = on_line
        self.answer_heartbeats = answer_heartbeats
        self.heartbeats = 0
        self.terminate_sent: tuple[int, str] | None = None
        self.terminate_reply: tuple[int, str] | None = None
        self.terminated_by_engine = False
        self.death_reason: str | None = None
        loop = asyncio.get_running_loop()
        self.spawned_at = loop.time()
        self.last_heartbeat = self.spawned_at
        #: When it last had a session (or became active): the idle clock.
        self.last_busy = self.spawned_at
        self.activated: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[int | None] = loop.create_future()  # returncode (None: no process)
        self.replied: asyncio.Future[None] = loop.create_future()  # the worker's terminate arrived
        self.disconnected: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None  # activation, then heartbeat deadline
        self.readers: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Slave {self.uuid} {self.state.value} pid={self.pid} load={self.load}>"

    # -- process ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    @property
    def load(self) -> int:
        return len(self.sessions)

    @property
    def alive(self) -> bool:
        return self.state is not SlaveState.DEAD

    @property
    def was_active(self) -> bool:
        """It got as far as activation (A: first heartbeat; B: handshake)."""
        a = self.activated
        return a.done() and not a.cancelled() and a.exception() is None

    def lines(self, stream: str | None = None) -> list[str]:
        """Captured output lines (the crash log ring), optionally of one stream."""
        return [line for name, line in self.output if stream is None or name == stream]

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def drop(self) -> None:
        """Close the worker's connection abruptly (the runtime vanished)."""
        if self.channel is not None:
            self.channel.close()

    async def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit; returns its returncode."""
        await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        return self.returncode

    async def wait_active(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(asyncio.shield(self.activated), timeout)

    async def launch(self, argv: list[str], *, cwd: str | None, env: dict[str, str]) -> None:
        """Start the process (its own session, stdin closed) and capture its output."""
        creating = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        )
        try:
            proc = await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                orphan = await creating  # cancelled mid-start: never leave the process behind
                orphan.kill()
                await orphan.wait()
            raise
        self.process = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.readers = [
            asyncio.create_task(self.capture("stdout", proc.stdout)),
            asyncio.create_task(self.capture("stderr", proc.stderr)),
        ]

    def _line(self, name: str, data: bytes) -> None:
        line = data.decode("utf-8", "replace")
        self.output.append((name, line))
        if self.on_line is not None:
            with contextlib.suppress(Exception):  # an echo must never stop the capture
                self.on_line(name, line)

    async def capture(self, name: str, stream: asyncio.StreamReader) -> None:
        """Read one output stream into the ring until EOF."""
        pending = b""
        while data := await stream.read(65536):
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._line(name, line)
            if len(pending) > MAX_LINE:  # a very long line: keep it in pieces
                self._line(name, pending)
                pending = b""
        if pending:
            self._line(name, pending)

    async def terminate(
        self, code: int, reason: str, *, termination_timeout: float, kill_timeout: float
    ) -> int | None:
        """Send the runtime's terminate and wait for the reply or the exit. SIGTERM at
        once after a B reply (as node::v2 does, §3.11), else after *termination_timeout*;
        SIGKILL *kill_timeout* after that. Returns the exit code."""
        loop = asyncio.get_running_loop()
        if self.state is SlaveState.DEAD:
            return self.returncode
        self.terminated_by_engine = True
        deadline = loop.time() + termination_timeout
        if self.channel is not None and not self.channel.closed and self.side is not None:
            self.state = SlaveState.TERMINATING
            self.terminate_sent = (code, reason)
            self.channel.send(0, self.side.terminate(code, reason))
            waits: list[asyncio.Future[Any]] = [self.exited, self.replied, self.disconnected]
            await asyncio.wait(
                [asyncio.shield(w) for w in waits],
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self.replied.done() and self.side.generation is Generation.B:
                self.send_signal(signal.SIGTERM)
        else:
            deadline = loop.time()  # nobody to ask: straight to SIGTERM
        if self.process is None:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), max(0.0, deadline - loop.time()))
        if self.process.returncode is None:
            self.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), kill_timeout)
            except asyncio.TimeoutError:
                self.send_signal(signal.SIGKILL)
                await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), kill_timeout)
        return self.returncode

    # -- sessions ----------------------------------------------------------------------
    def release(self, session: int, error: tuple[Any, str] | None, closed: bool) -> Invocation | None:
        """*session* is over for the engine's bookkeeping: end its invocation, free the slot."""
        inv = self.sessions.pop(session, None)
        if inv is None:
            return None
        inv.finish(error, closed)
        self.last_busy = asyncio.get_running_loop().time()
        self._slot_freed()
        return inv

    def take(self, inv: Invocation, session: int | None) -> int:
        """Open a session for *inv* (A: *session*, the engine-wide id; B: the next
        channel) and send the invoke; returns the session."""
        side, channel = self.side, self.channel
        assert side is not None and channel is not None
        session = side.next_channel() if side.generation is Generation.B else session
        assert session is not None
        self.sessions[session] = inv
        self.last_busy = asyncio.get_running_loop().time()
        channel.send(session, side.invoke(session, inv.event, inv.headers))
        return session

    def abort(self, session: int, error: tuple[Any, str]) -> None:
        """The runtime ends *session* with *error* on both sides (B: a request timeout,
        PROTOCOL.md §3.3): the error to the worker, the end to its invocation."""
        side, channel = self.side, self.channel
        if side is not None and channel is not None and not channel.closed:
            try:
                channel.send(session, side.error(session, *error))
            except CocaineError:  # our side had already closed: nothing may be sent
                side.sessions.pop(session, None)  # the worker's late frames are dropped
        self.release(session, error, False)

    def fail_sessions(self, error: tuple[Any, str]) -> None:
        """End every session with *error* (the worker died, timed out or left)."""
        sessions, self.sessions = self.sessions, {}
        for inv in sessions.values():
            inv.finish(error, False)
        if sessions:
            self._slot_freed()

    def handle(self, event: Chunk | Choke | Error) -> None:
        """A session frame from the worker."""
        if isinstance(event, Chunk):
            inv = self.sessions.get(event.session)
            if inv is not None:
                # (bytes: only a worker's own decoder splits payloads)
                inv.deliver(event.data if type(event.data) is bytes else bytes(event.data))
        elif isinstance(event, Choke):
            if self.release(event.session, None, True) is not None:
                self._close_our_side(event.session)
        else:
            code: Any = (event.category, event.code) if event.category is not None else event.code
            if self.side is not None and self.side.generation is Generation.A:
                inv = self.sessions.get(event.session)  # the choke that follows frees the slot
                if inv is not None and inv.error is None:
                    inv.error = (code, event.message)
            elif self.release(event.session, (code, event.message), False) is not None:
                self._close_our_side(event.session)

    def _close_our_side(self, session: int) -> None:
        """The worker ended *session* first and its invocation is over, so nothing
        more will be written on it: close our side too, so that both ends forget
        the session. A: the choke the runtime sends back (§2.4.4). B: a close; the
        directions are independent there (§3.3), and without it the session would
        stay half-open on both ends for as long as the connection lives."""
        side, channel = self.side, self.channel
        if side is not None and channel is not None and not channel.closed:
            out = side.close_if_open(session)
            if out:
                channel.send(session, out)
