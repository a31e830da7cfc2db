"""The C decoder: ``native/cocaine_frame.c`` through cffi, plus frame building.

C finds frames and checks them (see native/README.md for the rules, shared
with the pure twin); Python turns each reported frame into a record, a plain
tuple (:data:`~.frames.Record`), which ``records()`` hands out as it is and
the other ways of reading wrap in a :class:`~.frames.Frame`. Args and
headers are decoded from the byte slices C reports with ``msgpack.unpackb``,
except in the two common cases: args is exactly one raw (every chunk and
invoke), whose payload is copied out of the buffer once and never decoded,
or empty (every choke and heartbeat), which needs no decoding either.

C is asked for up to :data:`_BATCH` frames per call and its reports are read
as one flat list of integers; frames decoded ahead wait in a queue, and an
error found behind them is raised only once they have been returned, so the
observable behaviour is the same as decoding one frame per call.

Importing this module raises :class:`ImportError` when the extension was not
built; :mod:`.codec` then falls back to the pure twin.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from itertools import starmap
from operator import length_hint
from typing import Any, NoReturn

import msgpack

from .._native import ffi, lib  # type: ignore[import-not-found, unused-ignore]
from ..errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from ._decoder_pure import check_max_frame_size
from .frames import OVERSIZE, Frame, Generation, Record
from .wire import MAX_MAP_LEN, reject_ext

__all__ = ["NativeDecoder"]

#: C status code -> the exception it becomes.
ERRORS: dict[int, type[DecodeError]] = {
    lib.CF_E_MALFORMED: MalformedMessageError,
    lib.CF_E_FORMAT: FrameFormatError,
    lib.CF_E_TOO_LARGE: FrameTooLargeError,
    lib.CF_E_DEPTH: FrameTooDeepError,
}

#: Frames per C call. Measured, not tuned by guess: bench/worker_floor.py
#: --callgrind, A 16 B x 256 (the real socket), 128: 78.1K instr/request,
#: 256: 78.3K, 512: 79.1K (the batch's records are all built before the
#: first is used, and the collector walks them); in process, 64 requests
#: per read (bench/worker_pipeline.py --batch 64), 256 and 512 save 1.4 %.
_BATCH = 128
#: Called once per read: a global is found faster than an attribute of cffi's ``lib``.
_next_many = lib.cf_next_many
_FEW = 8  # up to this many frames per call, records are read field by field
_GATHER_MIN = 256 * 1024  # smallest gathering buffer
_SPARE_MAX = 16 * 1024 * 1024  # largest gathering buffer kept for reuse
_FIELDS = ffi.sizeof("cf_frame") // 8  # cf_frame is all uint64_t
_HAS_HEADERS = lib.CF_HAS_HEADERS
_NEED_DATA = lib.CF_NEED_DATA
_FRAME = lib.CF_FRAME
_OVERSIZE = lib.CF_OVERSIZE
_SKIPPED = lib.CF_SKIPPED
# index of each cf_frame field in the flat array of records
_ELEM0, _ELEM1, _END, _ARGS_OFF, _HEADERS_OFF, _NARGS, _PAYLOAD_OFF, _PAYLOAD_LEN, _FLAGS = (
    ffi.offsetof("cf_frame", name) // 8
    for name in (
        "elem0",
        "elem1",
        "end",
        "args_off",
        "headers_off",
        "nargs",
        "payload_off",
        "payload_len",
        "flags",
    )
)


# elem0, elem1, end, nargs, payload_off, payload_len, flags: one struct read per record
_HOT_FIELDS = struct.Struct("=QQ8xQ32xQQQQ")
_HOT_INDEXES = (_ELEM0, _ELEM1, _END, _NARGS, _PAYLOAD_OFF, _PAYLOAD_LEN, _FLAGS)
if _HOT_INDEXES != (0, 1, 3, 8, 9, 10, 11):  # pragma: no cover
    raise ImportError("native/cocaine_frame.h changed cf_frame: update _HOT_FIELDS")
#: _RECORDS_AT[n]: the byte offsets of the first n records, for batches of up to _FEW frames
_RECORDS_AT = [tuple(range(0, n * _FIELDS * 8, _FIELDS * 8)) for n in range(_FEW + 1)]


def _unpack_slice(data: memoryview) -> Any:
    """Decode an args/headers slice C has already validated."""
    try:
        return msgpack.unpackb(
            data, raw=True, strict_map_key=False, ext_hook=reject_ext, max_map_len=MAX_MAP_LEN
        )
    except (ValueError, TypeError) as exc:  # pragma: no cover - C checked the same rules
        raise MalformedMessageError(f"frame element failed to decode: {exc}") from exc


class _Copier:
    """``copier[a:b]`` is ``bytes`` copied out of a view (one copy, not two)."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, span: slice) -> bytes:
        return self._view[span].tobytes()


class NativeDecoder:
    """Incremental frame decoder backed by the C scanner."""

    def __init__(self, generation: Generation, *, max_frame_size: int, skip_oversize: bool = False) -> None:
        self.generation = generation
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self._gen_a = generation.exact_arity
        self._state = ffi.new("cf_decoder *")  # owned here; freed with this object
        init = lib.cf_init_skipping if skip_oversize else lib.cf_init
        init(self._state, 1 if self._gen_a else 0, max_frame_size, MAX_MAP_LEN)
        self._records = ffi.new("cf_frame[]", _BATCH)
        self._status = ffi.new("int *")
        self._raw = memoryview(ffi.buffer(self._records))
        self._fields = self._raw.cast("Q")
        self._buf: bytes | bytearray = b""  # bytes; a bytearray while a large frame is gathered
        self._end = 0  # bytes in _buf (a bytearray has room after them)
        self._spare: bytearray | None = None  # the last gathering buffer, for the next large frame
        #: While a payload is awaited: what is left of _buf, then every piece fed
        #: since, each copied in as it arrives (None otherwise; see _collect).
        self._pieces: io.BytesIO | None = None
        self._pieces_len = 0  # bytes fed after _buf[:_end], in _pieces
        self._wanted = 0  # stream offset C needs before it can go on (0: unknown)
        self._start = 0  # offset in _buf where the next frame to scan begins
        self._base = 0  # stream offset of _buf[0]
        self._ready: list[Record] = []  # the last batch decoded
        self._it = iter(self._ready)  # returns them, in order
        self._ready_base = 0  # stream offset of _buf[0] when the batch was decoded
        self._returned = 0  # stream offset of the end of the frames before the batch
        self._latent: DecodeError | None = None  # found by C, behind the ready frames
        self._complete = False  # the batch holds every frame complete in the buffer
        self._error: DecodeError | None = None  # raised; the decoder is dead

    @property
    def pending(self) -> int:
        """Bytes fed but not yet returned as part of a frame."""
        returned = self._returned
        taken = len(self._ready) - length_hint(self._it)
        if taken:  # the records of the batch stay in place until the next one
            returned = self._ready_base + self._fields[(taken - 1) * _FIELDS + _END]
        return self._base + self._end + self._pieces_len - returned

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._start == self._end and type(data) is bytes and self._pieces is None and self._error is None:
            # The usual read: every frame before it was complete and returned
            # (so C wants at most the next byte). The read becomes the buffer.
            if data:
                self._adopt(data)
            return
        if self._error is not None:
            raise self._error
        if type(data) is not bytes and type(data) is not bytearray:
            data = memoryview(data).cast("B")
        n = len(data)
        if not n:
            return
        if self._wanted:
            if self._base + self._end + self._pieces_len + n < self._wanted:
                # The frame cannot progress before `_wanted` (a payload is
                # arriving): collect the pieces until it can.
                self._collect(data)
                return
            if self._pieces is not None:
                self._collect(data)
                self._flush_pieces()
                return
        buf, start, end = self._buf, self._start, self._end
        left = end - start
        if left <= n:
            # The usual case: at most the head of a frame is left. Keep an
            # immutable buffer, from which payloads are sliced with one copy.
            if type(buf) is bytearray and len(buf) <= _SPARE_MAX:
                self._spare = buf
            buf = b"".join((memoryview(buf)[start:end], data)) if left else bytes(data)
            self._buf, self._end = buf, len(buf)
        elif isinstance(buf, bytes):
            # A frame arriving in pieces smaller than itself: gather it in a
            # bytearray with room to spare, instead of copying it on every feed.
            gather, self._spare = self._spare, None
            if gather is None or len(gather) < left + n:
                gather = bytearray(max(2 * (left + n), _GATHER_MIN))
            gather[:left] = memoryview(buf)[start:end]  # same-size slice assignments: plain copies
            gather[left : left + n] = data
            self._buf, self._end = gather, left + n
        elif end + n <= len(buf):
            buf[end : end + n] = data
            self._end = end + n
            return
        else:
            if start < left or left + n > len(buf):
                # Not enough consumed to move the rest to the front for free: grow.
                grown = bytearray(max(2 * (left + n), 2 * len(buf)))
                grown[:left] = memoryview(buf)[start:end]
                buf = grown
            else:
                buf[:left] = memoryview(buf)[start:end]  # no overlap: start >= left
            buf[left : left + n] = data
            self._buf, self._end = buf, left + n
        self._base += start
        self._start = 0

    def _collect(self, data: bytes | bytearray | memoryview) -> None:
        """Copy *data* behind what is collected for the awaited payload.

        Each piece is copied once, as it arrives, into a ``BytesIO``, whose
        ``getvalue()`` then hands over its own ``bytes``: a payload of N bytes
        peaks at N, where keeping the pieces to join them at the end peaked
        at 2 N (and left N of freed reads in the heap, where the C allocator
        keeps them resident).
        """
        pieces = self._pieces
        if pieces is None:
            pieces = self._pieces = io.BytesIO()
            pieces.write(memoryview(self._buf)[self._start : self._end])
        pieces.write(data)
        self._pieces_len += len(data)

    def _flush_pieces(self) -> None:
        """Make what is left of the buffer and the collected pieces the buffer (no copy)."""
        assert self._pieces is not None
        buf = self._buf
        if type(buf) is bytearray and len(buf) <= _SPARE_MAX:
            self._spare = buf
        joined = self._pieces.getvalue()
        self._pieces = None
        self._pieces_len = 0
        self._buf, self._end = joined, len(joined)
        self._base += self._start
        self._start = 0

    def _release(self) -> None:
        """Let go of a large buffer whose every frame was cut out of it: the
        payloads are copies, and the buffer would otherwise live until the next read."""
        self._adopt(b"")

    def _adopt(self, data: bytes) -> None:
        """Make *data* the buffer: everything before it was consumed."""
        buf = self._buf
        if type(buf) is bytearray and len(buf) <= _SPARE_MAX:
            self._spare = buf
        self._base += self._end
        self._buf, self._start, self._end = data, 0, len(data)

    def records(self, data: bytes | bytearray | memoryview) -> Iterator[Record]:
        """``feed(data)``, then the frames as records: one call per read (see :class:`~.codec.Decoder`)."""
        self.feed(data)
        return self._iter_records()

    def frames(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        """``feed(data)``, then ``iter(self)``: one call per read (see :class:`~.codec.Decoder`)."""
        return starmap(Frame, self.records(data))

    def next_frame(self) -> Frame | None:
        record = next(self._it, None)
        if record is None:
            if not self._refill():
                return None
            record = next(self._it)
        return Frame(*record)

    def __iter__(self) -> Iterator[Frame]:
        return starmap(Frame, self._iter_records())

    def _iter_records(self) -> Iterator[Record]:
        # The usual read: the previous batch is used up, and C finds every
        # frame now complete in one batch, with nothing wrong behind it. The
        # batch's own list iterator is then the whole iteration, without a
        # generator around it. (An error found by that decode is raised by
        # this call rather than by the first next(); a for loop sees no
        # difference.)
        if not length_hint(self._it):
            if not self._refill():
                return self._it  # empty
            if self._complete:
                return self._it
        return self._drain()

    def _drain(self) -> Iterator[Record]:
        while True:
            yield from self._it
            if not self._refill():
                return

    def _refill(self) -> bool:
        """Replace the exhausted batch with the next one; False if there is
        none. Raises the error found behind the last batch."""
        if self._error is not None:
            raise self._error
        if self._latent is not None:
            self._raise(self._latent)
        if self._base + self._end < self._wanted:
            return False  # C said what it needs, and it is not here yet
        self._decode()
        if self._ready:
            return True
        if self._latent is not None:
            self._raise(self._latent)
        return False

    def _decode(self) -> None:
        """Ask C for the next batch of frames; replace the used-up batch with it."""
        buf, start, base = self._buf, self._start, self._base
        self._returned = base + start  # every frame before here was returned
        if type(buf) is bytes:  # cffi passes bytes as a pointer to their data, no buffer object
            n = _next_many(self._state, buf, self._end, start, self._records, _BATCH, self._status)
        else:
            with ffi.from_buffer(buf) as ptr:
                n = _next_many(self._state, ptr, self._end, start, self._records, _BATCH, self._status)
        status = self._status[0]
        ready: list[Record] = []
        if 0 < n <= _FEW:
            # Most reads carry one or a few frames: read each record's hot
            # fields in one call (building columns costs more than it saves here).
            raw = self._raw
            cut = buf if type(buf) is bytes else _Copier(memoryview(buf))
            if self._gen_a:
                for at in _RECORDS_AT[n]:
                    elem0, elem1, end, nargs, off, size, _ = _HOT_FIELDS.unpack_from(raw, at)
                    # one raw (a chunk, an invoke), nothing (a choke, a heartbeat), or decoded
                    args = [cut[off : off + size]] if off else [] if not nargs else self._unpack_args(buf, at)
                    ready.append((elem1, elem0, args, None))
            else:
                for at in _RECORDS_AT[n]:
                    elem0, elem1, end, nargs, off, size, flags = _HOT_FIELDS.unpack_from(raw, at)
                    args = [cut[off : off + size]] if off else [] if not nargs else self._unpack_args(buf, at)
                    headers = self._unpack_headers(buf, at) if flags & _HAS_HEADERS else None
                    ready.append((elem0, elem1, args, headers))
            self._start = end
        elif n:
            # The records as columns, one list of ints per field used. A
            # payload_off is never 0 for a fast frame (the frame header comes
            # first) and always 0 otherwise: it doubles as the flag.
            fields = self._fields
            stop = n * _FIELDS
            elem0 = fields[_ELEM0:stop:_FIELDS].tolist()
            elem1 = fields[_ELEM1:stop:_FIELDS].tolist()
            p_offs = fields[_PAYLOAD_OFF:stop:_FIELDS].tolist()
            p_lens = fields[_PAYLOAD_LEN:stop:_FIELDS].tolist()
            # Equal lengths by construction (strict=True would re-check that per item).
            columns = zip(elem0, elem1, p_offs, p_lens)  # noqa: B905
            # Payloads are sliced from bytes directly, from a bytearray through a view.
            view = memoryview(buf)
            cut = buf if type(buf) is bytes else _Copier(view)
            try:
                if self._gen_a and 0 not in p_offs:  # a batch of chunks: the hot loop
                    ready = [(e1, e0, [cut[off : off + size]], None) for e0, e1, off, size in columns]
                elif self._gen_a:
                    # one raw (a chunk, an invoke), nothing (a choke), or decoded, as in the few path
                    ready = [
                        (
                            e1,
                            e0,
                            [cut[off : off + size]]
                            if off
                            else []
                            if not fields[at + _NARGS]
                            else self._unpack_field(buf, at + _ARGS_OFF),
                            None,
                        )
                        for at, (e0, e1, off, size) in zip(range(0, stop, _FIELDS), columns)  # noqa: B905
                    ]
                else:
                    ready = [
                        (
                            e0,
                            e1,
                            [cut[off : off + size]]
                            if off
                            else []
                            if not fields[at + _NARGS]
                            else self._unpack_field(buf, at + _ARGS_OFF),
                            self._unpack_field(buf, at + _HEADERS_OFF)
                            if fields[at + _FLAGS] & _HAS_HEADERS
                            else None,
                        )
                        for at, (e0, e1, off, size) in zip(range(0, stop, _FIELDS), columns)  # noqa: B905
                    ]
            finally:
                view.release()
            self._start = fields[stop - _FIELDS + _END]
        self._ready = ready
        self._it = iter(ready)
        self._ready_base = base
        if status == _NEED_DATA:
            self._complete = True
            start = self._start
            if start < self._end:
                # Past max_frame_size bytes C answers TOO_LARGE: ask it by then.
                self._wanted = base + start + min(lib.cf_wanted(self._state), self.max_frame_size + 1)
            else:
                self._wanted = base + start + 1  # nothing left: C wants the next frame's first byte
                if start > _GATHER_MIN:
                    self._release()
        else:
            self._complete = False
            self._wanted = 0
            if status < 0:
                self._latent = self._make_error(status)
            elif status != _FRAME:
                self._skipped(n, status)

    def _skipped(self, n: int, status: int) -> None:
        """Rule 5c: C reported an oversize frame (record *n*) or skipped bytes
        of one; either way they are dropped, not buffered. (Off the per-frame
        path: C ends a batch there.)"""
        at = n * _FIELDS
        fields = self._fields
        if status == _OVERSIZE:
            e0, e1, size = fields[at + _ELEM0], fields[at + _ELEM1], fields[at + _PAYLOAD_LEN]
            record = (e1, OVERSIZE, [e0, size], None) if self._gen_a else (e0, OVERSIZE, [e1, size], None)
            self._ready.append(record)
        self._start = fields[at + _END]
        if not self._ready:  # nothing to hand out: go on at once
            self._decode()

    def _unpack_args(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the args slice of the record at byte offset *at*."""
        return self._unpack_field(buf, at // 8 + _ARGS_OFF)

    def _unpack_headers(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the headers slice of the record at byte offset *at*."""
        return self._unpack_field(buf, at // 8 + _HEADERS_OFF)

    def _unpack_field(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the args (or headers) slice whose offset is record field *at*
        (its length is the next field), through a view released at once."""
        off, length = self._fields[at], self._fields[at + 1]
        with memoryview(buf) as view:
            return _unpack_slice(view[off : off + length])

    def _make_error(self, status: int) -> DecodeError:
        kind = ERRORS.get(status)
        what = ffi.string(lib.cf_strerror(status)).decode()
        offset = self._base + self._start
        if kind is None:  # pragma: no cover - CF_E_USAGE means a bug on this side
            raise AssertionError(f"cf_next: {what} ({status})")
        if kind is FrameTooLargeError:
            what = f"frame, array, map or string over its limit (max_frame_size {self.max_frame_size})"
        return kind(f"{what} (frame at stream offset {offset})")

    def _raise(self, error: DecodeError) -> NoReturn:
        self._latent = None
        self._error = error
        raise error

    def __repr__(self) -> str:
        state = f"failed: {type(self._error).__name__}" if self._error else f"pending={self.pending}"
        return f"<NativeDecoder {self.generation.name} {state}>"
