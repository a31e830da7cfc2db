"""Wait for a condition instead of sleeping a fixed time and hoping it holds.

A fixed sleep followed by an assert is either too short on a loaded machine (a flaky
failure) or longer than needed everywhere else (a slow suite). These poll the
condition and return as soon as it holds; the timeout only bounds a hang, so it is
generous.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Long enough never to fire on a slow, shared machine; a hang still ends the test.
TIMEOUT = 10.0


async def until(condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Poll *condition* on the running loop until it is true; fail after *timeout* seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.005)


def wait_until(condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "condition") -> None:
    """Blocking twin of :func:`until`, for tests that run no loop of their own."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.005)
