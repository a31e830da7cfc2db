"""The runtime side: what cocaine-core / node::v2 do for workers, for tests and local runs.

:class:`~cocaine_http.runtime.engine.Engine` spawns and drives worker
processes for one app over either protocol generation.
"""

from __future__ import annotations

from .engine import (
    Engine,
    Handshake,
    HeaderFlavour,
    Invocation,
    Reply,
    RuntimeSide,
    Slave,
    SlaveState,
)

__all__ = [
    "Engine",
    "Handshake",
    "HeaderFlavour",
    "Invocation",
    "Reply",
    "RuntimeSide",
    "Slave",
    "SlaveState",
]
