"""Fixtures of the worker tests: both generations, a short runtime dir, no stray processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from worker_helpers import child_pids  # noqa: E402


@pytest.fixture(params=["A", "B"])
def gen(request: pytest.FixtureRequest) -> str:
    """Each protocol generation in turn."""
    return str(request.param)


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A short directory for the app socket (UNIX paths are limited to 108 bytes)."""
    path = tempfile.mkdtemp(prefix="chw-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Every worker a test starts must be gone when it ends."""
    before = child_pids()
    yield
    left = child_pids() - before
    if left:
        import signal

        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"processes left behind: {sorted(left)}")
