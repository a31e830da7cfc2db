"""One event as the runtime sees it: the request going to a worker, the reply coming back.

This module exists to keep the caller's view of an event (write, close, read,
how it ended) apart from the worker process and the engine's queue. An
:class:`Invocation` is created by :meth:`Engine.open
<cocaine_http.runtime.engine.Engine.open>`; until the engine binds it to a
worker, what the caller writes is kept and sent on binding.

The engine drives the reply side through three engine-facing methods:
:meth:`Invocation.bind`, :meth:`Invocation.deliver` and
:meth:`Invocation.finish`. Callers use the rest.

An invocation knows the worker it is bound to only as an :class:`Assignee`
(what it writes through), and the engine only through the ``withdraw``
callable it is given: so this module imports neither the engine nor the
worker, which both import it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..aio.flow import ChunkBuffer, InboundFlow
from ..aio.frame_transport import FrameTransport
from ..errors import CallTimeoutError, ChannelClosedError, CocaineError
from ..protocol.frames import Generation
from .side import RuntimeSide

__all__ = ["HOLD_BEFORE_BIND", "Assignee", "Invocation", "Reply", "request_timeout_header"]

#: Request bytes an invocation keeps while it waits for a worker; a writer
#: past them waits for the binding (a streamed body is not read ahead).
HOLD_BEFORE_BIND = 1 << 20


def request_timeout_header(headers: list[tuple[bytes, bytes]]) -> float | None:
    """The ``request_timeout`` header in seconds: 8 bytes, little-endian milliseconds
    (PROTOCOL.md §3.2.3); ``None`` when absent or not 8 bytes."""
    for name, value in headers:
        if name == b"request_timeout" and len(value) == 8:
            return int.from_bytes(value, "little") / 1000.0
    return None


class Assignee(Protocol):
    """The worker an invocation is bound to, as the invocation uses it (the engine's
    :class:`~cocaine_http.runtime.slave.Slave`): the connection to write the request
    on, the flow control of the reply, and how to end the session."""

    @property
    def channel(self) -> FrameTransport | None: ...

    @property
    def side(self) -> RuntimeSide | None: ...

    @property
    def flow(self) -> InboundFlow | None: ...

    def release(self, session: int, error: tuple[Any, str] | None, closed: bool) -> object:
        """*session* is over: end its invocation and free the worker's slot."""
        ...


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


class Invocation(ChunkBuffer):
    """One event handed to a worker: write the request, read the reply.

    Writes before the invocation is bound to a worker are kept and sent once
    it is. The reply is read with ``async for chunk in invocation`` (or
    :meth:`read`, :meth:`reply`); ``error`` and ``closed`` tell how it ended,
    and ``finished`` is done at that point.

    In B, :meth:`send_error` ends the invocation at once, with that error:
    the runtime's error closes the channel for both sides, and the worker
    sends nothing more on it (docs/worker.md), so the slot is freed.
    """

    def __init__(
        self,
        event: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        generation: Generation,
        withdraw: Callable[[Invocation, tuple[Any, str]], None],
    ) -> None:
        self.event = event
        self.generation = generation
        self._withdraw = withdraw  # the engine's: out of its queue, ended with an error
        #: B: the caller's headers, sent with the invoke (PROTOCOL.md §3.2.3).
        self.headers = list(headers or [])
        #: B: the caller's ``request_timeout`` header (8-byte little-endian ms), in seconds.
        self.timeout = request_timeout_header(self.headers)
        self.timer: asyncio.TimerHandle | None = None
        self.session: int | None = None
        self.slave: Assignee | None = None
        self.error: tuple[Any, str] | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self.assigned: asyncio.Future[None] = self._loop.create_future()
        self.finished: asyncio.Future[None] = self._loop.create_future()
        self._outbox: list[tuple[str, Any]] = []
        self._held = 0  # bytes of chunks in _outbox
        super().__init__(self._loop, None)  # the flow is the slave's, known once bound
        self._ended = False  # the worker's side is over (choke/close/error/death)
        self._sent_end = False
        #: A: the engine-wide session id taken at enqueue (§2.3); B: None until bound.
        self.a_session: int | None = None

    def __repr__(self) -> str:
        return f"<Invocation {self.event!r} session={self.session} ended={self._ended}>"

    @property
    def ended(self) -> bool:
        """The worker's side is over (choke/close, error, death, refusal)."""
        return self._ended

    @property
    def request_closed(self) -> bool:
        """Our side is over: :meth:`close` or :meth:`send_error` was called (or the
        invocation ended)."""
        return self._sent_end

    # -- request side ------------------------------------------------------------
    async def write(
        self, data: bytes | bytearray | memoryview, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Send a request chunk (B: with the caller's *headers*)."""
        if self._sent_end:
            raise ChannelClosedError("write after close")
        if self.slave is None and self._held >= HOLD_BEFORE_BIND and not self.assigned.done():
            # queued in the engine: a streamed body waits here, not in memory
            await asyncio.shield(self.assigned)
        if self.slave is None:
            if self._ended:
                return  # refused or withdrawn before it reached a worker
            self._outbox.append(("chunk", (bytes(data), headers)))
            self._held += len(data)
            return
        channel, side = self.slave.channel, self.slave.side
        if self._ended or channel is None or channel.closed or side is None:
            return  # the worker is gone or done; the runtime drops such data
        assert self.session is not None
        try:
            parts = side.chunk(self.session, data, headers)
        except CocaineError:
            return
        channel.send_parts(self.session, *parts)
        if channel.write_paused:
            with contextlib.suppress(CocaineError):
                await channel.drain()

    async def close(self) -> None:
        """End the request (A choke, B close); a no-op once it has ended."""
        self._end("choke", None)

    async def send_error(self, code: int | tuple[int, int], message: str) -> None:
        """End the request with an error (A error + choke; B error, which also ends the reply)."""
        self._end("error", (code, message))

    def _end(self, kind: str, arg: Any) -> None:
        if self._sent_end:
            return
        self._sent_end = True
        if self.slave is None:
            if kind == "error" and self.generation is Generation.B:
                self._withdraw(self, arg)  # never sent anywhere: nothing to tell a worker
                return
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
                channel.send_parts(self.session, *side.chunk(self.session, *arg))
            elif kind == "choke":
                channel.send(self.session, side.choke(self.session))
            else:
                channel.send(self.session, side.error(self.session, *arg))
        except CocaineError:
            return
        if kind == "error" and not side.is_open(self.session):
            slave.release(self.session, arg, False)  # B: the channel is over for both sides

    # -- engine-facing -------------------------------------------------------------
    def bind(self, slave: Assignee, session: int) -> None:
        """The engine gave this invocation to *slave* as *session*; flush what was written."""
        self.slave = slave
        self.session = session
        self._flow = slave.flow
        if not self.assigned.done():
            self.assigned.set_result(None)
        outbox, self._outbox = self._outbox, []
        self._held = 0
        for kind, arg in outbox:
            self._send_now(kind, arg)

    def deliver(self, data: bytes) -> None:
        """A reply chunk from the worker."""
        if not self._discarding:
            self._push(data)

    def finish(self, error: tuple[Any, str] | None, closed: bool) -> None:
        """The reply is over: with *error* (the worker's, or the engine's words), and
        *closed* when the worker ended it with choke/close. Idempotent."""
        if error is not None and self.error is None:
            self.error = error
        self.closed = self.closed or closed
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self._ended:
            self._ended = True
            self._sent_end = True
            if not self.finished.done():
                self.finished.set_result(None)
            if not self.assigned.done():
                self.assigned.set_result(None)
        self._wake()

    def discard(self) -> None:
        """Drop what is buffered and whatever the worker still sends (the caller is gone)."""
        super().discard()
        self._wake()

    # -- reply side ----------------------------------------------------------------
    async def read(self) -> bytes | None:
        """The next reply chunk (empty ones included), or ``None`` at the end."""
        while not self._chunks:
            if self._ended:
                return None
            await self._wait()
        return self._pop()

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
