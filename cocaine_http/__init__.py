"""cocaine_http: run unmodified WSGI/ASGI apps as Cocaine workers; call Cocaine services.

The public surface, in one place::

    from cocaine_http import Worker                 # a worker: @worker.on("event")
    from cocaine_http import Client, SyncClient     # services (async / blocking)
    from cocaine_http import Channel                # the low-level connection
    from cocaine_http import LocalRuntime           # the embedded runtime (tests, `cocaine-http dev`)

The service clients and the local runtime are imported on first use
(PEP 562), so a worker that never calls a service does not pay for them at
start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .aio import BlockingRequest, BlockingResponse, Channel, Request, Response, Worker
from .config import WorkerConfig
from .errors import (
    AppImportError,
    CallTimeoutError,
    ChannelClosedError,
    CocaineError,
    ConfigError,
    ConnectError,
    DecodeError,
    DisconnectedError,
    ErrorCategory,
    ErrorCode,
    LocalProtocolError,
    MethodNotFoundError,
    ProtocolError,
    RemoteProtocolError,
    RequestIdleError,
    RequestTooLargeError,
    ServiceError,
    ServiceNotFoundError,
    StartupError,
    StorageError,
    StorageNotFoundError,
    TransportError,
    WorkerTerminated,
)
from .protocol.frames import Generation

if TYPE_CHECKING:
    from .runtime import LocalRuntime
    from .services import BaseService, Client, Logger, Service, SyncClient

_LAZY = {
    "BaseService": "cocaine_http.services",
    "Client": "cocaine_http.services",
    "Logger": "cocaine_http.services",
    "Service": "cocaine_http.services",
    "SyncClient": "cocaine_http.services",
    "LocalRuntime": "cocaine_http.runtime",
}

__all__ = [
    "AppImportError",
    "BaseService",
    "BlockingRequest",
    "BlockingResponse",
    "CallTimeoutError",
    "Channel",
    "ChannelClosedError",
    "Client",
    "CocaineError",
    "ConfigError",
    "ConnectError",
    "DecodeError",
    "DisconnectedError",
    "ErrorCategory",
    "ErrorCode",
    "Generation",
    "LocalProtocolError",
    "LocalRuntime",
    "Logger",
    "MethodNotFoundError",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "RequestIdleError",
    "RequestTooLargeError",
    "Response",
    "Service",
    "ServiceError",
    "ServiceNotFoundError",
    "StartupError",
    "StorageError",
    "StorageNotFoundError",
    "SyncClient",
    "TransportError",
    "Worker",
    "WorkerConfig",
    "WorkerTerminated",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cocaine_http' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
