"""The node service: start, stop, list and drive the apps of a runtime (PROTOCOL.md §2.6, §3.7).

Node methods:

* A: ``start_app({app: profile})`` → chunk({app: status}); ``pause_app([app])``
  → chunk({app: status}); ``list()`` → chunk([names]). Status texts are the
  real runtime's: "the app has been started", "the app is already running",
  "the app has been stopped", "the app is not running", or the error text.
* B: ``start_app(name, profile)`` → ``[]``; ``pause_app(name)`` → ``[]``;
  ``list()`` → ``[[names]]``; ``info(name[, flags])`` → ``[object]``;
  ``control(name)`` (stream of desired worker counts) → ``[]`` on close;
  ``enqueue(app, event)`` streams like ``app.enqueue``. Errors use the node
  category 0x51FF: 5 already started, 6 not running, 7 cannot prepare the app.

Apps started here come from storage (:func:`~.specs.spec_from_storage`);
the runtime that runs them is an :class:`AppHost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import ErrorCategory, ErrorCodeA, NodeCode
from ..protocol.frames import Generation
from .app import AppService
from .converters import ArgError, integer, text, text_list, value
from .service import Fault, Method, Reply, Service
from .service_connection import Call
from .specs import DEFAULT_PROFILE, AppSpec, spec_from_directory, spec_from_storage, spec_from_target
from .storage import StorageBackend

__all__ = [
    "DEFAULT_PROFILE",
    "AppHost",
    "AppSpec",
    "NodeService",
    "spec_from_directory",
    "spec_from_storage",
    "spec_from_target",
]

NODE_CATEGORY = ErrorCategory.NODE.value
STARTED = "the app has been started"
RUNNING = "the app is already running"
STOPPED = "the app has been stopped"
NOT_RUNNING = "the app is not running"


class AppHost(Protocol):
    """What the node service needs of the runtime it drives (:class:`~.local.LocalRuntime`)."""

    @property
    def apps(self) -> Mapping[str, AppService]: ...

    @property
    def storage(self) -> StorageBackend: ...

    @property
    def runtime_dir(self) -> str: ...

    async def start_app(self, spec: AppSpec, *, pool_size: int | None = None) -> AppService: ...

    async def stop_app(self, name: str) -> bool: ...


def _profile_arg(v: Any) -> str:
    if isinstance(v, bytes | str):
        return text(v)
    raise ArgError(f"expected a profile name, got {type(v).__name__}")


class NodeService(Service):
    kind = "node"

    def __init__(self, generation: Generation | str, runtime: AppHost) -> None:
        super().__init__("node", generation)
        self.rt = runtime
        if self.is_a:
            self.methods = {
                0: Method("start_app", self.start_app_a, Reply.VALUE, (value,)),
                1: Method("pause_app", self.pause_app_a, Reply.VALUE, (text_list,)),
                2: Method("list", self.list, Reply.VALUE),
            }
        else:
            self.methods = {
                0: Method("start_app", self.start_app_b, Reply.VOID, (text, _profile_arg)),
                1: Method("pause_app", self.pause_app_b, Reply.VOID, (text,)),
                2: Method("list", self.list, Reply.VALUE),
                3: Method("info", self.info, Reply.VALUE, (text,), (integer,)),
                4: Method("control", self.control, Reply.VOID, (text,), streaming_in=True),
                5: Method("enqueue", self.enqueue, Reply.STREAM, (text, text), (text,), streaming_in=True),
            }

    async def _start(self, name: str, profile_name: str) -> str:
        if name in self.rt.apps:
            return RUNNING
        try:
            spec = spec_from_storage(self.rt.storage, self.rt.runtime_dir, name, profile_name)
            await self.rt.start_app(spec)
        except Exception as exc:
            return str(exc)
        return STARTED

    async def start_app_a(self, call: Call, apps: Any) -> dict[str, str]:
        if not isinstance(apps, dict):
            raise Fault(ErrorCodeA.INVOCATION_ERROR.value, "start_app expects {app: profile}")
        out = {}
        for name, profile_name in apps.items():
            out[text(name)] = await self._start(text(name), _profile_arg(profile_name))
        return out

    async def pause_app_a(self, call: Call, names: list[str]) -> dict[str, str]:
        return {name: STOPPED if await self.rt.stop_app(name) else NOT_RUNNING for name in names}

    async def list(self, call: Call) -> list[str]:
        return sorted(self.rt.apps)

    async def start_app_b(self, call: Call, name: str, profile_name: str) -> None:
        if name in self.rt.apps:
            raise Fault((NODE_CATEGORY, NodeCode.ALREADY_STARTED.value), RUNNING)
        status = await self._start(name, profile_name)
        if status != STARTED:
            raise Fault((NODE_CATEGORY, NodeCode.UNCAUGHT_SPOOL.value), status)

    async def pause_app_b(self, call: Call, name: str) -> None:
        if not await self.rt.stop_app(name):
            raise Fault((NODE_CATEGORY, NodeCode.NOT_RUNNING.value), NOT_RUNNING)

    def _app(self, name: str) -> AppService:
        app = self.rt.apps.get(name)
        if app is None:
            raise Fault((NODE_CATEGORY, NodeCode.NOT_RUNNING.value), NOT_RUNNING)
        return app

    async def info(self, call: Call, name: str, flags: int = 0) -> Any:
        return self._app(name).info()

    async def control(self, call: Call, name: str) -> None:
        app = self._app(name)
        while True:
            item = await call.receive()
            if item[0] == "write" and type(item[1]) is int:
                app.control(item[1])
            elif item[0] != "write":
                return

    async def enqueue(self, call: Call, app_name: str, event: str, tag: str | None = None) -> None:
        await self._app(app_name).enqueue_b(call, event, tag)
