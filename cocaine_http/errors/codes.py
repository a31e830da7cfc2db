"""The numbers errors travel as: categories and codes of both generations.

Generation A sends a bare int; B a ``(category, code)`` pair (PROTOCOL.md
§2.7, §3.8). The exceptions of :mod:`cocaine_http.errors` carry these; the
worker and the local runtime answer with them. Every code the package puts
on the wire has a name here.
"""

from __future__ import annotations

import enum
import errno
from typing import NamedTuple

__all__ = [
    "B_APP_STOPPED",
    "B_CLIENT_GONE",
    "B_FRAME_TOO_LARGE",
    "B_INVOCATION_FAILED",
    "B_NOT_FOUND",
    "B_NO_HANDLER",
    "B_QUEUE_FULL",
    "B_REQUEST_IDLE",
    "B_REQUEST_TIMEOUT",
    "B_UNCAUGHT_EXCEPTION",
    "B_UNKNOWN",
    "WORKER_CODES_A",
    "WORKER_CODES_B",
    "Code",
    "DispatchCode",
    "ErrorCategory",
    "ErrorCode",
    "ErrorCodeA",
    "LocatorCode",
    "NodeCode",
    "OverseerCode",
    "ProtocolCode",
    "SlaveCode",
    "WorkerCodes",
]


class ErrorCategory(enum.IntEnum):
    """Error categories of generation B (PROTOCOL.md §3.8).

    Generation A has no categories; its errors are reported with
    ``category = None`` on :class:`ServiceError`.
    """

    SYSTEM = 0x01
    TRANSPORT = 0x06
    DISPATCH = 0x07
    PLUGINS = 0x08
    SECURITY = 0x09
    LOCATOR = 0x0A
    UNICORN = 0x0B
    GENERIC = 0x0C
    PROTOCOL = 0x0D
    WORKER = 42
    WORKER_USER = 43
    UNKNOWN = 0xFF
    NODE = 0x51FF
    OVERSEER = 0x52FF
    SLAVE = 0x53FF


class ErrorCode(enum.IntEnum):
    """Stable codes of errors raised by cocaine_http itself.

    The first group are the worker codes the official frameworks use in
    category 42 (PROTOCOL.md §3.8); the second group are ours, chosen in the
    same category so they can travel in a B error frame unchanged.
    """

    EVENT_NOT_FOUND = 1
    UNCAUGHT_EXCEPTION = 100
    NO_HANDLER = 200
    BAD_SOURCE = 210
    INVOCATION_FAILED = 212
    SERVICE_DISCONNECTED = 220
    INVALID_API_VERSION = 230
    INVALID_MESSAGE_TYPE = 240
    # ours
    FRAME_FORMAT = 250
    MALFORMED_MESSAGE = 251
    FRAME_TOO_LARGE = 252
    FRAME_TOO_DEEP = 253
    UNEXPECTED_MESSAGE = 254
    LOCAL_PROTOCOL = 255
    CHANNEL_CLOSED = 256
    CONNECT_FAILED = 260
    DISCONNECTED = 261
    TIMEOUT = 262
    REQUEST_IDLE = 263
    TERMINATED = 270
    SERVICE_NOT_FOUND = 280
    METHOD_NOT_FOUND = 281
    SERVICE_ERROR = 282
    STARTUP = 290
    CONFIG = 291
    APP_IMPORT = 292
    HTTP_REQUEST_REFUSED = 300


class ErrorCodeA(enum.IntEnum):
    """Generation A's error codes: a bare int, no category (PROTOCOL.md §2.7).

    The first four are the runtime's own; a worker's codes are free-form,
    and ``NO_HANDLER`` is the one cocaine-framework-python answers an
    unknown event with (PROTOCOL.md §5 item 6).
    """

    INVOCATION_ERROR = 1  #: unknown method, a handler's exception
    RESOURCE_ERROR = 2  #: queue full, shutting down, the worker died
    TIMEOUT_ERROR = 3
    DEADLINE_ERROR = 4  #: the event expired in the queue
    NO_HANDLER = -100


class DispatchCode(enum.IntEnum):
    """Codes of the B dispatch category, :attr:`ErrorCategory.DISPATCH` (PROTOCOL.md §3.8)."""

    DUPLICATE_SLOT = 1
    INVALID_ARGUMENT = 2
    NOT_CONNECTED = 3
    REVOKED_CHANNEL = 4
    SLOT_NOT_FOUND = 5
    UNBOUND_DISPATCH = 6
    UNCAUGHT_ERROR = 7  #: a service method raised what it did not expect


class NodeCode(enum.IntEnum):
    """Codes of the B node category, :attr:`ErrorCategory.NODE` (PROTOCOL.md §3.8)."""

    DEADLINE = 1
    RESOURCE = 2
    TIMEOUT = 3  #: the invocation ran over its request-timeout
    INVALID_ASSIGNMENT = 4
    ALREADY_STARTED = 5  #: start_app of an app that runs
    NOT_RUNNING = 6  #: pause_app of an app that does not
    UNCAUGHT_SPOOL = 7  #: the app could not be prepared
    UNCAUGHT_PUBLISH = 8


class SlaveCode(enum.IntEnum):
    """Codes of the B slave category, :attr:`ErrorCategory.SLAVE` (PROTOCOL.md §3.8)."""

    SPAWN_TIMEOUT = 1
    #: The local runtime's code for a worker that died or failed its
    #: handshake (PROTOCOL.md names 1 and 8 only; clients read the category).
    DIED = 2
    HEARTBEAT_TIMEOUT = 8


class LocatorCode(enum.IntEnum):
    """Codes of the locator category, :attr:`ErrorCategory.LOCATOR` (A: a bare int)."""

    SERVICE_NOT_AVAILABLE = 1


class ProtocolCode(enum.IntEnum):
    """Codes of the B rpc protocol category, :attr:`ErrorCategory.PROTOCOL` (PROTOCOL.md §3.8)."""

    CLOSED_UPSTREAM = 1  #: the other side closed its half; what a client sends when it gives up on a call


class OverseerCode(enum.IntEnum):
    """Codes of the B overseer category, :attr:`ErrorCategory.OVERSEER` (PROTOCOL.md §3.8)."""

    QUEUE_FULL = 1  #: safe to retry
    POOL_FULL = 2


# The B (category, code) pairs a worker answers the runtime with, as plain
# ints: they go to the wire as they are (PROTOCOL.md §3.8, §5 item 6).
#: A handler raised.
B_UNCAUGHT_EXCEPTION = (ErrorCategory.WORKER.value, ErrorCode.UNCAUGHT_EXCEPTION.value)
#: The worker ended the invocation (shutdown, disown, the connection lost).
B_INVOCATION_FAILED = (ErrorCategory.WORKER.value, ErrorCode.INVOCATION_FAILED.value)
#: No handler for the event (what the official frameworks send).
B_NO_HANDLER = (ErrorCategory.WORKER.value, ErrorCode.NO_HANDLER.value)
#: The request sent nothing for the worker's ``request_idle_timeout``.
B_REQUEST_IDLE = (ErrorCategory.WORKER.value, ErrorCode.REQUEST_IDLE.value)
#: A request frame over the worker's ``max_frame_size``.
B_FRAME_TOO_LARGE = (ErrorCategory.WORKER.value, ErrorCode.FRAME_TOO_LARGE.value)
#: Over ``max_sessions``: the overseer's "queue is full", which proxies retry.
B_QUEUE_FULL = (ErrorCategory.OVERSEER.value, OverseerCode.QUEUE_FULL.value)
#: Shutting down: EPIPE in the generic category, "app stopped" to the proxies, which retry.
B_APP_STOPPED = (ErrorCategory.GENERIC.value, errno.EPIPE)
#: The runtime's error to a worker whose client went away: system category, ECONNABORTED.
B_CLIENT_GONE = (ErrorCategory.SYSTEM.value, errno.ECONNABORTED)
#: The runtime's error for an invocation over its request-timeout.
B_REQUEST_TIMEOUT = (ErrorCategory.NODE.value, NodeCode.TIMEOUT.value)
#: A storage key that is not there: ENOENT in the generic category.
B_NOT_FOUND = (ErrorCategory.GENERIC.value, errno.ENOENT)
#: An error with no registered category (0xFF), e.g. a method the local runtime does not support.
B_UNKNOWN = (ErrorCategory.UNKNOWN.value, 1)


#: A code as it goes on the wire: a bare int (A) or ``(category, code)`` (B).
Code = int | tuple[int, int]


class WorkerCodes(NamedTuple):
    """The codes the worker answers the runtime with, in one generation's terms."""

    uncaught: Code  # a handler raised
    aborted: Code  # the worker ended the session (shutdown, disown, connection lost)
    idle: Code  # the request sent nothing for request_idle_timeout
    too_large: Code  # a request frame over max_frame_size
    no_handler: Code
    busy: Code  # over max_sessions: a code proxies retry
    stopping: Code  # draining: a code proxies retry


# A: the runtime reports a handler's exception as invocation_error, and
# refuses work with resource_error (PROTOCOL.md §2.7); B: §3.8.
WORKER_CODES_A = WorkerCodes(
    uncaught=ErrorCodeA.INVOCATION_ERROR.value,
    aborted=ErrorCodeA.RESOURCE_ERROR.value,
    idle=ErrorCodeA.TIMEOUT_ERROR.value,
    too_large=ErrorCodeA.INVOCATION_ERROR.value,
    no_handler=ErrorCodeA.NO_HANDLER.value,
    busy=ErrorCodeA.RESOURCE_ERROR.value,
    stopping=ErrorCodeA.RESOURCE_ERROR.value,
)
WORKER_CODES_B = WorkerCodes(
    uncaught=B_UNCAUGHT_EXCEPTION,
    aborted=B_INVOCATION_FAILED,
    idle=B_REQUEST_IDLE,
    too_large=B_FRAME_TOO_LARGE,
    no_handler=B_NO_HANDLER,
    busy=B_QUEUE_FULL,
    stopping=B_APP_STOPPED,
)
