"""How the native decoder reads C's reports: the layout of ``cf_frame``
records as Python sees them, the two ways a payload or a field is taken out
of the buffer, and the exception each error code becomes.

Kept apart from :mod:`._decoder_native` so that the decoder's module is its
state machine; these are constants and small helpers it imports by name.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from .._native import ffi, lib  # type: ignore[import-not-found, unused-ignore]
from ..errors import (
    DecodeError,
    FrameFormatError,
    FrameTooDeepError,
    FrameTooLargeError,
    MalformedMessageError,
)
from .wire import MAX_MAP_LEN, reject_ext

#: C status code -> the exception it becomes.
ERRORS: dict[int, type[DecodeError]] = {
    lib.CF_E_MALFORMED: MalformedMessageError,
    lib.CF_E_FORMAT: FrameFormatError,
    lib.CF_E_TOO_LARGE: FrameTooLargeError,
    lib.CF_E_DEPTH: FrameTooDeepError,
}


def decode_error(status: int, offset: int, max_frame_size: int) -> DecodeError:
    """The exception for C's error *status* on the frame at stream *offset*."""
    kind = ERRORS.get(status)
    what = ffi.string(lib.cf_strerror(status)).decode()
    if kind is None:  # pragma: no cover - CF_E_USAGE means a bug on this side
        raise AssertionError(f"cf_next: {what} ({status})")
    if kind is FrameTooLargeError:
        what = f"frame, array, map or string over its limit (max_frame_size {max_frame_size})"
    return kind(f"{what} (frame at stream offset {offset})")


FEW = 8  # up to this many frames per call, records are read field by field
FIELDS = ffi.sizeof("cf_frame") // 8  # cf_frame is all uint64_t
# index of each cf_frame field in the flat array of records
ELEM0, ELEM1, END, ARGS_OFF, HEADERS_OFF, NARGS, PAYLOAD_OFF, PAYLOAD_LEN, FLAGS = (
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
HOT_FIELDS = struct.Struct("=QQ8xQ32xQQQQ")
_HOT_INDEXES = (ELEM0, ELEM1, END, NARGS, PAYLOAD_OFF, PAYLOAD_LEN, FLAGS)
if _HOT_INDEXES != (0, 1, 3, 8, 9, 10, 11):  # pragma: no cover
    raise ImportError("native/cocaine_frame.h changed cf_frame: update HOT_FIELDS")
#: RECORDS_AT[n]: the byte offsets of the first n records, for batches of up to FEW frames
RECORDS_AT = [tuple(range(0, n * FIELDS * 8, FIELDS * 8)) for n in range(FEW + 1)]


def unpack_slice(data: memoryview) -> Any:
    """Decode an args/headers slice C has already validated."""
    try:
        return msgpack.unpackb(
            data, raw=True, strict_map_key=False, ext_hook=reject_ext, max_map_len=MAX_MAP_LEN
        )
    except (ValueError, TypeError) as exc:  # pragma: no cover - C checked the same rules
        raise MalformedMessageError(f"frame element failed to decode: {exc}") from exc


class Copier:
    """``copier[a:b]`` is ``bytes`` copied out of a view (one copy, not two)."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, span: slice) -> bytes:
        return self._view[span].tobytes()
