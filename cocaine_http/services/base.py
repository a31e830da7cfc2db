"""``BaseService``: calls to one service over a connection kept alive across failures.

The seed's ``BaseService``. Finding the service and staying connected is
:class:`~cocaine_http.services.connection.ServiceConnection`'s (its base
class); what one open connection holds is a
:class:`~cocaine_http.services.link.Link`; what the bytes mean is decided by
:class:`~cocaine_http.protocol.service.ServiceProtocol` (sans IO). This
module makes the calls:

* a call made while not connected waits for the connect (within its own
  timeout), then opens a session on the current link;
* every call has a **timeout** (:class:`~cocaine_http.errors.CallTimeoutError`);
  cancelling the awaiting task, a timeout or dropping a stream ends the
  session cleanly: its state is removed at once, late replies are ignored,
  an id is never reused and (B) nothing follows a terminal message.

The caller's end of a streaming call is :class:`~cocaine_http.services.stream.Stream`
(:mod:`.stream`), and the call timeouts are :mod:`.deadlines`; both are
re-exported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from ..errors import CallTimeoutError, DisconnectedError
from ..protocol.methods import MethodSpec
from ..protocol.service import CallMode
from ..protocol.states import ServiceState
from .connection import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, Resolver, ServiceConnection
from .deadlines import DEADLINE_RESOLUTION, TIMED_OUT
from .link import Link
from .stream import Stream

__all__ = [
    "DEADLINE_RESOLUTION",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "BaseService",
    "Resolver",
    "Stream",
]

#: ``ServiceState.CONNECTED`` looked up once: on CPython 3.11 reading an enum member
#: through its class costs about two function calls. With the reply path's two
#: (link.py), bench/client_calls.py --callgrind: 92.8K -> 90.4K instr/call, B, 1 in flight.
_CONNECTED = ServiceState.CONNECTED


class BaseService(ServiceConnection):
    """A connection to one service with calls multiplexed on it.

    ``endpoints`` are tried in order; ``methods`` is the method table when
    it is known without asking (the locator's own); otherwise ``resolver``
    (normally :meth:`Locator.resolve <cocaine_http.services.Locator.resolve>`)
    supplies endpoints and methods on first connect and whenever the known
    endpoints stop answering.
    """

    async def __aenter__(self) -> BaseService:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------
    async def call(self, name: str, *args: Any, timeout: float | None = None,
                   headers: Sequence[tuple[Any, Any]] | None = None) -> Any:
        """Call method *name*: the value for unary methods, a :class:`Stream` for streaming ones."""
        if self._methods is None:  # the method table comes with the resolve
            timeout = await self._connect_within(self.timeout if timeout is None else timeout)
        return await self.call_spec(self.method(name), args, timeout=timeout, headers=headers)

    def call_spec(self, spec: MethodSpec, args: Sequence[Any], *, timeout: float | None = None,
                  headers: Sequence[tuple[Any, Any]] | None = None) -> Awaitable[Any]:
        """Call the method *spec* describes (the coroutine itself: awaiting it makes the call)."""
        if spec.streaming:
            return self._open_stream(spec, args, timeout, headers)
        return self._unary(spec, args, timeout, headers)

    async def _connect_within(self, timeout: float | None) -> float | None:
        """Connect within *timeout*; what is left of it for the call itself."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._ensure_connected(timeout)
        return None if timeout is None else max(0.0, timeout - (loop.time() - start))

    def _current_link(self) -> Link:
        link = self.link
        if link is None:
            raise DisconnectedError(f"{self.name}: not connected")
        return link

    async def _unary(self, spec: MethodSpec, args: Sequence[Any], timeout: float | None,
                     headers: Sequence[tuple[Any, Any]] | None) -> Any:
        # One call on an open connection costs a frame, a CallState, a future and a
        # set entry; nothing else is allocated (no closure, no timer).
        if timeout is None:
            timeout = self.timeout
        if self.fsm.state is not _CONNECTED:
            timeout = await self._connect_within(timeout)
        link = self.link
        if link is None:  # connected and lost again in between
            raise DisconnectedError(f"{self.name}: not connected")
        st, data = link.proto.open(spec, args, headers=headers)
        if st is None:  # mute: nothing will come back
            link.write(data)
            return None
        fut = link.loop.create_future()
        st.sink = fut
        link.write(data)
        bucket = None if timeout is None else link.deadlines.add(fut, timeout)
        try:
            value = await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                fut.exception()  # cancelled while the reply failed: mark it seen
            raise
        finally:
            if bucket is not None:
                bucket.discard(fut)
            if not st.delivered:  # timed out or cancelled: end the session here
                link.abandon(st)
        if value is TIMED_OUT:
            raise CallTimeoutError(f"{self.name}.{spec.name}: no reply within {timeout} s")
        return value

    def fire(self, name: str, *args: Any, headers: Sequence[tuple[Any, Any]] | None = None) -> bool:
        """Send a call without waiting for (or keeping) its result. Needs a connection.

        Mute methods (B ``logging.emit``) keep no state at all; others (A
        ``logging.emit``, which answers a bare choke) keep just enough to
        read and discard the reply. Returns whether the write buffer is over
        its high-water mark (the caller should ``await drain()``).
        """
        link = self._current_link()
        _st, data = link.proto.open(self.method(name), args, mode=CallMode.DISCARD, headers=headers)
        link.write(data)
        return link.write_paused

    async def drain(self) -> None:
        """Wait until the connection's write buffer is below its high-water mark."""
        if self.link is not None:
            await self.link.drain()

    async def _open_stream(self, spec: MethodSpec, args: Sequence[Any], timeout: float | None,
                           headers: Sequence[tuple[Any, Any]] | None) -> Stream:
        if timeout is None:
            timeout = self.timeout
        if self.fsm.state is not _CONNECTED:
            await self._ensure_connected(timeout)
        link = self._current_link()
        st, data = link.proto.open(spec, args, mode=CallMode.STREAM, headers=headers)
        stream = Stream(link, st, spec, timeout, self.stream_high_water)
        if st is not None:
            st.sink = stream
        link.write(data)
        return stream
