"""One buffer per event loop for the sockets it reads.

Given a plain :class:`asyncio.Protocol`, asyncio allocates ``READ_SIZE``
bytes for every read and shrinks them to what arrived. glibc serves blocks
that large with mmap (or at the top of the heap), so each read then costs
system calls (mmap, mremap and munmap, or brk) and page faults: three extra
system calls per 4 KiB request were measured in the worker. A
:class:`asyncio.BufferedProtocol` instead reads into a buffer it lends, and
one per loop is enough: a read fills it, the protocol's ``buffer_updated``
takes the bytes out (copying a few kilobytes is cheaper than those calls)
before the loop does anything else, and a loop belongs to one thread.

Readers: every :class:`~cocaine_http.aio.transport.Transport` and the local runtime's HTTP front.
"""

from __future__ import annotations

import asyncio
import weakref

__all__ = ["READ_SIZE", "read_buffer"]

#: Bytes asked of the socket per read: asyncio's own figure for its reads.
READ_SIZE = 256 * 1024

_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = weakref.WeakKeyDictionary()


def read_buffer(loop: asyncio.AbstractEventLoop) -> memoryview:
    """The buffer the sockets of *loop* read into (made on first use).

    Whatever a protocol's ``buffer_updated`` does not copy out at once is
    overwritten by the next read on that loop, whichever socket it is from.
    """
    buffer = _buffers.get(loop)
    if buffer is None:
        buffer = _buffers[loop] = memoryview(bytearray(READ_SIZE))
    return buffer
