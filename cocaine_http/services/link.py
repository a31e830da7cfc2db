"""``Link``: one open connection of a service and the calls multiplexed on it.

A :class:`~cocaine_http.services.base.BaseService` outlives its connections:
it resolves, connects, loses the connection and connects again. What belongs
to one connection only lives here, and goes away with it:

* the channel and the sans-IO :class:`~cocaine_http.protocol.service.ServiceProtocol`
  that numbers its sessions;
* the frames written during this loop iteration, which leave together;
* which streams have paused reading (each over its high-water mark);
* handing replies to the waiting futures and streams, and failing every
  pending call when the connection is lost.

A :class:`~cocaine_http.services.stream.Stream` holds the link of the
connection its call was opened on, not the service: once that link is
closed the stream knows its call is gone, whatever the service has
connected to since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

from ..aio.frame_transport import FrameTransport
from ..errors import CocaineError, DisconnectedError, RemoteProtocolError
from ..protocol.endpoints import format_endpoint
from ..protocol.frames import Frame
from ..protocol.service import CallMode, CallState, Reply, ServiceProtocol
from .deadlines import Deadlines

__all__ = ["Link", "ReplySink"]

#: Enum members looked up once for the reply path (see ``_CONNECTED`` in base.py for
#: what the three cost: 2.7% of a call's instructions).
_UNARY = CallMode.UNARY
_VALUE = Reply.VALUE


class ReplySink(Protocol):
    """The reading end of a streaming call: what :meth:`Link.deliver` feeds replies to."""

    def feed(self, what: Reply, payload: Any) -> None: ...


class Link:
    """The current connection of service *name*: writes, flow control and reply delivery.

    ``deadlines`` are the service's (one set of timer buckets per loop).
    """

    def __init__(self, name: str, channel: FrameTransport, proto: ServiceProtocol,
                 loop: asyncio.AbstractEventLoop, deadlines: Deadlines) -> None:
        self.name = name
        self.channel = channel
        self.proto = proto
        self.loop = loop
        self.deadlines = deadlines
        #: Set once the connection is gone: nothing more is written, every call has failed.
        self.closed = False
        self._batch: list[bytes] | None = None  # frames written during this loop iteration
        self._paused_by: set[int] = set()  # ids of streams over their high-water mark

    def __repr__(self) -> str:
        where = format_endpoint(self.channel.endpoint) if self.channel.endpoint else "-"
        return f"<Link {self.name!r} {where} pending={self.pending} closed={self.closed}>"

    @property
    def pending(self) -> int:
        """Open calls (0 means no leaked session state)."""
        return len(self.proto.calls)

    @property
    def paused(self) -> bool:
        """Some stream is over its high-water mark, so the connection is not reading."""
        return bool(self._paused_by)

    # -- writing -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send one frame, in order. With other calls in flight, frames are gathered
        and leave together at the end of the loop iteration (one syscall for many
        calls); a lone call goes out at once.

        Against a send per frame: bench/client_calls.py --callgrind, B, 256 in
        flight: 47.8K -> 44.0K instr/call.
        """
        batch = self._batch
        if batch is not None:
            batch.append(data)
            return
        if self.closed:
            raise DisconnectedError(f"{self.name}: not connected")
        if len(self.proto.calls) <= 1:
            self.channel.send(0, data)
            return
        self._batch = [data]
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        batch = self._batch
        self._batch = None
        if batch and not self.closed and not self.channel.closed:
            self.channel.send(0, b"".join(batch) if len(batch) > 1 else batch[0])

    @property
    def write_paused(self) -> bool:
        """The write buffer is over its high-water mark: the writer should ``await drain()``."""
        return self.channel.write_paused

    def drain(self) -> Awaitable[None]:
        """Wait until the write buffer is below its high-water mark."""
        return self.channel.drain()

    # -- reading -------------------------------------------------------------
    def receive(self, frame: Frame) -> None:
        """Hand *frame*'s reply to its call.

        Raises :class:`~cocaine_http.errors.RemoteProtocolError` when the frame
        breaks the protocol: the connection is then unusable.
        """
        out = self.proto.receive(frame)
        if out is not None:
            self.deliver(*out)

    @staticmethod
    def deliver(st: CallState, what: Reply, payload: Any) -> None:
        """Resolve a unary call's future with *payload*, or feed it to a stream."""
        sink = st.sink
        if sink is None:
            return
        if st.mode is _UNARY:
            if not sink.done():
                if what is _VALUE:
                    sink.set_result(payload)
                else:
                    sink.set_exception(payload)
        else:
            sink.feed(what, payload)

    def pause_for(self, key: int) -> None:
        """Stream *key* has buffered too much: stop reading until it catches up."""
        self._paused_by.add(key)
        if not self.closed:
            self.channel.pause_reading()

    def resume_for(self, key: int) -> None:
        """Stream *key* caught up (or is gone): read again once no stream is over its mark."""
        if key in self._paused_by:
            self._paused_by.discard(key)
            if not self._paused_by and not self.closed:
                self.channel.resume_reading()

    # -- ending calls --------------------------------------------------------
    def abandon(self, st: CallState) -> None:
        """End call *st* before its reply did (timeout, cancellation, a dropped stream)."""
        data = self.proto.abandon(st)
        self.resume_for(st.id)
        if data is not None and not self.closed:
            self.write(data)

    def lost(self, exc: BaseException | None, *, service_closed: bool) -> None:
        """The connection is gone: fail every pending call, write nothing more.

        A :class:`~cocaine_http.errors.RemoteProtocolError` *exc* (the peer broke
        the protocol) is passed on to each call in its own type;
        otherwise calls fail with :class:`~cocaine_http.errors.DisconnectedError`.
        """
        self.closed = True
        self._batch = None  # unsent frames belong to calls that are failing now
        self._paused_by.clear()
        where = format_endpoint(self.channel.endpoint) if self.channel.endpoint else "?"
        for st in self.proto.lost():
            if st.delivered:
                continue
            st.delivered = True
            call = f"{self.name}.{st.method.name}"
            if isinstance(exc, RemoteProtocolError):
                err: CocaineError = type(exc)(f"{call}: {exc}")
                err.__cause__ = exc
            elif service_closed:
                err = DisconnectedError(f"{call}: service closed")
            else:
                err = DisconnectedError(f"{call}: connection to {where} lost")
            self.deliver(st, Reply.ERROR, err)
