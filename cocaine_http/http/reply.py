"""A session's reply as an HTTP proxy reads it: the head, then the body chunks.

The other side of :class:`~cocaine_http.http.envelope.ResponseEncoder`
(PROTOCOL.md §2.8, §3.9), for tests, the benchmarks and the dev runtime's
front; re-exported by :mod:`cocaine_http.http.envelope`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..protocol.frames import Generation
from ..protocol.wire import unpackb

__all__ = ["PROTO_VERSION_HEADER", "decode_head", "decode_response"]

#: A B head with this header set to ``1.1`` may end its body with an empty write.
PROTO_VERSION_HEADER = b"x-cocaine-http-proto-version"


def decode_head(payload: Any) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The first reply chunk, ``msgpack([code, [[name, value], ...]])``, as a proxy reads it.

    Raises ``ValueError`` for anything a proxy could not turn into a status
    line and headers.
    """
    if not isinstance(payload, bytes):
        raise ValueError("head chunk is not bytes")
    head = unpackb(payload)
    if (
        not isinstance(head, list)
        or len(head) != 2
        or type(head[0]) is not int
        or not isinstance(head[1], list)
    ):
        raise ValueError(f"first chunk is not [code, headers]: {head!r:.80}")
    code = head[0]
    if not 100 <= code <= 599:
        raise ValueError(f"status {code} out of range")
    pairs = []
    for pair in head[1]:
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, bytes) for x in pair):
            raise ValueError(f"header {pair!r:.80} is not [name, value]")
        pairs.append((pair[0], pair[1]))
    return code, pairs


def decode_response(
    chunks: Sequence[bytes], generation: Generation | str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The proxy's side: ``(status, headers, body)`` from the chunk payloads of a session.

    Used by tests, the benchmark and the dev runtime; raises ``ValueError``
    on a reply a proxy could not read.
    """
    gen = Generation.parse(generation)
    if not chunks:
        raise ValueError("no head: the session ended without a chunk")
    status, headers = decode_head(chunks[0])
    lingering = any(k.lower() == PROTO_VERSION_HEADER and v.strip() == b"1.1" for k, v in headers)
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if gen is Generation.B and not chunk and lingering:
            break  # lingering shutdown: an empty write ends the body
        if gen is Generation.A:
            part = unpackb(chunk)
            if not isinstance(part, bytes):
                raise ValueError(f"A body chunk is not a msgpack raw: {part!r:.80}")
            parts.append(part)
        else:
            if not chunk:
                raise ValueError("empty body write in B (breaks the 0.12 proxy's chunked stream)")
            parts.append(chunk)
    return status, headers, b"".join(parts)
