"""The sans-IO worker protocol: classification, outbound state checks, deadlines."""

from __future__ import annotations

import pytest

from cocaine_http.errors import ChannelClosedError, UnexpectedMessageError, UnknownMessageError
from cocaine_http.protocol.frames import Frame, Generation
from cocaine_http.protocol.session import Half
from cocaine_http.protocol.worker import (
    Choke,
    Chunk,
    Error,
    Heartbeat,
    Ignored,
    Invoke,
    Terminate,
    WorkerProtocol,
)

H = [80, 81, 82]
Z8 = b"\x00" * 8


def a_frame(t: int, s: int, args: list) -> Frame:
    return Frame(session=s, type=t, args=args)


def test_a_lifecycle() -> None:
    w = WorkerProtocol(Generation.A, "my-tag", heartbeat_interval=5, disown_timeout=30)
    assert w.start(now=100.0) == b"\x93\x00\x00\x91\xa6my-tag" + b"\x93\x01\x00\x90"
    assert not w.active  # A activates on the first heartbeat echo
    assert isinstance(w.receive(a_frame(1, 0, []), 100.1), Heartbeat)
    assert w.active
    assert w.receive(a_frame(3, 17, [b"http"]), 101) == Invoke(17, "http", [])
    assert w.receive(a_frame(4, 17, [b"body"]), 101) == Chunk(17, b"body", [])
    assert w.receive(a_frame(6, 17, []), 101) == Choke(17)
    assert w.send_chunk(17, b"x") == b"\x93\x04\x11\x91\xa1x"
    assert w.send_choke(17) == b"\x93\x06\x11\x90"
    assert w.sessions == {}  # both directions finished: forgotten
    assert w.receive(a_frame(2, 0, [1, b"slave is idle"]), 102) == Terminate(1, "slave is idle")
    assert w.terminating
    assert w.send_terminate(1, "slave is idle") == bytes.fromhex("93020092 01ad") + b"slave is idle"


def test_a_error_always_followed_by_choke() -> None:
    w = WorkerProtocol(Generation.A, "u")
    w.receive(a_frame(3, 9, [b"nosuch"]), 0)
    out = w.send_error(9, -100, "there is no handler for event nosuch")
    assert out.endswith(b"\x93\x06\x09\x90")
    with pytest.raises(ChannelClosedError):
        w.send_chunk(9, b"late")


def test_b_lifecycle_and_headers() -> None:
    w = WorkerProtocol(Generation.B, "u")
    w.start(0)
    assert w.active  # B activates on the handshake
    assert isinstance(w.receive(Frame(1, 0, [], H), 1), Heartbeat)
    inv = w.receive(Frame(2, 0, [b"http"], H), 1)
    assert inv == Invoke(2, "http", [(b"trace_id", Z8), (b"span_id", Z8), (b"parent_id", Z8)])
    assert w.receive(Frame(2, 0, [b"blob"], [[False, b"x-a", b"1"]]), 1) == Chunk(
        2, b"blob", [(b"x-a", b"1")]
    )
    assert w.receive(Frame(2, 2, [], None), 1) == Choke(2)
    # a second channel with a lower id than the highest seen is not an invoke
    ignored = w.receive(Frame(2, 0, [b"http"], None), 1)
    assert isinstance(ignored, Ignored) and isinstance(ignored.error, UnexpectedMessageError)
    w.receive(Frame(5, 0, [b"http"], None), 1)  # sparse ids are fine
    assert w.send_error(5, (42, 100), "boom") == bytes.fromhex("9305019292 2a64 a4") + b"boom"
    assert 5 not in w.sessions or w.sessions[5].send_half is Half.CLOSED
    with pytest.raises(ChannelClosedError):
        w.send_choke(5)  # nothing after an error in B
    assert w.receive(Frame(1, 1, [11, b"overseer is shutdowning"], H), 2) == Terminate(
        11, "overseer is shutdowning"
    )


def test_b_client_error_and_bad_frames_are_ignored_not_fatal() -> None:
    w = WorkerProtocol(Generation.B, "u")
    w.start(0)
    w.receive(Frame(2, 0, [b"e"], None), 0)
    assert w.receive(Frame(2, 1, [[0x53FF, 3], b"timeout"], None), 0) == Error(2, 3, "timeout", 0x53FF)
    assert isinstance(w.receive(Frame(2, 0, [b"late"], None), 0), Ignored)
    unknown = w.receive(Frame(1, 7, [], None), 0)
    assert isinstance(unknown, Ignored) and isinstance(unknown.error, UnknownMessageError)
    opened_wrong = w.receive(Frame(9, 2, [], None), 0)
    assert isinstance(opened_wrong, Ignored)
    bad_headers = w.receive(Frame(10, 0, [b"e"], [999]), 0)
    assert bad_headers == Invoke(10, "e", [])  # informational headers never break a session


def test_orphans_and_unknown_types_in_a() -> None:
    w = WorkerProtocol(Generation.A, "u")
    assert isinstance(w.receive(a_frame(4, 3, [b"x"]), 0), Ignored)
    assert isinstance(w.receive(a_frame(9, 3, []), 0), Ignored)
    w.receive(a_frame(3, 3, [b"e"]), 0)
    assert isinstance(w.receive(a_frame(3, 3, [b"e"]), 0), Ignored)  # duplicate invoke
    assert isinstance(w.receive(a_frame(4, 3, [17]), 0), Ignored)  # chunk that is not [data]


def test_heartbeat_and_disown_deadlines() -> None:
    w = WorkerProtocol(Generation.B, "u", heartbeat_interval=5, disown_timeout=30)
    w.start(now=0)
    assert w.tick(4.9) == b""
    assert w.tick(5.0) == b"\x93\x01\x00\x90"
    assert w.next_deadline() == 10.0
    assert not w.disowned(1000)  # never armed: the runtime has not answered yet
    w.receive(Frame(1, 0, [], None), 6.0)
    assert w.next_deadline() == 10.0
    assert not w.disowned(35.9)
    assert w.disowned(36.0)
    w.receive(Frame(1, 0, [], None), 36.5)  # any frame is a sign of life
    assert not w.disowned(60)


@pytest.mark.parametrize(
    ("gen", "frame"), [(Generation.A, Frame(0, 3, [b"http"])), (Generation.B, Frame(1, 0, [b"x"]))]
)
def test_invoke_on_the_control_session_is_ignored(gen: Generation, frame: Frame) -> None:
    w = WorkerProtocol(gen, "u")
    w.start(0)
    if gen is Generation.A:
        ev = w.receive(frame, 0)
        assert isinstance(ev, Ignored) and 0 not in w.sessions
    else:
        assert isinstance(w.receive(frame, 0), Heartbeat)  # channel 1, type 0 is a heartbeat reply in B


@pytest.mark.parametrize("gen", [Generation.A, Generation.B])
def test_choke_before_and_after_the_request_ends_follows_the_table(gen: Generation) -> None:
    """send_choke has a shortcut for a session whose request has ended; both
    orders must leave the same state as the table would."""
    w = WorkerProtocol(gen, "u")
    invoke, choke = (3, 6) if gen is Generation.A else (0, 2)

    def frame(s: int, t: int, args: list) -> Frame:
        return a_frame(t, s, args) if gen is Generation.A else Frame(s, t, args, None)

    w.receive(frame(7, invoke, [b"e"]), 0)
    w.send_choke(7)  # the request is still open: the session stays, half-closed
    assert w.sessions[7].send_half is Half.CLOSED and w.sessions[7].recv_half is Half.OPEN
    with pytest.raises(ChannelClosedError):
        w.send_choke(7)
    assert isinstance(w.receive(frame(7, choke, []), 0), Choke)
    assert 7 not in w.sessions

    w.receive(frame(8, invoke, [b"e"]), 0)
    w.receive(frame(8, choke, []), 0)
    assert w.send_choke(8)  # the shortcut: the request had ended
    assert 8 not in w.sessions
    with pytest.raises(ChannelClosedError):
        w.send_choke(8)


class RecordingSink:
    """A SessionSink that writes down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_invoke(self, session: int, event: str, headers: list) -> None:
        self.calls.append(("invoke", session, event, headers))

    def on_chunk(self, session: int, data: bytes, headers: list | None) -> None:
        self.calls.append(("chunk", session, data, headers))

    def on_choke(self, session: int) -> None:
        self.calls.append(("choke", session))

    def on_event(self, event: object) -> None:
        self.calls.append(("event", event))


def test_read_record_tells_a_sink_with_plain_values_a() -> None:
    w = WorkerProtocol(Generation.A, "u")
    sink = RecordingSink()
    for record in [(0, 1, [], None), (5, 3, [b"echo"], None), (5, 4, [b"hi"], None), (5, 6, [], None)]:
        w.read_record(record, 1.0, sink)
    assert sink.calls == [
        ("event", Heartbeat()),
        ("invoke", 5, "echo", []),
        ("chunk", 5, b"hi", None),  # A frames carry no headers
        ("choke", 5),
    ]
    assert w.sessions[5].recv_half is Half.CLOSED and w.sessions[5].send_half is Half.OPEN
    # Past the inline paths, the table decides, and the sink hears the same methods:
    # an error (A: a choke must follow), then that choke, on a second session.
    sink.calls.clear()
    records = [
        (6, 3, [b"echo"], None),
        (6, 5, [7, b"boom"], None),  # error
        (6, 6, [], None),  # its choke
        (6, 4, [b"x"], None),  # a chunk after the end
    ]
    for record in records:
        w.read_record(record, 2.0, sink)
    assert sink.calls[:3] == [("invoke", 6, "echo", []), ("event", Error(6, 7, "boom")), ("choke", 6)]
    late = sink.calls[3]
    assert late[0] == "event" and isinstance(late[1], Ignored)
    assert isinstance(late[1].error, UnexpectedMessageError)  # a chunk after the end


def test_read_record_tells_a_sink_with_plain_values_b() -> None:
    w = WorkerProtocol(Generation.B, "u")
    w.start(0)
    sink = RecordingSink()
    w.read_record((2, 0, [b"http"], H), 1.0, sink)
    w.read_record((2, 0, [b"body"], [[False, b"x-trace", b"1"]]), 1.0, sink)
    w.read_record((2, 2, [], None), 1.0, sink)
    [invoke, chunk, choke] = sink.calls
    assert invoke[:3] == ("invoke", 2, "http") and invoke[3]  # the invoke's decoded headers
    assert chunk == ("chunk", 2, b"body", [(b"x-trace", b"1")])
    assert choke == ("choke", 2)
    # receive() is the same reader with a sink that keeps the event.
    w2 = WorkerProtocol(Generation.B, "u")
    w2.start(0)
    assert isinstance(w2.receive(Frame(2, 0, [b"http"], H), 1.0), Invoke)
    assert w2.receive(Frame(2, 0, [b"body"], None), 1.0) == Chunk(2, b"body", [])
    assert w2.receive(Frame(2, 2, [], None), 1.0) == Choke(2)


class FailingSink(RecordingSink):
    """Raises on the chunk of session 6 (a sink's bug), after writing it down."""

    def on_chunk(self, session: int, data: bytes, headers: list | None) -> None:
        super().on_chunk(session, data, headers)
        if session == 6:
            raise RuntimeError("sink bug")


class Reader:
    """A RecordReader that closes once it has been told *close_after* records failed."""

    def __init__(self, close_after: int) -> None:
        self.closed = False
        self.failed: list[tuple] = []
        self.close_after = close_after

    def record_failed(self, record: tuple) -> None:
        self.failed.append(record)
        if len(self.failed) >= self.close_after:
            self.closed = True


@pytest.mark.parametrize("generation", [Generation.A, Generation.B])
def test_read_records_reads_a_whole_read_past_a_failed_record_and_stops_once_closed(
    generation: Generation,
) -> None:
    w = WorkerProtocol(generation, "u")
    w.start(0)
    a = generation is Generation.A
    chunk, choke = (4, 6) if a else (0, 2)

    def rec(s: int, t: int, args: list) -> tuple:
        return (s, t, args, None)

    records = [rec(5, 3 if a else 0, [b"echo"]), rec(6, 3 if a else 0, [b"echo"])]
    records += [rec(6, chunk, [b"bad"]), rec(5, chunk, [b"ok"]), rec(5, choke, [])]
    sink, reader = FailingSink(), Reader(close_after=2)
    w.read_records(iter(records), 1.0, sink, reader)
    # The failure is told to the reader, and the read goes on to the end.
    assert reader.failed == [records[2]] and not reader.closed
    assert [c[:2] for c in sink.calls[2:]] == [("chunk", 6), ("chunk", 5), ("choke", 5)]
    # A reader that closes stops the read right after the record that closed it.
    sink.calls.clear()
    more = [rec(6, chunk, [b"again"]), rec(6, choke, [])]
    w.read_records(iter(more), 2.0, sink, reader)
    assert reader.closed and reader.failed[1] == more[0]
    assert sink.calls == [("chunk", 6, b"again", None if a else [])]
    # read_record (one record) raises what the sink raised.
    with pytest.raises(RuntimeError, match="sink bug"):
        w.read_record(rec(6, chunk, [b"raised"]), 3.0, sink)


def test_idle_sessions_are_counted_in_sweeps_without_a_clock() -> None:
    """request_idle_timeout 4 s: a sweep every 1 s; a session is idle after
    between 4 and 5 s in which nothing moved in either direction."""
    w = WorkerProtocol(
        Generation.A, "u", heartbeat_interval=100, disown_timeout=300, request_idle_timeout=4.0
    )
    w.start(now=0.0)
    assert w.next_deadline() == 1.0
    w.receive(a_frame(3, 1, [b"http"]), 0.1)  # silent from here on
    w.receive(a_frame(3, 2, [b"http"]), 0.1)  # keeps sending
    w.receive(a_frame(3, 3, [b"http"]), 0.1)  # its request ends: never idle
    w.receive(a_frame(6, 3, []), 0.2)
    w.receive(a_frame(3, 4, [b"http"]), 0.1)  # answers, request open
    found = {}
    for tick in range(1, 8):
        now = float(tick)
        w.receive(a_frame(4, 2, [b"more"]), now - 0.5)
        w.send_chunk(4, b"progress")
        assert w.idle_sessions(now - 0.01) == []  # between sweeps
        for s in w.idle_sessions(now):
            found[s] = now
        assert w.next_deadline() == now + 1.0
    assert found == {1: 5.0}  # reported once; its clock restarted
    w.send_error(1, 3, "idle")  # what the worker does with it
    # what the runtime still sends for it is taken quietly (no Ignored, no warning)
    assert w.receive(a_frame(4, 1, [b"late"]), 8.0) == Chunk(1, b"late", [])
    assert w.receive(a_frame(6, 1, []), 8.0) == Choke(1)
    assert set(w.sessions) == {2, 3, 4}  # 1 ended with the runtime's choke; 3 still owes its answer


def test_an_answered_session_whose_request_stays_open_is_forgotten() -> None:
    w = WorkerProtocol(Generation.B, "u", request_idle_timeout=4.0)
    w.start(now=0.0)
    w.receive(Frame(session=2, type=0, args=[b"http"]), 0.0)
    w.send_chunk(2, b"answer")
    w.send_choke(2)  # answered; the runtime never closes its side
    assert 2 in w.sessions
    assert [w.idle_sessions(float(t)) for t in range(1, 7)] == [[]] * 6  # nothing to fail
    assert w.sessions == {}  # but no longer kept


def test_idle_sweep_while_reading_is_paused_ages_nobody() -> None:
    w = WorkerProtocol(Generation.B, "u", request_idle_timeout=4.0)
    w.start(now=0.0)
    w.receive(Frame(session=2, type=0, args=[b"http"]), 0.0)
    assert all(w.idle_sessions(float(t), paused=True) == [] for t in range(1, 30))
    assert [w.idle_sessions(float(t)) for t in range(30, 35)] == [[], [], [], [], [2]]


def test_no_idle_limit_no_sweeps() -> None:
    w = WorkerProtocol(Generation.A, "u", heartbeat_interval=5)
    w.start(now=0.0)
    w.receive(a_frame(3, 1, [b"http"]), 0.0)
    assert w.next_deadline() == 5.0
    assert w.idle_sessions(1e9) == []
