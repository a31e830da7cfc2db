"""Endpoint and runtime-argument parsing, shared by the worker, the client and the CLI.

Formats (PROTOCOL.md §2.4.1, §3.4.1): a UNIX socket path; ``host:port``;
``[v6]:port``; a bare port (0.10.5-0.10.6 ``--locator``); B's comma
separated ``--locator`` list. Parsing is lenient on input and strict on
output: every endpoint comes out as ``str`` (a path) or ``(host, port)``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_LOCATOR_PORT", "Endpoint", "format_endpoint", "parse_endpoint", "parse_locators"]

DEFAULT_LOCATOR_PORT = 10053

#: A UNIX socket path, or a TCP ``(host, port)``.
Endpoint = str | tuple[str, int]


def parse_endpoint(
    value: Endpoint | Sequence[object], *, default_port: int | None = None, unix: bool = False
) -> Endpoint:
    """``"/run/x.sock"`` -> path; ``"h:1"``/``"[::1]:1"``/``("h", 1)`` -> ``(host, port)``.

    Text with a ``/`` is a path (relative runtime paths such as
    ``run/web.123`` included); ``unix=True`` says the value is a path
    whatever it looks like (the worker's ``--endpoint`` always is). A bare
    port (``"10053"``) means localhost; a host without a port takes
    *default_port* when given. Raises :class:`ValueError` otherwise.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"endpoint must be (host, port), got {value!r}")
        host, port = value
        return (str(host).strip("[]"), _port(port))
    text = str(value).strip()
    if not text:
        raise ValueError("empty endpoint")
    if unix or "/" in text or text.startswith("~") or text.endswith(".sock"):
        return text
    if text.isdigit():
        return ("127.0.0.1", _port(text))
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"unterminated IPv6 address in {text!r}")
        if rest.startswith(":"):
            return (host, _port(rest[1:]))
        if rest == "" and default_port is not None:
            return (host, default_port)
        raise ValueError(f"endpoint {text!r} has no port")
    host, sep, port = text.rpartition(":")
    if sep and host and ":" not in host:
        return (host, _port(port))
    if not sep and default_port is not None:
        return (text, default_port)
    if sep and ":" in host and default_port is not None:  # bare IPv6 literal
        return (text, default_port)
    raise ValueError(f"cannot parse endpoint {text!r} (a UNIX path needs a '/', e.g. ./{text})")


def parse_locators(value: str, *, comma_list: bool = True) -> list[tuple[str, int]]:
    """The ``--locator`` flag: one ``host:port`` (A) or a comma list (B)."""
    items = value.split(",") if comma_list else [value]
    out: list[tuple[str, int]] = []
    for item in items:
        if not item.strip():
            continue
        ep = parse_endpoint(item, default_port=DEFAULT_LOCATOR_PORT)
        if isinstance(ep, str):
            raise ValueError(f"locator must be host:port, got {item!r}")
        out.append(ep)
    if not out:
        raise ValueError("no locator endpoint given")
    return out


def format_endpoint(ep: Endpoint) -> str:
    """The inverse of :func:`parse_endpoint`; IPv6 hosts get brackets."""
    if isinstance(ep, str):
        return ep
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(value: object) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ValueError(f"bad port {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port
