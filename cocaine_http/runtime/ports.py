"""Which port each service and app of the local runtime listens on (PROTOCOL.md §2.5.2)."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from .server import ServiceServer

__all__ = ["PortAllocator"]


class PortAllocator:
    """Ports for services and apps: lowest free first from a range, else ephemeral.

    ``port_range`` is ``(first, last_exclusive)``; ``None`` asks the OS for
    an ephemeral port each time (the real runtime's default, §2.5.2).
    """

    def __init__(self, port_range: Sequence[int] | None = None) -> None:
        if port_range is not None:
            lo, hi = int(port_range[0]), int(port_range[1])
            if not 0 < lo < hi <= 65536:
                raise ValueError(f"bad port range {port_range!r}")
            self.port_range: tuple[int, int] | None = (lo, hi)
        else:
            self.port_range = None

    async def bind(self, server: ServiceServer) -> int:
        if self.port_range is None:
            return await server.start(0)
        lo, hi = self.port_range
        for port in range(lo, hi):
            try:
                return await server.start(port)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port in [{lo}, {hi}) for {server.service.name}")
