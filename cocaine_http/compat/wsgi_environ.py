"""The PEP 3333 environ of one request, and its ``wsgi.errors`` stream (no IO).

Shared by both modes of :mod:`.wsgi`; headers map as gunicorn maps them
(underscored names dropped, repeats joined), the client's address and scheme
come from the proxy's forwarding headers (:func:`.common.forwarded`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from .. import __version__
from ..http.envelope import HttpRequest
from .common import forwarded, forwarded_values, host_and_port, lowered, server_name

__all__ = ["ErrorStream", "build_environ"]

log = logging.getLogger("cocaine_http.wsgi")

_SERVER_SOFTWARE = f"cocaine-http/{__version__}"


class ErrorStream:
    """``wsgi.errors``: text lines to the ``cocaine_http.wsgi`` logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._pending = ""

    def write(self, text: str) -> int:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line:
                self._log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._log.error("%s", self._pending)
            self._pending = ""


def _latin1(text: str) -> str:
    """A native string in PEP 3333's sense: UTF-8 bytes shown as latin-1."""
    return text.encode("utf-8").decode("latin-1")


#: Request header names -> their environ key (``""``: dropped), learned as
#: they come: one lookup instead of decode, upper, replace and a prefix per
#: header. Bounded, as the names come from clients.
_ENVIRON_KEYS: dict[bytes, str] = {}
_ENVIRON_KEYS_LIMIT = 1024


def _environ_key(name: bytes) -> str:
    """The environ key of header *name*: ``HTTP_`` + its name in upper case with
    ``_`` for ``-``, ``CONTENT_TYPE``/``CONTENT_LENGTH`` bare, ``""`` for a
    name with an underscore."""
    key = name.decode("latin-1").upper()
    if "_" in key:
        key = ""
    else:
        key = key.replace("-", "_")
        if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
            key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_LIMIT:
        _ENVIRON_KEYS[name] = key
    return key


def build_environ(
    req: HttpRequest,
    wsgi_input: Any,
    *,
    root_path: str = "",
    errors: Any = None,
    multithread: bool = True,
) -> dict[str, Any]:
    """The PEP 3333 environ for one request (no IO; *wsgi_input* is given)."""
    script_name = _latin1(root_path.rstrip("/")) if root_path else ""
    path_info = unquote_to_bytes(req.path).decode("latin-1")
    if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
        path_info = path_info[len(script_name) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": req.query.decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{req.version}",
        "SERVER_SOFTWARE": _SERVER_SOFTWARE,
        "RAW_URI": req.uri.decode("latin-1"),
        "wsgi.version": (1, 0),
        "wsgi.input": wsgi_input,
        "wsgi.errors": errors if errors is not None else ErrorStream(log),
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    keys = _ENVIRON_KEYS
    repeated = False
    for name, value in req.headers:
        key = keys.get(name)
        if key is None:
            key = _environ_key(name)
        if not key:
            # gunicorn's default: X_Forwarded and X-Forwarded would both map to
            # HTTP_X_FORWARDED; drop the ambiguous spelling rather than let it spoof.
            continue
        text = value.decode("latin-1")
        prior = environ.get(key)
        if prior is None:
            environ[key] = text
        else:  # a repeated header: joined, as gunicorn joins it
            environ[key] = prior + ("; " if key == "HTTP_COOKIE" else ",") + text
            repeated = True
    if "CONTENT_LENGTH" not in environ and req.body:
        # Proxies buffer the body; without a length (a chunked client request)
        # say how much arrived, for frameworks that ignore wsgi.input_terminated.
        environ["CONTENT_LENGTH"] = str(len(req.body))
    if repeated:  # X-Real-IP's and Host's first values are not in the environ
        headers = lowered(req.headers)
        remote, scheme = forwarded(headers)
        host, port = host_and_port(headers, scheme)
    else:  # the values, read from the environ rather than by more passes over the headers
        get = environ.get
        remote, scheme = forwarded_values(
            get("HTTP_X_REAL_IP"), get("HTTP_X_FORWARDED_FOR"), get("HTTP_X_FORWARDED_PROTO")
        )
        host, port = server_name(get("HTTP_HOST"), scheme)
    environ["wsgi.url_scheme"] = scheme
    environ["SERVER_NAME"] = host
    environ["SERVER_PORT"] = str(port)
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
        environ["REMOTE_PORT"] = "0"
    return environ
