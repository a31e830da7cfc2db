"""A request's chunk buffer and its byte accounting, without a socket.

Every chunk a :class:`~cocaine_http.aio.flow.ChunkBuffer` takes in or hands out
is counted on its :class:`~cocaine_http.aio.flow.InboundFlow`, which pauses and
resumes reading at the marks; a chunk a handler thread takes
(:meth:`~cocaine_http.aio.streams.Request.take_from_thread`) is counted when the
loop runs :meth:`~cocaine_http.aio.streams.Request.consumed`. These tests hold
:class:`~cocaine_http.aio.streams.Request` to the flow control's rules.
"""

from __future__ import annotations

import asyncio

import pytest

from cocaine_http.aio.flow import InboundFlow
from cocaine_http.aio.streams import Request


def make(flow: InboundFlow | None = None) -> Request:
    return Request("echo", 5, [], flow, asyncio.new_event_loop())


def test_accounting_pauses_and_resumes_at_the_marks() -> None:
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
        assert b.read_buffered() == b"y" * 140  # total 120, but a is still over its mark
        assert (flow.total, flow.paused) == (120, True)
        for _ in range(3):
            a.read_buffered()  # a at 30 <= session_high // 2, total 30 <= low: resume
        assert (flow.total, flow.paused, calls) == (30, False, ["pause", "resume"])
        a.read_buffered()
        assert (flow.total, a.buffered, b.buffered) == (0, 0, 0)
        # Under the marks again: only the total changes.
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
        requests[0].read_buffered()
        assert (flow.total, flow.paused) == (80, True)  # over low still
        requests[1].read_buffered()
        assert (flow.total, flow.paused, calls) == (40, False, ["pause", "resume"])
    finally:
        for request in requests:
            request._loop.close()


# -- the reading API the adapters and the blocking twin use --------------------------------------


def test_read_buffered_never_waits_and_raises_the_failure_after_the_chunks() -> None:
    request = make()
    try:
        assert request.read_buffered() == b""  # nothing yet: no wait
        request.feed(b"a")
        request.feed_error(ConnectionError("gone"))
        assert request.complete
        assert request.read_buffered() == b"a"  # what arrived before the failure is read first
        with pytest.raises(ConnectionError):
            request.read_buffered()
    finally:
        request._loop.close()


def test_take_from_thread_leaves_the_accounting_to_the_loop() -> None:
    calls: list[str] = []
    flow = InboundFlow(
        lambda: calls.append("pause"), lambda: calls.append("resume"), session_high=10, high=100, low=5
    )
    request = make(flow)
    try:
        assert request.take_from_thread() is None  # nothing buffered: wait on the loop
        request.feed(b"x" * 20)  # over the session's mark: paused
        assert calls == ["pause"]
        chunk = request.take_from_thread()
        assert chunk == b"x" * 20
        assert (flow.total, request.buffered, calls) == (20, 20, ["pause"])  # not counted yet
        request.consumed(len(chunk))  # what the blocking reader posts to the loop
        assert (flow.total, request.buffered, calls) == (0, 0, ["pause", "resume"])
        request.feed_eof()
        assert request.take_from_thread() == b""  # a clean end: no trip through the loop
    finally:
        request._loop.close()


def test_take_from_thread_after_a_failure_sends_the_reader_to_the_loop() -> None:
    request = make()
    try:
        request.feed_error(ConnectionError("gone"))
        assert request.take_from_thread() is None  # the loop's read() raises it
    finally:
        request._loop.close()


def test_consumed_after_discard_counts_nothing_twice() -> None:
    flow = InboundFlow(lambda: None, lambda: None, session_high=100, high=100, low=50)
    request = make(flow)
    try:
        request.feed(b"abc")
        request.feed(b"def")
        chunk = request.take_from_thread()
        assert chunk == b"abc"
        request.discard()  # the handler is gone: every buffered byte released
        request.consumed(len(chunk))
        assert (flow.total, request.buffered) == (0, 0)
    finally:
        request._loop.close()


def test_wait_complete_returns_at_the_end_or_at_the_limit() -> None:
    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        results = []
        whole = Request("echo", 1, [], None, loop)
        waiting = asyncio.ensure_future(whole.wait_complete(1000))
        whole.feed(b"x" * 10)
        whole.feed_eof()
        results.append(await waiting)
        big = Request("echo", 2, [], None, loop)
        waiting = asyncio.ensure_future(big.wait_complete(1000))
        big.feed(b"x" * 1000)  # at the limit, not complete: the caller goes another way
        results.append(await waiting)
        failed = Request("echo", 3, [], None, loop)
        waiting = asyncio.ensure_future(failed.wait_complete(1000))
        failed.feed_error(ConnectionError("gone"))
        results.append(await waiting)
        return results

    assert asyncio.run(main()) == [True, False, True]


def test_wait_complete_stops_while_reading_is_paused() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        flow = InboundFlow(lambda: None, lambda: None, session_high=1000, high=50, low=10)
        other, request = Request("echo", 1, [], flow, loop), Request("echo", 2, [], flow, loop)
        waiting = asyncio.ensure_future(request.wait_complete(1000))
        request.feed(b"x" * 10)
        other.feed(b"y" * 60)  # the total pauses reading: nothing more would come
        request.feed(b"x")  # wakes the waiter, which sees the pause
        return await waiting, flow.paused

    assert asyncio.run(main()) == (False, True)
