"""The C decoder: ``native/cocaine_frame.c`` through cffi, plus frame building.

C finds frames and checks them (see native/README.md for the rules, shared
with the pure twin); Python turns each reported frame into a record, a plain
tuple (:data:`~.frames.Record`), which ``records()`` hands out as it is and
the other ways of reading wrap in a :class:`~.frames.Frame`. Args and
headers are decoded from the byte slices C reports with ``msgpack.unpackb``,
except in the two common cases: args is exactly one raw (every chunk and
invoke), whose payload is copied out of the buffer once and never decoded,
or empty (every choke and heartbeat), which needs no decoding either. Such
a payload of :data:`COLLECT_MIN` bytes or more that spans reads is collected
by itself as it arrives (C reports it at its header, ``CF_PAYLOAD``), each
read copied once into where it stays (:mod:`.payloads`).

C is asked for up to :data:`_BATCH` frames per call and its reports are read
as one flat list of integers; frames decoded ahead wait in a queue, and an
error found behind them is raised only once they have been returned, so the
observable behaviour is the same as decoding one frame per call.

Importing this module raises :class:`ImportError` when the extension was not
built; :mod:`.codec` then falls back to the pure twin.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from itertools import starmap
from operator import length_hint
from typing import Any, NoReturn

from .._native import ffi, lib  # type: ignore[import-not-found, unused-ignore]
from ..errors import DecodeError
from ._native_records import (
    ARGS_OFF,
    ELEM0,
    ELEM1,
    END,
    ERRORS,
    FEW,
    FIELDS,
    FLAGS,
    HEADERS_OFF,
    HOT_FIELDS,
    NARGS,
    PAYLOAD_LEN,
    PAYLOAD_OFF,
    RECORDS_AT,
    Copier,
    decode_error,
    unpack_slice,
)
from .frames import OVERSIZE, Frame, Generation, Record, check_max_frame_size
from .payloads import COLLECT_MIN, PayloadCollector, SplitPayload
from .wire import MAX_MAP_LEN

__all__ = ["ERRORS", "NativeDecoder"]

#: Frames per C call. Measured, not tuned by guess: bench/worker_floor.py
#: --callgrind, A 16 B x 256 (the real socket), 128: 78.1K instr/request,
#: 256: 78.3K, 512: 79.1K (the batch's records are all built before the
#: first is used, and the collector walks them); in process, 64 requests
#: per read (bench/worker_pipeline.py --batch 64), 256 and 512 save 1.4 %.
_BATCH = 128
#: Called once per read: a global is found faster than an attribute of cffi's ``lib``.
_next_many = lib.cf_next_many
_GATHER_MIN = 256 * 1024  # smallest gathering buffer
_SPARE_MAX = 16 * 1024 * 1024  # largest gathering buffer kept for reuse
_HAS_HEADERS = lib.CF_HAS_HEADERS
_NEED_DATA = lib.CF_NEED_DATA
_FRAME = lib.CF_FRAME
_OVERSIZE = lib.CF_OVERSIZE
_SKIPPED = lib.CF_SKIPPED
_PAYLOAD = lib.CF_PAYLOAD
_PAYLOAD_FRAME = lib.CF_PAYLOAD_FRAME


class NativeDecoder:
    """Incremental frame decoder backed by the C scanner."""

    def __init__(
        self,
        generation: Generation,
        *,
        max_frame_size: int,
        skip_oversize: bool = False,
        split_min: int = 0,
        collect_min: int = COLLECT_MIN,
    ) -> None:
        """*split_min*: the smallest payload handed out as a :class:`~.payloads.SplitPayload`
        when it has that shape; *collect_min*: the smallest collected by itself while it
        arrives (0: never, for either; the tests set it low to fuzz the collection)."""
        self.generation = generation
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self._gen_a = generation.exact_arity
        self._state = ffi.new("cf_decoder *")  # owned here; freed with this object
        init = lib.cf_init_skipping if skip_oversize else lib.cf_init
        init(self._state, 1 if self._gen_a else 0, max_frame_size, MAX_MAP_LEN)
        lib.cf_collect_payloads(self._state, collect_min)
        self._records = ffi.new("cf_frame[]", _BATCH)
        self._status = ffi.new("int *")
        self._raw = memoryview(ffi.buffer(self._records))
        self._fields = self._raw.cast("Q")
        self._buf: bytes | bytearray = b""  # bytes; a bytearray while a large frame is gathered
        self._end = 0  # bytes in _buf (a bytearray has room after them)
        self._spare: bytearray | None = None  # the last gathering buffer, for the next large frame
        #: While a payload is awaited: what is left of _buf, then every piece fed
        #: since, each copied in as it arrives (None otherwise; see _collect).
        #: While C's CF_PAYLOAD is collected, the payload alone (a PayloadCollector).
        self._pieces: io.BytesIO | PayloadCollector | None = None
        self._pieces_len = 0  # bytes fed after _buf[:_end], in _pieces
        self._split_min = split_min
        self._payload: bytes | SplitPayload | None = None  # collected; its frame's tail is being scanned
        #: Bytes of that frame taken out of the buffer (head and payload), not
        #: returned yet (read only once the payload is in: C is not called before)
        self._taken = 0
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
            returned = self._ready_base + self._fields[(taken - 1) * FIELDS + END]
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
            if type(self._pieces) is PayloadCollector:
                self._end_payload(data)
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
        assert isinstance(self._pieces, io.BytesIO)
        buf = self._buf
        if type(buf) is bytearray and len(buf) <= _SPARE_MAX:
            self._spare = buf
        joined = self._pieces.getvalue()
        self._pieces = None
        self._pieces_len = 0
        self._buf, self._end = joined, len(joined)
        self._base += self._start
        self._start = 0

    def _start_payload(self, head_end: int, size: int) -> None:
        """C reported a payload of *size* bytes from ``_buf[head_end]`` on
        (CF_PAYLOAD): collect it by itself; C is not called again before it is in."""
        buf, base = self._buf, self._base
        self._taken = head_end - self._start + size
        payload = self._pieces = PayloadCollector(size, split=0 < self._split_min <= size)
        with memoryview(buf) as view:
            payload.write(view[head_end : self._end])
        self._adopt(b"")  # what was left of the buffer is in the payload
        self._pieces_len = 0
        self._wanted = base + head_end + size

    def _end_payload(self, data: bytes | bytearray | memoryview) -> None:
        """*data* completes the payload being collected: the rest of it is the buffer."""
        assert isinstance(self._pieces, PayloadCollector)
        need = self._wanted - (self._base + self._end + self._pieces_len)
        with memoryview(data) as view:
            self._pieces.write(view[:need])
            rest = bytes(view[need:])
        self._payload = self._pieces.value()
        self._pieces = None
        self._pieces_len = 0
        self._base = self._wanted
        self._buf, self._start, self._end = rest, 0, len(rest)

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
        self._returned = base + start - self._taken  # every frame before here was returned
        if type(buf) is bytes:  # cffi passes bytes as a pointer to their data, no buffer object
            n = _next_many(self._state, buf, self._end, start, self._records, _BATCH, self._status)
        else:
            with ffi.from_buffer(buf) as ptr:
                n = _next_many(self._state, ptr, self._end, start, self._records, _BATCH, self._status)
        status = self._status[0]
        ready: list[Record] = []
        if 0 < n <= FEW:
            # Most reads carry one or a few frames: read each record's hot
            # fields in one call (building columns costs more than it saves
            # here). callgrind, records() of a read of invoke + 16 B chunk +
            # choke: 25.6K instr/read this way, 37.4K as columns (A; B 26.3K, 38.6K).
            raw = self._raw
            cut = buf if type(buf) is bytes else Copier(memoryview(buf))
            if self._gen_a:
                for at in RECORDS_AT[n]:
                    elem0, elem1, end, nargs, off, size, _ = HOT_FIELDS.unpack_from(raw, at)
                    # one raw (a chunk, an invoke), nothing (a choke, a heartbeat), or decoded
                    args = [cut[off : off + size]] if off else [] if not nargs else self._unpack_args(buf, at)
                    ready.append((elem1, elem0, args, None))
            else:
                for at in RECORDS_AT[n]:
                    elem0, elem1, end, nargs, off, size, flags = HOT_FIELDS.unpack_from(raw, at)
                    args = [cut[off : off + size]] if off else [] if not nargs else self._unpack_args(buf, at)
                    headers = self._unpack_headers(buf, at) if flags & _HAS_HEADERS else None
                    ready.append((elem0, elem1, args, headers))
            self._start = end
        elif n:
            # The records as columns, one list of ints per field used. A
            # payload_off is never 0 for a fast frame (the frame header comes
            # first) and always 0 otherwise: it doubles as the flag.
            fields = self._fields
            stop = n * FIELDS
            elem0 = fields[ELEM0:stop:FIELDS].tolist()
            elem1 = fields[ELEM1:stop:FIELDS].tolist()
            p_offs = fields[PAYLOAD_OFF:stop:FIELDS].tolist()
            p_lens = fields[PAYLOAD_LEN:stop:FIELDS].tolist()
            # Equal lengths by construction (strict=True would re-check that per item).
            columns = zip(elem0, elem1, p_offs, p_lens)  # noqa: B905
            # Payloads are sliced from bytes directly, from a bytearray through a view.
            view = memoryview(buf)
            cut = buf if type(buf) is bytes else Copier(view)
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
                            if not fields[at + NARGS]
                            else self._unpack_field(buf, at + ARGS_OFF),
                            None,
                        )
                        for at, (e0, e1, off, size) in zip(range(0, stop, FIELDS), columns)  # noqa: B905
                    ]
                else:
                    ready = [
                        (
                            e0,
                            e1,
                            [cut[off : off + size]]
                            if off
                            else []
                            if not fields[at + NARGS]
                            else self._unpack_field(buf, at + ARGS_OFF),
                            self._unpack_field(buf, at + HEADERS_OFF)
                            if fields[at + FLAGS] & _HAS_HEADERS
                            else None,
                        )
                        for at, (e0, e1, off, size) in zip(range(0, stop, FIELDS), columns)  # noqa: B905
                    ]
            finally:
                view.release()
            self._start = fields[stop - FIELDS + END]
        self._ready = ready
        self._it = iter(ready)
        self._ready_base = base
        if status == _NEED_DATA:
            self._complete = True
            start = self._start
            if start < self._end:
                # Past max_frame_size bytes C answers TOO_LARGE: ask it by then.
                window = self.max_frame_size + 1 - self._taken
                self._wanted = base + start + min(lib.cf_wanted(self._state), window)
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
                self._reported(n, status)

    def _reported(self, n: int, status: int) -> None:
        """C ended the batch with record *n* of another kind than a frame.
        (Off the per-frame path.)

        - CF_PAYLOAD: a large payload is arriving; it is collected by itself.
        - CF_PAYLOAD_FRAME: the frame whose payload was collected is complete.
        - Rule 5c: an oversize frame (CF_OVERSIZE) or skipped bytes of one
          (CF_SKIPPED); either way they are dropped, not buffered.
        """
        at = n * FIELDS
        fields = self._fields
        if status == _PAYLOAD:
            self._start_payload(fields[at + END], fields[at + PAYLOAD_LEN])
            return
        e0, e1 = fields[at + ELEM0], fields[at + ELEM1]
        if status == _PAYLOAD_FRAME:  # (first in its batch: C scanned its tail first)
            payload, self._payload = self._payload, None
            if self._gen_a:
                record: Record = (e1, e0, [payload], None)
            else:
                has_headers = fields[at + FLAGS] & _HAS_HEADERS
                headers = self._unpack_field(self._buf, at + HEADERS_OFF) if has_headers else None
                record = (e0, e1, [payload], headers)
            # A list of its own hands it out, and lets go of it once taken: the
            # batch stays until the next read (for `pending`), the payload must not.
            self._it = iter([record])
            self._ready.append((record[0], record[1], [], None))  # counted, not handed out
            self._taken = 0
            self._start = fields[at + END]
            return
        if status == _OVERSIZE:
            size = fields[at + PAYLOAD_LEN]
            record = (e1, OVERSIZE, [e0, size], None) if self._gen_a else (e0, OVERSIZE, [e1, size], None)
            self._ready.append(record)
            self._payload = None  # collected for a frame that is dropped after all
            self._taken = 0
        self._start = fields[at + END]
        if not self._ready:  # nothing to hand out: go on at once
            self._decode()

    def _unpack_args(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the args slice of the record at byte offset *at*."""
        return self._unpack_field(buf, at // 8 + ARGS_OFF)

    def _unpack_headers(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the headers slice of the record at byte offset *at*."""
        return self._unpack_field(buf, at // 8 + HEADERS_OFF)

    def _unpack_field(self, buf: bytes | bytearray, at: int) -> Any:
        """Decode the args (or headers) slice whose offset is record field *at*
        (its length is the next field), through a view released at once."""
        off, length = self._fields[at], self._fields[at + 1]
        with memoryview(buf) as view:
            return unpack_slice(view[off : off + length])

    def _make_error(self, status: int) -> DecodeError:
        return decode_error(status, self._base + self._start - self._taken, self.max_frame_size)

    def _raise(self, error: DecodeError) -> NoReturn:
        self._latent = None
        self._error = error
        raise error

    def __repr__(self) -> str:
        state = f"failed: {type(self._error).__name__}" if self._error else f"pending={self.pending}"
        return f"<NativeDecoder {self.generation.name} {state}>"
