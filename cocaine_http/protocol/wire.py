"""msgpack as the runtime speaks it (PROTOCOL.md §0, §1.2), in one place.

The runtime is built on msgpack-c 0.5: it knows old-spec *raw* only. Every
encoder in cocaine_http goes through :func:`packb` / :data:`PACKER_OPTIONS`
(``use_bin_type=False``: ``str`` and ``bytes`` both become fixraw/raw16/raw32,
never str8, bin or ext). Every decoder reads raws as ``bytes``
(``raw=True``), accepts integer map keys (``strict_map_key=False``) and
rejects ext. Text is decoded explicitly, and only where text is expected.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

__all__ = [
    "MAX_MAP_LEN",
    "PACKER_OPTIONS",
    "as_text",
    "packb",
    "reject_ext",
    "unpackb",
]

#: Bound on map sizes read from the wire: integer keys can be chosen to
#: collide in Python's hash, so a huge map is a cheap denial of service.
MAX_MAP_LEN = 1 << 16

PACKER_OPTIONS: dict[str, Any] = {"use_bin_type": False, "use_single_float": False, "autoreset": True}


def reject_ext(code: int, data: bytes) -> NoReturn:
    """``ext_hook`` for every unpacker: the runtime never sends ext."""
    raise ValueError(f"msgpack ext type {code} is not allowed on the cocaine wire")


#: unpackb's options, made once (the HTTP envelope of every request is read with them).
_UNPACK: dict[str, Any] = {
    "raw": True,
    "strict_map_key": False,
    "ext_hook": reject_ext,
    "max_map_len": MAX_MAP_LEN,
}
_UNPACK_PAIRS: dict[str, Any] = {**_UNPACK, "object_pairs_hook": list}


def packb(obj: Any) -> bytes:
    """Encode *obj* the way the runtime does (old-spec raw, no ext).

    An object msgpack cannot represent raises :class:`TypeError`.
    """
    data: bytes = msgpack.packb(obj, use_bin_type=False)  # (msgpack's stubs say Any)
    return data


def unpackb(data: bytes | bytearray | memoryview, *, pairs: bool = False) -> Any:
    """Decode one complete msgpack value from a trusted-shape blob (inner HTTP
    envelopes, A reply blobs, stored values).

    Raws come back as ``bytes``. With ``pairs=True`` maps come back as lists
    of ``(key, value)`` pairs, for replies whose keys may be unhashable (A
    ``locator.reports``). Raises ``ValueError``/``TypeError`` (incl. msgpack's
    subclasses) on malformed input; callers translate at their seam.
    """
    return msgpack.unpackb(data, **(_UNPACK_PAIRS if pairs else _UNPACK))


def unpacker() -> msgpack.Unpacker:
    """A streaming unpacker with :func:`unpackb`'s options, for a caller that
    reads only the start of a blob (see ``http.request``'s large envelopes)."""
    return msgpack.Unpacker(**_UNPACK)


def as_text(value: Any, what: str = "value") -> str:
    """Decode a raw that must be text (names, reasons, messages) as UTF-8.

    Invalid UTF-8 is replaced rather than raised: a reason string is for
    humans and must never break a session.
    """
    if type(value) is bytes:  # what the decoders return
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{what} must be a string, got {type(value).__name__}")
