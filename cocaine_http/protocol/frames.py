"""The unit everything else speaks: a decoded frame, and the two generations.

A frame is the msgpack array on the wire with its positional meaning
normalised: ``session`` is the A session id or the B channel id, ``type`` the
message (or method) id, ``args`` the decoded argument list and ``headers``
the undecoded B header entries (``None`` when the frame had none, and always
in generation A). What a ``type`` *means* depends on the generation, the side
and, in B, on the channel's state; the catalogs and state tables decide that.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["OVERSIZE", "Frame", "Generation", "Record", "check_max_frame_size"]


class Generation(enum.Enum):
    """The two wire-incompatible protocol generations (PROTOCOL.md, table at the top)."""

    A = "0.11"
    B = "0.12"

    @classmethod
    def parse(cls, value: str | Generation) -> Generation:
        """Accept the spellings users type: ``0.11``/``11``/``A``, ``0.12``/``12``/``B``."""
        if isinstance(value, Generation):
            return value
        text = str(value).strip().lower()
        if text in {"a", "0.11", "11", "0", "v0", "0.10"}:
            return cls.A
        if text in {"b", "0.12", "12", "1", "v1"}:
            return cls.B
        raise ValueError(f"unknown protocol generation {value!r} (use 0.11 or 0.12)")

    @property
    def exact_arity(self) -> bool:
        """A frames are exactly 3 elements; B frames 3 or more (element 3 = headers)."""
        return self is Generation.A


@dataclass(slots=True)
class Frame:
    """One decoded message: ``[type, session, args]`` (A) or ``[channel, type, args, H?]`` (B)."""

    session: int
    type: int
    args: list[Any]
    headers: list[Any] | None = None


#: A frame as a plain tuple, ``(session, type, args, headers)``: what the
#: decoders build (a tuple costs a fraction of a :class:`Frame`), handed out
#: as such by ``records()`` for a reader that takes each frame apart at once.
Record = tuple[int, int, list[Any], list[Any] | None]


#: The ``type`` of the record a decoder made with ``skip_oversize=True``
#: hands out for a frame over ``max_frame_size`` whose session is known
#: (native/README.md, rule 5c): ``(session, OVERSIZE, [type_id, declared], None)``,
#: ``declared`` being the length of the raw that did not fit. No message id
#: is negative, so it cannot be mistaken for one. The frame itself is skipped.
OVERSIZE = -1


def check_max_frame_size(max_frame_size: int) -> int:
    """Validate the frame size limit both decoder backends take (a positive int)."""
    if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
        raise TypeError(f"max_frame_size must be an int, got {type(max_frame_size).__name__}")
    if not 1 <= max_frame_size < 2**63:
        raise ValueError(f"max_frame_size must be in [1, 2**63), got {max_frame_size}")
    return max_frame_size
