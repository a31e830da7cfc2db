"""Argument converters: how a hosted service's method turns the caller's msgpack values into its own.

A :class:`~.service.Method` lists one converter per argument; each returns
the value the handler gets or raises :class:`ArgError`, which the host
answers as a protocol violation (see :mod:`.service_connection`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.wire import as_text

__all__ = ["ArgError", "Converter", "integer", "raw", "text", "text_list", "value"]


class ArgError(Exception):
    """An argument converter refused a value."""


# -- argument converters ------------------------------------------------------
def text(v: Any) -> str:
    if isinstance(v, bytes | str):
        return as_text(v)
    raise ArgError(f"expected a string, got {type(v).__name__}")


def raw(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    raise ArgError(f"expected a raw string, got {type(v).__name__}")


def integer(v: Any) -> int:
    if type(v) is int:
        return v
    raise ArgError(f"expected an integer, got {type(v).__name__}")


def text_list(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise ArgError(f"expected an array of strings, got {type(v).__name__}")
    return [text(item) for item in v]


def value(v: Any) -> Any:
    return v


Converter = Callable[[Any], Any]
