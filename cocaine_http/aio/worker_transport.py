"""The worker's transport: records to the worker protocol, which tells the sessions.

This is the per-request path of a worker, so it is one loop with nothing in
between: every frame of a read comes out of the decoder as a record (a plain
tuple, not a :class:`~cocaine_http.protocol.frames.Frame`), goes to
:attr:`WorkerProtocol.read_records <cocaine_http.protocol.worker.WorkerProtocol.read_records>`
in one call with the read's time, and the protocol calls the
:class:`~cocaine_http.protocol.events.SessionSink` (the worker's sessions)
with plain values. Once every frame of a read has been delivered, the
read-end hook runs: a writer that holds back what it sends while
:attr:`WorkerTransport.dispatching` (the worker's outbox) flushes there, so
the answers to one read leave in one write with no extra loop turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.events import SessionSink
from ..protocol.frames import Generation
from ..protocol.worker import WorkerProtocol
from .transport import DEFAULT_WRITE_HIGH_WATER, Transport

__all__ = ["WorkerTransport"]


def _nothing() -> None:
    return None


class _NoSink:
    """The sink of a worker transport not yet given one: fails every frame loudly."""

    def _missing(self, *_args: Any) -> None:
        raise RuntimeError("the worker transport has no sink")

    on_invoke = on_chunk = on_choke = on_event = _missing


_NO_SINK: SessionSink = _NoSink()


class WorkerTransport(Transport):
    """The worker's connection to its runtime (see the module docstring).

    *sink* and *on_read_end* may be given after construction (the sessions
    that are the sink usually write through this transport), but before the
    connection is made.
    """

    def __init__(
        self,
        generation: Generation | str,
        protocol: WorkerProtocol,
        sink: SessionSink | None = None,
        *,
        on_read_end: Callable[[], Any] = _nothing,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        backend: str | None = None,
    ) -> None:
        # A request frame over max_frame_size fails its session only, not
        # the connection (an Oversize record, issue #16).
        super().__init__(
            generation,
            max_frame_size=max_frame_size,
            write_high_water=write_high_water,
            backend=backend,
            skip_oversize=True,
            split_payloads=True,
        )
        self.protocol = protocol
        #: Told every frame by the protocol.
        self.sink: SessionSink = sink if sink is not None else _NO_SINK
        #: Called once every frame of a read has been delivered (also after
        #: one of them closed the connection).
        self.on_read_end = on_read_end
        #: True while the frames of one read are being delivered.
        self.dispatching = False

    def reader(self) -> Callable[[bytes], None]:
        if self.sink is _NO_SINK:
            raise RuntimeError("a worker transport needs its sink before it connects")
        return self.deliver

    def deliver(self, data: bytes) -> None:
        """Tell the sink every frame in one read's *data*, then run the read-end hook."""
        self.dispatching = True
        try:
            self._deliver_records(data, self.protocol, self.sink)
        finally:
            try:
                self.on_read_end()
            finally:
                self.dispatching = False
