"""Where apps come from: :class:`AppSpec`, the command and setting of one app (PROTOCOL.md §6).

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
from typing import Any

from ..protocol.frames import Generation
from ..protocol.wire import unpackb
from .storage import StorageBackend

__all__ = [
    "DEFAULT_PROFILE",
    "AppSpec",
    "read_object",
    "resolve_item",
    "spec_from_directory",
    "spec_from_storage",
    "spec_from_target",
]

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


def read_object(storage: StorageBackend, collection: str, key: str) -> Any:
    """The msgpack object stored under *collection*/*key*, its texts as str; ValueError if none."""
    try:
        blob = storage.read(collection, key)
    except KeyError:
        raise ValueError(f"object '{key}' has not been found in '{collection}'") from None
    try:
        return _text_keys(unpackb(blob))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"'{collection}/{key}' is not msgpack: {exc}") from None


def spec_from_storage(storage: StorageBackend, runtime_dir: str, name: str, profile_name: str) -> AppSpec:
    """The spec of app *name* as stored, its archive (if any) unpacked under *runtime_dir*."""
    manifest = read_object(storage, "manifests", name)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("slave"), str):
        raise ValueError(f"manifest of {name} has no 'slave'")
    try:
        profile = read_object(storage, "profiles", profile_name)
    except ValueError:
        if profile_name != "default":
            raise
        profile = {}
    if not isinstance(profile, dict):
        raise ValueError(f"profile {profile_name} is not an object")
    spool = Path(runtime_dir) / "spool" / name
    spool.mkdir(parents=True, exist_ok=True)
    try:
        archive = storage.read("apps", name)
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


def resolve_item(item: Any, python: str | None = None) -> AppSpec:
    """An ``apps=`` item of :class:`~.local.LocalRuntime` → :class:`AppSpec` (*python* runs targets)."""
    if isinstance(item, AppSpec):
        return item
    text_item = os.fspath(item)
    if os.path.isdir(text_item):
        return spec_from_directory(text_item)
    if ":" in text_item or "." in text_item:
        return spec_from_target(text_item, python=python)
    raise ValueError(f"cannot run {text_item!r}: not MODULE:ATTR nor an app directory")
