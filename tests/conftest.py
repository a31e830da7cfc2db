"""Shared test setup. Each layer keeps its own fixtures in its folder's conftest.

Helpers live in tests/helpers/ and are imported as ``helpers.<module>``.
"""

from __future__ import annotations

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(params=["native", "pure"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each frame-decoder backend in turn (see helpers.feeding.require_backend)."""
    from helpers.feeding import require_backend

    return require_backend(request.param)
