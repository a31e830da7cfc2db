"""``Stream``: the caller's end of a streaming call (app ``enqueue``, node ``control``).

Split from :mod:`.base` because it is the other side of the same call
state: the connection (:class:`~cocaine_http.services.link.Link`) feeds
replies in (:meth:`Stream.feed`); a stream owns what one call has
buffered, what it may still send (the method's dispatch graph) and how it is
abandoned. It uses the link of the connection its call was opened on only
to write, to pause or resume reading when too much is buffered, and to
abandon the call.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import CallTimeoutError, ChannelClosedError, DisconnectedError
from ..protocol.methods import TERMINAL, MethodSpec
from ..protocol.service import CallState, Reply
from .deadlines import TIMED_OUT, Deadlines
from .link import Link

__all__ = ["Stream"]

_END = object()


class Stream:
    """A streaming call: send with :meth:`write`/:meth:`close`/:meth:`error`,
    read with ``async for`` (or :meth:`recv`/:meth:`collect`).

    Items are the payloads of the reply's data messages: the raw chunk
    (``bytes``) of a ``write``, or the value of a terminal ``value``. An
    ``error`` raises :class:`~cocaine_http.errors.ServiceError`; a lost
    connection :class:`~cocaine_http.errors.DisconnectedError`. ``timeout``
    bounds every wait for the next item; expiry raises
    :class:`~cocaine_http.errors.CallTimeoutError` and abandons the call.
    Leaving ``async with`` or calling :meth:`aclose` before the end abandons
    it too: (B) an ``error`` ends our side if it is still open.
    """

    def __init__(self, link: Link, st: CallState | None, spec: MethodSpec, timeout: float | None,
                 high_water: int) -> None:
        self._link = link
        self._proto = link.proto
        self._st = st
        self.method = spec.name
        self.timeout = timeout
        #: Unread items buffered before the connection stops reading (it reads again at half).
        self.high_water = high_water
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._finished = st is None or spec.upstream is TERMINAL  # reply side ended
        self._exc: BaseException | None = None

    def __repr__(self) -> str:
        sid = self._st.id if self._st else "-"
        return f"<Stream {self._link.name}.{self.method} session={sid} buffered={len(self._items)}>"

    @property
    def session(self) -> int | None:
        return self._st.id if self._st is not None else None

    @property
    def finished(self) -> bool:
        """The reply has ended (normally or with an error) and everything was read."""
        return self._finished and not self._items

    # -- fed by the connection -----------------------------------------------
    def feed(self, what: Reply, payload: Any) -> None:
        """Take one reply message of this call (:meth:`Link.deliver <.link.Link.deliver>` calls it)."""
        if what is Reply.DATA:
            self._items.append(payload)
            if self._st is not None and self._st.recv is TERMINAL:
                self._finished = True
            elif len(self._items) >= self.high_water and self._st is not None:
                self._link.pause_for(self._st.id)
        elif what is Reply.ERROR:
            self._exc = payload
            self._finished = True
        else:
            self._finished = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- sending -------------------------------------------------------------
    async def send(self, name: str, *args: Any, headers: Sequence[tuple[Any, Any]] | None = None) -> None:
        """Send dispatch message *name* (what the method's dispatch graph allows now)."""
        st = self._st
        if st is None:
            raise ChannelClosedError(f"{self._link.name}.{self.method}: the call accepts no messages")
        link = self._link
        if link.closed:
            raise DisconnectedError(f"{link.name}.{self.method}: connection lost")
        data = self._proto.send(st, name, args, headers)
        link.write(data)
        if not link.closed and link.write_paused:
            await link.drain()

    async def write(self, *args: Any) -> None:
        """``write`` (B: a request body chunk for app ``enqueue``)."""
        await self.send("write", *args)

    async def close(self) -> None:
        """``close``: we have nothing more to send. Reading may continue.

        A no-op when our side has already ended (closed, errored or abandoned)."""
        st = self._st
        if st is None or self._proto.calls.get(st.id) is not st or st.send is TERMINAL:
            return
        await self.send("close")

    async def error(self, code: int | tuple[int, int], message: str) -> None:
        """``error``: abort our side with ``(category, code)`` (an int means category 42)."""
        if not isinstance(code, tuple):
            code = (42, int(code))
        await self.send("error", [int(code[0]), int(code[1])], message)

    def can_send(self, name: str) -> bool:
        return (
            self._st is not None and not self._link.closed and self._proto.can_send(self._st, name)
        )

    # -- receiving -----------------------------------------------------------
    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        item = await self._next(self.timeout)
        if item is _END:
            raise StopAsyncIteration
        return item

    async def recv(self, timeout: float | None = None) -> Any:
        """The next item; raises ``StopAsyncIteration`` at the end."""
        item = await self._next(self.timeout if timeout is None else timeout)
        if item is _END:
            raise StopAsyncIteration
        return item

    async def collect(self) -> list[Any]:
        """Every remaining item, until the reply ends."""
        return [item async for item in self]

    async def _next(self, timeout: float | None) -> Any:
        while True:
            if self._items:
                item = self._items.popleft()
                if self._st is not None and len(self._items) < self.high_water // 2:
                    self._link.resume_for(self._st.id)
                return item
            if self._exc is not None:
                exc, self._exc = self._exc, None
                self._drop()
                raise exc
            if self._finished:
                self._drop_if_done()
                return _END
            loop = asyncio.get_running_loop()
            w = self._waiter = loop.create_future()
            bucket = None
            if timeout is not None:  # the service's deadline buckets: no timer, no error object per wait
                deadlines = self._link.deadlines
                if deadlines.loop is not loop:
                    deadlines = Deadlines(loop)
                bucket = deadlines.add(w, timeout)
            try:
                got = await w
            except BaseException:
                if w.done() and not w.cancelled():
                    w.exception()
                self._drop()  # cancellation: the call is over
                raise
            finally:
                self._waiter = None
                if bucket is not None:
                    bucket.discard(w)
            if got is TIMED_OUT:
                self._drop()  # the call is over
                raise CallTimeoutError(
                    f"{self._link.name}.{self.method}: nothing received within {timeout} s")

    def _drop_if_done(self) -> None:
        st = self._st
        if st is not None and st.id in self._proto.calls and st.send is not TERMINAL:
            return  # our side is still open: the owner may still write/close
        self._drop()

    def _drop(self) -> None:
        st = self._st
        if st is not None and self._proto.calls.get(st.id) is st:
            self._link.abandon(st)
        elif st is not None:
            self._link.resume_for(st.id)

    async def aclose(self) -> None:
        """Abandon the call if it is not over (see the class docstring)."""
        self._finished = True
        self._items.clear()
        self._drop()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
