"""Per-session transition tables: every pair, legal or not, per generation."""

from __future__ import annotations

import itertools

import pytest

from cocaine_http.errors import ChannelClosedError, LocalProtocolError, UnexpectedMessageError
from cocaine_http.protocol.frames import Generation
from cocaine_http.protocol.session import TRANSITIONS, Half, Msg, SessionState


def test_a_requires_choke_after_error() -> None:
    s = SessionState(Generation.A, 5)
    s.send(Msg.CHUNK)
    s.send(Msg.ERROR)
    assert s.send_half is Half.ERRORED
    with pytest.raises(LocalProtocolError):
        s.send(Msg.CHUNK)
    assert s.close_send() == [Msg.CHOKE]
    s.send(Msg.CHOKE)
    with pytest.raises(ChannelClosedError):
        s.send(Msg.CHOKE)


def test_b_error_is_terminal() -> None:
    s = SessionState(Generation.B, 2)
    s.send(Msg.ERROR)
    assert s.send_half is Half.CLOSED
    with pytest.raises(ChannelClosedError):
        s.send(Msg.CHOKE)  # "no close after error" (PROTOCOL.md §3.2.1)


@pytest.mark.parametrize("gen", list(Generation))
def test_directions_are_independent(gen: Generation) -> None:
    s = SessionState(gen, 1)
    s.recv(Msg.CHOKE)
    s.send(Msg.CHUNK)  # the worker may keep writing after the runtime closed
    assert not s.finished
    s.send(Msg.CHOKE)
    assert s.finished
    with pytest.raises(UnexpectedMessageError):
        s.recv(Msg.CHUNK)  # data after choke


@pytest.mark.parametrize("gen", list(Generation))
def test_table_is_total_over_its_domain(gen: Generation) -> None:
    """Every (half, msg) pair either has an entry or raises; nothing leaves CLOSED."""
    table = TRANSITIONS[gen]
    for half, msg in itertools.product(Half, Msg):
        s = SessionState(gen, 1)
        s.send_half = s.recv_half = half
        if (half, msg) in table:
            s.recv(msg)
            assert s.recv_half is table[(half, msg)]
        else:
            with pytest.raises(UnexpectedMessageError):
                s.recv(msg)
    assert not any(h is Half.CLOSED for h, _ in table)
