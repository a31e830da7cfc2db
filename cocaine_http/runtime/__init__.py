"""The runtime side: what cocaine-core / node::v2 do for workers, for tests and local runs.

:class:`~cocaine_http.runtime.engine.Engine` spawns, drives and supervises
worker processes for one app over either protocol generation.
:class:`~cocaine_http.runtime.local.LocalRuntime` is the whole local cloud
(locator, logging, storage, node, app services, worker pools, HTTP front);
see docs/runtime.md.
"""

from __future__ import annotations

from .engine import Engine
from .invocation import Invocation, Reply
from .local import LocalRuntime
from .node import AppSpec
from .pool import Pool, Refused
from .side import Handshake, HeaderFlavour, RuntimeSide
from .slave import Slave, SlaveState
from .supervision import RestartPolicy

__all__ = [
    "AppSpec",
    "Engine",
    "Handshake",
    "HeaderFlavour",
    "Invocation",
    "LocalRuntime",
    "Pool",
    "Refused",
    "Reply",
    "RestartPolicy",
    "RuntimeSide",
    "Slave",
    "SlaveState",
]
