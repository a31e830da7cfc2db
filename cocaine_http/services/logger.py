"""``Logger``: the ``logging`` service as a non-blocking logger.

As the seed says, the logger is a customised service: on connect it asks
``verbosity()`` and from then on messages below that level are dropped
*locally*, so they cost no frame. The generations differ (PROTOCOL.md §2.6,
§3.7, §5 item 10):

========  ===============================================  ==============================
          A (0.11)                                          B (0.12)
========  ===============================================  ==============================
levels    0 ignore, 1 error, 2 warning, 3 info, 4 debug     0 debug, 1 info, 2 warning, 3 error
passes    ``0 < level <= verbosity``                        ``level >= verbosity``
emit      ``emit(level, source, message)`` -> bare choke,    ``emit(level, source, message[, attrs])``,
          read and discarded                                mute: pipelined, never read
attrs     appended to the message as ``k=v``                ``[[name, value], ...]``
========  ===============================================  ==============================

Levels in this API are generation-neutral: :class:`LogLevel` (the stdlib's
numbers: DEBUG 10 … ERROR 40; CRITICAL maps to error) or their names.

:meth:`Logger.emit` never blocks and may be called from any thread: it puts
the message on a bounded queue (``queue_size``; when full, messages are
dropped and counted) and wakes a task on the client's loop that sends them.
When the logging service cannot be reached, queued and later messages go
to stderr instead; the logger says so once. It keeps trying to reconnect
(with the service's backoff) and returns to the service when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sys
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

from ..errors import CocaineError
from ..protocol.definitions import LOG_LEVELS_A, LOG_LEVELS_B
from ..protocol.frames import Generation
from ..protocol.states import ServiceState
from .service import Service

__all__ = ["DEFAULT_QUEUE_SIZE", "LogClient", "LogLevel", "Logger", "wire_level"]

#: Messages a logger holds while the service is slow or away.
DEFAULT_QUEUE_SIZE = 10_000
#: Messages sent per batch before the drain task yields to the loop.
_BATCH = 256


class LogLevel(enum.IntEnum):
    """Generation-neutral levels (the stdlib's numbers)."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


_NAMES = {
    "debug": LogLevel.DEBUG,
    "info": LogLevel.INFO,
    "warning": LogLevel.WARNING,
    "warn": LogLevel.WARNING,
    "error": LogLevel.ERROR,
    "critical": LogLevel.ERROR,
    "fatal": LogLevel.ERROR,
}
_TO_A = {LogLevel[name.upper()]: n for name, n in LOG_LEVELS_A.items() if name != "ignore"}
_TO_B = {LogLevel[name.upper()]: n for name, n in LOG_LEVELS_B.items()}
_NEVER = 1 << 30  # a threshold no level reaches


def as_level(level: Any) -> LogLevel:
    """A :class:`LogLevel`, a name, or any stdlib level number (rounded down to one of four)."""
    if isinstance(level, LogLevel):
        return level
    if isinstance(level, str):
        try:
            return _NAMES[level.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}") from None
    if isinstance(level, int) and not isinstance(level, bool):
        if level >= LogLevel.ERROR:
            return LogLevel.ERROR
        if level >= LogLevel.WARNING:
            return LogLevel.WARNING
        if level >= LogLevel.INFO:
            return LogLevel.INFO
        return LogLevel.DEBUG
    raise TypeError(f"log level must be a LogLevel, a name or an int, got {type(level).__name__}")


def wire_level(generation: Generation, level: LogLevel) -> int:
    """The number the logging service of *generation* uses for *level*."""
    return (_TO_A if generation is Generation.A else _TO_B)[level]


def threshold(generation: Generation, verbosity: Any) -> int:
    """The lowest :class:`LogLevel` value that passes the service's *verbosity*."""
    if type(verbosity) is not int:
        return LogLevel.DEBUG  # unreadable verbosity: filter nothing, the service will
    if generation is Generation.A:
        if verbosity <= 0:
            return _NEVER  # 0 = ignore
        passing = [lvl for lvl, n in _TO_A.items() if n <= verbosity]
    else:
        passing = [lvl for lvl, n in _TO_B.items() if n >= verbosity]
    return min(passing) if passing else _NEVER


def _attr_value(value: Any) -> Any:
    if isinstance(value, (str, bytes, bool, float)) or (
        isinstance(value, int) and -(1 << 63) <= value < (1 << 64)
    ):
        return value
    return str(value)


class LogClient(Protocol):
    """What a :class:`Logger` takes from the :class:`~cocaine_http.services.Client` that made it."""

    @property
    def generation(self) -> Generation: ...

    @property
    def app_name(self) -> str: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop to send from when a message is logged from a thread without one."""

    def service_options(self) -> Mapping[str, Any]:
        """The options the client gives every service it makes (resolver, timeouts, backoff)."""


class Logger(Service):
    """A ``logging`` service client that logs (see the module docstring).

    ``prefix`` is the ``source`` of every message (default: ``app/<app>`` in
    A, as the runtime's convention says, and ``<app>`` in B).
    """

    def __init__(
        self,
        prefix: str | None = None,
        *,
        client: LogClient | None = None,
        generation: Generation | str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        stderr: TextIO | None = None,
        **options: Any,
    ) -> None:
        if client is not None:
            gen = client.generation
            for key, value in client.service_options().items():
                options.setdefault(key, value)
            app = client.app_name
        else:
            gen = Generation.parse(generation or Generation.B)
            app = ""
        super().__init__("logging", generation=gen, **options)
        if prefix is None:
            name = app or "cocaine_http"
            prefix = f"app/{name}" if gen is Generation.A and app else name
        self.prefix = prefix
        self.client = client
        self.queue_size = queue_size
        self._stderr = stderr
        self._queue: deque[tuple[LogLevel, str, tuple[Any, ...], dict[str, Any]]] = deque()
        self._threshold: int | None = None  # unknown until verbosity() answers
        #: Called with the threshold (a stdlib level number) each time verbosity() answers.
        self.on_threshold: Callable[[int], None] | None = None
        self.verbosity_value: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._kicked = False
        self._idle: asyncio.Event | None = None
        self._fallback_noted = False
        self._retry_at = 0.0
        self._closed = False
        #: Counters, for tests and monitoring.
        self.sent = 0
        self.dropped = 0
        self.to_stderr = 0
        self.filtered = 0
        self.on_disconnected.append(self._forget_verbosity)

    def __repr__(self) -> str:
        return f"<Logger {self.prefix!r} {self.state.value} queued={len(self._queue)} sent={self.sent}>"

    # -- levels --------------------------------------------------------------
    def enabled_for(self, level: Any) -> bool:
        """Whether a message at *level* would be sent (``True`` while the verbosity is unknown)."""
        th = self._threshold
        return th is None or as_level(level) >= th

    def _forget_verbosity(self, exc: BaseException | None) -> None:
        self._threshold = None

    # -- the API -------------------------------------------------------------
    def emit(self, level: Any, message: str, *args: Any, **attributes: Any) -> None:
        """Log *message* (``%``-formatted with *args* only if it is sent). Never blocks."""
        lvl = as_level(level)
        th = self._threshold
        if th is not None and lvl < th:
            self.filtered += 1
            return
        if self._closed:
            self._write_stderr(lvl, message, args, attributes)
            return
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            return
        self._queue.append((lvl, message, args, attributes))
        if not self._kicked:
            self._kick()

    def debug(self, message: str, *args: Any, **attributes: Any) -> None:
        self.emit(LogLevel.DEBUG, message, *args, **attributes)

    def info(self, message: str, *args: Any, **attributes: Any) -> None:
        self.emit(LogLevel.INFO, message, *args, **attributes)

    def warning(self, message: str, *args: Any, **attributes: Any) -> None:
        self.emit(LogLevel.WARNING, message, *args, **attributes)

    warn = warning

    def error(self, message: str, *args: Any, **attributes: Any) -> None:
        self.emit(LogLevel.ERROR, message, *args, **attributes)

    async def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until every queued message has been written (to the service or stderr)."""
        if self._task is None or self._task.done():
            if self._queue and self._loop is not None:
                self._wake()
            else:
                return
        idle = self._idle
        if idle is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(idle.wait(), timeout)
        if self.link is not None:
            with contextlib.suppress(CocaineError):
                await self.drain()

    def close(self) -> None:
        """Close at once: what is still queued goes to stderr, and so do later messages."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        while self._queue:
            lvl, msg, args, attrs = self._queue.popleft()
            self._write_stderr(lvl, msg, args, attrs)
        super().close()

    async def aclose(self) -> None:
        """Flush (bounded), then close."""
        await self.flush()
        self.close()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the queue -----------------------------------------------------------
    def _kick(self) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                client_loop = self.client.loop if self.client is not None else None
                if client_loop is None or client_loop.is_closed():
                    self._spill("no event loop to send log messages from")
                    return
                loop = client_loop
            self._loop = loop
        if loop.is_closed():
            self._spill("the event loop is closed")
            return
        self._kicked = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="cocaine logger")

    def _spill(self, why: str) -> None:
        self._note_fallback(why)
        while self._queue:
            lvl, msg, args, attrs = self._queue.popleft()
            self._write_stderr(lvl, msg, args, attrs)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    self._kicked = False
                    if not self._queue:  # an emit from another thread may have raced us
                        break
                    self._kicked = True
                if not await self._ready(loop):
                    self._spill_queue()
                    continue
                sent = 0
                while self._queue and sent < _BATCH:
                    lvl, msg, args, attrs = self._queue.popleft()
                    th = self._threshold
                    if th is not None and lvl < th:
                        self.filtered += 1
                        continue
                    try:
                        paused = self._send(lvl, msg, args, attrs)
                    except CocaineError:
                        self._write_stderr(lvl, msg, args, attrs)
                        break
                    sent += 1
                    if paused:
                        try:
                            await self.drain()
                        except CocaineError:
                            break
                await asyncio.sleep(0)
        finally:
            self._kicked = False
            if self._idle is not None:
                self._idle.set()

    async def _ready(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Connected and the verbosity known; ``False`` means "use stderr for now"."""
        if self.fsm.state is not ServiceState.CONNECTED or self._threshold is None:
            if loop.time() < self._retry_at:
                return False
            try:
                if self.fsm.state is not ServiceState.CONNECTED:
                    await self.connect()
                if self._threshold is None:
                    value = await self.call("verbosity")
                    self.verbosity_value = value
                    self._threshold = threshold(self.generation, value)
                    if self.on_threshold is not None:
                        self.on_threshold(self._threshold)
            except (CocaineError, OSError) as exc:
                self._retry_at = loop.time() + max(self.backoff.delay(max(self._failures, 1)), 0.05)
                self._note_fallback(f"{exc}")
                return False
        return True

    def _spill_queue(self) -> None:
        while self._queue:
            lvl, msg, args, attrs = self._queue.popleft()
            self._write_stderr(lvl, msg, args, attrs)

    def _send(self, lvl: LogLevel, msg: str, args: tuple[Any, ...], attrs: dict[str, Any]) -> bool:
        text = _format(msg, args)
        if self.generation is Generation.A:
            if attrs:
                text = text + " " + " ".join(f"{k}={v}" for k, v in attrs.items())
            paused = self.fire("emit", wire_level(Generation.A, lvl), self.prefix, text)
        elif attrs:
            pairs = [[str(k), _attr_value(v)] for k, v in attrs.items()]
            paused = self.fire("emit", wire_level(Generation.B, lvl), self.prefix, text, pairs)
        else:
            paused = self.fire("emit", wire_level(Generation.B, lvl), self.prefix, text)
        self.sent += 1
        return paused

    # -- stderr fallback -----------------------------------------------------
    def _note_fallback(self, why: str) -> None:
        if self._fallback_noted:
            return
        self._fallback_noted = True
        self._stream().write(
            f"cocaine_http: logging service unreachable ({why}); writing log messages to stderr\n"
        )

    def _stream(self) -> TextIO:
        return self._stderr if self._stderr is not None else sys.stderr

    def _write_stderr(self, lvl: LogLevel, msg: str, args: tuple[Any, ...], attrs: dict[str, Any]) -> None:
        th = self._threshold
        if th is not None and lvl < th:
            return
        text = _format(msg, args)
        source = self.prefix
        if "logger" in attrs:  # a stdlib record's logger name (CocaineLogHandler, cocaine_http.logs)
            attrs = dict(attrs)
            source = f"{source} {attrs.pop('logger')}"
        if attrs:
            text += " " + " ".join(f"{k}={v}" for k, v in attrs.items())
        try:
            self._stream().write(f"{lvl.name} {source}: {text}\n")
            self.to_stderr += 1
        except (OSError, ValueError):
            pass


def _format(message: Any, args: tuple[Any, ...]) -> str:
    text = message if isinstance(message, str) else str(message)
    if not args:
        return text
    try:
        return text % args
    except (TypeError, ValueError, KeyError) as exc:
        return f"{text!r} % {args!r} (formatting failed: {exc})"
