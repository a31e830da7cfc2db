"""``Client``: the entry point to the cloud's services (the seed's ``Client``).

::

    async with Client() as client:                # inside a worker: its own --locator/--protocol
        storage = await client.service("storage")
        manifest = await storage.read("manifests", "web")
        log = client.logger("web")
        log.info("read %d bytes", len(manifest), key="web")

``Client(locator="host:port" | [endpoints], protocol="0.11" | "0.12")``.
Without arguments the defaults are the worker's runtime arguments, read from
argv the way the worker reads them (:class:`cocaine_http.config.WorkerConfig`):
``--locator`` (A: one ``host:port``; B: a comma list) and ``--protocol 1``
(B; absent: A). Outside a worker (no ``--locator`` on the command line) they
come from the environment: ``COCAINE_HTTP_LOCATOR`` (``host:port``, a comma
list) and ``COCAINE_HTTP_PROTOCOL`` (``0.11`` / ``0.12``, as ``cocaine-http
dev --protocol``); unset, generation B and ``127.0.0.1:10053, [::1]:10053``.

``client.service(name)`` resolves through the locator and connects; the
result is cached per ``(name, definition)`` and the cache is dropped when
the locator connection drops (the cloud may have changed).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, TransportError
from ..protocol.endpoints import Endpoint, format_endpoint, parse_endpoint, parse_locators
from ..protocol.frames import Generation
from ..protocol.methods import Resolved
from ..protocol.states import Backoff
from .base import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from .helpers import App, Node, Storage
from .locator import Locator, default_locators
from .logger import Logger
from .service import Definition, Service, service_class

__all__ = ["ENV_LOCATOR", "ENV_PROTOCOL", "Client", "RuntimeDefaults", "runtime_defaults"]

#: Outside a worker: the locator's ``host:port`` (a comma list for several).
ENV_LOCATOR = "COCAINE_HTTP_LOCATOR"
#: Outside a worker: ``0.11`` (A) or ``0.12`` (B), as ``cocaine-http dev --protocol``.
ENV_PROTOCOL = "COCAINE_HTTP_PROTOCOL"


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class RuntimeDefaults:
    """What a client uses when nothing is passed explicitly."""

    generation: Generation
    locators: list[tuple[str, int]]
    app: str
    in_worker: bool


def _from_environment(environ: Any = None) -> RuntimeDefaults | None:
    """Defaults from ``COCAINE_HTTP_LOCATOR`` / ``COCAINE_HTTP_PROTOCOL``; ``None`` when neither is set."""
    environ = os.environ if environ is None else environ
    locator = environ.get(ENV_LOCATOR, "").strip()
    protocol = environ.get(ENV_PROTOCOL, "").strip()
    if not locator and not protocol:
        return None
    try:
        gen = Generation.parse(protocol) if protocol else Generation.B
    except ValueError as exc:
        raise ConfigError(f"{ENV_PROTOCOL}={protocol!r}: {exc}") from None
    if not locator:
        return RuntimeDefaults(gen, default_locators(gen), "", False)
    try:
        locs = list(parse_locators(locator, comma_list=True))
    except ValueError as exc:
        raise ConfigError(f"{ENV_LOCATOR}={locator!r}: {exc}") from None
    return RuntimeDefaults(gen, locs, "", False)


def runtime_defaults(argv: Sequence[str] | None = None, environ: Any = None) -> RuntimeDefaults:
    """Defaults from the worker's runtime arguments in *argv* (``sys.argv[1:]``).

    Uses :class:`cocaine_http.config.WorkerConfig` (the worker's own parser);
    falls back to reading ``--locator``/``--protocol``/``--app`` directly.
    Without ``--locator`` (not in a worker): ``COCAINE_HTTP_LOCATOR`` and
    ``COCAINE_HTTP_PROTOCOL`` from *environ* (``os.environ``), if set.
    """
    if argv is None:
        argv = sys.argv[1:]
    present = any(a == "--locator" or a.startswith("--locator=") for a in argv)
    if not present:
        env = _from_environment(environ)
        if env is not None:
            return env
    try:
        from ..config import WorkerConfig

        cfg = WorkerConfig.from_argv(list(argv))
        if present:
            return RuntimeDefaults(cfg.generation, cfg.locators, cfg.app, True)
        gen = cfg.generation if any(a.startswith("--protocol") for a in argv) else Generation.B
        return RuntimeDefaults(gen, default_locators(gen), cfg.app, False)
    except ImportError:  # pragma: no cover - config.py is part of the package
        pass
    except Exception:  # a broken command line must not break a client: fall back below
        pass
    values: dict[str, str] = {}
    items = list(argv)
    for i, item in enumerate(items):
        for flag in ("locator", "protocol", "app"):
            if item == f"--{flag}" and i + 1 < len(items):
                values[flag] = items[i + 1]
            elif item.startswith(f"--{flag}="):
                values[flag] = item.split("=", 1)[1]
    if "locator" in values:
        gen = Generation.B if values.get("protocol", "0").strip() == "1" else Generation.A
        try:
            locs = parse_locators(values["locator"], comma_list=gen is Generation.B)
        except ValueError:
            locs = default_locators(gen)
        return RuntimeDefaults(gen, locs, values.get("app", ""), True)
    gen = Generation.B if values.get("protocol", "1").strip() in ("1", "0.12", "B", "b") else Generation.A
    return RuntimeDefaults(gen, default_locators(gen), values.get("app", ""), False)


def _endpoints(value: str | Endpoint | Iterable[Any], generation: Generation) -> list[Endpoint]:
    if isinstance(value, str):
        return list(parse_locators(value, comma_list=True))
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return [parse_endpoint(value)]
    items: Iterable[Any] = value  # host strings, (host, port) pairs
    return [parse_endpoint(v, default_port=10053) for v in items]


class Client:
    """Resolves services through the locator and hands out service clients and loggers."""

    def __init__(
        self,
        locator: str | Endpoint | Iterable[Any] | None = None,
        protocol: str | Generation | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff: Backoff | None = None,
        app: str | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        defaults = runtime_defaults(argv)
        self.generation = Generation.parse(protocol) if protocol is not None else defaults.generation
        if locator is not None:
            endpoints = _endpoints(locator, self.generation)
        elif protocol is not None and self.generation is not defaults.generation:
            endpoints = list(default_locators(self.generation))
        else:
            endpoints = list(defaults.locators)
        #: The app name (worker's ``--app``), used as the default log source.
        self.app_name = app if app is not None else defaults.app
        self.timeout = timeout
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "backoff": backoff,
        }
        self.locator = Locator(endpoints, generation=self.generation, **self._options)
        self.locator.on_disconnected.append(self._locator_lost)
        self._cache: dict[tuple[str, Any], asyncio.Task[Service]] = {}
        self._loggers: list[Logger] = []
        self._services: list[Service] = []
        #: Services whose first connect failed, reused by the next call for the same key.
        self._unconnected: dict[tuple[str, Any], Service] = {}
        self._closed = False
        #: The loop this client was first used on (loggers wake it from other threads).
        self.loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        eps = ", ".join(format_endpoint(ep) for ep in self.locator.endpoints)
        return f"<Client {self.generation.value} locator=[{eps}] cached={len(self._cache)}>"

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self.loop is None or self.loop.is_closed():
            self.loop = loop
        return loop

    def service_options(self) -> dict[str, Any]:
        """What every service this client makes is given: the locator to resolve
        through, the timeouts and the backoff (a :class:`Logger` takes them too)."""
        return {"resolver": self.locator.resolve, **self._options}

    def _locator_lost(self, exc: BaseException | None) -> None:
        self._cache.clear()

    async def resolve(self, name: str, timeout: float | None = None) -> Resolved:
        """What the locator says about *name* (not cached)."""
        self._bind_loop()
        return await self.locator.resolve(name, timeout)

    async def service(self, name: str, definition: Definition | None = None, *,
                      timeout: float | None = None) -> Service:
        """A connected client of service *name* (resolved through the locator; cached).

        *definition* customises the generated methods (see
        :mod:`cocaine_http.services.service`). Raises
        :class:`~cocaine_http.errors.ServiceNotFoundError` for an unknown name.
        """
        loop = self._bind_loop()
        key = (name, definition if isinstance(definition, type) or definition is None else id(definition))
        task = self._cache.get(key)
        if task is None:
            # one task per name, shared by concurrent callers: cancelling one caller
            # does not cancel the resolve the others are waiting for
            task = loop.create_task(
                self._make_service(key, name, definition, timeout), name=f"resolve {name}"
            )
            task.add_done_callback(_retrieve)
            self._cache[key] = task
        return await asyncio.shield(task)

    async def _make_service(self, key: tuple[str, Any], name: str, definition: Definition | None,
                            timeout: float | None) -> Service:
        svc = self._unconnected.pop(key, None)
        if svc is None:
            cls = service_class(definition)
            svc = cls(name, generation=self.generation, **self.service_options())
        try:
            await svc.connect(timeout)
        except BaseException as exc:
            if key in self._cache and self._cache[key] is asyncio.current_task():
                del self._cache[key]
            if isinstance(exc, TransportError) and not self._closed:
                # kept for the next call: its failure count paces the reconnects (Backoff)
                self._unconnected[key] = svc
            else:
                svc.close()
            raise
        self._services.append(svc)
        return svc

    def logger(self, prefix: str | None = None, **options: Any) -> Logger:
        """A :class:`~cocaine_http.services.Logger` writing as *prefix* (default: the app name).

        Connects lazily on the first message; never blocks the caller.
        """
        lg = Logger(prefix, client=self, **options)
        self._loggers.append(lg)
        return lg

    async def flush(self, timeout: float | None = 5.0) -> None:
        """Wait until every logger of this client has written what it queued (each within *timeout*)."""
        for lg in list(self._loggers):
            await lg.flush(timeout)

    async def storage(self, *, timeout: float | None = None) -> Storage:
        """Typed wrapper of the ``storage`` service (:class:`~cocaine_http.services.helpers.Storage`)."""
        return Storage(await self.service("storage", timeout=timeout))

    async def node(self, *, timeout: float | None = None) -> Node:
        """Typed wrapper of the ``node`` service (:class:`~cocaine_http.services.helpers.Node`)."""
        return Node(await self.service("node", timeout=timeout))

    async def app(self, name: str, *, timeout: float | None = None) -> App:
        """Typed wrapper of application *name* (:class:`~cocaine_http.services.helpers.App`)."""
        return App(await self.service(name, timeout=timeout))

    async def close(self) -> None:
        """Flush loggers, close every connection this client opened."""
        self._closed = True
        for lg in list(self._loggers):
            await lg.aclose()
        for svc in [*self._services, *self._unconnected.values()]:
            svc.close()
        self._services.clear()
        self._unconnected.clear()
        self._cache.clear()
        self.locator.close()

    async def __aenter__(self) -> Client:
        self._bind_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
