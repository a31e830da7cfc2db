"""Every exception cocaine_http raises, in one tree.

Each class carries a stable ``code`` (an :class:`ErrorCode`, or a wire code
for errors that came from a peer) and a ``category`` (an
:class:`ErrorCategory`), so a caller can match on numbers instead of message
text, and so the worker can turn any of them into a typed error frame.
``http_status`` is the status an HTTP front should answer with when the error
ends a request.

::

    CocaineError
    ├── ProtocolError                   abstract: somebody broke the wire protocol
    │   ├── LocalProtocolError          we tried to (write after close, second terminal message)
    │   └── RemoteProtocolError         the peer did
    │       ├── DecodeError             bytes that are not a frame
    │       │   ├── MalformedMessageError   not msgpack, or msgpack ext
    │       │   ├── FrameFormatError        msgpack, but not [uint, uint, [args], (headers)]
    │       │   ├── FrameTooLargeError      over the configured frame size limit
    │       │   └── FrameTooDeepError       nested deeper than the decoder's stack
    │       ├── UnknownMessageError     a type id the catalog does not define
    │       ├── HttpRequestRefused      an HTTP request the dev front refuses (its ``status``)
    │       └── UnexpectedMessageError  a legal message at an illegal moment
    ├── ServiceError                    an error frame from a service or worker
    │   ├── ServiceNotFoundError        the locator does not know the name
    │   ├── MethodNotFoundError         the service has no such method
    │   └── StorageError                storage (helpers.Storage) said no
    │       └── StorageNotFoundError    no such key (collection) to read
    ├── TransportError                  the socket, not the protocol
    │   ├── ConnectError
    │   ├── DisconnectedError
    │   └── CallTimeoutError
    ├── ChannelClosedError              reading or writing a finished session
    ├── RequestTooLargeError            a request frame over max_frame_size: its session fails (413)
    ├── WorkerTerminated                the runtime asked the worker to stop
    └── StartupError                    the process cannot start (documented exit codes)
        ├── ConfigError
        └── AppImportError
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

from .codes import (
    B_APP_STOPPED,
    B_CLIENT_GONE,
    B_FRAME_TOO_LARGE,
    B_INVOCATION_FAILED,
    B_NO_HANDLER,
    B_NOT_FOUND,
    B_QUEUE_FULL,
    B_REQUEST_IDLE,
    B_REQUEST_TIMEOUT,
    B_UNCAUGHT_EXCEPTION,
    B_UNKNOWN,
    DispatchCode,
    ErrorCategory,
    ErrorCode,
    ErrorCodeA,
    LocatorCode,
    NodeCode,
    OverseerCode,
    ProtocolCode,
    SlaveCode,
)

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
    "AppImportError",
    "CallTimeoutError",
    "ChannelClosedError",
    "CocaineError",
    "ConfigError",
    "ConnectError",
    "DecodeError",
    "DisconnectedError",
    "DispatchCode",
    "ErrorCategory",
    "ErrorCode",
    "ErrorCodeA",
    "FrameFormatError",
    "FrameTooDeepError",
    "FrameTooLargeError",
    "HttpRequestRefused",
    "LocalProtocolError",
    "LocatorCode",
    "MalformedMessageError",
    "MethodNotFoundError",
    "NodeCode",
    "OverseerCode",
    "ProtocolCode",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestIdleError",
    "RequestTooLargeError",
    "ServiceError",
    "ServiceNotFoundError",
    "SlaveCode",
    "StartupError",
    "StorageError",
    "StorageNotFoundError",
    "TransportError",
    "UnexpectedMessageError",
    "UnknownMessageError",
    "WorkerTerminated",
]


class _Unset(enum.Enum):
    UNSET = enum.auto()


#: "Keep the class default" for ``code``/``category`` arguments, so that an
#: explicit ``category=None`` (generation A has no categories) is honoured.
UNSET: Any = _Unset.UNSET


class CocaineError(Exception):
    """Base of every cocaine_http error.

    ``code`` and ``category`` default to the class attributes and may be
    overridden per instance (an error frame from the wire keeps its own;
    ``category=None`` says the error came from generation A, which has none).
    """

    code: int = ErrorCode.INVOCATION_FAILED
    category: int | None = ErrorCategory.WORKER
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = UNSET,
        category: int | None = UNSET,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not UNSET and code is not None:
            self.code = code
        if category is not UNSET:
            self.category = category

    def __str__(self) -> str:
        return self.message or type(self).__name__


class ProtocolError(CocaineError):
    """Abstract: the wire protocol was violated. Never raised directly."""

    code = ErrorCode.UNEXPECTED_MESSAGE
    http_status = 502


class LocalProtocolError(ProtocolError):
    """This side tried to break the protocol; nothing was sent."""

    code = ErrorCode.LOCAL_PROTOCOL


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection can no longer be trusted."""


class DecodeError(RemoteProtocolError):
    """Bytes on the wire that cannot be a frame. The connection is dropped."""

    code = ErrorCode.FRAME_FORMAT


class MalformedMessageError(DecodeError):
    """Not valid msgpack (reserved byte 0xc1), or an ext value."""

    code = ErrorCode.MALFORMED_MESSAGE


class FrameFormatError(DecodeError):
    """Valid msgpack, but not ``[uint, uint, [args...] (, [headers])]``."""

    code = ErrorCode.FRAME_FORMAT


class FrameTooLargeError(DecodeError):
    """A frame, string or container larger than the configured limit."""

    code = ErrorCode.FRAME_TOO_LARGE
    http_status = 413


class RequestTooLargeError(CocaineError):
    """A request frame over the worker's ``max_frame_size``: the decoder skipped
    it, and only its session fails (HTTP: 413); the connection goes on."""

    code = ErrorCode.FRAME_TOO_LARGE
    http_status = 413


class FrameTooDeepError(DecodeError):
    """A value nested deeper than the decoder's stack."""

    code = ErrorCode.FRAME_TOO_DEEP


class UnknownMessageError(RemoteProtocolError):
    """A well-formed frame whose type id the catalog does not define."""

    code = ErrorCode.INVALID_MESSAGE_TYPE


class HttpRequestRefused(RemoteProtocolError):
    """An HTTP client sent a request the HTTP front will not pass on (RFC 9112
    framing, size limits, an unsupported protocol). ``status`` is the answer
    (400, 413, 414, 431, 501); the message is the short reason in its body."""

    code = ErrorCode.HTTP_REQUEST_REFUSED
    http_status = 400

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UnexpectedMessageError(RemoteProtocolError):
    """A known message at a moment the session's state forbids."""

    code = ErrorCode.UNEXPECTED_MESSAGE


class ServiceError(CocaineError):
    """An error frame received from a service or a worker.

    ``category`` is the B category (``None`` in generation A), ``code`` the
    wire code, ``message`` the peer's text; ``service`` and ``method`` say
    which call failed when known.
    """

    code = ErrorCode.SERVICE_ERROR
    http_status = 502

    def __init__(
        self,
        message: str = "",
        *,
        code: int | None = UNSET,
        category: int | None = UNSET,
        service: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message, code=code, category=category)
        self.service = service
        self.method = method

    def __str__(self) -> str:
        where = ""
        if self.service:
            where = f"{self.service}.{self.method}: " if self.method else f"{self.service}: "
        cat = f"{self.category}, " if self.category is not None else ""
        return f"{where}{self.message} [{cat}{self.code}]"


class ServiceNotFoundError(ServiceError):
    """The locator could not resolve the service name."""

    code = ErrorCode.SERVICE_NOT_FOUND
    http_status = 503


class MethodNotFoundError(ServiceError):
    """The resolved service does not publish the method called."""

    code = ErrorCode.METHOD_NOT_FOUND


class StorageError(ServiceError):
    """An error from the storage service, raised by :class:`cocaine_http.services.Storage`.

    ``code``/``category`` stay the wire's, as for every :class:`ServiceError`.
    """


class StorageNotFoundError(StorageError):
    """``read`` of a key that does not exist: A ``[1, "object ... has not been found ..."]``
    (PROTOCOL.md §2.7), B ``ENOENT`` (2) in the system, generic or unknown category (§3.8)."""

    http_status = 404


class TransportError(CocaineError):
    """The connection failed, not the protocol on it."""

    code = ErrorCode.DISCONNECTED
    http_status = 502


class ConnectError(TransportError):
    """Could not connect to any endpoint. ``errno`` is the last OS error, if any."""

    code = ErrorCode.CONNECT_FAILED

    def __init__(self, message: str = "", *, errno: int | None = None, **kw: int) -> None:
        super().__init__(message, **kw)
        self.errno = errno


class DisconnectedError(TransportError):
    """The connection closed while a call or session was still open."""

    code = ErrorCode.DISCONNECTED


class CallTimeoutError(TransportError):
    """A call got no (complete) answer within its timeout."""

    code = ErrorCode.TIMEOUT
    http_status = 504


class RequestIdleError(TransportError):
    """A request stayed open without sending anything for the worker's
    ``request_idle_timeout``: the session was failed and its slot freed."""

    code = ErrorCode.REQUEST_IDLE
    http_status = 408


class ChannelClosedError(LocalProtocolError):
    """Reading or writing a session that has already finished that direction."""

    code = ErrorCode.CHANNEL_CLOSED


class WorkerTerminated(CocaineError):
    """The runtime asked the worker to stop; carries the runtime's code and reason."""

    code = ErrorCode.TERMINATED
    http_status = 503

    def __init__(self, reason: str = "", *, terminate_code: int = 1) -> None:
        super().__init__(reason)
        self.terminate_code = terminate_code


class StartupError(CocaineError):
    """The worker cannot start. ``exit_code`` is what the CLI exits with."""

    code = ErrorCode.STARTUP
    exit_code: ClassVar[int] = 3


class ConfigError(StartupError):
    """Bad command line, environment or configuration."""

    code = ErrorCode.CONFIG
    exit_code = 2


class AppImportError(StartupError):
    """``MODULE:ATTR`` could not be imported or is not an app."""

    code = ErrorCode.APP_IMPORT
    exit_code = 4
