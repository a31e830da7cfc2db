"""The locator: the one service with a fixed address and a built-in table.

It listens on 10053 (PROTOCOL.md §2.5.2, §3.6.2) and is never resolved
itself; its method table is :mod:`cocaine_http.protocol.definitions`'.
:meth:`Locator.resolve` turns the reply into a checked
:class:`~cocaine_http.protocol.methods.Resolved`:

* an unknown name -> :class:`~cocaine_http.errors.ServiceNotFoundError`
  (A code 1, B ``[0x0A, 1]``; matched on codes, never on text);
* a reply of the wrong shape, or bytes that are not frames ->
  :class:`~cocaine_http.protocol.methods.ResolveFormatError` (a
  :class:`~cocaine_http.errors.RemoteProtocolError`) naming the service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import RemoteProtocolError, ServiceError
from ..protocol.endpoints import DEFAULT_LOCATOR_PORT, Endpoint
from ..protocol.frames import Generation
from ..protocol.methods import Resolved, ResolveFormatError, parse_resolve, resolve_error, static_methods
from .base import BaseService

__all__ = ["Locator", "default_locators"]


def default_locators(generation: Generation) -> list[tuple[str, int]]:
    """Where to look when nobody said: 127.0.0.1 (A), then also ::1 (B, as the official clients do)."""
    if generation is Generation.A:
        return [("127.0.0.1", DEFAULT_LOCATOR_PORT)]
    return [("127.0.0.1", DEFAULT_LOCATOR_PORT), ("::1", DEFAULT_LOCATOR_PORT)]


class Locator(BaseService):
    """Client of the locator service. ``endpoints`` are tried in order."""

    def __init__(
        self,
        endpoints: Iterable[Endpoint] | None = None,
        *,
        generation: Generation | str = Generation.B,
        **options: Any,
    ) -> None:
        gen = Generation.parse(generation)
        eps = list(endpoints) if endpoints is not None else default_locators(gen)
        super().__init__("locator", eps, generation=gen, methods=static_methods(gen, "locator"), **options)

    async def resolve(self, name: str, timeout: float | None = None) -> Resolved:
        """Endpoints, version and method table of service *name*."""
        try:
            value = await self.call("resolve", name, timeout=timeout)
        except ServiceError as exc:
            raise resolve_error(exc, name) from None
        except RemoteProtocolError as exc:
            raise ResolveFormatError(
                f"locator sent garbage while resolving service {name!r}: {exc}",
                service=name,
                method="resolve",
            ) from exc
        return parse_resolve(self.generation, value, name)
