"""``Service``: a resolved service whose methods come from the locator's table.

``storage = await client.service("storage")`` resolves the name, connects,
and from then on ``await storage.read("manifests", "web")`` calls method
``read`` by the index the locator published. Method names come from the
wire, so they are looked up in a dict, never set as attributes from wire
data; a name the service does not publish raises
:class:`~cocaine_http.protocol.methods.MethodNotFound` (a
:class:`~cocaine_http.errors.MethodNotFoundError` that is also an
``AttributeError``). A method shadowed by a real attribute (a service with a
method called ``close``) stays reachable as ``service.call("close", ...)``.

**Definitions** customise the generated client, as the seed's ``definition``
argument does. A definition is a class (mixed in before :class:`Service`)
or a mapping:

* override a method: define ``async def read(self, collection, key)``; reach
  the wire method inside it with ``await self.call("read", collection, key)``;
* add helpers: any other attribute or method;
* declare streaming: ``streaming = {"name", ...}`` makes those methods
  return a :class:`~cocaine_http.services.base.Stream` (generation A
  tables carry no reply shapes; ``enqueue`` is streaming by default), and
  ``raw = {...}`` (A) keeps their chunk blobs undecoded.

A mapping definition takes the same keys: ``{"streaming": [...], "raw":
[...], "methods": {"name": async_fn(self, ...)}, **helpers}``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ClassVar

from ..protocol.endpoints import Endpoint
from ..protocol.frames import Generation
from ..protocol.methods import A_STREAMING_DEFAULT, MethodSpec, Resolved, method_not_found
from .base import BaseService, Resolver

__all__ = ["Definition", "Service", "service_class"]

#: A class mixed into :class:`Service`, a :class:`Service` subclass, or a mapping.
Definition = type | Mapping[str, Any]


class Service(BaseService):
    """A service whose methods are generated from its resolved table/graph.

    Usually made by :meth:`Client.service <cocaine_http.services.Client.service>`;
    direct use: ``Service(name, resolver=locator.resolve, generation=...)``.
    """

    #: Methods that return a stream (in addition to what the graph says).
    streaming: ClassVar[Collection[str]] = ()
    #: A only: methods whose chunks are passed through undecoded
    #: (``None``: the streaming ones, i.e. app ``enqueue``).
    raw: ClassVar[Collection[str] | None] = None

    def __init__(
        self,
        name: str,
        endpoints: Iterable[Endpoint] | None = None,
        *,
        generation: Generation | str = Generation.B,
        resolver: Resolver | None = None,
        methods: dict[str, MethodSpec] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            name, endpoints, generation=generation, methods=methods, resolver=resolver, **options
        )
        self._callers: set[str] = set()

    def _build_methods(self, resolved: Resolved) -> dict[str, MethodSpec]:
        streaming = set(self.streaming)
        if self.generation is Generation.A:
            streaming |= A_STREAMING_DEFAULT
        methods = resolved.methods(self.generation, streaming=streaming, raw=self.raw)
        for name in self._callers:  # a re-resolve may change the table: drop cached callers
            self.__dict__.pop(name, None)
        self._callers.clear()
        return methods

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self.__dict__.get("_methods")
        if methods is None:
            # not resolved yet: resolve (and connect) on the first call
            def deferred(*args: Any, timeout: float | None = None, headers: Any = None) -> Any:
                return self.call(name, *args, timeout=timeout, headers=headers)

            deferred.__name__ = name
            return deferred
        if name not in methods:
            raise method_not_found(self.name, name, methods)

        def caller(*args: Any, timeout: float | None = None, headers: Any = None) -> Any:
            spec = self._methods.get(name) if self._methods else None
            if spec is None:
                return self.call(name, *args, timeout=timeout, headers=headers)
            return self.call_spec(spec, args, timeout=timeout, headers=headers)

        caller.__name__ = name
        caller.__qualname__ = f"{type(self).__name__}.{name}"
        if name.isidentifier():
            # Later lookups find the caller in the instance dict and skip the failed normal
            # lookup and __getattr__: bench/client_calls.py --callgrind, B, 1 in flight:
            # 100.4K -> 90.4K instr/call.
            self.__dict__[name] = caller
            self._callers.add(name)
        return caller

    def __dir__(self) -> Iterable[str]:
        names = set(super().__dir__())
        names.update(n for n in (self.__dict__.get("_methods") or {}) if n.isidentifier())
        return sorted(names)


_classes: weakref.WeakKeyDictionary[type, type[Service]] = weakref.WeakKeyDictionary()


def service_class(definition: Definition | None) -> type[Service]:
    """The :class:`Service` subclass for *definition* (cached per definition class)."""
    if definition is None:
        return Service
    if isinstance(definition, Mapping):
        ns: dict[str, Any] = {}
        for key, value in definition.items():
            if key == "methods":
                ns.update(dict(value))
            elif key in ("streaming", "raw"):
                ns[key] = None if value is None else frozenset(value)
            else:
                ns[key] = value
        return type("DefinedService", (Service,), ns)
    if not isinstance(definition, type):
        raise TypeError(f"definition must be a class or a mapping, got {type(definition).__name__}")
    if issubclass(definition, Service):
        return definition
    cls = _classes.get(definition)
    if cls is None:
        cls = type(f"{definition.__name__}Service", (definition, Service), {})
        _classes[definition] = cls
    return cls
