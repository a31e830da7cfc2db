"""``BaseService``: one connection to one service, kept alive across failures.

The seed's ``BaseService`` holds ``_handle``, its connection (here a
:class:`~cocaine_http.aio.frame_transport.FrameTransport`), and drives
the ``closed → connecting → connected``/``error`` machine of
:mod:`cocaine_http.protocol.states`; what the bytes mean is decided by
:class:`~cocaine_http.protocol.service.ServiceProtocol` (sans IO). This
module only moves bytes and wakes awaiting tasks:

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
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ..aio.frame_transport import FrameTransport
from ..errors import (
    CallTimeoutError,
    CocaineError,
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
from ..protocol.service import CallMode, CallState, Reply, ServiceProtocol
from ..protocol.states import Backoff, ServiceInput, ServiceState, ServiceStateMachine
from .deadlines import DEADLINE_RESOLUTION, TIMED_OUT, Deadlines
from .stream import Stream

__all__ = [
    "DEADLINE_RESOLUTION",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "BaseService",
    "Resolver",
    "Stream",
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
_CONNECTED = ServiceState.CONNECTED
_UNARY = CallMode.UNARY
_VALUE = Reply.VALUE


def _resolve_failed(name: str, exc: TransportError) -> TransportError:
    """*exc*, the locator's transport error, re-raised as the same type naming service *name*."""
    err = type(exc)(f"{name}: cannot resolve through the locator: {exc}")
    if isinstance(exc, ConnectError):
        err.errno = exc.errno  # type: ignore[attr-defined]
    return err


class BaseService:
    """A connection to one service with calls multiplexed on it.

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
        #: The seed's ``_handle``: the current connection, or ``None``.
        self._handle: FrameTransport | None = None
        self._proto: ServiceProtocol | None = None
        self._methods = methods
        self._resolver = resolver
        self._connecting: asyncio.Task[None] | None = None
        self._failures = 0
        self._last_failure: float | None = None
        self._last_error: BaseException | None = None
        self._stale = False  # the known endpoints failed: resolve again before the next round
        self._epoch = 0  # bumped by close(): a connect attempt from before it must not go on
        self._paused_by: set[int] = set()  # ids of streams over their high-water mark
        self._io_loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None
        self._wbuf: list[bytes] | None = None  # frames written during this loop iteration
        #: Called with no arguments after every successful connect / every lost connection.
        self.on_connected: list[Callable[[], Any]] = []
        self.on_disconnected: list[Callable[[BaseException | None], Any]] = []

    def __repr__(self) -> str:
        ep = format_endpoint(self._handle.endpoint) if self._handle and self._handle.endpoint else "-"
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
        return len(self._proto.calls) if self._proto is not None else 0

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
        handle = self._handle
        self.fsm.apply(_I.CLOSE)
        if handle is not None:
            handle.close()  # -> _on_close fails what is pending
        self._failures = 0
        self._last_failure = None

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> BaseService:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
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

    async def _open_channel(self) -> None:
        errors: list[str] = []
        last_errno: int | None = None
        for ep in self.endpoints:
            ch = FrameTransport(self.generation, self._on_frame, max_frame_size=self.max_frame_size)
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
            ch.on_close = lambda exc, ch=ch: self._on_close(ch, exc)
            if ch.closed:  # the peer hung up at once
                errors.append(f"{format_endpoint(ep)} closed the connection at once")
                continue
            self._handle = ch
            self._proto = ServiceProtocol(self.generation, self.name)
            self._wbuf = None
            loop = asyncio.get_running_loop()
            if self._io_loop is not loop:
                self._io_loop = loop
                self._deadlines = Deadlines(loop)
            self.fsm.apply(_I.CONNECTED)
            log.debug("%s: connected to %s", self.name, format_endpoint(ep))
            return
        raise ConnectError(
            f"{self.name}: cannot connect to any endpoint: " + ", ".join(errors), errno=last_errno
        )

    def _on_close(self, ch: FrameTransport, exc: BaseException | None) -> None:
        if ch is not self._handle:
            return
        self._handle = None
        self._wbuf = None  # unsent frames belong to calls that are failing now
        proto, self._proto = self._proto, None
        self._paused_by.clear()
        if self.fsm.state is _S.CONNECTED:
            self.fsm.apply(_I.DISCONNECTED)
        where = format_endpoint(ch.endpoint) if ch.endpoint else "?"
        if proto is not None:
            for st in proto.lost():
                if st.delivered:
                    continue
                st.delivered = True
                if isinstance(exc, RemoteProtocolError):
                    err: CocaineError = type(exc)(f"{self.name}.{st.method.name}: {exc}")
                    err.__cause__ = exc
                elif self.fsm.state is _S.CLOSED:
                    err = DisconnectedError(f"{self.name}.{st.method.name}: service closed")
                else:
                    err = DisconnectedError(f"{self.name}.{st.method.name}: connection to {where} lost")
                self._deliver(st, Reply.ERROR, err)
        for hook in list(self.on_disconnected):
            hook(exc)

    # -- receiving -----------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        proto = self._proto
        if proto is None:
            return
        try:
            out = proto.receive(frame)
        except RemoteProtocolError as exc:  # broken headers: the connection is unusable
            log.error("%s: %s; dropping the connection", self.name, exc)
            handle = self._handle
            if handle is not None:
                self._on_close(handle, exc)
                handle.close()
            return
        if out is not None:
            self._deliver(*out)

    def _deliver(self, st: CallState, what: Reply, payload: Any) -> None:
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
            sink._feed(what, payload)

    def _pause_for(self, key: int) -> None:
        self._paused_by.add(key)
        if self._handle is not None:
            self._handle.pause_reading()

    def _resume_for(self, key: int) -> None:
        if key in self._paused_by:
            self._paused_by.discard(key)
            if not self._paused_by and self._handle is not None:
                self._handle.resume_reading()

    def _abandon(self, proto: ServiceProtocol, st: CallState) -> None:
        data = proto.abandon(st)
        self._resume_for(st.id)
        if data is not None and proto is self._proto and self._handle is not None:
            self._write(data)

    def _write(self, data: bytes) -> None:
        """Send one frame, in order. With other calls in flight, frames are gathered
        and leave together at the end of the loop iteration (one syscall for many
        calls); a lone call goes out at once."""
        buf = self._wbuf
        if buf is not None:
            buf.append(data)
            return
        handle = self._handle
        if handle is None:
            raise DisconnectedError(f"{self.name}: not connected")
        proto = self._proto
        if proto is None or len(proto.calls) <= 1:
            handle.send(0, data)
            return
        self._wbuf = [data]
        assert self._io_loop is not None
        self._io_loop.call_soon(self._flush, handle)

    def _flush(self, handle: FrameTransport) -> None:
        buf = self._wbuf
        self._wbuf = None
        if buf and handle is self._handle and not handle.closed:
            handle.send(0, b"".join(buf) if len(buf) > 1 else buf[0])

    # -- calls ---------------------------------------------------------------
    async def call(self, name: str, *args: Any, timeout: float | None = None,
                   headers: Sequence[tuple[Any, Any]] | None = None) -> Any:
        """Call method *name*: the value for unary methods, a :class:`Stream` for streaming ones."""
        if self._methods is None:  # the method table comes with the resolve
            if timeout is None:
                timeout = self.timeout
            loop = asyncio.get_running_loop()
            start = loop.time()
            await self._ensure_connected(timeout)
            if timeout is not None:
                timeout = max(0.0, timeout - (loop.time() - start))
        return await self.call_spec(self.method(name), args, timeout=timeout, headers=headers)

    def call_spec(self, spec: MethodSpec, args: Sequence[Any], *, timeout: float | None = None,
                  headers: Sequence[tuple[Any, Any]] | None = None) -> Awaitable[Any]:
        if spec.streaming:
            return self._open_stream(spec, args, timeout, headers)
        return self._unary(spec, args, timeout, headers)

    async def _unary(self, spec: MethodSpec, args: Sequence[Any], timeout: float | None,
                     headers: Sequence[tuple[Any, Any]] | None) -> Any:
        # The hot path: one call on an open connection costs a frame, a CallState,
        # a future and a set entry; nothing else is allocated (no closure, no timer).
        if timeout is None:
            timeout = self.timeout
        if self.fsm.state is not _CONNECTED:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await self._ensure_connected(timeout)
            if timeout is not None:
                timeout = max(0.0, timeout - (loop.time() - start))
        proto = self._proto
        assert proto is not None
        st, data = proto.open(spec, args) if headers is None else proto.open(spec, args, headers=headers)
        if st is None:  # mute: nothing will come back
            self._write(data)
            return None
        fut = self._io_loop.create_future()  # type: ignore[union-attr]
        st.sink = fut
        if self._wbuf is None and len(proto.calls) == 1:
            self._handle.send(0, data)  # type: ignore[union-attr]  # alone: straight to the socket
        else:
            self._write(data)
        bucket = None if timeout is None else self._deadlines.add(fut, timeout)  # type: ignore[union-attr]
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
                self._abandon(proto, st)
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
        proto, handle = self._proto, self._handle
        if proto is None or handle is None:
            raise DisconnectedError(f"{self.name}: not connected")
        _st, data = proto.open(self.method(name), args, mode=CallMode.DISCARD, headers=headers)
        self._write(data)
        return handle.write_paused

    async def drain(self) -> None:
        """Wait until the connection's write buffer is below its high-water mark."""
        if self._handle is not None:
            await self._handle.drain()

    async def _open_stream(self, spec: MethodSpec, args: Sequence[Any], timeout: float | None,
                           headers: Sequence[tuple[Any, Any]] | None) -> Stream:
        if timeout is None:
            timeout = self.timeout
        if self.fsm.state is not _S.CONNECTED:
            await self._ensure_connected(timeout)
        proto, handle = self._proto, self._handle
        assert proto is not None and handle is not None
        st, data = proto.open(spec, args, mode=CallMode.STREAM, headers=headers)
        stream = Stream(self, proto, st, spec, timeout)
        if st is not None:
            st.sink = stream
        self._write(data)
        return stream


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
