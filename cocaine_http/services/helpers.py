"""Thin typed wrappers over the standard services, one method per wire method.

They hide what differs between the generations and nothing else:

* :class:`Storage` -- values are ``bytes``, kept byte for byte (A returns
  them double-encoded, B as is: both come back as the bytes written).
  ``read_object``/``write_object`` add the tools' convention of storing
  ``msgpack(object)`` (manifests, profiles, runlists; PROTOCOL.md §2.6).
* :class:`App` -- ``enqueue`` returns an :class:`AppStream`. In B the event
  goes out at once and every ``write`` is a chunk of the request body; A's
  ``enqueue(event, data)`` takes the whole body in the call, so in A writes
  are buffered and sent with the call on ``close`` (or at once when ``data``
  is given). Replies are the worker's chunks, raw ``bytes``.
* :class:`Node` -- ``start_app``/``pause_app``/``list`` with the A
  (``{app: profile}``, ``[app]``) and B (``name, profile``) argument shapes.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any

from ..errors import ChannelClosedError, ErrorCategory, ServiceError, StorageError, StorageNotFoundError
from ..protocol.frames import Generation
from ..protocol.wire import as_text, packb, unpackb
from .base import Stream
from .service import Service

__all__ = ["App", "AppStream", "Node", "Storage", "textify"]


def textify(value: Any) -> Any:
    """Decode the raws of an info-style object to ``str`` (keys and values, recursively)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {textify(k): textify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [textify(v) for v in value]
    return value


def _bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be bytes, got {type(value).__name__}")


class _Wrapper:
    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def generation(self) -> Generation:
        return self.service.generation

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.service!r}>"

    def close(self) -> None:
        self.service.close()


#: B categories a missing key's ENOENT comes in: system, generic, and "unknown" for 0.12.3's
#: unregistered categories (PROTOCOL.md §3.8).
_ENOENT_CATEGORIES = frozenset({ErrorCategory.SYSTEM, ErrorCategory.GENERIC, ErrorCategory.UNKNOWN})
_ENOENT = errno.ENOENT


def _storage_error(exc: ServiceError) -> ServiceError:
    """*exc* as a :class:`StorageNotFoundError` for a missing key, else a :class:`StorageError`."""
    if type(exc) is not ServiceError:  # already typed (no such service/method)
        return exc
    missing = "has not been found" in exc.message  # the text both generations send (§2.7, §3.8)
    if exc.category is not None:
        missing = missing or (exc.category in _ENOENT_CATEGORIES and exc.code == _ENOENT)
    cls = StorageNotFoundError if missing else StorageError
    return cls(exc.message, code=exc.code, category=exc.category, service=exc.service, method=exc.method)


class Storage(_Wrapper):
    """The ``storage`` service: ``read``/``write``/``remove``/``find``.

    Errors are :class:`~cocaine_http.errors.StorageError`; reading a missing key raises
    :class:`~cocaine_http.errors.StorageNotFoundError` in both generations.
    """

    async def _call(self, method: str, *args: Any, timeout: float | None) -> Any:
        try:
            return await self.service.call(method, *args, timeout=timeout)
        except ServiceError as exc:
            raise _storage_error(exc) from exc

    async def read(self, collection: str, key: str, *, timeout: float | None = None) -> bytes:
        value = await self._call("read", collection, key, timeout=timeout)
        if not isinstance(value, bytes):
            raise TypeError(f"storage.read returned {type(value).__name__}, not bytes")
        return value

    async def write(self, collection: str, key: str, value: bytes | bytearray | memoryview | str,
                    tags: Iterable[str] = (), *, timeout: float | None = None) -> None:
        tags = list(tags)
        args: list[Any] = [collection, key, _bytes(value, "value")]
        if tags:
            args.append(tags)
        await self._call("write", *args, timeout=timeout)

    async def remove(self, collection: str, key: str, *, timeout: float | None = None) -> None:
        await self._call("remove", collection, key, timeout=timeout)

    async def find(self, collection: str, tags: Iterable[str], *, timeout: float | None = None) -> list[str]:
        keys = await self._call("find", collection, list(tags), timeout=timeout)
        if keys is None:
            return []
        if not isinstance(keys, list):
            raise TypeError(f"storage.find returned {type(keys).__name__}, not a list")
        return [as_text(k, "key") for k in keys]

    async def read_object(self, collection: str, key: str, *, timeout: float | None = None) -> Any:
        """``read`` + one more msgpack decode (how the runtime stores manifests and profiles)."""
        return unpackb(await self.read(collection, key, timeout=timeout))

    async def write_object(self, collection: str, key: str, obj: Any, tags: Iterable[str] = (), *,
                           timeout: float | None = None) -> None:
        """``write(msgpack(obj))`` in the runtime's dialect (old-spec raws)."""
        await self.write(collection, key, packb(obj), tags, timeout=timeout)


class AppStream:
    """One ``enqueue``: write the request, close, then ``async for`` the worker's chunks."""

    def __init__(self, app: App, event: str, tag: str | None, timeout: float | None) -> None:
        self._app = app
        self.event = event
        self.tag = tag
        self.timeout = timeout
        self._stream: Stream | None = None
        self._buffer: list[bytes] | None = [] if app.generation is Generation.A else None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AppStream {self._app.service.name}.enqueue({self.event!r}) {self._stream!r}>"

    async def _open(self, data: bytes | None = None) -> Stream:
        svc = self._app.service
        if svc.generation is Generation.A:
            args: list[Any] = [self.event, data if data is not None else b""]
        else:
            args = [self.event]
        if self.tag is not None:
            args.append(self.tag)
        stream = await svc.call("enqueue", *args, timeout=self.timeout)
        if not isinstance(stream, Stream):
            raise TypeError("enqueue did not open a stream (is the method declared streaming?)")
        self._stream = stream
        return stream

    async def write(self, data: bytes | bytearray | memoryview | str) -> None:
        if self._closed:
            raise ChannelClosedError(f"{self._app.service.name}.enqueue: already closed")
        chunk = _bytes(data, "chunk")
        if self._buffer is not None:
            self._buffer.append(chunk)
            return
        stream = self._stream or await self._open()
        await stream.write(chunk)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._buffer is not None:
            data, self._buffer = b"".join(self._buffer), None
            await self._open(data)
            return
        stream = self._stream or await self._open()
        await stream.close()

    async def _reading(self) -> Stream:
        if self._stream is None:
            await self.close()
        assert self._stream is not None
        return self._stream

    def __aiter__(self) -> AppStream:
        return self

    async def __anext__(self) -> bytes:
        stream = await self._reading()
        chunk: bytes = await stream.__anext__()  # enqueue's chunks are raw bytes
        return chunk

    async def collect(self) -> list[bytes]:
        """Close (if not yet) and gather every reply chunk."""
        stream = await self._reading()
        return await stream.collect()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    async def __aenter__(self) -> AppStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class App(_Wrapper):
    """An application service: ``enqueue`` (streaming) and ``info``."""

    async def enqueue(self, event: str, data: bytes | bytearray | memoryview | str | None = None, *,
                      tag: str | None = None, timeout: float | None = None) -> AppStream:
        """Start event *event*. With *data* the request is complete (written and closed) at once."""
        st = AppStream(self, event, tag, timeout)
        if data is not None:
            if self.generation is Generation.A:
                st._closed = True
                st._buffer = None
                await st._open(_bytes(data, "data"))
            else:
                await st._open()
                await st.write(data)
                await st.close()
        elif self.generation is Generation.B:
            await st._open()
        return st

    async def call(self, event: str, data: bytes | bytearray | memoryview | str = b"", *,
                   tag: str | None = None, timeout: float | None = None) -> list[bytes]:
        """``enqueue`` with a complete request; every reply chunk."""
        stream = await self.enqueue(event, data, tag=tag, timeout=timeout)
        return await stream.collect()

    async def info(self, *, timeout: float | None = None) -> Any:
        return textify(await self.service.call("info", timeout=timeout))


class Node(_Wrapper):
    """The ``node`` service."""

    async def start_app(
        self, name: str, profile: str = "default", *, timeout: float | None = None
    ) -> str | None:
        """Start *name* with *profile*. A answers a status text (also for "already running"); B nothing."""
        if self.generation is Generation.A:
            out = await self.service.call("start_app", {name: profile}, timeout=timeout)
            return _status(out, name)
        await self.service.call("start_app", name, profile, timeout=timeout)
        return None

    async def pause_app(self, name: str, *, timeout: float | None = None) -> str | None:
        if self.generation is Generation.A:
            out = await self.service.call("pause_app", [name], timeout=timeout)
            return _status(out, name)
        await self.service.call("pause_app", name, timeout=timeout)
        return None

    async def list(self, *, timeout: float | None = None) -> list[str]:
        names = await self.service.call("list", timeout=timeout)
        return [as_text(n, "app name") for n in (names or [])]

    async def info(self, name: str, flags: int | None = None, *, timeout: float | None = None) -> Any:
        """B only (node::v2)."""
        args: list[Any] = [name] if flags is None else [name, flags]
        return textify(await self.service.call("info", *args, timeout=timeout))


def _status(out: Any, name: str) -> str | None:
    if isinstance(out, dict):
        for key, value in out.items():
            if as_text(key, "app") == name:
                return as_text(value, "status") if isinstance(value, (bytes, str)) else str(textify(value))
    return None if out is None else str(textify(out))
