"""MODULE:ATTR loading (no eval) and WSGI/ASGI detection."""

from __future__ import annotations

import functools
import sys
import textwrap

import pytest

from cocaine_http.compat.detect import detect_interface
from cocaine_http.errors import AppImportError, ConfigError
from cocaine_http.importer import AppTarget, add_app_dir, import_app, parse_target

MODULE = textwrap.dedent(
    """
    CALLS = []

    def app(environ, start_response):
        return []

    class Holder:
        class inner:
            @staticmethod
            def app(environ, start_response):
                return []

    def create_app(name="default", *, debug=False, tags=()):
        CALLS.append((name, debug, tags))
        def app(environ, start_response):
            return [name.encode()]
        return app

    def bad_factory():
        raise KeyError("config missing")

    def returns_none():
        return None

    not_callable = 42
    """
)


@pytest.fixture
def appmod(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    pkg = tmp_path / "imppkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "web.py").write_text(MODULE)
    (pkg / "broken.py").write_text("import no_such_dependency_qq\n")
    (pkg / "raises.py").write_text("raise RuntimeError('import-time failure')\n")
    (pkg / "empty.py").write_text("x = 1\n")
    (pkg / "default.py").write_text("def application(environ, start_response):\n    return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "imppkg"
    for name in list(sys.modules):
        if name == "imppkg" or name.startswith("imppkg."):
            del sys.modules[name]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m:app", AppTarget("m", ("app",), text="m:app")),
        ("a.b.c:x.y", AppTarget("a.b.c", ("x", "y"), text="a.b.c:x.y")),
        ("m:f()", AppTarget("m", ("f",), True, text="m:f()")),
        (
            "m:f('p', 2, debug=True, tags=['a', 'b'])",
            AppTarget(
                "m",
                ("f",),
                True,
                ("p", 2),
                {"debug": True, "tags": ["a", "b"]},
                "m:f('p', 2, debug=True, tags=['a', 'b'])",
            ),
        ),
        ("m", AppTarget("m", (), text="m")),
    ],
)
def test_parse_target(text: str, expected: AppTarget) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":app",
        "m:",
        "1m:app",
        "m-x:app",
        "m:app[0]",
        "m:f(*a)",
        "m:f(**k)",
        "m:f(os.system('x'))",
        "m:f(__import__('os'))",
        "m:f(lambda: 1)",
        "m:f()()",
        "m:app; import os",
        "m:f(x=open('/etc/passwd'))",
    ],
)
def test_parse_target_rejects_anything_but_names_and_literals(text: str) -> None:
    with pytest.raises(AppImportError):
        parse_target(text)


def test_import_forms(appmod: str) -> None:
    web = f"{appmod}.web"
    assert import_app(f"{web}:app").__name__ == "app"
    assert import_app(f"{web}:Holder.inner.app").__name__ == "app"
    assert import_app(f"{web}:create_app('x', debug=True, tags=('t',))")(None, None) == [b"x"]
    assert import_app(f"{web}:create_app", factory=True)(None, None) == [b"default"]
    assert sys.modules[web].CALLS == [("x", True, ("t",)), ("default", False, ())]
    assert import_app(f"{appmod}.default").__name__ == "application"


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("web:nope", "attribute 'nope' not found in 'imppkg.web'"),
        ("web:Holder.nope", "attribute 'nope' not found in 'imppkg.web.Holder'"),
        ("nomodule:app", "could not import module 'imppkg.nomodule'"),
        ("broken:app", "error while importing 'imppkg.broken'"),
        ("raises:app", "RuntimeError: import-time failure"),
        ("web:bad_factory()", "app factory 'imppkg.web:bad_factory()' raised KeyError"),
        ("web:returns_none()", "not a WSGI or ASGI app"),
        ("web:not_callable", "not a WSGI or ASGI app"),
        ("empty", "has no 'app' or 'application'"),
    ],
)
def test_import_errors(appmod: str, suffix: str, message: str) -> None:
    with pytest.raises(AppImportError) as info:
        import_app(f"{appmod}.{suffix}")
    assert message in str(info.value)
    assert info.value.exit_code == 4


def test_import_error_inside_the_app_keeps_its_cause(appmod: str) -> None:
    with pytest.raises(AppImportError) as info:
        import_app(f"{appmod}.broken:app")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_add_app_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = list(sys.path)
    try:
        assert add_app_dir(tmp_path) == str(tmp_path)
        assert sys.path[0] == str(tmp_path)
        add_app_dir(tmp_path)
        assert sys.path.count(str(tmp_path)) == 1
    finally:
        sys.path[:] = before


# -- detection ---------------------------------------------------------------------------


def wsgi_fn(environ, start_response):  # type: ignore[no-untyped-def]
    return []


async def asgi_fn(scope, receive, send):  # type: ignore[no-untyped-def]
    pass


class ASGI3Class:
    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        pass


class ASGI2:
    def __init__(self, scope):  # type: ignore[no-untyped-def]
        self.scope = scope

    async def __call__(self, receive, send):  # type: ignore[no-untyped-def]
        pass


class SyncMiddleware:
    """An ASGI middleware whose __call__ returns the wrapped app's coroutine."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        return self.app(scope, receive, send)


class WSGIClass:
    def __init__(self, environ, start_response):  # type: ignore[no-untyped-def]
        pass

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([])


def test_detect_frameworks() -> None:
    from django.core.handlers.asgi import ASGIHandler
    from fastapi import FastAPI
    from flask import Flask
    from starlette.applications import Starlette

    # the example project configures Django's (process-wide) settings; configuring
    # them here with anything else would break later tests that use the example
    from examples.django_app.mysite.wsgi import application

    assert detect_interface(Flask("x")) == "wsgi"
    assert detect_interface(application) == "wsgi"
    assert detect_interface(ASGIHandler()) == "asgi"
    assert detect_interface(FastAPI()) == "asgi"
    assert detect_interface(Starlette()) == "asgi"


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        (wsgi_fn, "wsgi"),
        (asgi_fn, "asgi"),
        (ASGI3Class(), "asgi"),
        (ASGI2, "asgi"),
        (SyncMiddleware(asgi_fn), "asgi"),
        (WSGIClass, "wsgi"),
        (functools.partial(asgi_fn), "asgi"),
        (functools.partial(wsgi_fn), "wsgi"),
    ],
)
def test_detect_shapes(app: object, expected: str) -> None:
    assert detect_interface(app) == expected


def test_detect_override() -> None:
    assert detect_interface(asgi_fn, "wsgi") == "wsgi"
    assert detect_interface(wsgi_fn, "ASGI") == "asgi"
    with pytest.raises(ConfigError):
        detect_interface(wsgi_fn, "cgi")
