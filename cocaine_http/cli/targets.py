"""The ``TARGET[=EVENT]`` arguments: which app serves which event.

A target is gunicorn/uvicorn's ``MODULE:ATTR`` (see :mod:`cocaine_http.importer`);
``=EVENT`` names the event it serves. Factory calls may hold ``=`` and spaces
(``app:make(debug=True)``), so splitting respects brackets and quotes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_EVENT = "http"

_EVENT_RE = re.compile(r"^(?:\*|[A-Za-z0-9_.\-]+)$")


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One ``TARGET[=EVENT]`` of the command line."""

    target: str
    event: str


def _balanced(text: str) -> bool:
    """Whether *text* closes every bracket and quote it opens (so a split there is safe)."""
    depth = 0
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth == 0 and not quote


def split_spec(text: str, default_event: str = DEFAULT_EVENT) -> AppSpec:
    """``mod:app=api`` -> (``mod:app``, ``api``); an ``=`` inside factory arguments
    (``mod:make(debug=True)``) is not a separator."""
    text = text.strip()
    head, sep, tail = text.rpartition("=")
    if sep and head.strip() and _EVENT_RE.match(tail) and _balanced(head):
        return AppSpec(head.strip(), tail)
    return AppSpec(text, default_event)


def split_env_targets(value: str) -> list[str]:
    """Whitespace-separated targets; spaces inside brackets or quotes do not split."""
    out: list[str] = []
    cur = ""
    for ch in value:
        if ch.isspace() and _balanced(cur):
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def parse_app_specs(items: Sequence[str], default_event: str = DEFAULT_EVENT) -> list[AppSpec]:
    """The targets, each with its event; an event served twice is a :class:`ConfigError`."""
    specs = [split_spec(item, default_event) for item in items if item.strip()]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.event in seen:
            raise ConfigError(f"event {spec.event!r} is mapped twice ({seen[spec.event]} and {spec.target})")
        seen[spec.event] = spec.target
    return specs
