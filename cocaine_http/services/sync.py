"""A blocking facade over the async client, for threads and plain scripts.

::

    cocaine = SyncClient()                      # same arguments as Client
    storage = cocaine.storage()
    storage.write("c", "k", b"\\x00\\xff")
    assert storage.read("c", "k") == b"\\x00\\xff"
    for chunk in cocaine.app("echo").enqueue("ping", b"hi"):
        ...
    cocaine.logger("script").info("done")      # Logger is thread-safe as is

Every object it hands out proxies the async one: the same methods, called
on the event loop and waited for. Which loop:

* an explicit ``loop=``;
* else the loop registered with :func:`set_default_loop` -- the worker
  registers its own, so sync WSGI handlers, which run in the worker's
  threads, share the worker's connections (calls go through
  ``asyncio.run_coroutine_threadsafe``);
* else a private loop in a daemon thread, started on first use (plain
  scripts, no loop anywhere). It is closed by :meth:`SyncClient.close` or
  at interpreter exit, after flushing loggers.

Calling a facade from the thread that runs its loop would deadlock: that
raises ``RuntimeError`` (use the async :class:`~cocaine_http.services.Client`
there).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import inspect
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import CallTimeoutError
from .base import BaseService, Stream
from .client import Client
from .helpers import App, AppStream, Node, Storage
from .logger import Logger

__all__ = ["SyncClient", "SyncProxy", "SyncStream", "default_client", "get_default_loop", "set_default_loop"]

_default_loop: asyncio.AbstractEventLoop | None = None
_default_client: SyncClient | None = None
_lock = threading.Lock()
#: Extra seconds a blocking call waits beyond its own timeout (the loop enforces the timeout).
_GRACE = 5.0


def set_default_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Register the loop sync facades should use (the worker calls this with its own)."""
    global _default_loop
    _default_loop = loop


def get_default_loop() -> asyncio.AbstractEventLoop | None:
    loop = _default_loop
    if loop is not None and (loop.is_closed() or not loop.is_running()):
        return None
    return loop


def default_client() -> SyncClient:
    """A process-wide :class:`SyncClient` with default arguments (made on first use)."""
    global _default_client
    with _lock:
        if _default_client is None or _default_client.closed:
            _default_client = SyncClient()
        return _default_client


class _LoopThread:
    """A private event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="cocaine-sync-loop", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)


class _Runner:
    """Runs callables on a loop from other threads and waits for them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self.loop = loop
        self.timeout = timeout

    def run(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                "a cocaine_http SyncClient was called from its own event loop; use the async Client"
            )

        async def invoke() -> Any:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    result = await result
                return False, result
            except StopAsyncIteration:
                return True, None

        fut = asyncio.run_coroutine_threadsafe(invoke(), loop)
        limit = timeout if timeout is not None else self.timeout
        try:
            done, value = fut.result(None if limit is None else limit + _GRACE)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise CallTimeoutError(f"no answer from the event loop within {limit} s") from None
        if done:
            raise StopIteration
        return value


def _wrap(runner: _Runner, value: Any) -> Any:
    if isinstance(value, (Stream, AppStream)):
        return SyncStream(value, runner)
    if isinstance(value, Logger):
        return value  # already thread-safe and non-blocking
    if isinstance(value, (BaseService, Storage, App, Node)):
        return SyncProxy(value, runner)
    return value


class SyncProxy:
    """Blocking version of any async service object: same methods, same arguments."""

    __slots__ = ("_runner", "_target")

    def __init__(self, target: Any, runner: _Runner) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __repr__(self) -> str:
        return f"<SyncProxy {self._target!r}>"

    def __getattr__(self, name: str) -> Any:
        target = self._target
        runner = self._runner
        attr = getattr(target, name)  # a lookup only: no loop needed
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(runner, runner.run(lambda: attr(*args, **kwargs), kwargs.get("timeout")))

        call.__name__ = name
        return call

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._target)))


class SyncStream:
    """Blocking stream: ``write``/``close``, iterate with ``for``, or ``collect()``."""

    __slots__ = ("_runner", "_target")

    def __init__(self, target: Stream | AppStream, runner: _Runner) -> None:
        self._target = target
        self._runner = runner

    def __repr__(self) -> str:
        return f"<SyncStream {self._target!r}>"

    def write(self, *args: Any) -> None:
        self._runner.run(lambda: self._target.write(*args))

    def close(self) -> None:
        self._runner.run(self._target.close)

    def collect(self) -> list[Any]:
        items: list[Any] = self._runner.run(self._target.collect)
        return items

    def abandon(self) -> None:
        self._runner.run(self._target.aclose)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._runner.run(self._target.__anext__, getattr(self._target, "timeout", None))

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        return lambda *a, **kw: _wrap(self._runner, self._runner.run(lambda: attr(*a, **kw)))


_live: weakref.WeakSet[SyncClient] = weakref.WeakSet()


class SyncClient:
    """Blocking :class:`~cocaine_http.services.Client` (same constructor arguments, plus ``loop``)."""

    def __init__(self, locator: Any = None, protocol: Any = None, *,
                 loop: asyncio.AbstractEventLoop | None = None, **options: Any) -> None:
        self._thread: _LoopThread | None = None
        if loop is None:
            loop = get_default_loop()
        if loop is None:
            self._thread = _LoopThread()
            loop = self._thread.loop
        self.loop = loop
        self.client = Client(locator, protocol, **options)
        self.client.loop = loop
        self._runner = _Runner(loop, None if self.client.timeout is None else self.client.timeout)
        self.closed = False
        _live.add(self)

    def __repr__(self) -> str:
        mode = "private loop" if self._thread else "shared loop"
        return f"<SyncClient {mode} {self.client!r}>"

    @property
    def generation(self) -> Any:
        return self.client.generation

    def service(self, name: str, definition: Any = None, *, timeout: float | None = None) -> SyncProxy:
        return SyncProxy(
            self._runner.run(lambda: self.client.service(name, definition, timeout=timeout), timeout),
            self._runner,
        )

    def resolve(self, name: str, timeout: float | None = None) -> Any:
        return self._runner.run(lambda: self.client.resolve(name, timeout), timeout)

    def storage(self, *, timeout: float | None = None) -> SyncProxy:
        return SyncProxy(
            self._runner.run(lambda: self.client.storage(timeout=timeout), timeout), self._runner
        )

    def node(self, *, timeout: float | None = None) -> SyncProxy:
        return SyncProxy(self._runner.run(lambda: self.client.node(timeout=timeout), timeout), self._runner)

    def app(self, name: str, *, timeout: float | None = None) -> SyncProxy:
        return SyncProxy(
            self._runner.run(lambda: self.client.app(name, timeout=timeout), timeout), self._runner
        )

    def logger(self, prefix: str | None = None, **options: Any) -> Logger:
        """A :class:`Logger` bound to this client's loop; its methods never block."""
        lg: Logger = self._runner.run(lambda: self.client.logger(prefix, **options))
        return lg

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every logger of this client has written what it queued."""

        self._runner.run(lambda: self.client.flush(timeout), timeout)

    def close(self) -> None:
        """Flush loggers, close connections, and stop the private loop (if any)."""
        if self.closed:
            return
        self.closed = True
        try:
            if not self.loop.is_closed() and self.loop.is_running():
                self._runner.run(self.client.close, 10.0)
        finally:
            if self._thread is not None:
                self._thread.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for client in list(_live):
        with contextlib.suppress(Exception):  # best effort at exit
            client.close()
