"""The node service and where apps come from (PROTOCOL.md §2.6, §3.7, §6).

An app is described by an :class:`AppSpec`: the command to spawn (the
manifest's ``slave``, or an argv prefix), its working directory, extra
environment and profile. Specs come from

* ``MODULE:ATTR`` (``cocaine-http dev``): ``python -m cocaine_http MODULE:ATTR``;
* an app directory holding ``manifest.json`` (``{"slave": ..., "environment":
  {...}}``) and optionally ``profile.json``; ``slave`` is relative to the
  directory, which is also the cwd. A ``.py`` slave without the exec bit is
  run with the current interpreter (a real runtime would need the bit and a
  shebang line);
* storage, as the real runtime reads it: ``manifests/<app>`` and
  ``profiles/<profile>`` are msgpack-encoded objects, ``apps/<app>`` (if
  present) is msgpack(tar.gz bytes), extracted into
  ``<runtime dir>/spool/<app>`` (the cwd); ``runlists/<id>`` =
  msgpack({app: profile}) lists the apps started at boot.

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
"""

from __future__ import annotations

import io
import json
import os
import shlex
import stat
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCategory
from ..protocol.frames import Generation
from ..protocol.wire import unpackb
from .server import ArgError, Call, Fault, Method, Reply, Service, integer, text, text_list, value

if TYPE_CHECKING:
    from .local import LocalRuntime

__all__ = [
    "DEFAULT_PROFILE",
    "AppSpec",
    "NodeService",
    "boot_apps",
    "spec_from_directory",
    "spec_from_storage",
    "spec_from_target",
]

NODE_CATEGORY = ErrorCategory.NODE.value
STARTED = "the app has been started"
RUNNING = "the app is already running"
STOPPED = "the app has been stopped"
NOT_RUNNING = "the app is not running"

#: The real runtime's profile defaults (cocaine-core 0.11 context.cpp; node::v2 profile.cpp).
DEFAULT_PROFILE: dict[str, Any] = {
    "pool-limit": 10,
    "concurrency": 10,
    "queue-limit": 100,
    "heartbeat-timeout": 30.0,
    "startup-timeout": 10.0,  # A: first heartbeat; B calls it handshake-timeout (5 s)
    "idle-timeout": 600.0,
    "termination-timeout": 5.0,  # A; B calls it terminate-timeout (10 s)
    "request-timeout": 86400.0,
}


@dataclass
class AppSpec:
    """How to run one app: the command, its directory, environment and profile."""

    name: str
    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    profile_name: str = "default"
    source: str = ""

    def merged_profile(
        self, generation: Generation, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        out = dict(DEFAULT_PROFILE)
        if generation is Generation.B:
            out["startup-timeout"] = 5.0
            out["termination-timeout"] = 10.0
        # accept the B spellings for the same knobs
        aliases = {"handshake-timeout": "startup-timeout", "terminate-timeout": "termination-timeout"}
        for key, val in {**self.profile, **(overrides or {})}.items():
            out[aliases.get(key, key)] = val
        return out


def default_name(target: str) -> str:
    """``examples.flask_app.app:app`` → ``flask_app``: the last module part that is not generic."""
    module = target.partition(":")[0]
    generic = {"app", "main", "wsgi", "asgi", "server", "application", "__main__", "api", "web"}
    for part in reversed(module.split(".")):
        if part and part not in generic:
            return part
    return "app"


def spec_from_target(
    target: str, name: str | None = None, *, python: str | None = None, extra_args: list[str] | None = None
) -> AppSpec:
    argv = [python or sys.executable, "-m", "cocaine_http", target, *(extra_args or [])]
    return AppSpec(name or default_name(target), argv, cwd=os.getcwd(), source=f"module {target}")


def _slave_argv(slave: str, base: Path) -> list[str]:
    parts = shlex.split(slave) if " " in slave.strip() else [slave]
    exe = parts[0]
    path = Path(exe) if os.path.isabs(exe) else base / exe
    if path.exists():
        exe = str(path)
        mode = path.stat().st_mode
        if path.suffix == ".py" and not mode & stat.S_IXUSR:
            return [sys.executable, exe, *parts[1:]]
    return [exe, *parts[1:]]


def spec_from_directory(path: str | os.PathLike[str]) -> AppSpec:
    base = Path(path).resolve()
    manifest_path = base / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{base} has no manifest.json") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest_path}: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("slave"), str):
        raise ValueError(f"{manifest_path}: 'slave' (a path) is required")
    profile: dict[str, Any] = {}
    profile_path = base / "profile.json"
    if profile_path.exists():
        profile = json.loads(profile_path.read_text())
    env = {str(k): str(v) for k, v in (manifest.get("environment") or {}).items()}
    name = str(manifest.get("name") or base.name)
    return AppSpec(
        name, _slave_argv(manifest["slave"], base), str(base), env, profile, source=f"directory {base}"
    )


def _text_keys(obj: Any) -> Any:
    """msgpack objects read with raw=True have bytes keys and values; turn text back into str."""
    if isinstance(obj, dict):
        return {_text_keys(k): _text_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_text_keys(v) for v in obj]
    if isinstance(obj, bytes):
        try:
            return obj.decode()
        except UnicodeDecodeError:
            return obj
    return obj


def _read_object(rt: LocalRuntime, collection: str, key: str) -> Any:
    try:
        blob = rt.storage.read(collection, key)
    except KeyError:
        raise ValueError(f"object '{key}' has not been found in '{collection}'") from None
    try:
        return _text_keys(unpackb(blob))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"'{collection}/{key}' is not msgpack: {exc}") from None


def spec_from_storage(rt: LocalRuntime, name: str, profile_name: str) -> AppSpec:
    manifest = _read_object(rt, "manifests", name)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("slave"), str):
        raise ValueError(f"manifest of {name} has no 'slave'")
    try:
        profile = _read_object(rt, "profiles", profile_name)
    except ValueError:
        if profile_name != "default":
            raise
        profile = {}
    if not isinstance(profile, dict):
        raise ValueError(f"profile {profile_name} is not an object")
    spool = Path(rt.runtime_dir) / "spool" / name
    spool.mkdir(parents=True, exist_ok=True)
    try:
        archive = rt.storage.read("apps", name)
    except KeyError:
        archive = None
    if archive is not None:
        data = unpackb(archive)
        if not isinstance(data, bytes):
            raise ValueError(f"apps/{name} is not msgpack(archive bytes)")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(spool, filter="data")
    env = {str(k): str(v) for k, v in (manifest.get("environment") or {}).items()}
    return AppSpec(
        name, _slave_argv(manifest["slave"], spool), str(spool), env, profile, profile_name, source="storage"
    )


def resolve_item(rt: LocalRuntime, item: Any) -> AppSpec:
    """An ``apps=`` item of :class:`LocalRuntime` → :class:`AppSpec`."""
    if isinstance(item, AppSpec):
        return item
    text_item = os.fspath(item)
    if os.path.isdir(text_item):
        return spec_from_directory(text_item)
    if ":" in text_item or "." in text_item:
        return spec_from_target(text_item, python=rt.python)
    raise ValueError(f"cannot run {text_item!r}: not MODULE:ATTR nor an app directory")


async def boot_apps(rt: LocalRuntime) -> None:
    """Start the given apps, then ``runlists/<runlist>`` from storage."""
    for item in rt.app_items:
        spec = resolve_item(rt, item)
        await rt.start_app(spec, pool_size=rt.workers)
    try:
        runlist = _read_object(rt, "runlists", rt.runlist)
    except ValueError:
        return
    if not isinstance(runlist, dict):
        return
    for name, profile_name in runlist.items():
        if str(name) in rt.apps:
            continue
        try:
            spec = spec_from_storage(rt, str(name), str(profile_name))
            await rt.start_app(spec)
        except Exception as exc:
            import logging

            logging.getLogger("cocaine_http.runtime.node").error(
                "runlist app %s did not start: %s", name, exc
            )


def _profile_arg(v: Any) -> str:
    if isinstance(v, bytes | str):
        return text(v)
    raise ArgError(f"expected a profile name, got {type(v).__name__}")


class NodeService(Service):
    kind = "node"

    def __init__(self, generation: Generation | str, runtime: LocalRuntime) -> None:
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
            spec = spec_from_storage(self.rt, name, profile_name)
            await self.rt.start_app(spec)
        except Exception as exc:
            return str(exc)
        return STARTED

    async def start_app_a(self, call: Call, apps: Any) -> dict[str, str]:
        if not isinstance(apps, dict):
            raise Fault(1, "start_app expects {app: profile}")
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
            raise Fault((NODE_CATEGORY, 5), RUNNING)
        status = await self._start(name, profile_name)
        if status != STARTED:
            raise Fault((NODE_CATEGORY, 7), status)

    async def pause_app_b(self, call: Call, name: str) -> None:
        if not await self.rt.stop_app(name):
            raise Fault((NODE_CATEGORY, 6), NOT_RUNNING)

    def _app(self, name: str) -> Any:
        app = self.rt.apps.get(name)
        if app is None:
            raise Fault((NODE_CATEGORY, 6), NOT_RUNNING)
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
