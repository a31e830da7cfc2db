"""Load an app from a ``MODULE:ATTR`` string, the way gunicorn and uvicorn do, without eval.

Accepted forms::

    pkg.module:app               attribute (dotted paths allowed: mod:obj.app)
    pkg.module                   attribute "app", then "application" (gunicorn's default)
    pkg.module:create_app()      call a factory with no arguments
    pkg.module:create_app("prod", debug=True)
                                 call with literal arguments

The expression after the colon is parsed with :mod:`ast`; it must be a name
or attribute chain, optionally called once. Each argument is evaluated with
:func:`ast.literal_eval` only (strings, numbers, tuples, lists, dicts, sets,
booleans, ``None``), so nothing in the string can run code. With
``factory=True`` (``--factory``) a bare ``mod:create_app`` is called without
arguments, as uvicorn does.

Errors are :class:`~cocaine_http.errors.AppImportError` with a message that
says which part failed: a module that does not exist is told apart from a
module that exists but raises while importing (whose traceback is chained).
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import AppImportError

__all__ = ["AppTarget", "add_app_dir", "import_app", "parse_target"]

_DEFAULT_ATTRS = ("app", "application")


@dataclass(frozen=True, slots=True)
class AppTarget:
    """A parsed ``MODULE:ATTR`` string."""

    module: str
    attrs: tuple[str, ...]  # () = try the defaults
    call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.module}:{'.'.join(self.attrs)}"


def _chain(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [*_chain(node.value), node.attr]
    raise ValueError("not a name")


def parse_target(text: str) -> AppTarget:
    """Parse ``MODULE[:EXPR]``; raises :class:`AppImportError` on bad syntax."""
    text = text.strip()
    module, sep, expr = text.partition(":")
    module = module.strip()
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise AppImportError(
            f"invalid app target {text!r}: expected MODULE:ATTR, e.g. myproject.wsgi:application"
        )
    if not sep:
        return AppTarget(module, (), text=text)
    expr = expr.strip()
    if not expr:
        raise AppImportError(f"invalid app target {text!r}: nothing after ':'")
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise AppImportError(f"invalid app target {text!r}: {exc.msg}") from None
    call = isinstance(tree, ast.Call)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if isinstance(tree, ast.Call):
        for node in tree.args:
            if isinstance(node, ast.Starred):
                raise AppImportError(f"invalid app target {text!r}: *args are not supported")
            args.append(_literal(node, text))
        for kw in tree.keywords:
            if kw.arg is None:
                raise AppImportError(f"invalid app target {text!r}: **kwargs are not supported")
            kwargs[kw.arg] = _literal(kw.value, text)
        tree = tree.func
    try:
        attrs = _chain(tree)
    except ValueError:
        raise AppImportError(
            f"invalid app target {text!r}: after ':' use an attribute name "
            "or a factory call like create_app()"
        ) from None
    return AppTarget(module, tuple(attrs), call, tuple(args), kwargs, text)


def _literal(node: ast.expr, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise AppImportError(
            f"invalid app target {text!r}: factory arguments must be literals "
            f"(strings, numbers, lists, dicts...), not {ast.unparse(node)!r}"
        ) from None


def add_app_dir(path: str | os.PathLike[str] | None = None) -> str:
    """Put *path* (default: the current directory) first on ``sys.path``, like uvicorn's ``--app-dir``."""
    resolved = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)
    return resolved


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        # Only "our" module (or one of its parents) missing is a target error;
        # anything else failed *inside* the app's import and keeps its traceback.
        if missing == name or name.startswith(missing + "."):
            raise AppImportError(
                f"could not import module {name!r} (not found on sys.path; use --app-dir or --chdir)"
            ) from None
        raise AppImportError(f"error while importing {name!r}: {exc}") from exc
    except Exception as exc:
        raise AppImportError(f"error while importing {name!r}: {type(exc).__name__}: {exc}") from exc


def import_app(target: str | AppTarget, *, factory: bool = False) -> Any:
    """Import the module, look the attribute up, call it if asked; return the app."""
    spec = parse_target(target) if isinstance(target, str) else target
    module = _import_module(spec.module)
    if spec.attrs:
        obj: Any = module
        for i, attr in enumerate(spec.attrs):
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                where = spec.module + "".join("." + a for a in spec.attrs[:i])
                raise AppImportError(
                    f"attribute {attr!r} not found in {where!r} (target {str(spec)!r})"
                ) from None
    else:
        for attr in _DEFAULT_ATTRS:
            if hasattr(module, attr):
                obj = getattr(module, attr)
                break
        else:
            raise AppImportError(
                f"module {spec.module!r} has no 'app' or 'application'; "
                f"name the attribute: {spec.module}:ATTR"
            )
    if spec.call or factory:
        if not callable(obj):
            raise AppImportError(f"{str(spec)!r} is not callable, cannot use it as a factory")
        try:
            obj = obj(*spec.args, **spec.kwargs)
        except Exception as exc:
            raise AppImportError(f"app factory {str(spec)!r} raised {type(exc).__name__}: {exc}") from exc
    if obj is None or not callable(obj):
        raise AppImportError(f"{str(spec)!r} is {type(obj).__name__}, not a WSGI or ASGI app (not callable)")
    return obj
