"""Worker configuration: every limit and default in one frozen dataclass.

The runtime starts a worker with exactly these flags (PROTOCOL.md §2.4.1,
§3.4.1), as separate argv items, in sorted order -- but we accept any order,
``--flag=value`` too, and ignore what we do not know::

    --app NAME --endpoint PATH --locator HOST:PORT[,HOST:PORT...] [--protocol 1] --uuid UUID

``--protocol 1`` selects generation B; its absence means A (B0 is not told
apart from A by argv, §8). ``--uuid`` is never validated: a tagged A enqueue
passes the tag there. ``--threads N`` (ours, not the runtime's) sizes the pool
that runs plain ``def`` handlers.

Other programs put their own arguments on the same command line (the CLI
reads ``cocaine-http app:module --bind ...`` plus the runtime's flags), so
:func:`split_args` separates the flags we own from the rest and
:meth:`WorkerConfig.from_argv` never rejects a foreign argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .protocol.endpoints import DEFAULT_LOCATOR_PORT, parse_locators
from .protocol.frames import Generation

__all__ = [
    "RUNTIME_FLAGS",
    "WORKER_FLAGS",
    "WorkerConfig",
    "runtime_argv",
    "split_args",
]

#: Flags the cocaine runtime passes to every worker it spawns.
RUNTIME_FLAGS: frozenset[str] = frozenset({"app", "endpoint", "locator", "protocol", "uuid"})
#: The runtime's flags plus the worker's own.
WORKER_FLAGS: frozenset[str] = RUNTIME_FLAGS | {"threads"}

#: Keyword aliases accepted by :meth:`WorkerConfig.replace` / ``Worker(**kwargs)``.
_ALIASES = {"protocol": "generation"}

MiB = 1 << 20


def runtime_argv(app: str, endpoint: str, locator: str, uuid: str, generation: Generation) -> list[str]:
    """The flags a runtime passes to a worker it spawns: separate items, sorted
    by flag as the runtime's ``std::map`` orders them, ``--protocol 1`` in B
    only (PROTOCOL.md §2.4.1, §3.4.1)."""
    out = ["--app", app, "--endpoint", endpoint, "--locator", locator]
    if generation is Generation.B:
        out += ["--protocol", "1"]
    return [*out, "--uuid", uuid]


def split_args(argv: Iterable[str], flags: Iterable[str] = WORKER_FLAGS) -> tuple[dict[str, str], list[str]]:
    """Take ``--flag value`` / ``--flag=value`` items for *flags* out of *argv*.

    Returns ``(values, rest)``: ``values`` maps flag name (without dashes) to
    its last value; ``rest`` keeps every other item in its original order, so
    another parser can read it. A known flag at the very end with no value
    is left in ``rest`` (it is not ours to interpret).
    """
    wanted = set(flags)
    items = list(argv)
    values: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            name, eq, value = item[2:].partition("=")
            if name in wanted:
                if eq:
                    values[name] = value
                    i += 1
                    continue
                if i + 1 < len(items):
                    values[name] = items[i + 1]
                    i += 2
                    continue
        rest.append(item)
        i += 1
    return values, rest


def _generation(value: Any) -> Generation:
    """``--protocol 1`` / ``protocol=1`` is B, ``0``/absent A; names as :meth:`Generation.parse`."""
    if isinstance(value, Generation):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"bad protocol {value!r}")
    text = str(value).strip()
    if not text:  # no --protocol flag: the legacy protocol
        return Generation.A
    try:
        return Generation.parse(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a :class:`~cocaine_http.aio.worker.Worker` needs, with defaults.

    Runtime-given (argv): ``app``, ``endpoint``, ``locator``, ``uuid``,
    ``generation``. Timers are seconds, sizes bytes.
    """

    app: str = ""
    endpoint: str = ""
    #: The ``--locator`` string as given (A: one ``host:port``; B: a comma list).
    locator: str = f"127.0.0.1:{DEFAULT_LOCATOR_PORT}"
    uuid: str = ""
    generation: Generation = Generation.A
    #: Send a heartbeat this often. The runtime kills a worker that is silent
    #: for its profile's heartbeat-timeout (30 s default in both generations).
    heartbeat_interval: float = 5.0
    #: Exit (code 3) when the runtime has not answered for this long.
    disown_timeout: float = 30.0
    #: On terminate, in-flight sessions get this long to finish before they are
    #: aborted. Must stay under the runtime's kill window (A 5 s, B 10 s).
    grace_period: float = 4.0
    #: Bound on the ``on_shutdown`` hooks, which run after the drain and before
    #: the terminate reply; ``grace_period + shutdown_timeout`` < 5 s for A.
    shutdown_timeout: float = 0.75
    #: Threads running plain ``def`` handlers. 0: WSGI apps run inline on the
    #: loop thread (one request at a time, as gunicorn's sync worker runs
    #: them); plain ``def`` handlers then get one thread.
    threads: int = 8
    #: Sessions running at once; more invokes are refused with a retryable error.
    max_sessions: int = 4096
    #: A session whose request has not ended and on which nothing moved (no
    #: request data in, no response data out) for this long is failed and its
    #: slot freed (nginx's client_body_timeout is 60 s too). 0 = never.
    request_idle_timeout: float = 60.0
    #: Unread request bytes one session may buffer before reading pauses.
    session_read_high_water: int = 1 * MiB
    #: Unread request bytes all sessions together may buffer before reading pauses.
    read_high_water: int = 8 * MiB
    #: Reading resumes when the total is at or below this (and no session is over its mark).
    read_low_water: int = 2 * MiB
    #: Bytes the socket may buffer outbound before ``response.write`` waits (drain).
    write_high_water: int = 1 * MiB
    #: Largest frame accepted from the runtime.
    max_frame_size: int = 256 * MiB
    #: Bytes a blocking (threaded) ``response.write`` may have queued for the loop.
    sync_write_budget: int = 256 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.generation, Generation):
            object.__setattr__(self, "generation", _generation(self.generation))
        for name in ("heartbeat_interval", "disown_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("grace_period", "shutdown_timeout", "request_idle_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative")
        if type(self.threads) is not int or self.threads < 0:
            raise ConfigError(f"threads must be a non-negative integer, got {self.threads!r}")
        for name in (
            "max_sessions",
            "session_read_high_water",
            "read_high_water",
            "write_high_water",
            "max_frame_size",
            "sync_write_budget",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.read_low_water <= self.read_high_water:
            raise ConfigError("read_low_water must be between 0 and read_high_water")

    # -- construction --------------------------------------------------------
    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None, **overrides: Any) -> WorkerConfig:
        """Read the runtime's flags (and ``--threads``) from *argv*, ignoring the rest.

        *argv* excludes the program name; ``None`` reads ``sys.argv[1:]``.
        Keyword *overrides* win over argv.
        """
        if argv is None:
            import sys

            argv = sys.argv[1:]
        values, _rest = split_args(argv, WORKER_FLAGS)
        fields: dict[str, Any] = {}
        for name in ("app", "endpoint", "locator", "uuid"):
            if name in values:
                fields[name] = values[name]
        fields["generation"] = _generation(values.get("protocol", "0"))
        if "threads" in values:
            try:
                fields["threads"] = int(values["threads"])
            except ValueError:
                raise ConfigError(f"--threads must be an integer, got {values['threads']!r}") from None
        return cls(**fields).replace(**overrides)

    def replace(self, **changes: Any) -> WorkerConfig:
        """A copy with *changes*; accepts ``protocol=`` as an alias of ``generation=``."""
        fixed: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(self)}
        for key, value in changes.items():
            key = _ALIASES.get(key, key)
            if key not in names:
                raise ConfigError(f"unknown worker option {key!r}")
            if key == "generation":
                value = _generation(value)
            fixed[key] = value
        return dataclasses.replace(self, **fixed) if fixed else self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> WorkerConfig:
        return cls().replace(**dict(values))

    # -- derived -------------------------------------------------------------
    @property
    def protocol(self) -> int:
        """The ``--protocol`` number: 0 for A, 1 for B."""
        return 1 if self.generation is Generation.B else 0

    @property
    def locators(self) -> list[tuple[str, int]]:
        """``--locator`` parsed: one endpoint in A (leniently), a list in B."""
        try:
            return parse_locators(self.locator, comma_list=self.generation is Generation.B)
        except ValueError as exc:
            raise ConfigError(f"bad --locator {self.locator!r}: {exc}") from None

    def validate_for_run(self) -> None:
        """What a worker needs before it can connect; raises :class:`ConfigError`."""
        missing = [f"--{n}" for n in ("endpoint", "uuid") if not getattr(self, n)]
        if missing:
            raise ConfigError(
                "missing runtime argument(s) "
                + ", ".join(missing)
                + ": a worker is started by the cocaine runtime"
                + " (--app A --endpoint PATH --locator HOST:PORT --uuid U [--protocol 1])"
            )

    def argv(self) -> list[str]:
        """The runtime's argv for this config, in the runtime's (sorted) order."""
        return runtime_argv(self.app, self.endpoint, self.locator, self.uuid, self.generation)
