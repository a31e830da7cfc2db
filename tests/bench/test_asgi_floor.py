"""bench/asgi_floor.py's measured loop runs and answers, without valgrind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("mode", ["app", "handler"])
def test_asgi_floor_loop_answers_every_request(mode: str) -> None:
    # the script asserts that every request of the loop was answered, and shows the last answer
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "asgi_floor.py"), "--inner", mode, "-n", "20"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Hello, world!" in proc.stderr, proc.stderr


def test_asgi_floor_loop_with_the_access_log() -> None:
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "asgi_floor.py"), "--inner", "handler", "-n", "5",
         "--access-log"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
