"""The apps a worker serves: imported, checked against their interface, registered on the worker.

The framework imports (compat, asgiref) happen inside the functions, so that
``cocaine-http --help`` and ``init`` do not pay for them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .environ import ENV_APP
from .targets import AppSpec, parse_app_specs

log = logging.getLogger("cocaine_http.cli")


@dataclass(slots=True)
class Loaded:
    """An imported app, with the interface it is served as."""

    spec: AppSpec
    app: Any
    interface: str


def load_apps(ns: argparse.Namespace) -> list[Loaded]:
    """Import every target and settle its interface, failing on the first that cannot be served."""
    from ..compat.detect import detect_interface
    from ..importer import import_app

    specs = parse_app_specs(ns.targets, ns.event)
    if not specs:
        raise ConfigError(
            f"no app given: pass TARGET (MODULE:ATTR, e.g. myproject.wsgi:application) or set {ENV_APP}"
        )
    out = []
    for spec in specs:
        app = import_app(spec.target, factory=ns.factory)
        interface = detect_interface(app, ns.interface)
        mismatch = interface_mismatch(app, interface)
        if mismatch:
            raise ConfigError(f"{spec.target}: --interface {interface} does not fit: {mismatch}")
        out.append(Loaded(spec, app, interface))
    return out


def interface_mismatch(app: Any, interface: str) -> str:
    """Why *app* surely cannot be served as *interface* (``""``: it may be).

    Only unambiguous signs count, so an explicit ``--interface`` still wins where the
    detection guesses: an ``async`` callable is not WSGI; a plain callable taking exactly
    ``(environ, start_response)`` is not ASGI."""
    import inspect

    from asgiref.sync import iscoroutinefunction

    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if inspect.isclass(app):
        return ""  # ASGI 2 classes, or WSGI apps as classes: nothing sure to say
    if interface == "wsgi":
        if iscoroutinefunction(app) or (call is not None and iscoroutinefunction(call)):
            return "the app is an async (ASGI) callable; use --interface asgi or auto"
        return ""
    if call is None or iscoroutinefunction(call):
        return ""
    try:
        params = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return ""
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(plain) == 2 and all(p.default is p.empty for p in plain) and len(params) == 2:
        names = ", ".join(p.name for p in plain)
        return f"the app is a plain callable ({names}), a WSGI app; use --interface wsgi or auto"
    return ""


ROOT_PATH_AUTO = "auto"


def root_path(option: str, app: str, event: str) -> str:
    """``--root-path``; ``auto`` is ``/<app>/<event>``, the prefix the proxies strip from
    ``/<app>/<event>/<rest>`` (PROTOCOL.md §2.8, §3.9), so the app's own URLs (redirects,
    ``url_for``) point back through the proxy. ``""`` for the catch-all event ``*``."""
    if option.strip().lower() != ROOT_PATH_AUTO:
        return option
    if not app or event == "*":
        return ""
    return f"/{app}/{event}"


def install(worker: Any, loaded: Sequence[Loaded], ns: argparse.Namespace) -> None:
    """Register every loaded app on *worker* (handlers, lifespan hooks)."""
    from ..compat.asgi import ASGIHandler, Lifespan
    from ..compat.common import set_forwarded_allow_ips
    from ..compat.wsgi import InlineWSGIHandler, WSGIHandler

    generation = worker.config.generation
    trust = set_forwarded_allow_ips(ns.forwarded_allow_ips)
    log.debug("X-Forwarded-For/-Proto trusted from %s", trust.spec or "nobody")
    common = {
        "generation": generation,
        "access_log": ns.access_log or bool(ns.access_log_format),
        "access_log_format": ns.access_log_format,
        "drop_cookie_pairs": not ns.keep_cookie_pairs,
        "app_name": worker.config.app,
    }
    for item in loaded:
        handler: Any
        common["root_path"] = root_path(ns.root_path, worker.config.app, item.spec.event)
        if item.interface == "asgi":
            lifespan = Lifespan(item.app, ns.lifespan)
            handler = ASGIHandler(item.app, lifespan=lifespan, **common)
            worker.on_startup.append(lifespan.startup)
            worker.on_shutdown.append(lifespan.shutdown)
            worker.events.on("terminate", handler.shutting_down)
        else:
            inline = worker.config.threads == 0  # --threads 0: the app runs on the loop thread
            handler = (InlineWSGIHandler if inline else WSGIHandler)(item.app, **common)
        if item.spec.event == "*":
            worker.on_default(handler)
        else:
            worker.on(item.spec.event, handler)
        log.info(
            "serving %s (%s) on event %r, root path %r",
            item.spec.target,
            item.interface.upper(),
            item.spec.event,
            common["root_path"],
        )
