"""The pure-Python decoder: msgpack's Unpacker plus the frame-shape rules.

PRELIMINARY: correct on valid input; the limit semantics must be made to
match the C decoder exactly (see native/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from ..errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from .frames import Frame, Generation
from .wire import MAX_MAP_LEN, reject_ext

__all__ = ["PureDecoder"]


class PureDecoder:
    def __init__(self, generation: Generation, *, max_frame_size: int) -> None:
        self.generation = generation
        self.max_frame_size = max_frame_size
        self._unpacker = msgpack.Unpacker(
            raw=True,
            strict_map_key=False,
            ext_hook=reject_ext,
            max_buffer_size=2**31 - 1,
            max_map_len=MAX_MAP_LEN,
        )
        self._fed = 0
        self._consumed = 0
        self._error: DecodeError | None = None

    @property
    def pending(self) -> int:
        return self._fed - self._consumed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self._unpacker.feed(data)
        self._fed += len(data)

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        try:
            obj = self._unpacker.unpack()
        except msgpack.OutOfData:
            if self.pending > self.max_frame_size:
                self._fail(FrameTooLargeError(f"frame exceeds {self.max_frame_size} bytes"))
            return None
        except msgpack.StackError as exc:
            self._fail(FrameTooDeepError(f"frame nested too deep: {exc}"))
        except (msgpack.FormatError, msgpack.ExtraData) as exc:
            self._fail(MalformedMessageError(f"malformed msgpack: {exc}"))
        except (ValueError, TypeError) as exc:
            self._fail(MalformedMessageError(f"malformed msgpack: {exc}"))
        end = self._unpacker.tell()
        size = end - self._consumed
        self._consumed = end
        if size > self.max_frame_size:
            self._fail(FrameTooLargeError(f"frame of {size} bytes exceeds {self.max_frame_size}"))
        return self._shape(obj)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def _fail(self, error: DecodeError) -> Any:
        self._error = error
        raise error

    def _shape(self, obj: Any) -> Frame:
        if not isinstance(obj, list):
            self._fail(FrameFormatError(f"frame is not an array but {type(obj).__name__}"))
        n = len(obj)
        if n < 3 or (n != 3 and self.generation.exact_arity):
            self._fail(FrameFormatError(f"frame has {n} elements"))
        first, second, args = obj[0], obj[1], obj[2]
        if type(first) is not int or type(second) is not int or first < 0 or second < 0:
            self._fail(FrameFormatError("frame ids must be non-negative integers"))
        if not isinstance(args, list):
            self._fail(FrameFormatError("frame args must be an array"))
        headers = None
        if n > 3:
            headers = obj[3]
            if not isinstance(headers, list):
                self._fail(FrameFormatError("frame headers must be an array"))
        if self.generation is Generation.A:
            return Frame(session=second, type=first, args=args)
        return Frame(session=first, type=second, args=args, headers=headers)
