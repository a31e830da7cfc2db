"""Per-session state, as transition tables (h2's ``(state, input) -> state``).

A session (A) or channel (B) has two independent directions: what we send
and what we receive. Each direction is a :class:`Half` moved by three kinds
of message, :class:`Msg`. The generations differ in one rule:

* A: ``error`` must be followed by ``choke``; only ``choke`` finishes a
  direction (PROTOCOL.md §2.4.4, §2.5.1).
* B: ``error`` and ``close`` are both terminal; nothing may follow either
  (§3.2.1: a message after the terminal one makes the runtime drop the whole
  connection).

Rule: a pair missing from the table is illegal. Sending it raises
:class:`~cocaine_http.errors.ChannelClosedError` (after the end) or
:class:`~cocaine_http.errors.LocalProtocolError` and nothing goes on the
wire; receiving it raises
:class:`~cocaine_http.errors.UnexpectedMessageError`.
"""

from __future__ import annotations

import enum

from ..errors import ChannelClosedError, LocalProtocolError, UnexpectedMessageError
from .frames import Generation

__all__ = ["TRANSITIONS", "Half", "Msg", "SessionState"]


class Half(enum.IntEnum):
    """One direction's state. Int-valued so table lookups hash at C speed."""

    OPEN = 0
    ERRORED = 1  # A only: error sent/received, choke still owed
    CLOSED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Msg(enum.IntEnum):
    CHUNK = 0  # A chunk, B write
    ERROR = 1
    CHOKE = 2  # A choke, B close

    @property
    def label(self) -> str:
        return self.name.lower()


#: The hot paths of :mod:`.worker` skip the lookup for the one row both
#: generations share: a chunk leaves an open direction open.
TRANSITIONS: dict[Generation, dict[tuple[Half, Msg], Half]] = {
    Generation.A: {
        (Half.OPEN, Msg.CHUNK): Half.OPEN,
        (Half.OPEN, Msg.ERROR): Half.ERRORED,
        (Half.OPEN, Msg.CHOKE): Half.CLOSED,
        (Half.ERRORED, Msg.CHOKE): Half.CLOSED,
    },
    Generation.B: {
        (Half.OPEN, Msg.CHUNK): Half.OPEN,
        (Half.OPEN, Msg.ERROR): Half.CLOSED,
        (Half.OPEN, Msg.CHOKE): Half.CLOSED,
    },
}


_TABLE_A, _TABLE_B = TRANSITIONS[Generation.A], TRANSITIONS[Generation.B]
# Members the per-message code uses, as module constants: before Python 3.12
# reading ``Half.OPEN`` goes through the enum metaclass's __getattr__ (about
# 100 ns, a dozen times per request); a global is a dict lookup.
_GEN_A, _OPEN, _CLOSED = Generation.A, Half.OPEN, Half.CLOSED


class SessionState:
    """Both directions of one session; ``send``/``recv`` apply the table."""

    __slots__ = ("_table", "generation", "recv_half", "seen", "send_half", "session")

    def __init__(self, generation: Generation, session: int) -> None:
        self.generation = generation
        self.session = session
        # (by identity: an Enum member hashes in Python, and this runs per session)
        self._table = _TABLE_A if generation is _GEN_A else _TABLE_B
        self.send_half = _OPEN
        self.recv_half = _OPEN
        #: The owner's sweep count when the session last moved (WorkerProtocol.idle_sessions).
        self.seen = 0

    def __repr__(self) -> str:
        return f"<SessionState {self.session} send={self.send_half.label} recv={self.recv_half.label}>"

    @property
    def finished(self) -> bool:
        return self.send_half is _CLOSED and self.recv_half is _CLOSED

    def can_send(self, msg: Msg) -> bool:
        return (self.send_half, msg) in self._table

    def send(self, msg: Msg) -> None:
        nxt = self._table.get((self.send_half, msg))
        if nxt is None:
            if self.send_half is _CLOSED:
                raise ChannelClosedError(f"session {self.session}: cannot send {msg.label} after the end")
            raise LocalProtocolError(
                f"session {self.session}: cannot send {msg.label} while {self.send_half.label}"
            )
        self.send_half = nxt

    def recv(self, msg: Msg) -> None:
        nxt = self._table.get((self.recv_half, msg))
        if nxt is None:
            raise UnexpectedMessageError(
                f"session {self.session}: peer sent {msg.label} while its side is {self.recv_half.label}"
            )
        self.recv_half = nxt

    def close_send(self) -> list[Msg]:
        """What must still be sent to end our direction cleanly (A owes a choke after error)."""
        if self.send_half is Half.ERRORED:
            return [Msg.CHOKE]
        if self.send_half is Half.OPEN:
            return [Msg.CHOKE]
        return []
