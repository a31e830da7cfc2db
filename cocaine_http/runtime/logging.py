"""The logging service and the runtime's console (PROTOCOL.md §2.6, §3.7).

Both generations print to one :class:`Console`: time, level, source, the
message and, in B, the attributes as ``name=value``; a ``logger`` attribute
(the stdlib logger name a worker's record came from, :mod:`cocaine_http.logs`)
leads the message instead. Level numbers differ:

=========  =====================================  ===========================
           generation A (``priorities``)           generation B
=========  =====================================  ===========================
numbers    0 ignore, 1 error, 2 warning, 3 info,   0 debug, 1 info, 2 warning,
           4 debug                                 3 error
emit       ``emit(level, source, message)`` →      ``emit(level, source,
           bare choke                              message[, attrs])``: mute
verbosity  ``verbosity()`` → chunk(level)          ``verbosity()`` → ``[level]``,
                                                   ``set_verbosity(level)`` → ``[]``
=========  =====================================  ===========================

Verbosity is kept as a level *name* (``debug``, ``info``, ``warning``,
``error``) and translated per generation; messages below it are not
printed, and A level 0 ("ignore") never is. Unknown level numbers are
clamped to the nearest known level.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

from ..errors import B_UNKNOWN
from ..protocol.definitions import LOG_LEVELS_A, LOG_LEVELS_B
from ..protocol.frames import Generation
from .server import ArgError, Call, Fault, Method, Reply, Service, integer, text

__all__ = [
    "LEVELS",
    "Console",
    "ConsoleHandler",
    "LoggingService",
    "level_name",
    "level_number",
    "parse_level",
]

#: Severity of each level name (Python's numbers, so stdlib records map directly).
LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}

_A_NAMES = {number: name for name, number in LOG_LEVELS_A.items()}
_B_NAMES = {number: name for name, number in LOG_LEVELS_B.items()}
_COLOURS = {"debug": "\x1b[2m", "info": "\x1b[32m", "warning": "\x1b[33m", "error": "\x1b[31;1m"}
_RESET = "\x1b[0m"


def level_name(generation: Generation, number: int) -> str:
    """The name of a wire level number (clamped into the generation's range)."""
    if generation is Generation.A:
        return _A_NAMES[min(max(number, 0), 4)]
    return _B_NAMES[min(max(number, 0), 3)]


def level_number(generation: Generation, name: str) -> int:
    """The wire number of a level name in *generation*."""
    table = LOG_LEVELS_A if generation is Generation.A else LOG_LEVELS_B
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}") from None


def parse_level(name: str) -> str:
    key = name.strip().lower()
    key = {"warn": "warning", "err": "error", "dbg": "debug"}.get(key, key)
    if key not in LEVELS:
        raise ValueError(f"unknown log level {name!r} (use debug, info, warning or error)")
    return key


class Console:
    """Readable, line-oriented output shared by the runtime, its services and workers' output."""

    def __init__(
        self, stream: TextIO | None = None, *, colour: bool | None = None, level: str = "debug"
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if colour is None:
            colour = (
                hasattr(self.stream, "isatty") and self.stream.isatty() and not os.environ.get("NO_COLOR")
            )
        self.colour = colour
        self.level = parse_level(level)
        self.lines = 0

    def enabled(self, level: str) -> bool:
        return LEVELS.get(level, 0) >= LEVELS[self.level]

    def emit(self, level: str, source: str, message: str, attrs: list[tuple[str, Any]] | None = None) -> None:
        if level == "ignore" or not self.enabled(level):
            return
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        tag = f"{level.upper():<7}"
        if self.colour:
            tag = f"{_COLOURS.get(level, '')}{tag}{_RESET}"
        if attrs:
            name = next((v for k, v in attrs if k == "logger" and isinstance(v, (str, bytes))), None)
            if name is not None:  # a worker's stdlib record: its logger name leads the message
                if isinstance(name, bytes):
                    name = name.decode("utf-8", "replace")
                message = f"{name.removeprefix('cocaine_http.')}: {message}"
                attrs = [(k, v) for k, v in attrs if k != "logger"]
        line = f"{stamp} {tag} {source}: {message}"
        if attrs:
            line += "  " + " ".join(f"{k}={_attr(v)}" for k, v in attrs)
        try:
            self.stream.write(line.rstrip("\n") + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            return  # a closed console must never break a request
        self.lines += 1


def _attr(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    text_value = str(v)
    return repr(text_value) if (" " in text_value or not text_value) else text_value


class ConsoleHandler(logging.Handler):
    """Routes the runtime's own ``logging`` records to a :class:`Console`."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "debug"
            for name, severity in LEVELS.items():
                if record.levelno >= severity:
                    level = name
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            source = record.name.removeprefix("cocaine_http.")
            self.console.emit(level, source, message)
        except Exception:
            self.handleError(record)


def _attributes(v: Any) -> list[tuple[str, Any]]:
    if not isinstance(v, list):
        raise ArgError("attributes must be an array of [name, value] pairs")
    out = []
    for pair in v:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ArgError("attributes must be an array of [name, value] pairs")
        out.append((text(pair[0]), pair[1]))
    return out


class LoggingService(Service):
    kind = "logging"

    def __init__(self, generation: Generation | str, console: Console) -> None:
        super().__init__("logging", generation)
        self.console = console
        self.emitted = 0
        if self.is_a:
            self.methods = {
                0: Method("emit", self.emit, Reply.VOID, (integer, text, text)),
                1: Method("verbosity", self.verbosity, Reply.VALUE),
            }
        else:
            self.methods = {
                0: Method("emit", self.emit, Reply.MUTE, (integer, text, text), (_attributes,)),
                1: Method("verbosity", self.verbosity, Reply.VALUE),
                2: Method("set_verbosity", self.set_verbosity, Reply.VOID, (integer,)),
            }

    async def emit(self, call: Call, level: int, source: str, message: str, attrs: Any = None) -> None:
        self.emitted += 1
        self.console.emit(level_name(self.generation, level), source, message, attrs)

    async def verbosity(self, call: Call) -> int:
        return level_number(self.generation, self.console.level)

    async def set_verbosity(self, call: Call, level: int) -> None:
        if not 0 <= level <= 3:
            raise Fault(B_UNKNOWN, f"unknown log level {level}")
        self.console.level = level_name(self.generation, level)
