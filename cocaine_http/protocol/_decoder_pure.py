"""The pure-Python decoder: msgpack's Unpacker plus the frame rules.

The twin of the C scanner in ``native/`` (see native/README.md for the rules
both implement). The Unpacker does the msgpack work incrementally: it keeps
its parse state between ``feed`` calls, so a large frame arriving in many
small pieces is parsed once. This class adds what the Unpacker does not know:

* which of its exceptions is which :class:`~cocaine_http.errors.DecodeError`;
* the frame size limit: a frame that has not ended within its first
  ``max_frame_size`` bytes while more bytes are buffered is too large, and so
  is one holding a raw or ext whose declared body would end past them, as
  soon as its header is in (found by a walk over the open frame's tokens);
* the frame shape, judged on the complete top-level value;
* the ban on ext where the Unpacker does not call ``ext_hook`` (timestamps);
* like the C decoder, a large payload (the single raw of a frame's args)
  still arriving is collected by itself (:mod:`.payloads`): the Unpacker is
  given an empty string in its place, so neither it nor the walk holds the
  payload while it arrives, and it is put back into the frame once decoded.

The Unpacker is only ever given the first ``max_frame_size`` bytes of the
current frame (the rest is held back until the frame is done), exactly the
window the C scanner looks at; so nothing past the limit can decide the
verdict, and the verdict does not depend on how the stream was split.

The Unpacker's own limits are set so that they fire exactly where the C
scanner's do: arrays longer than ``max_frame_size`` elements and maps longer
than :data:`~.wire.MAX_MAP_LEN` entries at their header; nesting deeper than
its 1024-entry stack at the container header that would exceed it. Its
string, binary and buffer limits are lifted out of the way, because the C
extension checks those only once a body is complete; the declared-length
walk and the frame size rule decide instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import starmap
from typing import Any, NoReturn

import msgpack
from msgpack import Timestamp

from ..errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from .frames import OVERSIZE, Frame, Generation, Record, check_max_frame_size
from .payloads import COLLECT_MIN, PayloadCollector, SplitPayload
from .wire import MAX_MAP_LEN, reject_ext

__all__ = ["PureDecoder"]

_NO_LIMIT = sys.maxsize
_MAX_ARRAY32 = 2**32 - 1
_ARRAY_HEADERS = frozenset((*range(0x90, 0xA0), 0xDC, 0xDD))
_PLACEHOLDER = b"\xa0"  # an empty str: stands for a skipped raw (rule 5c) or a collected payload
_ARRAY_OF_ONE = (0xDC, 0xDD)  # array16, array32: of one item when their count says so
#: The first bytes of the ids a payload's frame may start with: ints. A frame
#: with other ids is refused once complete, by both decoders alike; the twin
#: just does not collect its payload first (C does).
_INT_TOKENS = frozenset((*range(0x80), *range(0xCC, 0xD4), *range(0xE0, 0x100)))

# Token shapes for _check_declared: bytes that are a whole token; fixed-size
# scalars and fixext (header bytes, body bytes, whether the body counts as
# declared: ext does); length-prefixed tokens (header bytes, kind: 0
# raw/str/bin, 1 ext, 2 container).
_ONE_BYTE = frozenset((0xC0, 0xC1, 0xC2, 0xC3))
_RAW_TOKENS = frozenset((*range(0xA0, 0xC0), 0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB))  # fixstr, bin, str
_SIZED = {
    0xCA: (1, 4, False), 0xCB: (1, 8, False),
    0xCC: (1, 1, False), 0xCD: (1, 2, False), 0xCE: (1, 4, False), 0xCF: (1, 8, False),
    0xD0: (1, 1, False), 0xD1: (1, 2, False), 0xD2: (1, 4, False), 0xD3: (1, 8, False),
    0xD4: (1, 2, True), 0xD5: (1, 3, True), 0xD6: (1, 5, True), 0xD7: (1, 9, True), 0xD8: (1, 17, True),
}  # fmt: skip
_DECLARED = {
    0xC4: (2, 0), 0xC5: (3, 0), 0xC6: (5, 0), 0xD9: (2, 0), 0xDA: (3, 0), 0xDB: (5, 0),
    0xC7: (2, 1), 0xC8: (3, 1), 0xC9: (5, 1),
    0xDC: (3, 2), 0xDD: (5, 2), 0xDE: (3, 2), 0xDF: (5, 2),
}  # fmt: skip


def _has_timestamp(items: list[Any]) -> bool:
    """Whether a decoded frame holds a :class:`msgpack.Timestamp` anywhere.

    The Unpacker decodes a well-formed timestamp (ext type -1) by itself,
    without asking ``ext_hook``, so those are found here, in the complete
    frame; the C scanner defers its verdict on them to the same moment.
    """
    stack = [items]
    while stack:
        for item in stack.pop():
            kind = type(item)
            if kind is list:
                stack.append(item)
            elif kind is dict:
                stack.append(list(item))
                stack.append(list(item.values()))
            elif kind is Timestamp:
                return True
    return False


class PureDecoder:
    """Incremental frame decoder on top of :class:`msgpack.Unpacker`."""

    def __init__(
        self,
        generation: Generation,
        *,
        max_frame_size: int,
        skip_oversize: bool = False,
        split_min: int = 0,
        collect_min: int = COLLECT_MIN,
    ) -> None:
        """*split_min* and *collect_min* as for the native decoder (0: never)."""
        self.generation = generation
        self.max_frame_size = check_max_frame_size(max_frame_size)
        self._gen_a = generation.exact_arity
        self._unpacker = self._new_unpacker()
        # Rule 5c (skip_oversize): a frame reported oversize is finished by an
        # Unpacker given its head with the raw replaced by _PLACEHOLDER, then
        # its tail; _shift maps that Unpacker's tell() to stream offsets.
        self._skip_oversize = skip_oversize
        self._head = b""  # what that Unpacker was given for the frame before its tail
        self._discard = False  # the current frame was reported oversize
        self._shift = 0
        self._report: Record | None = None
        self._fed = 0  # stream offset of the end of the bytes fed to us
        self._given = 0  # stream offset of the end of the bytes given to the Unpacker
        self._consumed = 0  # stream offset where the current frame begins
        self._held = bytearray()  # bytes fed but past the current frame's window
        self._error: DecodeError | None = None
        # The header scan of an incomplete frame (see _check_declared): the bytes
        # given to the Unpacker from stream offset _recent_at on, and where the
        # scan of the frame starting at _scan_frame stopped.
        self._recent = bytearray()
        self._recent_at = 0
        self._scan_frame = -1
        self._scan_pos = 0
        self._scan_token = 0  # tokens walked in that frame, while they may lead to a payload (-1: not)
        # A raw's body kept out of the Unpacker as it is fed: bytes still to
        # come, and where they go: dropped (an oversize raw, rule 5c) or into a
        # collector (a large payload, see _start_collect); then the payload,
        # until its frame is decoded.
        self._diverted = 0
        self._collector: PayloadCollector | None = None
        self._payload: bytes | SplitPayload | None = None
        self._collect_min = collect_min
        self._split_min = split_min

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            ext_hook=reject_ext,
            max_buffer_size=_NO_LIMIT,
            max_str_len=_NO_LIMIT,
            max_bin_len=_NO_LIMIT,
            max_array_len=min(self.max_frame_size, _MAX_ARRAY32),
            max_map_len=MAX_MAP_LEN,
        )

    @property
    def pending(self) -> int:
        """Bytes fed but not yet returned as part of a frame."""
        return max(0, self._fed - self._consumed)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B")
        n = len(data)
        if self._diverted:
            take = self._divert(data)
            data = memoryview(data)[take:]
            n -= take
        room = self._consumed + self.max_frame_size - self._given
        if n <= room and not self._held:
            self._unpacker.feed(data)
            self._recent += data
            self._given += n
        elif room > 0 and not self._held:
            self._unpacker.feed(data[:room])
            self._recent += data[:room]
            self._given += room
            self._held += data[room:]
        else:
            self._held += data
        self._fed += n

    def _divert(self, data: bytes | bytearray | memoryview) -> int:
        """Drop or collect the share of *data* that belongs to the raw's body
        kept out of the Unpacker; returns the share's size."""
        take = min(self._diverted, len(data))
        self._diverted -= take
        self._fed += take
        collector = self._collector
        if collector is not None:
            collector.write(data if take == len(data) else memoryview(data)[:take])
            if not self._diverted:
                self._payload, self._collector = collector.value(), None
        return take

    def _refill(self) -> None:
        """Give the Unpacker the held bytes that fall in the current frame's window."""
        room = self._consumed + self.max_frame_size - self._given
        if room > 0:
            held = self._held
            take = held[:room]
            del held[:room]
            self._unpacker.feed(take)
            self._recent += take
            self._given += len(take)

    def next_frame(self) -> Frame | None:
        record = self._next_record()
        return None if record is None else Frame(*record)

    def _next_record(self) -> Record | None:
        if self._error is not None:
            raise self._error
        if self._diverted:
            return None
        if self._held:
            self._refill()
        unpacker = self._unpacker
        try:
            obj = unpacker.unpack()
        except msgpack.OutOfData:
            if self._given > self._consumed:
                if self._check_declared():  # an oversize raw, to be skipped
                    report, self._report = self._report, None
                    return report if report is not None else self._next_record()
            else:
                self._recent.clear()
                self._recent_at = self._given
            if self._fed - self._consumed > self.max_frame_size:
                self._fail(FrameTooLargeError, f"frame exceeds {self.max_frame_size} bytes")
            return None
        except msgpack.StackError:
            self._fail(FrameTooDeepError, "frame nested deeper than 1024 containers")
        except msgpack.FormatError:
            self._fail(MalformedMessageError, "not msgpack (reserved byte 0xc1)")
        except ValueError as exc:
            text = str(exc)
            if "max_array_len" in text or "max_map_len" in text:
                self._fail(FrameTooLargeError, f"container over its limit: {text}")
            self._fail(MalformedMessageError, f"bad msgpack value: {text}")
        except TypeError as exc:
            # A map key that Python cannot hash (an array or a map).
            self._fail(FrameFormatError, f"unusable map key: {exc}")
        except RecursionError:  # msgpack's pure-Python fallback has no StackError
            self._fail(FrameTooDeepError, "frame nested too deep")
        except MemoryError:  # a huge declared array the allocator refused
            self._fail(FrameTooLargeError, "container too large to allocate")
        end = unpacker.tell() + self._shift  # <= self._consumed + max_frame_size: the Unpacker saw no further
        if type(obj) is not list:
            # (a top-level map is searched too: C finds its timestamps before the shape)
            if type(obj) is Timestamp or _has_timestamp([obj]):
                self._fail(MalformedMessageError, "msgpack ext (timestamp) is not allowed")
            self._fail(FrameFormatError, f"frame is a {type(obj).__name__}, not an array")
        if _has_timestamp(obj):
            self._fail(MalformedMessageError, "msgpack ext (timestamp) is not allowed")
        n = len(obj)
        if n < 3 or (n != 3 and self._gen_a):
            self._fail(FrameFormatError, f"frame has {n} elements")
        first, second, args = obj[0], obj[1], obj[2]
        if type(first) is not int or type(second) is not int or first < 0 or second < 0:
            self._fail(FrameFormatError, "frame ids must be non-negative integers")
        if type(args) is not list:
            self._fail(FrameFormatError, "frame args must be an array")
        if self._gen_a:
            record: Record = (second, first, args, None)
        else:
            headers = None
            if n > 3:
                headers = obj[3]
                if type(headers) is not list:
                    self._fail(FrameFormatError, "frame headers must be an array")
            record = (first, second, args, headers)
        self._consumed = end
        return self._raw_back(record) if self._head else record

    def _raw_back(self, record: Record) -> Record | None:
        """A frame a raw was kept out of (its Unpacker had the placeholder):
        dropped if it was reported oversize, else with its payload back."""
        self._head = b""
        if self._discard:
            return self._discarded()
        record[2][0], self._payload = self._payload, None
        return record

    def _discarded(self) -> Record | None:
        """The frame reported oversize passed its checks: drop it, go on."""
        self._discard = False
        self._payload = None
        return self._next_record()

    def _oversize_ok(self, head: bytes) -> bool:
        """Rule 5c, as the C scanner decides it: *head* (the frame up to the
        oversize raw's header) is a top-level array of the right arity whose
        elements 0 and 1 are ints >= 0, and the raw lies inside element 2 or 3,
        both arrays. The Unpacker found nothing wrong in *head*."""
        u = msgpack.Unpacker(
            raw=True, strict_map_key=False, max_buffer_size=_NO_LIMIT, max_str_len=_NO_LIMIT,
            max_bin_len=_NO_LIMIT, max_array_len=_MAX_ARRAY32, max_map_len=_MAX_ARRAY32,
        )  # fmt: skip
        u.feed(head)
        try:
            if not head or head[0] not in _ARRAY_HEADERS:
                return False
            n = u.read_array_header()
            if self._gen_a and n != 3:
                return False
            for _ in range(2):
                value = u.unpack()
                if type(value) is not int or value < 0:
                    return False
            for _ in range(2):  # element 2, then 3
                at = u.tell()
                if at >= len(head) or head[at] not in _ARRAY_HEADERS:
                    return False
                try:
                    u.skip()
                except msgpack.OutOfData:
                    return True  # the raw is inside this array
        except msgpack.OutOfData:
            return False
        return False

    def _start_skip(self, first: bytes, pos: int, hdr: int, body: int) -> None:
        """Report the current frame oversize (once) and skip the raw at stream
        offset *pos*, *first* being the frame before it: drop its body, finish
        the frame with a placeholder."""
        if not self._discard:
            u = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=_NO_LIMIT)
            u.feed(first)
            u.read_array_header()
            e0, e1 = u.unpack(), u.unpack()
            self._report = (
                (e1, OVERSIZE, [e0, body], None) if self._gen_a else (e0, OVERSIZE, [e1, body], None)
            )
        self._discard = True
        end = pos + hdr + body
        self._resume_after(first + _PLACEHOLDER, end)
        held = self._held
        drop = end - self._given
        if drop >= len(held):
            self._diverted = drop - len(held)
            held.clear()
        else:
            del held[:drop]
        self._given = self._consumed = end
        self._scan_frame = -1

    def _tail(self) -> int:
        """Stream offset of the current frame's bytes after :attr:`_head` (its start if none)."""
        return self._shift + len(self._head) if self._head else self._consumed

    def _frame_before(self, pos: int) -> bytes:
        """The current frame up to stream offset *pos*, as its Unpacker was
        given it (a raw kept out of it already in :attr:`_head`, as a placeholder)."""
        base = self._recent_at
        return self._head + bytes(self._recent[self._tail() - base : pos - base])

    def _resume_after(self, head: bytes, end: int) -> None:
        """A new Unpacker for the current frame: given *head* now, then the
        bytes from stream offset *end* on (the raw before it kept out)."""
        self._head = head
        self._unpacker = self._new_unpacker()
        self._unpacker.feed(head)
        self._shift = end - len(head)
        self._recent = bytearray()
        self._recent_at = end

    def _start_collect(self, pos: int, hdr: int, body: int) -> None:
        """Collect the payload whose header is at stream offset *pos* (see
        _check_declared) apart from the frame: its bytes given so far go to a
        collector, and a new Unpacker gets the frame's head and a placeholder,
        then the bytes after the payload."""
        start = pos + hdr
        end = start + body
        self._collector = PayloadCollector(body, split=0 < self._split_min <= body)
        self._collector.write(memoryview(self._recent)[start - self._recent_at :])
        self._diverted = end - self._given
        self._given = end
        self._resume_after(self._frame_before(pos) + _PLACEHOLDER, end)
        self._scan_pos = end
        self._scan_token = -1

    def _check_declared(self) -> bool:
        """Refuse, at its header, a raw or ext of the incomplete current frame
        whose body would end past the frame's window (rule 5b of native/README.md).

        The Unpacker only says "out of data", so the tokens of the incomplete
        frame are walked here: every byte given to the Unpacker since the frame
        began belongs to it, and the Unpacker found no error in the complete
        tokens, so only token boundaries matter. The walk resumes where it
        stopped and skips raw bodies, so a frame arriving in pieces is walked
        once; only the bytes after that point are kept.
        """
        frame = self._consumed
        if self._scan_frame != frame:
            self._scan_frame, self._scan_pos = frame, frame
            self._scan_token = 0 if self._collect_min and not self._discard else -1
        pos, base, given = self._scan_pos, self._recent_at, self._given
        limit = frame + self.max_frame_size
        buf = self._recent
        token = self._scan_token
        while pos < given:
            at = pos - base
            b = buf[at]
            hdr, body, declared = 1, 0, False
            count = -1  # a container header's count
            if b <= 0x9F or b >= 0xE0 or b in _ONE_BYTE:
                pass  # fixint, fixmap, fixarray, nil, bool, 0xc1 (the Unpacker judged it)
            elif b <= 0xBF:
                body, declared = b & 0x1F, True
            elif b in _SIZED:
                hdr, body, declared = _SIZED[b]
            else:
                hdr, kind = _DECLARED[b]
                if given - pos < hdr:
                    break
                body = int.from_bytes(buf[at + 1 : at + hdr], "big")
                if kind == 1:  # ext: a type byte, then the data
                    body = (body + 1) & 0xFFFFFFFF if b == 0xC9 else body + 1
                elif kind == 2:  # a container header: its elements follow
                    count, body = body, 0
                declared = kind != 2
            if declared and pos + hdr + body > limit:
                first = self._frame_before(pos) if self._skip_oversize and b in _RAW_TOKENS else None
                if first is not None and self._oversize_ok(first):
                    self._start_skip(first, pos, hdr, body)
                    return True
                self._fail(
                    FrameTooLargeError,
                    f"a string or ext declares {body} bytes, past max_frame_size {self.max_frame_size}",
                )
            if token >= 0:  # a payload's frame so far: [int, int, [raw (see _start_collect)
                if token == 4:
                    if b in _RAW_TOKENS and body >= self._collect_min and pos + hdr + body > given:
                        self._start_collect(pos, hdr, body)
                        return False
                    token = -1
                elif token == 0:
                    token = 1 if b in _ARRAY_HEADERS else -1
                elif token < 3:
                    token = token + 1 if b in _INT_TOKENS else -1
                else:
                    token = 4 if b == 0x91 or (b in _ARRAY_OF_ONE and count == 1) else -1
            pos += hdr + body
        self._scan_pos = pos
        self._scan_token = token
        # With skip_oversize, rule 5c needs the frame from its start (at most
        # max_frame_size bytes, the window), and so does a payload's frame until
        # its payload's header; otherwise only what is not walked yet.
        keep = self._tail() if self._skip_oversize or token >= 0 else min(pos, given)
        del buf[: keep - base]
        self._recent_at = keep
        return False

    def __iter__(self) -> Iterator[Frame]:
        return starmap(Frame, self._drain())

    def frames(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        """``feed(data)``, then ``iter(self)``: one call per read (see :class:`~.codec.Decoder`)."""
        self.feed(data)
        return iter(self)

    def records(self, data: bytes | bytearray | memoryview) -> Iterator[Record]:
        """``feed(data)``, then the frames as records: one call per read (see :class:`~.codec.Decoder`)."""
        self.feed(data)
        return self._drain()

    def _drain(self) -> Iterator[Record]:
        while (record := self._next_record()) is not None:
            yield record

    def _fail(self, kind: type[DecodeError], what: str) -> NoReturn:
        self._error = kind(f"{what} (frame at stream offset {self._consumed})")
        raise self._error

    def __repr__(self) -> str:
        state = f"failed: {type(self._error).__name__}" if self._error else f"pending={self.pending}"
        return f"<PureDecoder {self.generation.name} {state}>"
