"""The runtime's side of worker connections: an app engine for tests and the local runtime.

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

Protocol handling is sans-IO (:class:`RuntimeSide`, built on the shared
message catalog, session tables and header codec); IO goes through
:class:`~cocaine_http.channel.Channel` with ``on_frame``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import sys
import uuid as uuid_mod
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..channel import Channel
from ..errors import (
    CallTimeoutError,
    ChannelClosedError,
    CocaineError,
    FrameFormatError,
    UnexpectedMessageError,
    UnknownMessageError,
)
from ..protocol.catalog import B_CONTROL, B_CONTROL_CHANNEL, B_STREAM, A, MessageEncoder, raw_header, uint
from ..protocol.endpoints import format_endpoint, parse_locators
from ..protocol.frames import Frame, Generation
from ..protocol.headers import HeaderTable, tracing_headers
from ..protocol.session import Msg, SessionState
from ..protocol.wire import as_text, packb
from ..protocol.worker import Choke, Chunk, Error, Heartbeat, Ignored, Terminate
from ..streams import InboundFlow

__all__ = [
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
#: The 0.12.3.x runtime's headers: static indices 80, 81, 82 forced to 8-byte uints (§3.11).
_INDEXED_H0 = b"\x93" + b"".join(b"\xcf" + i.to_bytes(8, "big") for i in (80, 81, 82))

# Error codes the runtime itself uses towards clients (A: bare int; B: (category, code)).
_A_RESOURCE = 2
_B_OVERSEER = 0x52FF
_B_SLAVE = 0x53FF


class HeaderFlavour(str, enum.Enum):
    """What a B engine appends to every frame it sends (§3.2.3, §3.11)."""

    NONE = "none"  #: 3-element frames (0.12.0.x)
    INDEXED = "indexed"  #: ``[80, 81, 82]`` packed as ``cf`` uint64s (observed 0.12.3.12)
    LITERAL = "literal"  #: ``[[false, "trace_id", 8x00], ...]`` (0.12.14)


@dataclass(slots=True)
class Handshake:
    uuid: str


@dataclass(slots=True)
class Reply:
    """What a worker answered on one invocation."""

    chunks: list[bytes] = field(default_factory=list)
    #: ``(code, message)``; ``code`` is an int (A) or ``(category, code)`` (B).
    error: tuple[Any, str] | None = None
    #: The worker finished its side with choke/close (an A error is followed by one too).
    closed: bool = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


# ---------------------------------------------------------------------------
# sans-IO: the runtime's end of one worker connection
# ---------------------------------------------------------------------------
class RuntimeSide:
    """Decodes what a worker sends and encodes what the runtime sends, for one connection.

    Per-session state uses the shared tables of
    :mod:`cocaine_http.protocol.session`, with "send" meaning runtime to worker.
    """

    def __init__(
        self, generation: Generation | str, headers: HeaderFlavour | str = HeaderFlavour.NONE
    ) -> None:
        self.generation = Generation.parse(generation)
        self.flavour = HeaderFlavour(headers)
        self.encoder = MessageEncoder(self.generation)
        self.sessions: dict[int, SessionState] = {}
        self.handshaken = False
        self.rx_headers = HeaderTable()
        self._max_channel = B_CONTROL_CHANNEL
        if self.generation is Generation.A or self.flavour is HeaderFlavour.NONE:
            self._h: bytes | None = None
        elif self.flavour is HeaderFlavour.INDEXED:
            self._h = _INDEXED_H0
        else:
            self._h = packb(tracing_headers())

    # -- inbound ---------------------------------------------------------------
    def receive(self, f: Frame) -> Handshake | Heartbeat | Terminate | Chunk | Choke | Error | Ignored:
        a = self.generation is Generation.A
        if not a:
            with contextlib.suppress(FrameFormatError):  # headers are informational
                self.rx_headers.decode(f.headers)
        if not self.handshaken:
            # The runtime reads the first message as the handshake (A does not even check its id).
            if (a or (f.session == B_CONTROL_CHANNEL and f.type == B_CONTROL.HANDSHAKE)) and (
                len(f.args) >= 1 and isinstance(f.args[0], (bytes, str))
            ):
                self.handshaken = True
                return Handshake(as_text(f.args[0], "uuid"))
            return Ignored(f.session, FrameFormatError("the first message is not a handshake"))
        if a:
            t, s = f.type, f.session
            if s == 0 and t == A.HEARTBEAT:
                return Heartbeat()
            if s == 0 and t == A.TERMINATE:
                return self._terminate(f.args)
            kinds = {A.CHUNK: Msg.CHUNK, A.ERROR: Msg.ERROR, A.CHOKE: Msg.CHOKE}
        else:
            t, s = f.type, f.session
            if s == B_CONTROL_CHANNEL:
                if t == B_CONTROL.HEARTBEAT:
                    return Heartbeat()
                if t == B_CONTROL.TERMINATE:
                    return self._terminate(f.args)
                return Ignored(s, UnknownMessageError(f"unknown control message {t}"))
            kinds = {B_STREAM.WRITE: Msg.CHUNK, B_STREAM.ERROR: Msg.ERROR, B_STREAM.CLOSE: Msg.CHOKE}
        msg = kinds.get(t)  # type: ignore[call-overload]
        if msg is None:
            return Ignored(s, UnknownMessageError(f"unknown message type {t} on session {s}"))
        state = self.sessions.get(s)
        if state is None:
            return Ignored(s, UnexpectedMessageError(f"{msg.label} for unknown session {s}"))
        try:
            state.recv(msg)
        except UnexpectedMessageError as exc:
            return Ignored(s, exc)
        self._forget_if_done(state)
        if msg is Msg.CHUNK:
            if len(f.args) != 1 or not isinstance(f.args[0], (bytes, str)):
                return Ignored(s, FrameFormatError(f"chunk on session {s} is not [data]"))
            data = f.args[0]
            return Chunk(s, data if isinstance(data, bytes) else data.encode())
        if msg is Msg.CHOKE:
            return Choke(s)
        code: Any = f.args[0] if f.args else 0
        message = (
            as_text(f.args[1], "message") if len(f.args) > 1 and isinstance(f.args[1], (bytes, str)) else ""
        )
        if isinstance(code, list) and len(code) == 2:
            return Error(s, code[1], message, code[0])
        return Error(s, code if type(code) is int else 0, message)

    def _terminate(self, args: list[Any]) -> Terminate:
        code = args[0] if args and type(args[0]) is int else 0
        reason = as_text(args[1], "reason") if len(args) > 1 and isinstance(args[1], (bytes, str)) else ""
        return Terminate(code, reason)

    def _forget_if_done(self, state: SessionState) -> None:
        if state.finished:
            self.sessions.pop(state.session, None)

    # -- outbound --------------------------------------------------------------
    def _frame(self, session: int, type_id: int, args: list[Any]) -> bytes:
        if self._h is None:
            return self.encoder.frame(session, type_id, args)
        return b"\x94" + uint(session) + uint(type_id) + packb(args) + self._h

    def heartbeat(self) -> bytes:
        """The echo of a worker heartbeat (B: the primitive ``value`` of the control channel)."""
        if self.generation is Generation.A:
            return self.encoder.heartbeat()
        return self._frame(B_CONTROL_CHANNEL, B_CONTROL.HEARTBEAT, [])

    def terminate(self, code: int, reason: str) -> bytes:
        if self.generation is Generation.A:
            return self.encoder.terminate(code, reason)
        return self._frame(B_CONTROL_CHANNEL, B_CONTROL.TERMINATE, [int(code), reason])

    def next_channel(self) -> int:
        """B: the next invocation channel on this connection (2, 3, ...)."""
        self._max_channel += 1
        return self._max_channel

    def invoke(self, session: int, event: str) -> bytes:
        if session in self.sessions:
            raise ValueError(f"session {session} is already open")
        self.sessions[session] = SessionState(self.generation, session)
        if self.generation is Generation.A:
            return self.encoder.invoke(session, event)
        self._max_channel = max(self._max_channel, session)
        return self._frame(session, B_STREAM.INVOKE, [event])

    def _state(self, session: int) -> SessionState:
        state = self.sessions.get(session)
        if state is None:
            raise ChannelClosedError(f"session {session} is finished")
        return state

    def chunk(
        self, session: int, data: bytes | bytearray | memoryview
    ) -> list[bytes | bytearray | memoryview]:
        """A chunk as parts (header, payload[, headers]) so a large payload is not copied."""
        self._state(session).send(Msg.CHUNK)
        if self._h is None:
            return [self.encoder.frame_header(session, len(data)), data]
        return [b"\x94" + uint(session) + b"\x00\x91" + raw_header(len(data)), data, self._h]

    def choke(self, session: int) -> bytes:
        state = self._state(session)
        state.send(Msg.CHOKE)
        self._forget_if_done(state)
        if self._h is None:
            return self.encoder.choke(session)
        return self._frame(session, B_STREAM.CLOSE, [])

    def error(self, session: int, code: int | tuple[int, int], message: str) -> bytes:
        """An error to the worker: A error + choke, B the terminal error."""
        state = self._state(session)
        state.send(Msg.ERROR)
        if self.generation is Generation.A:
            out = self.encoder.error(session, code, message)
            state.send(Msg.CHOKE)
            out += self.encoder.choke(session)
        elif self._h is None:
            out = self.encoder.error(session, code, message)
        else:
            cat, c = code if isinstance(code, tuple) else (42, code)
            out = self._frame(session, B_STREAM.ERROR, [[int(cat), int(c)], message])
        self._forget_if_done(state)
        return out

    def can_send(self, session: int) -> bool:
        state = self.sessions.get(session)
        return state is not None and state.can_send(Msg.CHUNK)

    def close_if_open(self, session: int) -> bytes:
        """A: the choke the runtime sends back when the worker choked first (§2.4.4)."""
        state = self.sessions.get(session)
        if state is not None and state.can_send(Msg.CHOKE):
            return self.choke(session)
        return b""


# ---------------------------------------------------------------------------
# IO: invocations, slaves, the engine
# ---------------------------------------------------------------------------
class SlaveState(enum.Enum):
    SPAWNED = "spawned"  #: started (or expected), no handshake yet
    HANDSHAKEN = "handshaken"  #: A: handshake seen, waiting for the first heartbeat
    ACTIVE = "active"
    TERMINATING = "terminating"
    DEAD = "dead"


class Invocation:
    """One event handed to a worker: write the request, read the reply.

    Writes before the invocation is assigned to a worker are kept and sent
    once it is. The reply is read with ``async for chunk in invocation`` (or
    :meth:`read`, :meth:`reply`); ``error`` and ``closed`` tell how it ended.
    """

    def __init__(self, engine: Engine, event: str) -> None:
        self.engine = engine
        self.event = event
        self.session: int | None = None
        self.slave: Slave | None = None
        self.error: tuple[Any, str] | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self.assigned: asyncio.Future[None] = self._loop.create_future()
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._outbox: list[tuple[str, Any]] = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._ended = False  # the worker's side is over (choke/close/error/death)
        self._waiter: asyncio.Future[None] | None = None
        self._flow: InboundFlow | None = None
        self._sent_end = False
        self._a_session: int | None = None  # A: the engine-wide id taken at enqueue

    def __repr__(self) -> str:
        return f"<Invocation {self.event!r} session={self.session} ended={self._ended}>"

    # -- request side ------------------------------------------------------------
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._sent_end:
            raise ChannelClosedError("write after close")
        if self.slave is None:
            self._outbox.append(("chunk", bytes(data)))
            return
        channel = self.slave.channel
        if self._ended or channel is None or channel.closed:
            return  # the worker is gone or done; the runtime drops such data
        assert self.session is not None and self.slave.side is not None
        try:
            parts = self.slave.side.chunk(self.session, data)
        except CocaineError:
            return
        channel.send_parts(self.session, *parts)
        if channel.write_paused:
            with contextlib.suppress(CocaineError):
                await channel.drain()

    async def close(self) -> None:
        self._end("choke", None)

    async def send_error(self, code: int | tuple[int, int], message: str) -> None:
        self._end("error", (code, message))

    def _end(self, kind: str, arg: Any) -> None:
        if self._sent_end:
            return
        self._sent_end = True
        if self.slave is None:
            self._outbox.append((kind, arg))
            return
        self._send_now(kind, arg)

    def _send_now(self, kind: str, arg: Any) -> None:
        slave = self.slave
        assert slave is not None and self.session is not None
        channel, side = slave.channel, slave.side
        if channel is None or side is None or channel.closed:
            return
        try:
            if kind == "chunk":
                channel.send_parts(self.session, *side.chunk(self.session, arg))
            elif kind == "choke":
                channel.send(self.session, side.choke(self.session))
            else:
                channel.send(self.session, side.error(self.session, *arg))
        except CocaineError:
            pass

    def _assign(self, slave: Slave, session: int) -> None:
        self.slave = slave
        self.session = session
        self._flow = slave.flow
        if not self.assigned.done():
            self.assigned.set_result(None)
        outbox, self._outbox = self._outbox, []
        for kind, arg in outbox:
            self._send_now(kind, arg)

    # -- reply side ----------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._flow is not None:
            self._flow.added(self, len(data))
        self._wake()

    def _finish(self, error: tuple[Any, str] | None, closed: bool) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.closed = self.closed or closed
        if not self._ended:
            self._ended = True
            self._sent_end = True
            if not self.finished.done():
                self.finished.set_result(None)
            if not self.assigned.done():
                self.assigned.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next reply chunk (empty ones included), or ``None`` at the end."""
        while not self._chunks:
            if self._ended:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._flow is not None:
            self._flow.removed(self, len(data))
        return data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (chunk := await self.read()) is not None:
            yield chunk

    async def reply(self, timeout: float | None = None) -> Reply:
        """Collect the whole reply."""

        async def collect() -> Reply:
            chunks = [c async for c in self]
            return Reply(chunks, self.error, self.closed)

        if timeout is None:
            return await collect()
        try:
            return await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise CallTimeoutError(f"no complete reply to {self.event!r} within {timeout} s") from None


class Slave:
    """One worker process (or, with :meth:`Engine.expect`, a worker run elsewhere)."""

    def __init__(self, engine: Engine, uuid: str) -> None:
        self.engine = engine
        self.uuid = uuid
        self.state = SlaveState.SPAWNED
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.side: RuntimeSide | None = None
        self.flow: InboundFlow | None = None
        self.sessions: dict[int, Invocation] = {}
        self.output: deque[tuple[str, str]] = deque(maxlen=engine.crashlog_limit)
        self.answer_heartbeats = engine.answer_heartbeats
        self.heartbeats = 0
        self.terminate_sent: tuple[int, str] | None = None
        self.terminate_reply: tuple[int, str] | None = None
        self.terminated_by_engine = False
        self.death_reason: str | None = None
        loop = asyncio.get_running_loop()
        self.spawned_at = loop.time()
        self.last_heartbeat = self.spawned_at
        self.activated = loop.create_future()
        self.exited = loop.create_future()  # result: returncode (None without a process)
        self.replied = loop.create_future()  # the worker's terminate arrived
        self.disconnected = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._readers: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Slave {self.uuid} {self.state.value} pid={self.pid} load={self.load}>"

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


class Engine:
    """One app's engine; see the module docstring. Use as ``async with``.

    ``slave`` is the executable (a path, started as-is, like the runtime
    does) or a command prefix (``[sys.executable, "worker.py"]``); the
    runtime's flags are appended. ``env`` is the manifest's environment,
    added to the engine's own (the engine's value wins on a clash, as the
    runtime's does, §2.4.1).
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
        crashlog_limit: int = 50,
        answer_heartbeats: bool = True,
        reply_high_water: int = 4 * MiB,
        write_high_water: int = 1 * MiB,
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
        self.restart = restart
        self.autospawn = autospawn
        self.crashlog_limit = crashlog_limit
        self.answer_heartbeats = answer_heartbeats
        self.reply_high_water = reply_high_water
        self.write_high_water = write_high_water
        self.endpoint = os.path.join(runtime_dir, f"{app}.{os.getpid()}")
        self.slaves: dict[str, Slave] = {}
        self.queue: deque[Invocation] = deque()
        self.crashlogs: list[tuple[str, list[tuple[str, str]]]] = []
        self._next_session = 1  # A: one counter per engine, shared by its slaves (§2.3)
        self._server: asyncio.AbstractServer | None = None
        self._running = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def listen(self) -> None:
        """Listen on the app socket (removing a stale one)."""
        if self._server is not None:
            return
        os.makedirs(self.runtime_dir, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._accept, self.endpoint)
        self._running = True

    async def start(self, workers: int = 1, *, timeout: float = 10.0) -> list[Slave]:
        """Listen, spawn *workers* and wait until they are active."""
        await self.listen()
        slaves = [await self.spawn() for _ in range(workers)]
        await asyncio.gather(*(s.wait_active(timeout) for s in slaves))
        return slaves

    def argv(self, uuid: str) -> list[str]:
        """The runtime's argv for a worker (sorted flags, separate items)."""
        out = ["--app", self.app, "--endpoint", self.endpoint, "--locator", self.locator]
        if self.generation is Generation.B:
            out += ["--protocol", "1"]
        return [*out, "--uuid", uuid]

    async def spawn(self, uuid: str | None = None) -> Slave:
        """Start one worker process; returns at once (see :meth:`Slave.wait_active`)."""
        await self.listen()
        uuid = uuid or str(uuid_mod.uuid4())
        slave = self.expect(uuid)
        env = {**self.env, **os.environ}
        slave.process = await asyncio.create_subprocess_exec(
            *self.command,
            *self.argv(uuid),
            cwd=self.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        proc = slave.process
        assert proc.stdout is not None and proc.stderr is not None
        slave._readers = [
            asyncio.create_task(self._read_output(slave, "stdout", proc.stdout)),
            asyncio.create_task(self._read_output(slave, "stderr", proc.stderr)),
        ]
        self._spawn_task(self._watch(slave))
        return slave

    def expect(self, uuid: str) -> Slave:
        """Register a worker the engine did not start (it connects to :attr:`endpoint` itself)."""
        if uuid in self.slaves and self.slaves[uuid].alive:
            raise ValueError(f"a worker with uuid {uuid!r} already exists")
        slave = Slave(self, uuid)
        self.slaves[uuid] = slave
        loop = asyncio.get_running_loop()
        slave._timer = loop.call_later(self.startup_timeout, self._activation_timeout, slave)
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

    async def stop(self) -> None:
        """Terminate every worker (SIGTERM after the termination timeout, SIGKILL after
        ``kill_timeout`` more), fail queued events, stop listening."""
        self._running = False
        while self.queue:
            inv = self.queue.popleft()
            inv._finish(self._refusal("engine is shutting down"), False)
        live = [s for s in self.slaves.values() if s.alive]
        await asyncio.gather(
            *(self.terminate(s, 1, "the engine is shutting down") for s in live), return_exceptions=True
        )
        for slave in self.slaves.values():
            if slave.process is not None and slave.process.returncode is None:
                slave.send_signal(signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await slave.process.wait()
            if slave._timer is not None:
                slave._timer.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.endpoint)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- invocations ---------------------------------------------------------------
    async def open(self, event: str, *, slave: Slave | None = None) -> Invocation:
        """Enqueue *event*; returns at once. Write the request, then iterate the reply."""
        inv = Invocation(self, event)
        session = None
        if self.generation is Generation.A:
            session = self._next_session  # taken even if refused (§2.3)
            self._next_session += 1
        if slave is not None:
            if slave.state is not SlaveState.ACTIVE:
                inv._finish(self._refusal("the engine is not active"), False)
            else:
                self._assign(inv, slave, session)
            return inv
        if not self._running:
            inv._finish(self._refusal("the engine is not active"), False)
            return inv
        if len(self.queue) >= self.queue_limit:
            inv._finish(self._refusal("the queue is full", queue_full=True), False)
            return inv
        inv._a_session = session
        self.queue.append(inv)
        self._pump()
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

    def _refusal(self, what: str, *, queue_full: bool = False) -> tuple[Any, str]:
        if self.generation is Generation.A:
            return (_A_RESOURCE, what)
        return ((_B_OVERSEER, 1 if queue_full else 2), what)

    def _pump(self) -> None:
        while self.queue:
            candidates = [s for s in self.active_slaves() if s.load < self.concurrency]
            if not candidates:
                break
            slave = min(candidates, key=lambda s: s.load)
            inv = self.queue.popleft()
            if inv._ended:  # gave up while queued
                continue
            self._assign(inv, slave, inv._a_session)
        if self.queue and self.autospawn and self._running:
            starting = [
                s for s in self.slaves.values() if s.state in (SlaveState.SPAWNED, SlaveState.HANDSHAKEN)
            ]
            live = [s for s in self.slaves.values() if s.alive]
            if not starting and len(live) < self.pool_limit:
                self._spawn_task(self.spawn())

    def _assign(self, inv: Invocation, slave: Slave, session: int | None) -> None:
        side, channel = slave.side, slave.channel
        assert side is not None and channel is not None
        if self.generation is Generation.B:
            session = side.next_channel()
        assert session is not None
        slave.sessions[session] = inv
        channel.send(session, side.invoke(session, inv.event))
        inv._assign(slave, session)

    # -- terminate -------------------------------------------------------------------
    async def terminate(
        self, slave: Slave, code: int = 1, reason: str = "the engine is shutting down"
    ) -> int | None:
        """Ask *slave* to terminate; SIGTERM it after its reply (B) or after the
        termination timeout; SIGKILL after ``kill_timeout`` more. Returns its exit code."""
        loop = asyncio.get_running_loop()
        if slave.state is SlaveState.DEAD:
            return slave.returncode
        slave.terminated_by_engine = True
        deadline = loop.time() + self.termination_timeout
        if slave.channel is not None and not slave.channel.closed and slave.side is not None:
            slave.state = SlaveState.TERMINATING
            slave.terminate_sent = (code, reason)
            slave.channel.send(0, slave.side.terminate(code, reason))
            waits = [slave.exited, slave.replied, slave.disconnected]
            await asyncio.wait(
                [asyncio.shield(w) for w in waits],
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if slave.replied.done() and self.generation is Generation.B:
                slave.send_signal(signal.SIGTERM)  # as node::v2 does, at once (§3.11)
        else:
            deadline = loop.time()  # nobody to ask: straight to SIGTERM
        if slave.process is None:
            return None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(slave.exited), max(0.0, deadline - loop.time()))
        if slave.process.returncode is None:
            slave.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(slave.exited), self.kill_timeout)
            except asyncio.TimeoutError:
                slave.send_signal(signal.SIGKILL)
                await slave.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(slave.exited), self.kill_timeout)
        return slave.returncode

    # -- connections -------------------------------------------------------------------
    def _accept(self) -> asyncio.Protocol:
        channel = Channel(self.generation, write_high_water=self.write_high_water)
        side = RuntimeSide(self.generation, self.headers)
        conn = _Connection(self, channel, side)
        channel.on_frame = conn.on_frame
        channel.on_close = conn.on_close
        return channel.make_protocol()

    def _bind(self, conn: _Connection, uuid: str) -> Slave | None:
        slave = self.slaves.get(uuid)
        if slave is None or slave.channel is not None or not slave.alive:
            log.warning("dropping a connection with unknown uuid %r", uuid)
            return None
        slave.channel, slave.side = conn.channel, conn.side
        slave.flow = InboundFlow(
            conn.channel.pause_reading,
            conn.channel.resume_reading,
            session_high=self.reply_high_water,
            high=4 * self.reply_high_water,
            low=self.reply_high_water,
        )
        if self.generation is Generation.B:
            self._activate(slave)  # node::v2 activates on the handshake (§3.4.2)
        else:
            slave.state = SlaveState.HANDSHAKEN
        return slave

    def _activate(self, slave: Slave) -> None:
        loop = asyncio.get_running_loop()
        slave.state = SlaveState.ACTIVE
        slave.last_heartbeat = loop.time()
        self._arm_heartbeat(slave)
        if not slave.activated.done():
            slave.activated.set_result(None)
        self._pump()

    def _arm_heartbeat(self, slave: Slave) -> None:
        if slave._timer is not None:
            slave._timer.cancel()
        slave._timer = asyncio.get_running_loop().call_later(
            self.heartbeat_timeout, self._heartbeat_timeout, slave
        )

    def _activation_timeout(self, slave: Slave) -> None:
        if slave.state in (SlaveState.SPAWNED, SlaveState.HANDSHAKEN):
            self._kill(slave, "failed to activate")

    def _heartbeat_timeout(self, slave: Slave) -> None:
        if slave.state in (SlaveState.ACTIVE, SlaveState.TERMINATING):
            self._kill(slave, "slave has timed out")

    def _kill(self, slave: Slave, reason: str) -> None:
        log.warning("worker %s: %s; killing it", slave.uuid, reason)
        slave.death_reason = reason
        self._fail_sessions(slave, reason, timeout=True)
        slave.send_signal(signal.SIGKILL)
        if slave.channel is not None:
            slave.channel.close()
        if slave.process is None:
            self._dead(slave)

    def _on_frame(self, slave: Slave, event: Any) -> None:
        channel, side = slave.channel, slave.side
        assert channel is not None and side is not None
        kind = type(event)
        if kind is Chunk:
            inv = slave.sessions.get(event.session)
            if inv is not None:
                inv._feed(event.data)
        elif kind is Choke:
            inv = slave.sessions.pop(event.session, None)
            if inv is not None:
                inv._finish(None, True)
                if self.generation is Generation.A:
                    # The runtime closes its side too when the worker choked first (§2.4.4).
                    out = side.close_if_open(event.session)
                    if out:
                        channel.send(event.session, out)
                self._pump()
        elif kind is Error:
            code: Any = (event.category, event.code) if event.category is not None else event.code
            if self.generation is Generation.A:
                inv = slave.sessions.get(event.session)  # the choke that follows frees the slot
                if inv is not None and inv.error is None:
                    inv.error = (code, event.message)
            else:
                inv = slave.sessions.pop(event.session, None)
                if inv is not None:
                    inv._finish((code, event.message), False)
                    self._pump()
        elif kind is Heartbeat:
            slave.heartbeats += 1
            slave.last_heartbeat = asyncio.get_running_loop().time()
            if slave.answer_heartbeats:
                channel.send(0, side.heartbeat())
            if slave.state is SlaveState.HANDSHAKEN:
                self._activate(slave)  # A: active on the first heartbeat (§2.4.2)
            elif slave.state in (SlaveState.ACTIVE, SlaveState.TERMINATING):
                self._arm_heartbeat(slave)
        elif kind is Terminate:
            slave.terminate_reply = (event.code, event.reason)
            if not slave.replied.done():
                slave.replied.set_result(None)
            if slave.state is not SlaveState.TERMINATING:
                # A worker-initiated terminate: drop it, fail its sessions, SIGTERM (§2.4.5, §3.11).
                log.info("worker %s terminated itself: %r (code %d)", slave.uuid, event.reason, event.code)
                slave.state = SlaveState.TERMINATING
                slave.terminated_by_engine = True
                self._fail_sessions(slave, event.reason or "worker terminated")
                slave.send_signal(signal.SIGTERM)
        elif kind is Ignored:
            log.warning("worker %s: dropped a message: %s", slave.uuid, event.error)

    def _fail_sessions(self, slave: Slave, reason: str, *, timeout: bool = False) -> None:
        sessions, slave.sessions = slave.sessions, {}
        code: Any = _A_RESOURCE if self.generation is Generation.A else (_B_SLAVE, 8 if timeout else 2)
        for inv in sessions.values():
            inv._finish((code, reason), False)
        if sessions:
            self._pump()

    def _on_disconnect(self, slave: Slave, exc: BaseException | None) -> None:
        if not slave.disconnected.done():
            slave.disconnected.set_result(None)
        if slave.sessions:
            self._fail_sessions(slave, "the worker disconnected")
        if slave.state is not SlaveState.DEAD and slave.state is not SlaveState.TERMINATING:
            slave.state = SlaveState.TERMINATING  # no more work for it; the process watcher finishes it
        if slave.process is None:
            self._dead(slave)

    def _dead(self, slave: Slave) -> None:
        if slave.state is SlaveState.DEAD:
            return
        slave.state = SlaveState.DEAD
        if slave._timer is not None:
            slave._timer.cancel()
        if slave.sessions:
            self._fail_sessions(slave, slave.death_reason or "the worker died")
        if slave.channel is not None:
            slave.channel.close()
        if not slave.exited.done():
            slave.exited.set_result(slave.returncode)
        if not slave.activated.done():
            slave.activated.set_exception(CallTimeoutError(f"worker {slave.uuid} died before activation"))
            slave.activated.exception()  # retrieved: nobody may be waiting
        if not slave.terminated_by_engine:
            log.warning(
                "worker %s exited unexpectedly (code %s)%s",
                slave.uuid,
                slave.returncode,
                "; last output:\n" + "\n".join(line for _, line in slave.output) if slave.output else "",
            )
            self.crashlogs.append((slave.uuid, list(slave.output)))
            if self.restart and self._running:
                self._spawn_task(self.spawn())
        self._pump()

    # -- processes ------------------------------------------------------------------------
    async def _read_output(self, slave: Slave, name: str, stream: asyncio.StreamReader) -> None:
        pending = b""
        while True:
            data = await stream.read(65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                slave.output.append((name, line.decode("utf-8", "replace")))
            if len(pending) > 65536:  # a very long line: keep it in pieces
                slave.output.append((name, pending.decode("utf-8", "replace")))
                pending = b""
        if pending:
            slave.output.append((name, pending.decode("utf-8", "replace")))

    async def _watch(self, slave: Slave) -> None:
        assert slave.process is not None
        await slave.process.wait()
        if slave._readers:
            await asyncio.wait(slave._readers, timeout=1.0)
        self._dead(slave)

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed", exc_info=task.exception())


class _Connection:
    """One accepted worker connection, before and after its handshake."""

    __slots__ = ("channel", "engine", "side", "slave")

    def __init__(self, engine: Engine, channel: Channel, side: RuntimeSide) -> None:
        self.engine = engine
        self.channel = channel
        self.side = side
        self.slave: Slave | None = None

    def on_frame(self, frame: Frame) -> None:
        event = self.side.receive(frame)
        if self.slave is None:
            if type(event) is not Handshake:
                log.warning("dropping a worker connection: %s", getattr(event, "error", event))
                self.channel.close()
                return
            self.slave = self.engine._bind(self, event.uuid)
            if self.slave is None:
                self.channel.close()
            return
        self.engine._on_frame(self.slave, event)

    def on_close(self, exc: BaseException | None) -> None:
        if self.slave is not None:
            self.engine._on_disconnect(self.slave, exc)


def default_python_command(script: str) -> list[str]:
    """``[sys.executable, script]``: a command prefix for a Python worker script."""
    return [sys.executable, script]
