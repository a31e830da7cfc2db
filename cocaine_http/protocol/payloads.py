"""Large payloads collected as they arrive, where they will stay.

The proxies send a request's whole body in one frame: a chunk whose payload
is the HTTP envelope ``[method, uri, version, headers, body]``, the body last
(PROTOCOL.md §2.8, §3.9). The native decoder collects a large payload by
itself (C's ``CF_PAYLOAD``), each read copied once, instead of buffering the
frame and cutting the payload out of it.

With ``split`` it goes one step further for a payload of that shape: a
msgpack array whose last item is a raw with a 32-bit length, ending exactly
where the payload ends. The raw's body is collected into a ``bytes`` of its
own and the payload becomes a :class:`SplitPayload`, so an HTTP body reaches
the app as that object, never copied out of the envelope: a 200 MiB upload
read whole costs the worker 200 MiB, not 400 (``bench/upload.py --chunk 0``).
Nothing here knows HTTP: the shape is checked on msgpack alone.
"""

from __future__ import annotations

import io

import msgpack

from .wire import unpacker

__all__ = ["COLLECT_MIN", "HEAD_WINDOW", "LARGE_PAYLOAD", "PayloadCollector", "SplitPayload", "trailing_raw"]

#: A payload of this size or more that is still arriving is collected by
#: itself, by either decoder: one copy of each read, where buffering the
#: frame and cutting the payload out of it made two. Below it, a frame rarely
#: spans reads, and the collection's own calls (a few µs) would not pay.
COLLECT_MIN = 64 * 1024
#: From this size on, a payload is split when the decoder is asked to
#: (``new_decoder(..., split_payloads=True)``, the worker's).
LARGE_PAYLOAD = 1024 * 1024
#: How much of a payload's start is read to find its last item.
HEAD_WINDOW = 64 * 1024
#: Up to this size a payload's buffer is allocated whole when it starts: one
#: block, which the C allocator hands out again for the next payload. Grown
#: read by read instead, each payload faulted in fresh pages: 256 KiB uploads
#: to the Flask example, ``--threads 0`` (bench/floor_engine.c, W 64), 28 page
#: faults and 413 us of worker CPU a request, against 1.2 and 310 us before the
#: collection; allocated whole, 1.2 faults. Beyond it, memory follows the data.
_ALLOCATE_WHOLE_MAX = 16 * 1024 * 1024
#: The first byte of a raw with a 32-bit length (str/raw32, bin32): the only
#: ones a large payload's last item can have once the items before it are
#: within the window.
_RAW32 = (0xDB, 0xC6)


class SplitPayload:
    """A payload held as two ``bytes``: *head*, the msgpack array up to the
    body of its last item, a raw; and *body*, that raw's body.

    ``bytes(payload)`` joins them (one copy). Only the worker's decoder makes
    these, and only the HTTP adapters take them as they are (``parse_request``);
    every other reader of a session gets the joined bytes (aio/sessions.py).
    """

    __slots__ = ("body", "head")

    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body

    def __len__(self) -> int:
        return len(self.head) + len(self.body)

    def __bytes__(self) -> bytes:
        return self.head + self.body

    def __repr__(self) -> str:
        return f"<SplitPayload head={len(self.head)} body={len(self.body)}>"


def trailing_raw(start: memoryview, size: int) -> int | None:
    """Where the body of the last item of a payload of *size* bytes begins,
    given its first bytes (*start*, at least :data:`HEAD_WINDOW` of them or
    all): an array whose last item is a raw32/bin32 ending at the payload's
    end, its other items within *start*. ``None`` for any other shape."""
    reader = unpacker()
    reader.feed(start[:HEAD_WINDOW])
    try:
        items = reader.read_array_header()
        if not items:
            return None
        for _ in range(items - 1):
            reader.skip()
    except (msgpack.OutOfData, ValueError, TypeError):  # (msgpack's format errors subclass the last two)
        return None
    at: int = reader.tell()
    if at + 5 > len(start) or start[at] not in _RAW32:
        return None
    body = at + 5
    if body + int.from_bytes(start[at + 1 : body], "big") != size:
        return None
    return body


def _sink(size: int) -> io.BytesIO:
    """Where *size* bytes will be written from the start: allocated whole if
    small enough (``BytesIO`` owns the ``bytes`` it is given, and writes over it)."""
    return io.BytesIO(bytes(size)) if size <= _ALLOCATE_WHOLE_MAX else io.BytesIO()


class PayloadCollector:
    """One payload of *size* bytes, written as it arrives; :meth:`value` once complete.

    Every write is one copy into an :class:`io.BytesIO`, whose ``getvalue()``
    hands its own ``bytes`` over without another. With *split*, the start is
    looked at once :data:`HEAD_WINDOW` bytes are in (see :func:`trailing_raw`);
    from the body on, writes go to a second ``BytesIO``.
    """

    __slots__ = ("_head", "_probe", "_sink", "size")

    def __init__(self, size: int, *, split: bool) -> None:
        self.size = size
        # (split: the start grows until it is looked at, then the rest goes
        # where it belongs: allocating the whole payload first would hold it twice)
        self._sink = io.BytesIO() if split else _sink(size)
        self._head: bytes | None = None  # split: the head, once the body is collected apart
        self._probe = split  # the start is still to be looked at

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._sink.write(data)
        if self._probe and self._sink.tell() >= min(HEAD_WINDOW, self.size):
            self._split()

    def _split(self) -> None:
        """Look at the start (all that came so far: a read or two) and go on
        with the body apart, or with the payload whole, each in its own buffer."""
        self._probe = False
        start = self._sink.getvalue()
        body = trailing_raw(memoryview(start), self.size)
        if body is None:
            self._sink = _sink(self.size)
            self._sink.write(start)
            return
        self._head = start[:body]
        self._sink = _sink(self.size - body)
        self._sink.write(memoryview(start)[body:])

    def value(self) -> bytes | SplitPayload:
        """The payload: ``bytes``, or a :class:`SplitPayload` when it was split."""
        data = self._sink.getvalue()  # (a buffer allocated whole is exactly full: handed over as it is)
        return data if self._head is None else SplitPayload(self._head, data)
