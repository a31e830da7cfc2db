"""Frame decoding: one interface, two backends (C and pure Python).

The backend is chosen once, at import, the way msgpack chooses its
extension: ``COCAINE_HTTP_DECODER=native`` forces the C decoder (an import
error if it was not built), ``=python`` forces the pure twin, and otherwise
the C decoder is used when present. :data:`BACKEND` says which one won.

Both backends implement :class:`Decoder`:

* ``feed(data)`` appends bytes as they arrive, split anywhere;
* ``next_frame()`` returns the next complete :class:`~.frames.Frame` or
  ``None`` when more bytes are needed, and raises a
  :class:`~cocaine_http.errors.DecodeError` subclass on bad input; after an
  error the decoder is dead and raises the same error again;
* iterating yields frames until more bytes are needed;
* ``frames(data)`` is ``feed(data)`` then ``iter(decoder)`` in one call, for
  a reader that decodes each read as it arrives (the channel);
* ``records(data)`` is ``frames(data)`` with each frame as a plain tuple
  (:data:`~.frames.Record`), for a reader that takes every frame apart at
  once (the worker's channel): the decoders build records, and a
  :class:`~.frames.Frame` around each costs more than the record itself;
* ``pending`` is the number of buffered bytes not yet returned as a frame.

Both enforce the same limits at the same byte of the stream, so they agree
on every input however it is split: see native/README.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Protocol

from .frames import Frame, Generation, Record
from .payloads import LARGE_PAYLOAD

__all__ = [
    "BACKEND",
    "DEFAULT_MAX_FRAME_SIZE",
    "Decoder",
    "available_backends",
    "new_decoder",
]

#: Frames larger than this are refused (PROTOCOL.md §1.1: the protocol has
#: no limit of its own, so we set one). Configurable per decoder.
DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024

ENV_VAR = "COCAINE_HTTP_DECODER"


class Decoder(Protocol):
    generation: Generation
    max_frame_size: int

    def feed(self, data: bytes | bytearray | memoryview) -> None: ...

    def next_frame(self) -> Frame | None: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def frames(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]: ...

    def records(self, data: bytes | bytearray | memoryview) -> Iterator[Record]: ...

    @property
    def pending(self) -> int: ...


def _native_class() -> type:
    from ._decoder_native import NativeDecoder

    return NativeDecoder


def _pure_class() -> type:
    from ._decoder_pure import PureDecoder

    return PureDecoder


def available_backends() -> list[str]:
    """The backends that can be used in this process (``pure`` always)."""
    names = []
    try:
        _native_class()
        names.append("native")
    except ImportError:
        pass
    names.append("pure")
    return names


def _select() -> tuple[str, type]:
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice in {"python", "pure"}:
        return "pure", _pure_class()
    if choice == "native":
        return "native", _native_class()  # ImportError here is the point of forcing
    if choice not in {"", "auto"}:
        raise ImportError(f"{ENV_VAR}={choice!r}: use 'native' or 'python'")
    try:
        return "native", _native_class()
    except ImportError as exc:
        logging.getLogger(__name__).info(
            "native frame decoder unavailable (%s): using the pure-Python twin", exc
        )
        return "pure", _pure_class()


BACKEND, _DEFAULT_CLASS = _select()


def new_decoder(
    generation: Generation | str,
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    backend: str | None = None,
    skip_oversize: bool = False,
    split_payloads: bool = False,
) -> Decoder:
    """A fresh decoder for one connection. ``backend`` overrides :data:`BACKEND`.

    ``skip_oversize``: a frame over *max_frame_size* whose session is known
    becomes one :data:`~.frames.OVERSIZE` record and is skipped, instead of
    failing the stream (native/README.md, rule 5c).

    ``split_payloads``: the decoder may hand a large payload out as a
    :class:`~.payloads.SplitPayload` (an array ending in a raw, the raw's body
    apart); its reader must take those too.
    """
    gen = Generation.parse(generation)
    if backend is None:
        cls = _DEFAULT_CLASS
    elif backend == "native":
        cls = _native_class()
    elif backend in {"pure", "python"}:
        cls = _pure_class()
    else:
        raise ValueError(f"unknown decoder backend {backend!r}")
    split_min = LARGE_PAYLOAD if split_payloads else 0
    decoder: Decoder = cls(
        gen, max_frame_size=max_frame_size, skip_oversize=skip_oversize, split_min=split_min
    )
    return decoder
