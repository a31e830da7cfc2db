"""The option table: the worker's serving options, declared once.

``cocaine-http`` (the worker) and ``cocaine-http dev`` (which passes them on to its
workers) both build their options from :data:`OPTIONS`, the environment variables
come from it (:mod:`.environ`) and so do the keys of config files (:mod:`.settings`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..accesslog import DEFAULT_FORMAT as DEFAULT_ACCESS_FORMAT
from .targets import DEFAULT_EVENT

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class DeprecatedAlias(argparse.Action):
    """An old flag name kept working: stores into the new option's ``dest`` and warns once used."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, note: str = "", **kw: Any):
        self.new = new
        self.note = note
        kw.setdefault("help", f"deprecated alias of {new}")
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated, use {self.new}{self.note}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


@dataclass(frozen=True, slots=True)
class Option:
    """One serving option of the worker. ``dev`` takes it too (and passes it on) unless ``dev=False``."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]
    dev: bool = True

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


#: The worker's serving options, shared with ``cocaine-http dev``. A new flag is one
#: line here: it gets a ``COCAINE_HTTP_<NAME>`` variable, ``dev`` accepts it
#: and passes it to its workers, and config files may set it.
OPTIONS: tuple[Option, ...] = (
    Option(("--event",), dict(default=DEFAULT_EVENT, help="event of targets without '=EVENT'")),
    Option(("--interface",), dict(choices=("auto", "wsgi", "asgi"), default="auto", help="app interface")),
    Option(("--factory",), dict(action="store_true", help="call ATTR without arguments to get the app")),
    Option(("--threads",), dict(type=int, default=None,
                                help="threads running WSGI apps (default: 8; 0: inline on the loop)")),
    Option(("--root-path",), dict(default="", help="prefix the front-end strips (SCRIPT_NAME / root_path); "
                                  "'auto': /APP/EVENT as the cocaine proxies route")),
    Option(("--lifespan",), dict(choices=("auto", "on", "off"), default="auto", help="ASGI lifespan")),
    Option(("--grace-period",), dict(type=float, default=None, metavar="SECONDS",
                                     help="on terminate, seconds in-flight requests still get (default: 4)")),
    Option(("--request-idle-timeout",), dict(type=float, default=None, metavar="SECONDS",
                                             help="fail a request that sends nothing (and gets no answer) "
                                             "for this long; 0 = never (default: 60)")),
    Option(("--log-level",), dict(choices=LOG_LEVELS, default=None,
                                  help="default: info, or as a worker the logging service's verbosity"),
           dev=False),
    Option(("--access-log",), dict(action=argparse.BooleanOptionalAction, default=False,
                                   help="log every request")),
    Option(("--access-log-format",), dict(default=None, metavar="FORMAT",
                                          help="access line in gunicorn's atoms (implies --access-log; "
                                          "default: " + DEFAULT_ACCESS_FORMAT.replace("%", "%%") + ")")),
    Option(("--env",), dict(action="append", default=[], metavar="KEY=VALUE", help="set a variable")),
    Option(("--config",), dict(default=None, metavar="FILE", help="settings file (.json or .py)")),
    Option(("--chdir",), dict(default=None, metavar="DIR", help="change to DIR before importing the app")),
    Option(("--app-dir",), dict(default=None, metavar="DIR", help="put DIR first on sys.path (cwd)")),
    Option(("--gc-freeze",), dict(action=argparse.BooleanOptionalAction, default=True,
                                  help="once the apps are imported, gc.freeze() what the import made, so "
                                  "the collector's full passes skip it (default: on)")),
    Option(("--keep-cookie-pairs",), dict(action="store_true", help="keep the Tornado proxy's cookie pairs")),
    Option(("--forwarded-allow-ips",), dict(default=None, metavar="IPS",
                                            help="peers (X-Real-IP) whose X-Forwarded-For/-Proto are "
                                            "trusted: comma-separated addresses, networks or '*' (default: "
                                            "$FORWARDED_ALLOW_IPS, else 127.0.0.1,::1, as uvicorn)")),
)  # fmt: skip


def add_options(parser: argparse.ArgumentParser | Any, *, for_dev: bool = False) -> None:
    """Add :data:`OPTIONS` to *parser*; ``for_dev``: only the ones ``dev`` passes on, defaults suppressed
    (the workers apply the defaults and read the environment themselves)."""
    for opt in OPTIONS:
        if for_dev and not opt.dev:
            continue
        kwargs = dict(opt.kwargs)
        if for_dev:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*opt.flags, **kwargs)


def worker_argv(ns: argparse.Namespace) -> list[str]:
    """The options of :data:`OPTIONS` present in *ns* (parsed with ``for_dev``), back as argv."""
    out: list[str] = []
    for opt in OPTIONS:
        if not opt.dev or not hasattr(ns, opt.dest):
            continue
        value = getattr(ns, opt.dest)
        flag = opt.flags[0]
        action = opt.kwargs.get("action")
        if action == "store_true":
            out += [flag] if value else []
        elif action is argparse.BooleanOptionalAction:
            out.append(flag if value else "--no-" + flag[2:])
        elif action == "append":
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return out
