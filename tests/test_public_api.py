"""The public surface: what `cocaine_http` exports, and that each name is real."""

from __future__ import annotations

import subprocess
import sys

import cocaine_http


def test_all_is_sorted_and_complete() -> None:
    names = [n for n in cocaine_http.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in cocaine_http.__all__:
        assert getattr(cocaine_http, name) is not None, name


def test_lazy_names_are_the_real_classes() -> None:
    from cocaine_http.runtime import LocalRuntime
    from cocaine_http.services import Client, SyncClient

    assert cocaine_http.Client is Client
    assert cocaine_http.SyncClient is SyncClient
    assert cocaine_http.LocalRuntime is LocalRuntime
    assert "Client" in dir(cocaine_http)


def test_importing_the_worker_does_not_import_services_or_runtime() -> None:
    code = (
        "import sys, cocaine_http; from cocaine_http import Worker;"
        "print(any(m.startswith(('cocaine_http.services', 'cocaine_http.runtime')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        cocaine_http.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import version

    assert cocaine_http.__version__ == version("cocaine-http")
