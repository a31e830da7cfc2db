"""Fixtures of the compat tests; the worker harness itself is in http_harness.py."""

from __future__ import annotations

import pytest

from cocaine_http.protocol.frames import Generation


@pytest.fixture(params=[Generation.A, Generation.B], ids=["A", "B"], scope="module")
def generation(request: pytest.FixtureRequest) -> Generation:
    return request.param
