"""Message catalogs of both generations, and their encoders.

Decoding a type id needs context (B reuses small ids per channel state), so
this module only names the ids and *encodes*; :mod:`.worker` and
:mod:`.service` interpret incoming frames.

Generation A (PROTOCOL.md §2.2): one fixed table on every stream::

    0 handshake  1 heartbeat  2 terminate  3 invoke  4 chunk  5 error  6 choke

Generation B (§3.3, node::v2 worker protocol 1): ids per channel state::

    control channel (1):   0 handshake (opens it) / heartbeat,  1 terminate
    invocation channels:   0 invoke (opens it) / write,  1 error,  2 close

Every encoder emits old-spec raw only (§0). The chunk encoders are hand
rolled because they sit on the hot path: the frame header is a few bytes
built with ``struct`` and the payload is appended once, not walked by a
packer. :func:`frame_header` lets the IO layer write header and payload
separately and skip even that concatenation for large payloads.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any

from .frames import Generation
from .wire import packb

__all__ = [
    "B_CONTROL",
    "B_CONTROL_CHANNEL",
    "B_STREAM",
    "A",
    "MessageEncoder",
    "TerminateCode",
    "raw_header",
    "uint",
]


class A(enum.IntEnum):
    """Generation A message ids (the rpc table; also every service reply)."""

    HANDSHAKE = 0
    HEARTBEAT = 1
    TERMINATE = 2
    INVOKE = 3
    CHUNK = 4
    ERROR = 5
    CHOKE = 6


class B_CONTROL(enum.IntEnum):  # upper-case: mirrors the IDL name
    """Generation B ids on the worker control channel."""

    HANDSHAKE = 0
    HEARTBEAT = 0
    TERMINATE = 1


class B_STREAM(enum.IntEnum):
    """Generation B ids on invocation channels (and the streaming protocol)."""

    INVOKE = 0
    WRITE = 0
    ERROR = 1
    CLOSE = 2


#: The worker opens channel 1 with its handshake; it carries all control traffic.
B_CONTROL_CHANNEL = 1


class TerminateCode(enum.IntEnum):
    """A terminate codes. Code 2 marks the whole app broken in A: use it only
    for unrecoverable app errors (PROTOCOL.md §2.4.5)."""

    NORMAL = 1
    ABNORMAL = 2


_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TAG16 = struct.Struct(">BH")  # a msgpack tag byte and its 16-bit value
_TAG32 = struct.Struct(">BI")
# Whole frames, or frame headers, for a 16- or 32-bit session id (a
# long-lived worker's: ids grow) and a payload under 32 bytes: one struct
# call instead of a tag, a value and three concatenations.
_A_HEAD16 = struct.Struct(">BBBHBB")  # 93 04 cd <sid> 91 a0|len: [4, sid, [raw]] up to the payload
_B_HEAD16 = struct.Struct(">BBHBBB")  # 93 cd <sid> 00 91 a0|len: [sid, 0, [raw]] up to the payload
_A_CHOKE16 = struct.Struct(">BBBHB")  # 93 06 cd <sid> 90: [6, sid, []]
_B_CHOKE16 = struct.Struct(">BBHBB")  # 93 cd <sid> 02 90: [sid, 2, []]
_A_HEAD32 = struct.Struct(">BBBIBB")  # the same with ce and a 32-bit id
_B_HEAD32 = struct.Struct(">BBIBBB")
_A_CHOKE32 = struct.Struct(">BBBIB")
_B_CHOKE32 = struct.Struct(">BBIBB")


def uint(value: int) -> bytes:
    """Shortest unsigned msgpack encoding of a non-negative int, as the runtime writes it."""
    if value < 0x80:
        return _U8.pack(value)
    if value <= 0xFF:
        return b"\xcc" + _U8.pack(value)
    if value <= 0xFFFF:
        return b"\xcd" + _U16.pack(value)
    if value <= 0xFFFFFFFF:
        return b"\xce" + _U32.pack(value)
    return b"\xcf" + _U64.pack(value)


def raw_header(length: int) -> bytes:
    """Old-spec raw header: fixraw up to 31, raw16 (never str8), raw32."""
    if length <= 31:
        return _U8.pack(0xA0 | length)
    if length <= 0xFFFF:
        return b"\xda" + _U16.pack(length)
    if length <= 0xFFFFFFFF:
        return b"\xdb" + _U32.pack(length)
    raise ValueError("a raw cannot exceed 4 GiB")


class MessageEncoder:
    """Encodes every message a worker or a runtime sends, for one generation.

    Error ``code`` is an ``int`` in A and a ``(category, code)`` pair in B;
    passing a bare int in B uses category 42 (worker), passing a pair in A
    keeps only the code: the caller states intent, the encoder speaks the
    dialect.
    """

    __slots__ = ("_error_id", "_gen_a", "generation")

    def __init__(self, generation: Generation | str) -> None:
        self.generation = Generation.parse(generation)
        # (a bool for the per-session encoders: before Python 3.12 reading
        # ``Generation.A`` costs an enum metaclass __getattr__ call)
        self._gen_a = self.generation is Generation.A
        self._error_id = int(A.ERROR) if self.generation is Generation.A else int(B_STREAM.ERROR)

    # -- generic -------------------------------------------------------------
    def frame(
        self, session: int, type_id: int, args: Sequence[Any], headers: Sequence[Any] | None = None
    ) -> bytes:
        """Any frame, in this generation's element order."""
        if self.generation is Generation.A:
            if headers:
                raise ValueError("generation A frames cannot carry headers")
            return packb([type_id, session, list(args)])
        if headers is None:
            return packb([session, type_id, list(args)])
        return packb([session, type_id, list(args), list(headers)])

    # -- control -------------------------------------------------------------
    def handshake(self, uuid: str) -> bytes:
        if self.generation is Generation.A:
            return packb([A.HANDSHAKE.value, 0, [uuid]])
        return packb([B_CONTROL_CHANNEL, B_CONTROL.HANDSHAKE.value, [uuid]])

    def heartbeat(self) -> bytes:
        # A [1, 0, []] and B [1, 0, []] are the same four bytes (PROTOCOL.md §3.1).
        return b"\x93\x01\x00\x90"

    def terminate(self, code: int, reason: str) -> bytes:
        if self.generation is Generation.A:
            return packb([A.TERMINATE.value, 0, [int(code), reason]])
        return packb([B_CONTROL_CHANNEL, B_CONTROL.TERMINATE.value, [int(code), reason]])

    # -- sessions ------------------------------------------------------------
    def invoke(self, session: int, event: str, headers: Sequence[Any] | None = None) -> bytes:
        if self._gen_a:
            return packb([A.INVOKE.value, session, [event]])
        return self.frame(session, B_STREAM.INVOKE, [event], headers)

    def frame_header(self, session: int, length: int) -> bytes:
        """Everything of a chunk frame but its payload: send ``header + payload``."""
        if session < 0x80 and length <= 31:  # fixint session, fixraw payload: the usual small chunk
            if self._gen_a:
                return bytes((0x93, 0x04, session, 0x91, 0xA0 | length))
            return bytes((0x93, session, 0x00, 0x91, 0xA0 | length))
        if length <= 31 and 0xFF < session <= 0xFFFFFFFF:
            if session <= 0xFFFF:
                if self._gen_a:
                    return _A_HEAD16.pack(0x93, 0x04, 0xCD, session, 0x91, 0xA0 | length)
                return _B_HEAD16.pack(0x93, 0xCD, session, 0x00, 0x91, 0xA0 | length)
            if self._gen_a:
                return _A_HEAD32.pack(0x93, 0x04, 0xCE, session, 0x91, 0xA0 | length)
            return _B_HEAD32.pack(0x93, 0xCE, session, 0x00, 0x91, 0xA0 | length)
        # Past the fixints (a long-lived worker's session ids grow), the usual
        # sizes are packed inline; uint and raw_header take the rest.
        sid = (
            _TAG16.pack(0xCD, session)
            if 0xFF < session <= 0xFFFF
            else _TAG32.pack(0xCE, session)
            if 0xFFFF < session <= 0xFFFFFFFF
            else uint(session)
        )
        raw = (
            _U8.pack(0xA0 | length)
            if length <= 31
            else _TAG16.pack(0xDA, length)
            if length <= 0xFFFF
            else raw_header(length)
        )
        if self._gen_a:
            return b"\x93\x04" + sid + b"\x91" + raw
        return b"\x93" + sid + b"\x00\x91" + raw

    def chunk(self, session: int, data: bytes | bytearray | memoryview) -> bytes:
        return self.frame_header(session, len(data)) + bytes(data)

    def error(self, session: int, code: int | tuple[int, int] | list[int], message: str) -> bytes:
        """``code`` may be a pair as a tuple or, as it decodes from the wire, a list."""
        if isinstance(code, (tuple, list)):
            if len(code) != 2:
                raise ValueError(f"an error code pair is (category, code), got {code!r}")
            category, value = int(code[0]), int(code[1])
        else:
            category, value = 42, int(code)
        if self.generation is Generation.A:
            return packb([A.ERROR.value, session, [value, message]])
        return packb([session, B_STREAM.ERROR.value, [[category, value], message]])

    def choke(self, session: int) -> bytes:
        if session < 0x80:  # a fixint session
            return bytes((0x93, 0x06, session, 0x90)) if self._gen_a else bytes((0x93, session, 0x02, 0x90))
        if 0xFF < session <= 0xFFFF:
            if self._gen_a:
                return _A_CHOKE16.pack(0x93, 0x06, 0xCD, session, 0x90)
            return _B_CHOKE16.pack(0x93, 0xCD, session, 0x02, 0x90)
        if 0xFFFF < session <= 0xFFFFFFFF:
            if self._gen_a:
                return _A_CHOKE32.pack(0x93, 0x06, 0xCE, session, 0x90)
            return _B_CHOKE32.pack(0x93, 0xCE, session, 0x02, 0x90)
        if self._gen_a:
            return b"\x93\x06" + uint(session) + b"\x90"
        return b"\x93" + uint(session) + b"\x02\x90"
