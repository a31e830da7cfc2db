"""The asyncio layer: the transport and the worker built on it.

Everything here runs on an event loop; the sans-IO core it drives lives in
:mod:`cocaine_http.protocol`. The package's door::

    Channel                      the transport: one cocaine connection
    Worker                       a cocaine app process (``@worker.on("event")``)
    Request, Response            an invocation's streams, for ``async def`` handlers
    BlockingRequest, BlockingResponse   the same, for handlers run in threads

Inside: :mod:`.transport` (a connection's socket and writing), its roles
:mod:`.worker_transport` (the worker's), :mod:`.frame_transport` (service
clients' and the local runtime's) and :mod:`.channel` (the seed's
callbacks), :mod:`.worker` (lifecycle), :mod:`.connection` (the connected
worker), :mod:`.sessions` (invocations to handlers), :mod:`.streams` (request and
response), :mod:`.blocking` (their twins for handler threads), :mod:`.flow`
(flow control and the outbox), :mod:`.threads` (handler threads),
:mod:`.eager` (handler start), :mod:`.events`, :mod:`.reads` (the loop's
read buffer).
"""

from __future__ import annotations

from .blocking import BlockingRequest, BlockingResponse
from .channel import Channel
from .streams import Request, Response
from .worker import Worker

__all__ = ["BlockingRequest", "BlockingResponse", "Channel", "Request", "Response", "Worker"]
