"""The seed's ``Channel``: one connection, C-decoded, dispatched to callbacks.

A :class:`Channel` is a :class:`~cocaine_http.aio.transport.Transport`
(connect, send, drain, close, the lifecycle hooks ``on_connect``,
``on_socket_error``, ``on_protocol_error`` and ``on_close``) that calls one
callback per complete message. Callbacks are plain attributes, as in the
seed, and default to no-ops::

    on_chunk(session, data)              A chunk / B write (B client: also a primitive value)
    on_choke(session)                    A choke / B close
    on_error(session, code, message)     code is an int (A) or (category, code) (B)
    on_terminate(session, code, reason)  worker side
    on_heartbeat()                       worker side
    on_invoke(session, event)            worker side

A channel plays one of the seed's two roles, fixed when it is made: given a
``worker`` (a :class:`~cocaine_http.protocol.worker.WorkerProtocol`) it is
the worker's end and reads what frames mean through that protocol;
without one it is a client's end and reads the stream messages as they
come. The framework's own connections use the role-specific transports
(:mod:`.worker_transport`, :mod:`.frame_transport`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..protocol.catalog import B_STREAM, A
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.events import Error, Event, Headers, Heartbeat, Ignored, SessionSink, Terminate
from ..protocol.frames import Frame, Generation
from ..protocol.payloads import SplitPayload
from ..protocol.wire import as_text
from ..protocol.worker import WorkerProtocol
from .transport import DEFAULT_WRITE_HIGH_WATER, Transport

__all__ = ["DEFAULT_WRITE_HIGH_WATER", "Channel"]

log = logging.getLogger("cocaine_http.channel")


def _noop(*_args: Any) -> None:
    return None


class _SeedCallbacks:
    """The worker role's sink: what the worker protocol tells, as the seed's callbacks."""

    __slots__ = ("channel",)

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def on_invoke(self, session: int, event: str, headers: Headers) -> None:
        self.channel.on_invoke(session, event)

    def on_chunk(self, session: int, data: bytes | SplitPayload, headers: Headers | None) -> None:
        # (bytes: only the worker's transport asks its decoder to split payloads)
        self.channel.on_chunk(session, bytes(data) if isinstance(data, SplitPayload) else data)

    def on_choke(self, session: int) -> None:
        self.channel.on_choke(session)

    def on_event(self, event: Event) -> None:
        channel = self.channel
        if isinstance(event, Error):
            code: Any = (event.category, event.code) if event.category is not None else event.code
            channel.on_error(event.session, code, event.message)
        elif isinstance(event, Heartbeat):
            channel.on_heartbeat()
        elif isinstance(event, Terminate):
            channel.on_terminate(0 if channel.generation is Generation.A else 1, event.code, event.reason)
        elif isinstance(event, Ignored):
            log.warning("dropped a message: %s", event.error)
        # an Oversize frame of a session: the seed has no callback for it


class Channel(Transport):
    """A cocaine connection with seed-style callbacks (see the module docstring)."""

    def __init__(
        self,
        generation: Generation | str = Generation.B,
        *,
        worker: WorkerProtocol | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        backend: str | None = None,
    ) -> None:
        # The worker's end fails only the session of a request frame over
        # max_frame_size (an Oversize event), not the connection (issue #16).
        super().__init__(
            generation,
            max_frame_size=max_frame_size,
            write_high_water=write_high_water,
            backend=backend,
            skip_oversize=worker is not None,
        )
        self.worker = worker
        self.on_chunk: Callable[[int, Any], Any] = _noop
        self.on_choke: Callable[[int], Any] = _noop
        self.on_error: Callable[[int, Any, str], Any] = _noop
        self.on_terminate: Callable[[int, int, str], Any] = _noop
        self.on_heartbeat: Callable[[], Any] = _noop
        self.on_invoke: Callable[[int, str], Any] = _noop
        # The worker role: what the worker protocol tells, as the callbacks above.
        self._seed_sink: SessionSink = _SeedCallbacks(self)

    def reader(self) -> Callable[[bytes], None]:
        if self.worker is not None:
            return self._read_as_worker
        if self.generation is Generation.A:
            return self._reader_as_client(int(A.CHUNK), int(A.CHOKE), int(A.ERROR))
        return self._reader_as_client(int(B_STREAM.WRITE), int(B_STREAM.CLOSE), int(B_STREAM.ERROR))

    def _read_as_worker(self, data: bytes) -> None:
        worker = self.worker
        assert worker is not None  # reader() picks this role only with a worker
        self._deliver_records(data, worker, self._seed_sink)

    def _reader_as_client(self, chunk: int, choke: int, error: int) -> Callable[[bytes], None]:
        """The client role's reader, for the generation's message ids."""

        def tell(f: Frame) -> None:
            if f.type == chunk:
                self.on_chunk(f.session, f.args[0] if len(f.args) == 1 else f.args)
            elif f.type == choke:
                self.on_choke(f.session)
            elif f.type == error:
                code: Any = f.args[0] if f.args else 0
                if isinstance(code, list):
                    code = tuple(code)
                message = as_text(f.args[1], "message") if len(f.args) > 1 else ""
                self.on_error(f.session, code, message)
            else:
                log.warning("dropped message of unknown type %d on session %d", f.type, f.session)

        def read(data: bytes) -> None:
            self._deliver_frames(data, tell)

        return read
