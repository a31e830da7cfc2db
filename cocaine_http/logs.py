"""A worker's stdlib ``logging``, sent structured to the runtime's logging service.

When ``cocaine-http`` runs as a worker, :func:`install` puts one
:class:`RuntimeLogHandler` on the root logger. Every record (the app's,
the framework's, ours) becomes one ``emit`` to the ``logging`` service
(PROTOCOL.md §2.6, §3.7) with its own level, so the runtime's console and
the cloud's log keep them apart:

* B: ``emit(level, <app>, text, [["logger", record.name]])``;
* A (no attributes): ``emit(level, "app/<app>", "<record.name>: text")``.

``text`` is the message plus its traceback, if any: one record, one
message, one level, and no timestamp of ours (the runtime stamps it).

Records made before the worker has sent its handshake (importing the app,
startup hooks) are held, bounded, and sent once it has. Where the service cannot be reached the
:class:`~cocaine_http.services.Logger` writes to stderr instead, and so
does a record made while one is being handed over (no feedback) and
everything after the worker's loop has ended. stderr lines carry level and
logger name, no timestamp. The service clients log only connects and
protocol errors, so their records go through the service too.

Without an explicit ``--log-level`` the root logger follows the service's
``verbosity()``: a runtime started with ``--log-level debug`` gets the
workers' debug records.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections import deque
from typing import Any

from .protocol.frames import Generation

__all__ = ["STDERR_FORMAT", "RuntimeLogHandler", "install"]

#: stderr lines of a worker: the runtime that captures them adds the time.
STDERR_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: Records held until the loop runs; more go to stderr.
EARLY_LIMIT = 1000
#: Seconds the shutdown hook waits for queued records to reach the service.
FLUSH_TIMEOUT = 1.0


class RuntimeLogHandler(logging.Handler):
    """Root handler of a worker: records → the logging service (see the module docstring)."""

    def __init__(self, fallback: logging.Handler, *, follow_verbosity: bool = True) -> None:
        super().__init__()
        self.fallback = fallback
        self.follow_verbosity = follow_verbosity
        self.logger: Any = None  # a services.Logger once attached
        self.client: Any = None
        self._early: deque[logging.LogRecord] | None = deque()
        self._local = threading.local()
        self._lock_attach = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def attach(self, logger: Any) -> None:
        """Start sending to *logger* (a :class:`~cocaine_http.services.Logger`); send what was held."""
        with self._lock_attach:
            self.logger = logger
            early, self._early = self._early, None
        if self.follow_verbosity:
            logger.on_threshold = _follow
        for record in early or ():
            self.emit(record)

    def bind(self, worker: Any, runtime_argv: list[str]) -> None:
        """Attach to the logging service once *worker* has sent its handshake (the service
        clients are imported then, not on the way to activation); flush and detach in its
        last shutdown hook. Until attached, records are held (startup hooks' included)."""

        def start() -> None:
            if self.client is not None:
                return
            from .services.client import Client

            self.client = Client(argv=runtime_argv)
            self.attach(self.client.logger())

        async def stop() -> None:
            logger = self.logger
            if logger is not None:
                with contextlib.suppress(Exception):
                    await logger.flush(FLUSH_TIMEOUT)
            self.close_logger()
            if self.client is not None:
                with contextlib.suppress(Exception):
                    await self.client.close()

        worker.events.on("connect", start)
        worker.on_shutdown.append(stop)

    def close_logger(self) -> None:
        """Detach; what the logger still queues goes to stderr (safe after the loop ended)."""
        logger = self.logger
        self.detach()
        if logger is not None:
            with contextlib.suppress(Exception):
                logger.close()

    def detach(self) -> None:
        """From now on, records go to stderr (and so does anything still held)."""
        with self._lock_attach:
            self.logger = None
            early, self._early = self._early, None
        for record in early or ():
            self._to_fallback(record)

    # -- records -----------------------------------------------------------------
    def _to_fallback(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.fallback.level:
            self.fallback.handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        logger = self.logger
        if logger is None:
            early = self._early
            if early is not None and len(early) < EARLY_LIMIT:
                with self._lock_attach:
                    if self._early is not None:
                        record.exc_text = self._exc_text(record)
                        record.exc_info = None  # do not keep frames alive
                        self._early.append(record)
                        return
                logger = self.logger
            if logger is None:
                self._to_fallback(record)
                return
        if getattr(self._local, "busy", False):  # a record made while sending one
            self._to_fallback(record)
            return
        self._local.busy = True
        try:
            if not logger.enabled_for(record.levelno):
                return
            text = self.format(record)
            if logger.generation is Generation.A:
                logger.emit(record.levelno, "%s: %s", record.name, text)
            else:
                logger.emit(record.levelno, "%s", text, logger=record.name)
        except Exception:
            self.handleError(record)
        finally:
            self._local.busy = False

    def _exc_text(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and not record.exc_text:
            return (self.formatter or logging.Formatter()).formatException(record.exc_info)
        return record.exc_text


def _follow(threshold: int) -> None:
    """The service told its verbosity: the root logger's level follows it."""
    level = min(max(threshold, logging.DEBUG), logging.ERROR)
    logging.getLogger().setLevel(level)


def install(level: str | None) -> RuntimeLogHandler:
    """Put a :class:`RuntimeLogHandler` on the root logger (replacing its handlers).

    *level* is ``--log-level`` (``None``: follow the service, ``info`` until it
    answers). Call it before the app is imported, so that frameworks find a
    configured root logger (Flask then adds no handler of its own), then
    :meth:`RuntimeLogHandler.bind` the worker.
    """
    root = logging.getLogger()
    fallback = logging.StreamHandler(sys.stderr)
    fallback.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler = RuntimeLogHandler(fallback, follow_verbosity=level is None)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, (level or "info").upper()))
    return handler
