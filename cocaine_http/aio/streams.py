"""The two ends of a session as a handler sees them.

``request`` is what the runtime sends (invoke's event and headers, then
chunks until choke/close), ``response`` is what the handler sends back.
Handlers written with ``async def`` get :class:`Request` / :class:`Response`
and run on the worker's event loop; plain ``def`` handlers run in a thread
and get their blocking twins (:mod:`.blocking`), which have the same methods
without ``await``.

Flow control (docs/worker.md, "Flow control"):

* Inbound, chunks a handler has not read yet are buffered per session. When
  one session holds more than ``session_read_high_water`` bytes, or all
  sessions together more than ``read_high_water``, reading the runtime socket
  pauses (:class:`~cocaine_http.aio.flow.InboundFlow`); it resumes once every
  session is back under half its mark and the total is at ``read_low_water``.
  The socket is shared, so a pause holds back every session, as HTTP/1
  pipelining would.
* Outbound, :meth:`Response.write` puts the frame on the socket at once and
  returns an awaitable that waits for the socket buffer to drain below
  ``write_high_water``. The blocking twin blocks instead, and never has
  more than ``sync_write_budget`` bytes queued for the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from ..errors import ChannelClosedError, CocaineError, DisconnectedError
from .flow import ChunkBuffer, Data, InboundFlow, Outbox

if TYPE_CHECKING:
    from ..protocol.worker import WorkerProtocol
    from .transport import Transport

__all__ = ["Drain", "Request", "Response"]

Headers = list[tuple[bytes, bytes]]


class _Ready:
    """An awaitable that is already done: what ``write`` returns when no drain is needed.

    Not a coroutine: a handler may drop what ``write`` returns, and an
    unawaited coroutine would warn (and cost an allocation per write).
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]  # await takes any iterator; typeshed asks for a Generator


_READY = _Ready()


class Drain:
    """What ``Response.write`` returns when the socket is over its high-water mark.

    Awaiting it waits for the channel to drain; nothing runs (or warns) if it
    is never awaited. Every other result of ``write`` is already done, so a
    caller that must not wait needlessly (the blocking twin, the inline WSGI
    mode) checks for this type.
    """

    __slots__ = ("_channel",)

    def __init__(self, channel: Transport) -> None:
        self._channel = channel

    def __await__(self) -> Generator[Any, None, None]:
        return self._channel.drain().__await__()


class Request(ChunkBuffer):
    """The runtime's side of one session, read on the event loop.

    ``await read()`` returns the next chunk, ``b""`` once the runtime has
    closed its side (empty chunks from the wire are skipped). An error from
    the runtime (B: the client failed or the request timed out) is raised by
    the read that would have returned past the last buffered chunk, as a
    :class:`~cocaine_http.errors.CocaineError` with the wire code.
    """

    __slots__ = (
        "_eof",
        "_exc",
        "event",
        "headers",
        "session",
    )

    def __init__(
        self,
        event: str,
        session: int,
        headers: Headers,
        flow: InboundFlow | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.event = event
        self.session = session
        #: B: the invoke's decoded header pairs ``(name, value)`` as bytes; A: empty.
        self.headers = headers
        super().__init__(loop, flow)
        self._eof = False
        self._exc: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Request {self.event!r} session={self.session} buffered={self._buffered}>"

    @property
    def failure(self) -> BaseException | None:
        """The error the request was failed with (the runtime's, an oversize
        frame, an idle timeout, an abort), or None."""
        return self._exc

    # -- the worker's sessions feed these (on the loop); each says if it woke the reader --
    def feed(self, data: bytes) -> bool:
        if not data or self._discarding or self._eof or self._exc is not None:
            return False
        return self._push(data)

    def feed_eof(self) -> bool:
        self._eof = True
        return self._waiter is not None and self._wake()

    def feed_error(self, exc: BaseException) -> bool:
        if self._exc is None and not self._eof:
            self._exc = exc
        return self._wake()

    # discard() (ChunkBuffer's): the handler is done; what it did not read,
    # and anything still coming, is dropped.

    # -- a reader on another thread (BlockingRequest), without a trip through the loop --
    def take_from_thread(self) -> bytes | None:
        """The next chunk, ``b""`` at a clean end, or None when the reader must
        wait on the loop (nothing is buffered yet, or the request failed).

        Only that one thread takes chunks (``popleft`` is atomic against the
        loop's ``append``); the byte counts belong to the loop, so the caller
        posts :meth:`consumed` there for every chunk taken.
        """
        ended = self._eof and self._exc is None  # read first: once set, every chunk is queued
        chunks = self._chunks
        if chunks:
            try:
                return chunks.popleft()
            except IndexError:  # discard() emptied it meanwhile
                return None
        return b"" if ended else None

    def consumed(self, n: int) -> None:
        """On the loop: account for a chunk of *n* bytes taken by :meth:`take_from_thread`."""
        if self._discarding:
            return  # discard() already released everything that was buffered
        self._buffered -= n
        if self._flow is not None:
            self._flow.removed(self, n)

    # -- the handler's side ----------------------------------------------------
    @property
    def at_eof(self) -> bool:
        """True when every chunk was read and the runtime closed its side."""
        return self._eof and not self._chunks

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return self._buffered

    @property
    def complete(self) -> bool:
        """Nothing more will arrive: the runtime closed its side, or the request failed."""
        return self._eof or self._exc is not None

    async def wait_complete(self, limit: int) -> bool:
        """Wait for the rest of the request while less than *limit* bytes are
        buffered and reading the socket is not paused; True if it is complete.

        For a reader that wants the whole request before it starts, but must
        not hold the shared socket's flow control up to get it.
        """
        flow = self._flow
        while not self.complete and self._buffered < limit and (flow is None or not flow.paused):
            await self._wait()
        return self.complete

    def read_buffered(self) -> bytes:
        """The next chunk already received, ``b""`` if none is (never waits).
        Once every buffered chunk was read, the request's failure is raised."""
        if self._chunks:
            return self._pop()
        if self._exc is not None:
            raise self._exc
        return b""

    async def read(self) -> bytes:
        """The next chunk; ``b""`` at the end."""
        while not self._chunks:
            if self._exc is not None:
                raise self._exc
            if self._eof:
                return b""
            await self._wait()
        return self._pop()

    async def read_all(self, limit: int | None = None) -> bytes:
        """Every remaining chunk joined. Over *limit* bytes raises :class:`ValueError`."""
        parts = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if limit is not None and size > limit:
                raise ValueError(f"request body exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> Request:
        return self

    async def __anext__(self) -> bytes:
        # The common cases first, without a second coroutine: a chunk is
        # there, or the request has ended (and did not fail before its end).
        # bench/worker_floor.py --callgrind, 16 B x 256: 78.3K -> 75.9K instr/req
        # (A, 3.2 %), 81.5K -> 79.2K (B, 2.9 %).
        if self._chunks:
            return self._pop()
        if self._eof and self._exc is None:
            raise StopAsyncIteration
        chunk = await self.read()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class Response:
    """Our side of one session. Methods send at once and return an awaitable.

    ``await response.write(data)`` sends a chunk (A chunk, B write) and then
    waits while the socket buffer is over its high-water mark; not awaiting
    still sends, it just skips the wait. ``close()`` ends the stream (A
    choke, B close); ``error(code, message)`` ends it with an error (A: error
    then the choke the runtime needs; B: the error, which is terminal). In B,
    ``code`` may be ``(category, code)``; a bare int uses category 42.
    ``close`` and ``error`` are idempotent once the stream has ended and do
    not raise when the connection is gone; ``write`` raises
    :class:`~cocaine_http.errors.ChannelClosedError` after the end and
    :class:`~cocaine_http.errors.DisconnectedError` without a connection.
    """

    __slots__ = ("_abandoned", "_channel", "_outbox", "_protocol", "closed", "session")

    def __init__(self, session: int, protocol: WorkerProtocol, outbox: Outbox) -> None:
        self.session = session
        self._protocol = protocol
        self._outbox = outbox
        self._channel = outbox.channel
        #: True once nothing more may be sent (set here only; a plain
        #: attribute, read once per session by the worker's sessions).
        self.closed = False
        self._abandoned = False

    def __repr__(self) -> str:
        state = "abandoned" if self._abandoned else "closed" if self.closed else "open"
        return f"<Response session={self.session} {state}>"

    def write(self, data: Data | str) -> Awaitable[None]:
        if self._abandoned:
            return _READY
        if self.closed:
            raise ChannelClosedError(f"session {self.session}: write after the response ended")
        if isinstance(data, str):
            data = data.encode()
        channel = self._channel
        if channel.closed:
            raise DisconnectedError(f"session {self.session}: the runtime connection is gone")
        header = self._protocol.chunk_header(self.session, len(data))
        if len(data) <= self._outbox.direct:
            self._outbox.write(header + data)
        else:
            self._outbox.write_parts(header, data)
        if channel.write_paused:
            return Drain(channel)
        return _READY

    def close(self) -> Awaitable[None]:
        if self.closed:
            return _READY
        self.closed = True
        self._send_final(self._protocol.send_choke)
        return _READY

    def error(self, code: int | tuple[int, int], message: str) -> Awaitable[None]:
        if self.closed:
            return _READY
        self.closed = True
        self._send_final(lambda s: self._protocol.send_error(s, code, message))
        return _READY

    def _send_final(self, encode: Callable[[int], bytes]) -> None:
        try:
            frame = encode(self.session)
        except CocaineError:
            return  # the protocol state says this direction already ended
        if not self._channel.closed:
            self._outbox.write(frame)

    # -- the worker's side -----------------------------------------------------
    def mark_closed(self) -> None:
        """Nothing more can be sent on this session (its connection is gone, or
        the worker already answered it with an error): later writes raise."""
        self.closed = True

    def abandon(self) -> None:
        """The runtime failed the session (B): send nothing more on it, drop writes."""
        self._abandoned = True
        self.closed = True
