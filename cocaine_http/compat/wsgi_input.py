"""``wsgi.input``: a request body as PEP 3333's input stream, read as it arrives.

The envelope's body comes first, then every further chunk of the session as
the app reads, never a pre-buffered copy of a streamed request.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

from ..protocol.payloads import SplitPayload

__all__ = ["WSGIInput"]


class WSGIInput(io.RawIOBase):
    """``wsgi.input``: the envelope's body, then later chunks pulled on demand.

    ``pull`` returns the next chunk of the session, ``b""`` at its end; it
    blocks the app's thread, never the loop. All reads of PEP 3333 are here
    (``read(n)``, ``read()``, ``readline(n)``, ``readlines``, iteration) plus
    ``readinto`` for ``io.BufferedReader`` users.

    Every read is linear in what it returns, and copies each byte at most
    once: only the current chunk is kept (with an offset into it, never
    rebuilt), a read within it is one slice, a read that spans chunks writes
    memoryviews of them into one :class:`io.BytesIO` as they are pulled
    (each chunk is released once written) and returns its value, which
    ``getvalue()`` hands over without a copy; a read of exactly one whole
    chunk returns that chunk. So ``read()`` of a streamed body peaks at about
    the body's size, not twice it (``bench/upload.py``).
    """

    # Slots: an io.IOBase keeps other attributes in a dict of its own, which
    # made a WSGIInput cost 9.8K instructions to create and drop, 5.6K with these.
    __slots__ = ("_buf", "_pos", "_pull", "bytes_read")

    def __init__(self, first: bytes | memoryview, pull: Callable[[], bytes] | None) -> None:
        if type(first) is memoryview:
            # A large envelope's body left in it (parse_request's body_in_place):
            # its suffix, read in place, so the body is never copied whole.
            envelope: bytes = first.obj  # type: ignore[assignment]  # (typeshed: a buffer)
            self._buf = envelope
            self._pos = len(envelope) - first.nbytes
        else:
            self._buf = first
            self._pos = 0
        self._pull = pull
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make the next non-empty chunk current; False at the end of the request."""
        chunk = self._pull() if self._pull is not None else b""
        if isinstance(chunk, SplitPayload):  # a later chunk shaped like a large envelope
            chunk = bytes(chunk)
        if chunk:
            self._buf = chunk
            self._pos = 0
            return True
        self._pull = None
        self._buf = b""
        self._pos = 0
        return False

    def _piece(self, n: int) -> bytes | memoryview:
        """The next *n* unread bytes of the current chunk (n <= what it has left), uncopied."""
        buf, pos = self._buf, self._pos
        self._pos = pos + n
        if pos == 0 and n == len(buf):
            return buf
        return memoryview(buf)[pos : pos + n]

    def _gather(self, limit: int, line: bool) -> bytes:
        """Up to *limit* bytes (to the first newline included when *line*)."""
        first: bytes | memoryview | None = None
        sink: io.BytesIO | None = None
        got = 0
        while got < limit:
            buf, pos = self._buf, self._pos
            avail = len(buf) - pos
            if avail == 0:
                if not self._fill():
                    break
                continue
            room = min(avail, limit - got)
            end = buf.find(b"\n", pos, pos + room) if line else -1
            n = room if end < 0 else end + 1 - pos
            if got == 0 and (end >= 0 or n == limit):
                # all of it from the current chunk: one slice (or the chunk itself)
                data = buf if pos == 0 and n == len(buf) else buf[pos : pos + n]
                self._pos = pos + n
                self.bytes_read += n
                return data
            piece = self._piece(n)
            got += n
            if sink is not None:
                sink.write(piece)
            elif first is None:
                first = piece
            else:
                sink = io.BytesIO()
                sink.write(first)
                sink.write(piece)
                first = None
            if end >= 0:
                break
        if sink is not None:
            data = sink.getvalue()  # the BytesIO's own buffer, not a copy
        elif first is None:
            return b""
        else:
            data = first if type(first) is bytes else bytes(first)
        self.bytes_read += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._gather(sys.maxsize, False)
        buf, pos = self._buf, self._pos
        if size <= len(buf) - pos:  # the usual case: within the current chunk
            self._pos = pos + size
            self.bytes_read += size
            return buf[pos : pos + size]
        return self._gather(size, False)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= len(self._buf) and not self._fill():
            return 0
        n = min(len(view), len(self._buf) - self._pos)
        view[:n] = self._piece(n)
        self.bytes_read += n
        return n

    def readline(self, size: int | None = -1) -> bytes:
        return self._gather(sys.maxsize if size is None or size < 0 else size, True)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> WSGIInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
