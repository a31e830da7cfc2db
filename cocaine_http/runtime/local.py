"""``LocalRuntime``: the whole local cloud in one async context manager.

::

    async with LocalRuntime("0.12", locator_port=0, bind="127.0.0.1:0",
                            apps=["examples.flask_app.app:app"], workers=2) as rt:
        print(rt.front_url, rt.locator_port, rt.port_of("storage"))

What it assembles, in start order (the order ports are handed out in, as a
real runtime does: boot apps start inside the node service, §2.5.2):

1. the locator on ``locator_port`` (10053 by default; 0 = ephemeral);
2. ``logging``;
3. the apps: given ones (``apps``) and those of ``runlists/<runlist>`` in
   storage, each an app service with its worker pool;
4. ``node`` and ``storage``;
5. the HTTP front on ``bind`` (``None``: no front).

Service and app ports come from ``port_range`` lowest free first, or are
ephemeral when it is ``None``. Leaving the ``async with`` stops the front,
terminates every worker (terminate frame, then SIGTERM/SIGKILL after the
grace period), closes every listener and removes the runtime directory if
it created one: nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..protocol.endpoints import format_endpoint
from ..protocol.frames import Generation
from .app import AppService
from .engine import HeaderFlavour
from .front import HttpFront
from .locator import LocatorService
from .logging import Console, ConsoleHandler, LoggingService
from .node import NodeService
from .pool import Pool
from .ports import PortAllocator
from .server import Service, ServiceServer
from .specs import AppSpec, read_object, resolve_item, spec_from_storage
from .storage import FileBackend, MemoryBackend, StorageBackend, StorageService

__all__ = ["SOLE_APP", "LocalRuntime"]

#: ``LocalRuntime(default_app=SOLE_APP)``: the default app is the only app, if there is
#: exactly one when the front starts; otherwise there is none.
SOLE_APP = "<the only app>"

log = logging.getLogger("cocaine_http.runtime")
#: The runlist's apps are the node's business: their failures are logged under its name.
node_log = logging.getLogger("cocaine_http.runtime.node")


class LocalRuntime:
    """The embedded runtime (see the module docstring).

    ``apps`` items may be ``"MODULE:ATTR"`` (a Python app run by
    ``python -m cocaine_http``), a directory holding ``manifest.json``
    (and optionally ``profile.json``), or an :class:`~.node.AppSpec`.
    ``workers`` is the pool size of every app given here (``None``: the
    profile's ``pool-limit``, 10 by default, grown on demand).
    ``default_app`` names the app the HTTP front serves at ``/`` and at paths
    that name no app (``None``: none; :data:`SOLE_APP`, the default: the only
    app when exactly one is running at start).
    """

    def __init__(
        self,
        generation: Generation | str = Generation.B,
        locator_port: int = 10053,
        bind: str | None = "127.0.0.1:8080",
        apps: Iterable[Any] = (),
        workers: int | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        hostname: str | None = None,
        advertise: Sequence[str] | None = None,
        port_range: Sequence[int] | None = None,
        send_headers: bool = False,
        console: Console | None = None,
        runlist: str = "default",
        profile: dict[str, Any] | None = None,
        front_options: dict[str, Any] | None = None,
        python: str | None = None,
        default_app: str | None = SOLE_APP,
    ) -> None:
        self.generation = Generation.parse(generation)
        self.requested_locator_port = locator_port
        self.bind = bind
        self.app_items = list(apps)
        self.workers = workers
        self.storage_dir = storage_dir
        self.requested_runtime_dir = runtime_dir
        self.host = host
        self.hostname = hostname or host
        self.advertise = list(advertise) if advertise else [host]
        self.ports = PortAllocator(port_range)
        self.send_headers = send_headers
        self.console = console or Console()
        self.runlist = runlist
        self.profile_overrides = dict(profile or {})
        self.front_options = dict(front_options or {})
        self.python = python
        self.default_app = default_app
        self.servers: dict[str, ServiceServer] = {}
        self.apps: dict[str, AppService] = {}
        self.locator: ServiceServer | None = None
        self.front: HttpFront | None = None
        self.storage: StorageBackend = MemoryBackend()
        self.runtime_dir = ""
        self._own_runtime_dir = False
        self._log_handler: ConsoleHandler | None = None
        self._started = False
        self._lock = asyncio.Lock()

    # -- registry --------------------------------------------------------------------
    def lookup(self, name: str) -> tuple[str, int, int] | None:
        server = self.servers.get(name)
        if server is None:
            return None
        return server.service.kind, server.port, server.service.connections

    def names(self) -> list[str]:
        return list(self.servers)

    def port_of(self, name: str) -> int:
        return self.servers[name].port

    @property
    def locator_port(self) -> int:
        return self.locator.port if self.locator is not None else 0

    @property
    def locator_endpoint(self) -> str:
        return f"{self.hostname}:{self.locator_port}"

    @property
    def front_url(self) -> str | None:
        return self.front.url if self.front is not None else None

    async def add_service(self, service: Service) -> int:
        """Bind *service* on the next port and make it resolvable."""
        if service.name in self.servers or service.name == "locator":
            raise ValueError(f"a service named {service.name!r} is already running")
        server = ServiceServer(service, host=self.host, send_headers=self.send_headers)
        port = await self.ports.bind(server)
        self.servers[service.name] = server
        log.debug("service %s (%s) on port %d", service.name, service.kind, port)
        return port

    async def remove_service(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            await server.stop()

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> LocalRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._attach_console()
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        if self.requested_runtime_dir is None:
            self.runtime_dir = tempfile.mkdtemp(prefix="cocaine-http-")
            self._own_runtime_dir = True
        else:
            self.runtime_dir = os.fspath(self.requested_runtime_dir)
            os.makedirs(self.runtime_dir, exist_ok=True)
        if self.storage_dir is not None:
            self.storage = FileBackend(self.storage_dir)
        gen = self.generation
        locator = LocatorService(
            gen, self.lookup, self.names, hostname=self.hostname, endpoints=self.advertise
        )
        self.locator = ServiceServer(locator, host=self.host, send_headers=self.send_headers)
        await self.locator.start(self.requested_locator_port)
        await self.add_service(LoggingService(gen, self.console))
        await self._start_apps()
        await self._start_node()
        await self.add_service(StorageService(gen, self.storage))
        await self._start_front()

    async def _start_apps(self) -> None:
        """Start the given apps, then those of ``runlists/<runlist>`` in storage."""
        for item in self.app_items:
            await self.start_app(resolve_item(item, self.python), pool_size=self.workers)
        try:
            runlist = read_object(self.storage, "runlists", self.runlist)
        except ValueError:
            return
        if not isinstance(runlist, dict):
            return
        for name, profile_name in runlist.items():
            if str(name) in self.apps:
                continue
            try:
                spec = spec_from_storage(self.storage, self.runtime_dir, str(name), str(profile_name))
                await self.start_app(spec)
            except Exception as exc:
                node_log.error("runlist app %s did not start: %s", name, exc)

    async def _start_node(self) -> None:
        await self.add_service(NodeService(self.generation, self))

    async def _start_front(self) -> None:
        if self.bind is None:
            return
        default_app = self.default_app
        if default_app == SOLE_APP:
            default_app = next(iter(self.apps)) if len(self.apps) == 1 else None
        self.front = HttpFront(self, self.bind, default_app=default_app, **self.front_options)
        await self.front.start()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.front is not None:
            with contextlib.suppress(Exception):
                await self.front.stop()
            self.front = None
        # apps first (their workers may still be calling services), then the services
        for name in list(self.apps):
            with contextlib.suppress(Exception):
                await self.stop_app(name)
        for name in list(self.servers):
            with contextlib.suppress(Exception):
                await self.remove_service(name)
        if self.locator is not None:
            with contextlib.suppress(Exception):
                await self.locator.stop()
            self.locator = None
        if self._own_runtime_dir and self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self._detach_console()

    def worker_locator(self) -> str:
        """The ``--locator`` a worker gets: ``host:port`` (A), every advertised endpoint (B)."""
        if self.generation is Generation.A:
            return f"{self.hostname}:{self.locator_port}"
        return ",".join(format_endpoint((host, self.locator_port)) for host in self.advertise)

    async def start_app(self, spec: AppSpec, *, pool_size: int | None = None) -> AppService:
        """Start *spec*'s pool and app service (its port is the next one). ``pool_size``
        fixes the pool (pre-started); otherwise one worker is pre-started for apps given
        to the runtime and none for apps started through ``node``, growing on demand."""
        async with self._lock:
            if spec.name in self.apps:
                return self.apps[spec.name]
            if spec.name in self.servers or spec.name == "locator":
                raise ValueError(f"{spec.name!r} is the name of a service")
            profile = spec.merged_profile(self.generation, self.profile_overrides)
            pool_limit = pool_size or int(profile["pool-limit"])
            min_workers = pool_size if pool_size is not None else (1 if spec.source != "storage" else 0)
            pool = Pool(
                spec.name,
                spec.argv,
                generation=self.generation,
                runtime_dir=self.runtime_dir,
                locator=self.worker_locator(),
                pool_limit=pool_limit,
                concurrency=int(profile["concurrency"]),
                queue_limit=int(profile["queue-limit"]),
                heartbeat_timeout=float(profile["heartbeat-timeout"]),
                startup_timeout=float(profile["startup-timeout"]),
                termination_timeout=float(profile["termination-timeout"]),
                headers=HeaderFlavour.LITERAL if self.send_headers else HeaderFlavour.NONE,
                env=spec.env,
                cwd=spec.cwd,
                min_workers=min(min_workers, pool_limit),
                idle_timeout=float(profile["idle-timeout"]),
                request_timeout=float(profile["request-timeout"]),
                profile_name=spec.profile_name,
                output=self._worker_output(spec.name),
            )
            app = AppService(self.generation, spec, pool)
            try:
                await pool.start_pool()
                await self.add_service(app)
            except BaseException:
                await pool.stop()
                raise
            self.apps[spec.name] = app
            log.info(
                "app %s started (%s), pool of %d, port %d",
                spec.name,
                spec.source or " ".join(spec.argv),
                pool_limit,
                self.port_of(spec.name),
            )
            return app

    def _worker_output(self, app: str) -> Callable[[str, str, str], None]:
        console = self.console

        def echo(uuid: str, stream: str, line: str) -> None:
            console.emit(
                "warning" if stream == "stderr" and "Traceback" in line else "info",
                f"{app}[{uuid[:8]}]",
                line,
            )

        return echo

    async def stop_app(self, name: str) -> bool:
        """Stop an app without losing the events in flight: its service stops
        accepting connections and resolving, the engine refuses new events and
        fails queued ones, its workers get the terminate and finish what they
        hold (within their grace period) while the callers' connections stay
        open to receive it; then those connections close."""
        app = self.apps.pop(name, None)
        if app is None:
            return False
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop_listening()
        try:
            await app.shutdown()
        finally:
            if server is not None:
                await server.stop()
        log.info("app %s stopped", name)
        return True

    # -- console ---------------------------------------------------------------------
    def _attach_console(self) -> None:
        logger = logging.getLogger("cocaine_http.runtime")
        self._log_handler = ConsoleHandler(self.console)
        logger.addHandler(self._log_handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False

    def _detach_console(self) -> None:
        if self._log_handler is not None:
            logger = logging.getLogger("cocaine_http.runtime")
            logger.removeHandler(self._log_handler)
            if not logger.handlers:
                logger.propagate = True
            self._log_handler = None
