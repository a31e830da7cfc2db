"""The C decoder: ``native/cocaine_frame.c`` through cffi, plus Frame building.

C finds frames and checks them (see native/README.md for the rules, shared
with the pure twin); Python turns each reported frame into a
:class:`~.frames.Frame`. Args and headers are decoded from the byte slices
C reports with ``msgpack.unpackb``, except in the common case where args is
exactly one raw (every chunk and invoke): then the payload is copied out of
the buffer once and never decoded.

C is asked for up to :data:`_BATCH` frames per call and the records are read
as one flat list of integers; frames decoded ahead wait in a queue, and an
error found behind them is raised only once they have been returned, so the
observable behaviour is the same as decoding one frame per call.

Importing this module raises :class:`ImportError` when the extension was not
built; :mod:`.codec` then falls back to the pure twin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import msgpack

from .._native import ffi, lib
from ..errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from ._decoder_pure import check_max_frame_size
from .frames import Frame, Generation
from .wire import MAX_MAP_LEN, reject_ext

__all__ = ["NativeDecoder"]

#: C status code -> the exception it becomes.
ERRORS: dict[int, type[DecodeError]] = {
    lib.CF_E_MALFORMED: MalformedMessageError,
    lib.CF_E_FORMAT: FrameFormatError,
    lib.CF_E_TOO_LARGE: FrameTooLargeError,
    lib.CF_E_DEPTH: FrameTooDeepError,
}

_BATCH = 64  # frames per C call
_FIELDS = ffi.sizeof("cf_frame") // 8  # cf_frame is all uint64_t
_HAS_HEADERS = lib.CF_HAS_HEADERS
_FAST_RAW = lib.CF_FAST_RAW
_CF_FRAME = lib.CF_FRAME
_CF_NEED_DATA = lib.CF_NEED_DATA


def _unpack_slice(data: memoryview) -> Any:
    """Decode an args/headers slice C has already validated."""
    try:
        return msgpack.unpackb(data, raw=True, strict_map_key=False, ext_hook=reject_ext, max_map_len=MAX_MAP_LEN)
    except (ValueError, TypeError) as exc:  # pragma: no cover - C checked the same rules
        raise MalformedMessageError(f"frame element failed to decode: {exc}") from exc


class NativeDecoder:
    """Incremental frame decoder backed by the C scanner."""

    def __init__(self, generation: Generation, *, max_frame_size: int) -> None:
        self.generation = generation
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self._gen_a = generation.exact_arity
        self._state = ffi.new("cf_decoder *")  # owned here; freed with this object
        lib.cf_init(self._state, 1 if self._gen_a else 0, max_frame_size, MAX_MAP_LEN)
        self._records = ffi.new("cf_frame[]", _BATCH)
        self._status = ffi.new("int *")
        self._fields = memoryview(ffi.buffer(self._records)).cast("Q")
        self._buf = bytearray()
        self._start = 0  # offset in _buf where the next frame to scan begins
        self._base = 0  # stream offset of _buf[0]
        self._ready: list[Frame] = []  # decoded, not yet returned
        self._ready_ends: list[int] = []  # their end stream offsets
        self._next = 0  # index of the next frame to return in _ready
        self._returned = 0  # stream offset of the end of the last frame returned
        self._latent: DecodeError | None = None  # found by C, behind the ready frames
        self._error: DecodeError | None = None  # raised; the decoder is dead

    @property
    def pending(self) -> int:
        """Bytes fed but not yet returned as part of a frame."""
        return self._base + len(self._buf) - self._returned

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        buf = self._buf
        start = self._start
        if start and start >= len(buf) - start:
            # Drop the scanned frames once they outweigh what is left, so
            # the copy is paid for by the bytes already consumed.
            del buf[:start]
            self._base += start
            self._start = 0
        buf += data

    def next_frame(self) -> Frame | None:
        if self._next == len(self._ready):
            if self._error is not None:
                raise self._error
            if self._latent is not None:
                self._raise(self._latent)
            self._decode()
            if self._next == len(self._ready):
                if self._latent is not None:
                    self._raise(self._latent)
                return None
        i = self._next
        self._next = i + 1
        self._returned = self._ready_ends[i]
        return self._ready[i]

    def __iter__(self) -> Iterator[Frame]:
        while True:
            ready = self._ready
            ends = self._ready_ends
            for i in range(self._next, len(ready)):
                self._next = i + 1
                self._returned = ends[i]
                yield ready[i]
            if self._error is not None:
                raise self._error
            if self._latent is not None:
                self._raise(self._latent)
            self._decode()
            if self._next == len(self._ready):
                if self._latent is not None:
                    self._raise(self._latent)
                return

    def _decode(self) -> None:
        """Ask C for the next batch of frames; fill the ready queue."""
        buf = self._buf
        start = self._start
        with ffi.from_buffer(buf) as ptr:
            n = lib.cf_next_many(self._state, ptr, len(buf), start, self._records, _BATCH, self._status)
        status = self._status[0]
        ready: list[Frame] = []
        ends: list[int] = []
        if n:
            values = self._fields[: n * _FIELDS].tolist()
            base = self._base
            gen_a = self._gen_a
            view = memoryview(buf)
            try:
                for i in range(0, n * _FIELDS, _FIELDS):
                    e0, e1, _, end, a_off, a_len, h_off, h_len, _, p_off, p_len, flags = values[i : i + _FIELDS]
                    if flags & _FAST_RAW:
                        args = [view[p_off : p_off + p_len].tobytes()]
                    else:
                        args = _unpack_slice(view[a_off : a_off + a_len])
                    if gen_a:
                        ready.append(Frame(e1, e0, args, None))
                    elif flags & _HAS_HEADERS:
                        ready.append(Frame(e0, e1, args, _unpack_slice(view[h_off : h_off + h_len])))
                    else:
                        ready.append(Frame(e0, e1, args, None))
                    ends.append(base + end)
            finally:
                view.release()
            self._start = end
        self._ready = ready
        self._ready_ends = ends
        self._next = 0
        if status < 0:
            self._latent = self._make_error(status)

    def _make_error(self, status: int) -> DecodeError:
        kind = ERRORS.get(status)
        what = ffi.string(lib.cf_strerror(status)).decode()
        offset = self._base + self._start
        if kind is None:  # pragma: no cover - CF_E_USAGE means a bug on this side
            raise AssertionError(f"cf_next: {what} ({status})")
        if kind is FrameTooLargeError:
            what = f"frame, array or map over its limit (max_frame_size {self.max_frame_size})"
        return kind(f"{what} (frame at stream offset {offset})")

    def _raise(self, error: DecodeError) -> NoReturn:
        self._latent = None
        self._error = error
        raise error

    def __repr__(self) -> str:
        state = f"failed: {type(self._error).__name__}" if self._error else f"pending={self.pending}"
        return f"<NativeDecoder {self.generation.name} {state}>"
