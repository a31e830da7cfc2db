"""Fixtures of the service-client tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["A", "B"])
def gen(request: pytest.FixtureRequest) -> str:
    """Both protocol generations: "A" (0.11) and "B" (0.12)."""
    return request.param
