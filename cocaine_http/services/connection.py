"""``ServiceConnection``: one service's connection, kept alive across failures.

The half of :class:`~cocaine_http.services.base.BaseService` that finds the
service and stays connected to it, driving the ``closed → connecting →
connected``/``error`` machine of :mod:`cocaine_http.protocol.states`; the
calls made over the connection are :mod:`.base`'s, and what one open
connection holds is a :class:`~cocaine_http.services.link.Link`:

* **connect** tries every endpoint in order (the locator may return several);
  a service known only by name is resolved first (the ``resolving`` flag);
  when the known endpoints all refuse, the name is resolved again.
* calls made while **connecting** wait for that one attempt (they are
  queued behind it), each within its own timeout.
* on **connection loss** every pending call fails with
  :class:`~cocaine_http.errors.DisconnectedError`; the next call reconnects,
  with exponential backoff and a cap (:class:`~cocaine_http.protocol.states.Backoff`);
  a call never sleeps past the backoff's window: when the next round is not
  due yet it fails at once with :class:`~cocaine_http.errors.ConnectError`.
  An unreachable locator is the locator's to retry, never the service's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..aio.frame_transport import FrameTransport
from ..errors import (
    CallTimeoutError,
    ConnectError,
    DisconnectedError,
    RemoteProtocolError,
    ServiceError,
    TransportError,
)
from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..protocol.endpoints import Endpoint, format_endpoint
from ..protocol.frames import Frame, Generation
from ..protocol.methods import MethodSpec, Resolved, ResolveFormatError, method_not_found
from ..protocol.service import ServiceProtocol
from ..protocol.states import Backoff, ServiceInput, ServiceState, ServiceStateMachine
from .deadlines import Deadlines
from .link import Link

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_STREAM_HIGH_WATER",
    "DEFAULT_TIMEOUT",
    "Resolver",
    "ServiceConnection",
]

log = logging.getLogger("cocaine_http.services")

#: Default per-call timeout, seconds (covers connecting, sending and the whole reply).
DEFAULT_TIMEOUT = 30.0
#: Default timeout of one TCP connect to one endpoint.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: A stream buffers at most this many unread items before the connection stops reading.
DEFAULT_STREAM_HIGH_WATER = 1024

#: ``await resolver(name, timeout)`` -> what the locator says about *name*.
Resolver = Callable[[str, "float | None"], Awaitable[Resolved]]

_S = ServiceState
_I = ServiceInput


def _resolve_failed(name: str, exc: TransportError) -> TransportError:
    """*exc*, the locator's transport error, re-raised as the same type naming service *name*."""
    err = type(exc)(f"{name}: cannot resolve through the locator: {exc}")
    if isinstance(exc, ConnectError):
        err.errno = exc.errno  # type: ignore[attr-defined]
    return err


class ServiceConnection:
    """The connection to one service, made on demand and made again after a loss.

    ``endpoints`` are tried in order; ``methods`` is the method table when
    it is known without asking (the locator's own); otherwise ``resolver``
    (normally :meth:`Locator.resolve <cocaine_http.services.Locator.resolve>`)
    supplies endpoints and methods on first connect and whenever the known
    endpoints stop answering.
    """

    def __init__(
        self,
        name: str,
        endpoints: Iterable[Endpoint] | None = None,
        *,
        generation: Generation | str = Generation.B,
        methods: dict[str, MethodSpec] | None = None,
        resolver: Resolver | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff: Backoff | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        stream_high_water: int = DEFAULT_STREAM_HIGH_WATER,
    ) -> None:
        self.name = name
        self.generation = Generation.parse(generation)
        self.endpoints: list[Endpoint] = list(endpoints or ())
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.max_frame_size = max_frame_size
        self.stream_high_water = stream_high_water
        self.resolved: Resolved | None = None
        self.fsm = ServiceStateMachine()
        #: The current connection and its calls, or ``None``.
        self.link: Link | None = None
        self._methods = methods
        self._resolver = resolver
        self._connecting: asyncio.Task[None] | None = None
        self._failures = 0
        self._last_failure: float | None = None
        self._last_error: BaseException | None = None
        self._stale = False  # the known endpoints failed: resolve again before the next round
        self._epoch = 0  # bumped by close(): a connect attempt from before it must not go on
        self._deadlines: Deadlines | None = None  # the call timeouts, on the loop of the last connect
        #: Called with no arguments after every successful connect / every lost connection.
        self.on_connected: list[Callable[[], Any]] = []
        self.on_disconnected: list[Callable[[BaseException | None], Any]] = []

    def __repr__(self) -> str:
        channel = self.link.channel if self.link is not None else None
        ep = format_endpoint(channel.endpoint) if channel is not None and channel.endpoint else "-"
        return f"<{type(self).__name__} {self.name!r} {self.state.value} {ep} pending={self.pending}>"

    # -- introspection -------------------------------------------------------
    @property
    def state(self) -> ServiceState:
        return self.fsm.state

    @property
    def connected(self) -> bool:
        return self.fsm.state is _S.CONNECTED

    @property
    def pending(self) -> int:
        """Open calls on the current connection (0 means no leaked session state)."""
        return self.link.pending if self.link is not None else 0

    @property
    def _handle(self) -> FrameTransport | None:
        """The seed's name for the current connection's channel (``None`` when not connected)."""
        return self.link.channel if self.link is not None else None

    @property
    def methods(self) -> dict[str, MethodSpec]:
        """The method table (empty until resolved)."""
        return dict(self._methods or {})

    def method(self, name: str) -> MethodSpec:
        methods = self._methods
        if methods is None or name not in methods:
            raise method_not_found(self.name, name, methods or {})
        return methods[name]

    # -- connection ----------------------------------------------------------
    async def connect(self, timeout: float | None = None) -> None:
        """Resolve (if needed) and connect; a no-op when connected."""
        if self.fsm.state is not _S.CONNECTED:
            await self._ensure_connected(self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Close the connection; pending calls fail with DisconnectedError.

        The service stays usable: the next call connects again.
        """
        task = self._connecting
        self._connecting = None
        self._epoch += 1
        if task is not None and not task.done():
            task.cancel()
        link = self.link
        self.fsm.apply(_I.CLOSE)
        if link is not None:
            link.channel.close()  # -> _on_close fails what is pending
        self._failures = 0
        self._last_failure = None

    async def aclose(self) -> None:
        self.close()

    async def _ensure_connected(self, timeout: float | None) -> None:
        task = self._connecting
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            task = self._connecting = loop.create_task(self._establish(), name=f"connect {self.name}")
            task.add_done_callback(_retrieve)
        try:
            if timeout is None:
                await asyncio.shield(task)
            else:
                await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            raise CallTimeoutError(f"{self.name}: not connected within {timeout} s") from None
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and not (me is not None and getattr(me, "cancelling", lambda: 0)()):
                # close() stopped the attempt; we were not cancelled ourselves
                raise DisconnectedError(f"{self.name}: service closed while connecting") from None
            raise
        if self.fsm.state is not _S.CONNECTED:  # connected and lost again in between
            raise DisconnectedError(f"{self.name}: connection lost while connecting")

    async def _establish(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.backoff
        last: BaseException | None = None
        epoch = self._epoch
        started = loop.time()
        for _ in range(backoff.attempts):
            now = loop.time()
            wait = backoff.wait_before(self._failures, self._last_failure, now)
            if not backoff.may_start(started, now, wait):
                # past this call's window: fail now and let later calls pace the retries
                raise last if last is not None else self._backing_off(wait)
            if wait > 0:
                await asyncio.sleep(wait)
            if epoch != self._epoch:
                raise DisconnectedError(f"{self.name}: closed while connecting")
            resolving = self._resolver is not None and (
                self._methods is None or not self.endpoints or self._stale)
            try:
                if resolving:
                    await self._resolve()
                    resolving = False
                elif self.fsm.state is _S.ERROR:
                    self.fsm.apply(_I.RETRY)
                else:
                    self.fsm.apply(_I.CONNECT)
                if not self.endpoints:
                    raise ConnectError(f"{self.name}: no endpoints to connect to")
                await self._open_channel()
            except (ServiceError, ResolveFormatError):
                raise  # the locator's definitive answer (not found, garbage): do not retry
            except (TransportError, RemoteProtocolError) as exc:
                if epoch != self._epoch:
                    raise
                if resolving and isinstance(exc, TransportError):
                    # The locator is unreachable or silent. It made its own rounds under its
                    # own backoff; resolving again here would multiply them (attempts**2
                    # rounds and their waits: seconds for a refused port). The call ends here.
                    raise _resolve_failed(self.name, exc) from exc
                if self.fsm.state is _S.CONNECTING:
                    self.fsm.apply(_I.CONNECT_FAILED)
                self._failures += 1
                self._last_failure = loop.time()
                self._last_error = exc
                self._stale = True
                last = exc
                continue
            self._failures = 0
            self._last_failure = None
            self._last_error = None
            self._stale = False
            for hook in list(self.on_connected):
                hook()
            return
        assert last is not None
        raise last

    def _backing_off(self, wait: float) -> ConnectError:
        """The error of a call that arrives while the backoff holds the next round back."""
        last = self._last_error
        errno = last.errno if isinstance(last, ConnectError) else None
        n = self._failures
        return ConnectError(
            f"{self.name}: not reconnecting for another {wait:.2f} s (backoff after {n} failed"
            f" round{'s' if n != 1 else ''}; last: {last})", errno=errno)

    async def _resolve(self) -> None:
        assert self._resolver is not None
        self.fsm.apply(_I.RESOLVE)
        try:
            resolved = await self._resolver(self.name, self.timeout)
        except BaseException:
            if self.fsm.resolving:  # not when close() already moved us to closed
                self.fsm.apply(_I.RESOLVE_FAILED)
            raise
        if not self.fsm.resolving:
            raise DisconnectedError(f"{self.name}: closed while resolving")
        self._apply_resolved(resolved)
        self.fsm.apply(_I.RESOLVED)

    def _apply_resolved(self, resolved: Resolved) -> None:
        """Take endpoints and methods from a resolve result (subclasses shape the methods)."""
        self.resolved = resolved
        self.endpoints = list(resolved.endpoints)
        self._methods = self._build_methods(resolved)

    def _build_methods(self, resolved: Resolved) -> dict[str, MethodSpec]:
        return resolved.methods(self.generation)

    def _new_channel(self) -> FrameTransport:
        """The transport of one connection attempt; its frames come to :meth:`_on_frame`."""
        channel = FrameTransport(self.generation, self._on_frame, max_frame_size=self.max_frame_size)
        return channel

    async def _open_channel(self) -> None:
        errors: list[str] = []
        last_errno: int | None = None
        for ep in self.endpoints:
            ch = self._new_channel()
            try:
                await asyncio.wait_for(ch.connect(ep), self.connect_timeout)
            except ConnectError as exc:
                reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
                errors.append(f"{format_endpoint(ep)} ({reason})")
                last_errno = exc.errno
                continue
            except asyncio.TimeoutError:
                errors.append(f"{format_endpoint(ep)} (timed out after {self.connect_timeout} s)")
                ch.close()
                continue
            if self.fsm.state is not _S.CONNECTING:  # closed while we were connecting
                ch.close()
                raise DisconnectedError(f"{self.name}: closed while connecting")
            ch.on_close = functools.partial(self._on_close, ch)
            if ch.closed:  # the peer hung up at once
                errors.append(f"{format_endpoint(ep)} closed the connection at once")
                continue
            loop = asyncio.get_running_loop()
            deadlines = self._deadlines
            if deadlines is None or deadlines.loop is not loop:
                deadlines = self._deadlines = Deadlines(loop)
            proto = ServiceProtocol(self.generation, self.name)
            self.link = Link(self.name, ch, proto, loop, deadlines)
            self.fsm.apply(_I.CONNECTED)
            log.debug("%s: connected to %s", self.name, format_endpoint(ep))
            return
        raise ConnectError(
            f"{self.name}: cannot connect to any endpoint: " + ", ".join(errors), errno=last_errno
        )

    def _on_close(self, ch: FrameTransport, exc: BaseException | None) -> None:
        link = self.link
        if link is None or ch is not link.channel:
            return
        self.link = None
        if self.fsm.state is _S.CONNECTED:
            self.fsm.apply(_I.DISCONNECTED)
        link.lost(exc, service_closed=self.fsm.state is _S.CLOSED)
        for hook in list(self.on_disconnected):
            hook(exc)

    def _on_frame(self, frame: Frame) -> None:
        link = self.link
        if link is None:
            return
        try:
            link.receive(frame)
        except RemoteProtocolError as exc:  # broken headers: the connection is unusable
            log.error("%s: %s; dropping the connection", self.name, exc)
            self._on_close(link.channel, exc)
            link.channel.close()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
