"""What a hosted service declares: its methods by index, how each is answered, and its faults.

A :class:`Service` subclass fills :attr:`Service.methods` for its
generation; the host (:class:`~.server.ServiceServer`, one
:class:`~.service_connection.ServiceConnection` per caller) converts each
call's arguments, runs the handler and answers the way the method's
:class:`Reply` says.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..protocol.frames import Generation
from .converters import Converter

__all__ = ["Drop", "Fault", "Handler", "Method", "Reply", "Service"]


class Reply(enum.Enum):
    VALUE = "value"
    TUPLE = "tuple"
    VOID = "void"
    MUTE = "mute"
    STREAM = "stream"


class Fault(Exception):
    """Raised by a handler to answer with an error frame.

    ``code`` is an int in generation A and ``(category, code)`` in B; an int
    given in B is sent with category 0xFF (unknown), a pair given in A keeps
    only the code.
    """

    def __init__(self, code: int | tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Drop(Exception):
    """Raised by a handler (B) when the peer broke the protocol: the connection is dropped."""


Handler = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class Method:
    """One method of a service, as the host dispatches it.

    ``args`` are required converters, ``optional`` trailing ones that may be
    omitted (the handler gets its own defaults). ``streaming_in`` (B) opens
    the channel for the caller's writes (dispatch graph ``STREAMING``); the
    handler reads them from :attr:`Call.inbound`.
    """

    name: str
    handler: Handler
    reply: Reply = Reply.VALUE
    args: tuple[Converter, ...] = ()
    optional: tuple[Converter, ...] = ()
    streaming_in: bool = False


class Service:
    """Base of every hosted service. Subclasses fill :attr:`methods` per generation.

    ``kind`` names the protocol in :mod:`cocaine_http.protocol.definitions`
    (``app`` for applications); ``name`` is what the locator resolves.
    """

    kind: str = ""

    def __init__(self, name: str, generation: Generation | str) -> None:
        self.name = name
        self.generation = Generation.parse(generation)
        self.methods: dict[int, Method] = {}
        self.connections = 0

    @property
    def is_a(self) -> bool:
        return self.generation is Generation.A

    def fault(self, a_code: int, b_code: tuple[int, int], message: str) -> Fault:
        """A :class:`Fault` with the code spelled for this service's generation."""
        return Fault(a_code if self.is_a else b_code, message)

    async def close(self) -> None:
        """Called when the host stops; release what the service holds."""
