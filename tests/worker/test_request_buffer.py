"""A request's chunk buffer and its byte accounting, without a socket.

The hot paths of :class:`~cocaine_http.aio.flow.ChunkBuffer` account bytes
inline while no mark is near and call :class:`~cocaine_http.aio.flow.InboundFlow`
only when one may be crossed; :class:`~cocaine_http.aio.streams.Request` sets its
buffer's fields itself. These tests hold both to the flow control's rules.
"""

from __future__ import annotations

import asyncio

from cocaine_http.aio.flow import ChunkBuffer, InboundFlow
from cocaine_http.aio.streams import Request


def make(flow: InboundFlow | None = None) -> Request:
    return Request("echo", 5, [], flow, asyncio.new_event_loop())


def test_a_request_sets_every_field_of_its_buffer() -> None:
    flow = InboundFlow(lambda: None, lambda: None, session_high=100, high=250, low=50)
    request = make(flow)
    try:
        fresh = ChunkBuffer(request._loop, flow)  # what ChunkBuffer.__init__ would have set
        for name in ChunkBuffer.__slots__:
            # AttributeError if Request.__init__ missed one; a wrong start value fails the compare
            assert getattr(request, name) == getattr(fresh, name), name
    finally:
        request._loop.close()


def test_inline_accounting_pauses_and_resumes_at_the_marks() -> None:
    calls: list[str] = []
    flow = InboundFlow(
        lambda: calls.append("pause"), lambda: calls.append("resume"), session_high=100, high=250, low=50
    )
    a, b = make(flow), make(flow)
    try:
        for _ in range(3):
            a.feed(b"x" * 30)  # 90 bytes: under both marks
        assert (flow.total, flow.paused, calls) == (90, False, [])
        a.feed(b"x" * 30)  # 120 > session_high: this request is over its own mark
        assert (flow.total, flow.paused, calls) == (120, True, ["pause"])
        b.feed(b"y" * 140)  # total 260 > high, while paused
        assert (flow.total, calls) == (260, ["pause"])
        assert b._pop() == b"y" * 140  # total 120, but a is still over its mark
        assert (flow.total, flow.paused) == (120, True)
        for _ in range(3):
            a._pop()  # a at 30 <= session_high // 2, total 30 <= low: resume
        assert (flow.total, flow.paused, calls) == (30, False, ["pause", "resume"])
        a._pop()
        assert (flow.total, a.buffered, b.buffered) == (0, 0, 0)
        # Under the marks again: the inline path counts, nothing else happens.
        a.feed(b"z" * 10)
        a.discard()
        assert (flow.total, flow.paused, calls) == (0, False, ["pause", "resume"])
    finally:
        a._loop.close()
        b._loop.close()


def test_the_total_alone_pauses_reading() -> None:
    calls: list[str] = []
    flow = InboundFlow(
        lambda: calls.append("pause"), lambda: calls.append("resume"), session_high=1000, high=100, low=40
    )
    requests = [make(flow) for _ in range(3)]
    try:
        for request in requests:
            request.feed(b"x" * 40)  # 120 in all, none over its own mark
        assert (flow.total, flow.paused, calls) == (120, True, ["pause"])
        requests[0]._pop()
        assert (flow.total, flow.paused) == (80, True)  # over low still
        requests[1]._pop()
        assert (flow.total, flow.paused, calls) == (40, False, ["pause", "resume"])
    finally:
        for request in requests:
            request._loop.close()
