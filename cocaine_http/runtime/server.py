"""A generic TCP host for the local runtime's services: one listener per service.

One :class:`ServiceServer` listens for one :class:`~.service.Service`
(locator, logging, storage, node, each app) and hands every accepted
connection to a :class:`~.service_connection.ServiceConnection`, which
dispatches its calls (the reply encodings are in that module's docstring).

The names services are written with (:class:`~.service.Service`,
:class:`~.service.Method`, :class:`~.service_connection.Call`, the
converters, ...) are importable from here too, where the services import them.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from .converters import ArgError, integer, raw, text, text_list, value
from .service import Drop, Fault, Method, Reply, Service
from .service_connection import Call, ServiceConnection

__all__ = [
    "ArgError",
    "Call",
    "Drop",
    "Fault",
    "Method",
    "Reply",
    "Service",
    "ServiceServer",
    "integer",
    "raw",
    "text",
    "text_list",
    "value",
]


class ServiceServer:
    """Listens for one service on TCP and serves every connection."""

    def __init__(
        self,
        service: Service,
        *,
        host: str = "127.0.0.1",
        send_headers: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self.service = service
        self.generation = service.generation
        self.host = host
        self.send_headers = send_headers
        self.max_frame_size = max_frame_size
        self.connections: set[ServiceConnection] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    def _factory(self) -> asyncio.BaseProtocol:
        conn = ServiceConnection(
            self.service, self.connections, self.send_headers, max_frame_size=self.max_frame_size
        )
        return conn.channel.make_protocol()

    async def start(self, port: int = 0) -> int:
        """Bind *port* (0 = ephemeral) and start serving; returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self.host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop_listening(self) -> None:
        """Accept no more connections; the open ones go on (see :meth:`stop`)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.channel.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        await self.service.close()
