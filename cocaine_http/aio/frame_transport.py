"""The transport of connections that interpret frames themselves.

A service client reads replies through its dispatch graph
(:mod:`cocaine_http.protocol.service`), and the local runtime reads a
worker's frames, or a service caller's, through its own tables
(:mod:`cocaine_http.runtime.side`, :mod:`cocaine_http.runtime.server`):
all they need from the connection is every decoded
:class:`~cocaine_http.protocol.frames.Frame`, in order. A
:class:`FrameTransport` hands each one to the callable it was built with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.frames import Frame, Generation
from .transport import DEFAULT_WRITE_HIGH_WATER, Transport

__all__ = ["FrameTransport"]


class FrameTransport(Transport):
    """A connection that hands every frame to *on_frame* (see the module docstring)."""

    def __init__(
        self,
        generation: Generation | str,
        on_frame: Callable[[Frame], Any],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        write_high_water: int = DEFAULT_WRITE_HIGH_WATER,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            generation, max_frame_size=max_frame_size, write_high_water=write_high_water, backend=backend
        )
        self.on_frame = on_frame

    def reader(self) -> Callable[[bytes], None]:
        return self.deliver

    def deliver(self, data: bytes) -> None:
        """Hand every frame in one read's *data* to ``on_frame``."""
        self._deliver_frames(data, self.on_frame)
