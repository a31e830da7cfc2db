"""Clients of Cocaine services: locator, any service by name, logger, typed helpers.

::

    from cocaine_http.services import Client

    async with Client() as client:                    # defaults: the worker's --locator/--protocol
        storage = await client.service("storage")
        value = await storage.read("manifests", "web")  # bytes, byte for byte
        client.logger("web").info("read %d bytes", len(value))

See docs/services.md. :class:`SyncClient` is the blocking facade for
threads and scripts.
"""

from __future__ import annotations

from ..errors import (
    CallTimeoutError,
    ConnectError,
    DisconnectedError,
    MethodNotFoundError,
    ServiceError,
    ServiceNotFoundError,
    StorageError,
    StorageNotFoundError,
)
from ..protocol.methods import MalformedReplyError, MethodNotFound, Resolved, ResolveFormatError
from ..protocol.states import Backoff, ServiceState
from .base import BaseService, Stream
from .client import Client
from .handler import CocaineLogHandler
from .helpers import App, AppStream, Node, Storage
from .locator import Locator
from .logger import Logger, LogLevel
from .service import Service
from .sync import SyncClient, set_default_loop

__all__ = [
    "App",
    "AppStream",
    "Backoff",
    "BaseService",
    "CallTimeoutError",
    "Client",
    "CocaineLogHandler",
    "ConnectError",
    "DisconnectedError",
    "Locator",
    "LogLevel",
    "Logger",
    "MalformedReplyError",
    "MethodNotFound",
    "MethodNotFoundError",
    "Node",
    "ResolveFormatError",
    "Resolved",
    "Service",
    "ServiceError",
    "ServiceNotFoundError",
    "ServiceState",
    "Storage",
    "StorageError",
    "StorageNotFoundError",
    "Stream",
    "SyncClient",
    "set_default_loop",
]
