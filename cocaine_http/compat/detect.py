"""WSGI or ASGI? Decide from the app object, with an explicit override.

``auto`` (the default) follows uvicorn's test for ASGI 3 vs 2 and extends it
to WSGI:

* a coroutine function, or an object whose ``__call__`` is one (FastAPI,
  Starlette, Django's ``ASGIHandler``, ``async def app(scope, receive,
  send)``) -> ASGI 3;
* a class whose instances are awaitable or have an async ``__call__``
  (``class App: def __init__(self, scope)`` + ``async def __call__(self,
  receive, send)``) -> ASGI 2, wrapped later with
  :func:`asgiref.compatibility.guarantee_single_callable`;
* a plain callable taking three positional parameters (an ASGI middleware
  written as ``def __call__(self, scope, receive, send): return
  self.app(...)``) -> ASGI;
* everything else (Flask, Django's ``WSGIHandler``, ``def app(environ,
  start_response)``) -> WSGI.

When the heuristic is wrong, ``--interface wsgi|asgi`` wins.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from asgiref.sync import iscoroutinefunction

from ..errors import ConfigError

__all__ = ["INTERFACES", "Interface", "detect_interface"]

Interface = Literal["wsgi", "asgi"]
INTERFACES = ("auto", "wsgi", "asgi")


def _required_positional(func: Any) -> int | None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            n += 1
    return n


def detect_interface(app: Any, interface: str = "auto") -> Interface:
    """``"wsgi"`` or ``"asgi"`` for *app*; *interface* overrides (``auto``/``wsgi``/``asgi``)."""
    choice = (interface or "auto").strip().lower()
    if choice not in INTERFACES:
        raise ConfigError(f"--interface must be one of {', '.join(INTERFACES)}, got {interface!r}")
    if choice != "auto":
        return choice  # type: ignore[return-value]
    if inspect.isclass(app):
        call = getattr(app, "__call__", None)  # noqa: B004 - the class's instance method
        if hasattr(app, "__await__") or (call is not None and iscoroutinefunction(call)):
            return "asgi"
        return "wsgi"
    if iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004
    if call is not None and iscoroutinefunction(call):
        return "asgi"
    target = app if inspect.isfunction(app) or inspect.ismethod(app) else call
    if target is not None and _required_positional(target) == 3:
        return "asgi"
    return "wsgi"
