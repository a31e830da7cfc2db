"""ASGI's ``lifespan`` protocol: an app's startup and shutdown, once per worker process.

:class:`Lifespan` runs it: startup from ``worker.on_startup`` (before the
handshake), shutdown from ``worker.on_shutdown`` (after the terminate
drain). Modes as uvicorn's ``--lifespan``: ``auto`` tolerates apps that do
not speak it, ``on`` requires it, ``off`` skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgiref.compatibility import guarantee_single_callable

from ..errors import StartupError

__all__ = ["ASGI_VERSION", "LIFESPAN_MODES", "Lifespan"]

log = logging.getLogger("cocaine_http.asgi")

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
LIFESPAN_MODES = ("auto", "on", "off")


class Lifespan:
    """The ASGI ``lifespan`` protocol for one app in one process.

    ``await startup()`` once before serving (raises
    :class:`~cocaine_http.errors.StartupError` if the app reports
    ``lifespan.startup.failed``, or in ``on`` mode if it does not speak the
    protocol); ``await shutdown()`` once at the end. ``state`` is the
    lifespan state dict, copied into every request's scope.
    """

    def __init__(self, app: Any, mode: str = "auto", *, startup_timeout: float | None = None) -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan mode must be one of {LIFESPAN_MODES}, got {mode!r}")
        self.app: ASGIApp = guarantee_single_callable(app)  # type: ignore[no-untyped-call]  # asgiref's is unannotated
        self.mode = mode
        self.startup_timeout = startup_timeout
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self.started = False
        self.stopped = False
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Message] | None = None
        self._startup_done: asyncio.Event | None = None
        self._shutdown_done: asyncio.Event | None = None
        self._failed: str | None = None

    async def startup(self) -> None:
        if self.mode == "off" or self.started:
            return
        self.started = True
        self._queue = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._main(), name="asgi-lifespan")
        await self._queue.put({"type": "lifespan.startup"})
        try:
            await asyncio.wait_for(self._startup_done.wait(), self.startup_timeout)
        except asyncio.TimeoutError:
            raise StartupError(
                f"ASGI lifespan startup did not complete within {self.startup_timeout} s"
            ) from None
        if self._failed is not None:
            raise StartupError(f"ASGI lifespan startup failed: {self._failed}")
        if not self.supported and self.mode == "on":
            raise StartupError("the app does not support the ASGI lifespan protocol (--lifespan on)")

    async def shutdown(self) -> None:
        if not self.started or self.stopped or not self.supported:
            return
        self.stopped = True
        assert self._queue is not None and self._shutdown_done is not None
        await self._queue.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._failed is not None:
            log.error("ASGI lifespan shutdown failed: %s", self._failed)
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(task, 1.0)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self._failed is not None:
                pass  # already reported through lifespan.*.failed
            elif self.mode == "auto" and not self._startup_done.is_set():  # type: ignore[union-attr]
                log.info("ASGI 'lifespan' protocol appears unsupported (%s: %s)", type(exc).__name__, exc)
                self.supported = False
            else:
                self._failed = f"{type(exc).__name__}: {exc}"
                log.error("exception in the ASGI lifespan task", exc_info=exc)
                if self.mode == "on" and not self._startup_done.is_set():  # type: ignore[union-attr]
                    self.supported = False
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            assert self._startup_done is not None and self._shutdown_done is not None
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        assert self._queue is not None
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        assert self._startup_done is not None and self._shutdown_done is not None
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failed = str(message.get("message", "")) or "(no message)"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failed = str(message.get("message", "")) or "(no message)"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
