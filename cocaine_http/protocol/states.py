"""The service connection state machine, as a table (STYLE.md §3.3).

States are the seed's four: ``closed``, ``connecting``, ``connected``,
``error``. Name resolution is not a fifth state: as the seed says, it is a
*flag over* ``closed`` (``closed+resolving``). Every legal move is one
entry of :data:`TRANSITIONS`, keyed by ``(state, resolving, input)``; a pair
missing from the table is a bug in the driver and raises
:class:`InvalidTransition` without changing anything::

    closed ──connect──▶ connecting ──connected──▶ connected
    closed ──resolve──▶ closed+resolving ──resolved──▶ connecting
    closed+resolving ──resolve_failed──▶ error
    connecting ──connect_failed──▶ error      connected ──disconnected──▶ error
    error ──retry──▶ connecting               error ──resolve──▶ closed+resolving
    any ──close──▶ closed

:class:`Backoff` computes the reconnect delays (exponential with a cap).
Time comes in as numbers; nothing here sleeps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import LocalProtocolError

__all__ = [
    "TRANSITIONS",
    "Backoff",
    "InvalidTransition",
    "ServiceInput",
    "ServiceState",
    "ServiceStateMachine",
    "diagram",
]


class ServiceState(enum.Enum):
    CLOSED = "closed"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class ServiceInput(enum.Enum):
    CONNECT = "connect"  # endpoints are known: start connecting
    RESOLVE = "resolve"  # ask the locator first (sets the resolving flag)
    RESOLVED = "resolved"  # the locator answered: connect to what it said
    RESOLVE_FAILED = "resolve_failed"
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"  # every endpoint refused
    DISCONNECTED = "disconnected"  # an established connection went away
    RETRY = "retry"  # reconnect to the endpoints we already know
    CLOSE = "close"  # the owner closes the service


class InvalidTransition(LocalProtocolError):
    """The driver fed an input the current state does not accept (a bug in cocaine_http)."""


_S = ServiceState
_I = ServiceInput

#: ``(state, resolving, input) -> (state, resolving)``.
TRANSITIONS: dict[tuple[ServiceState, bool, ServiceInput], tuple[ServiceState, bool]] = {
    (_S.CLOSED, False, _I.CONNECT): (_S.CONNECTING, False),
    (_S.CLOSED, False, _I.RESOLVE): (_S.CLOSED, True),
    (_S.CLOSED, True, _I.RESOLVED): (_S.CONNECTING, False),
    (_S.CLOSED, True, _I.RESOLVE_FAILED): (_S.ERROR, False),
    (_S.CONNECTING, False, _I.CONNECTED): (_S.CONNECTED, False),
    (_S.CONNECTING, False, _I.CONNECT_FAILED): (_S.ERROR, False),
    (_S.CONNECTED, False, _I.DISCONNECTED): (_S.ERROR, False),
    (_S.ERROR, False, _I.RETRY): (_S.CONNECTING, False),
    (_S.ERROR, False, _I.RESOLVE): (_S.CLOSED, True),
    # close is accepted everywhere (closing twice is harmless)
    (_S.CLOSED, False, _I.CLOSE): (_S.CLOSED, False),
    (_S.CLOSED, True, _I.CLOSE): (_S.CLOSED, False),
    (_S.CONNECTING, False, _I.CLOSE): (_S.CLOSED, False),
    (_S.CONNECTED, False, _I.CLOSE): (_S.CLOSED, False),
    (_S.ERROR, False, _I.CLOSE): (_S.CLOSED, False),
}


class ServiceStateMachine:
    """Current state plus the resolving flag; :meth:`apply` is the only way to move."""

    __slots__ = ("history", "resolving", "state")

    def __init__(self, *, keep_history: bool = False) -> None:
        self.state = ServiceState.CLOSED
        self.resolving = False
        #: ``(input, new state, resolving)`` per move when *keep_history* (tests, debugging).
        self.history: list[tuple[ServiceInput, ServiceState, bool]] | None = [] if keep_history else None

    def __repr__(self) -> str:
        flag = "+resolving" if self.resolving else ""
        return f"<ServiceStateMachine {self.state.value}{flag}>"

    def can(self, event: ServiceInput) -> bool:
        return (self.state, self.resolving, event) in TRANSITIONS

    def apply(self, event: ServiceInput) -> ServiceState:
        """Move on *event* or raise :class:`InvalidTransition` (the state is left unchanged)."""
        nxt = TRANSITIONS.get((self.state, self.resolving, event))
        if nxt is None:
            flag = "+resolving" if self.resolving else ""
            raise InvalidTransition(f"service state {self.state.value}{flag} does not accept {event.value!r}")
        self.state, self.resolving = nxt
        if self.history is not None:
            self.history.append((event, self.state, self.resolving))
        return self.state


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect policy: exponential delays with a cap, and a per-call budget.

    After ``n`` consecutive failed connection rounds the next round may start
    ``delay(n)`` seconds after the last failure: 0 for ``n == 0`` (the first
    reconnect after a drop is immediate), then ``initial * factor**(n-1)``,
    never more than ``cap``. The failure count survives across calls, so a
    dead service is not hammered by a burst of callers.

    One call makes at most ``attempts`` rounds (each round tries every
    endpoint once), and it starts a round only within ``window`` seconds of
    its first one (:meth:`may_start`). The window keeps the backoff from
    turning into a wait: a call that would have to sleep past it fails at
    once with :class:`~cocaine_http.errors.ConnectError` instead (naming the
    endpoints and the last error), and the pacing is left to later calls.
    Without the window a dead endpoint would hold each call for the sum of
    the growing delays, up to ``attempts * cap``.
    """

    initial: float = 0.05
    factor: float = 2.0
    cap: float = 5.0
    attempts: int = 3
    window: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.factor < 1 or self.cap < 0 or self.attempts < 1 or self.window < 0:
            raise ValueError(f"invalid backoff policy {self!r}")

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # bounded exponent: factor**n overflows a float long before anyone waits that long
        return min(self.cap, self.initial * self.factor ** min(failures - 1, 64))

    def wait_before(self, failures: int, last_failure: float | None, now: float) -> float:
        """Seconds to wait at *now* before the next round (0 when it may start at once)."""
        if last_failure is None:
            return 0.0
        return max(0.0, last_failure + self.delay(failures) - now)

    def may_start(self, started: float, now: float, wait: float) -> bool:
        """Whether a call whose first round began at *started* may sleep *wait* and start another."""
        return now + wait - started <= self.window


def diagram() -> str:
    """The table as text, one transition per line (docs are generated from this)."""
    lines = []
    for (state, resolving, event), (nstate, nresolving) in TRANSITIONS.items():
        src = state.value + ("+resolving" if resolving else "")
        dst = nstate.value + ("+resolving" if nresolving else "")
        lines.append(f"{src:20} --{event.value}--> {dst}")
    return "\n".join(lines)
