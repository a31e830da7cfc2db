"""The worker's settings: its parser, config files, and the order their sources apply in.

Lowest precedence first: defaults, ``--config FILE`` (or ``COCAINE_HTTP_CONFIG``),
``COCAINE_HTTP_<OPTION>``, ``COCAINE_HTTP_ARGS``, the command line. The runtime's
own flags are taken out of argv first, wherever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._version import __version__
from ..config import RUNTIME_FLAGS, split_args
from ..errors import ConfigError
from .environ import ENV_APP, ENV_ARGS, ENV_CONFIG, ENV_PREFIX, apply_env
from .options import OPTIONS, DeprecatedAlias, add_options
from .targets import split_env_targets


def build_parser(environ: Any = None, *, env: bool = True) -> argparse.ArgumentParser:
    """The worker's parser; ``env``: with the ``COCAINE_HTTP_<OPTION>`` defaults of *environ*."""
    p = argparse.ArgumentParser(
        prog="cocaine-http",
        description=(
            "Serve an unmodified WSGI or ASGI app (Flask, Django, FastAPI ...) as a Cocaine worker. "
            "The cocaine runtime starts this command with its own flags (--app NAME --endpoint PATH "
            "--locator HOST:PORT --uuid ID [--protocol 1]); to try an app locally use "
            "'cocaine-http dev TARGET', to make a deployable manifest 'cocaine-http init TARGET'."
        ),
        epilog=(
            "subcommands: init (write manifest.json + launcher), dev / runtime (local runtime), "
            "help [COMMAND]. "
            f"Environment: {ENV_APP} (targets), {ENV_ARGS} (extra options), and every option as "
            f"{ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}THREADS=4); flags win. "
            "Docs: docs/http.md, docs/deploy.md."
        ),
        allow_abbrev=False,
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET[=EVENT]",
        help="the app as MODULE:ATTR (or MODULE:factory(...)); "
        "'=EVENT' picks its event, '=*' all other events",
    )
    p.add_argument("--version", action="version", version=f"cocaine-http {__version__}")
    add_options(p)
    p.add_argument(
        "--timeout",
        action=DeprecatedAlias,
        dest="grace_period",
        type=float,
        metavar="S",
        new="--grace-period",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="import the app(s), check the interface fits, report, and exit",
    )
    return apply_env(p, environ) if env else p


#: What a config file may set: the targets and every option of :data:`OPTIONS`.
_CONFIG_KEYS = {"targets"} | {opt.dest for opt in OPTIONS} - {"config"}


def load_config_file(path: str) -> dict[str, Any]:
    """Settings from a ``.json`` object or a ``.py`` file's module-level names."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    if path.endswith(".py"):
        try:
            ns = runpy.run_path(path)
        except Exception as exc:
            raise ConfigError(f"config file {path!r} failed: {type(exc).__name__}: {exc}") from exc
        values = {k: v for k, v in ns.items() if not k.startswith("_") and k in _CONFIG_KEYS | {"timeout"}}
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config file {path!r} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path!r} must hold a JSON object")
        values = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - _CONFIG_KEYS - {"timeout"})
        if unknown:
            raise ConfigError(f"config file {path!r}: unknown setting(s) {', '.join(unknown)}")
    if "timeout" in values:  # the old name of grace_period
        values.setdefault("grace_period", values.pop("timeout"))
    if isinstance(values.get("env"), dict):
        values["env"] = [f"{k}={v}" for k, v in values["env"].items()]
    if isinstance(values.get("targets"), str):
        values["targets"] = split_env_targets(values["targets"])
    return values


@dataclass(slots=True)
class Options:
    """The parsed command line, with the runtime's flags and the ones ignored kept apart."""

    ns: argparse.Namespace
    runtime: dict[str, str]
    ignored: list[str]

    @property
    def as_worker(self) -> bool:
        """Started by a runtime: it gave the socket to connect to and our id."""
        return bool(self.runtime.get("endpoint") and self.runtime.get("uuid"))


def parse_options(argv: Sequence[str]) -> Options:
    """The worker's settings from every source, in the order of the module docstring."""
    runtime, rest = split_args(argv, RUNTIME_FLAGS)
    extra = shlex.split(os.environ.get(ENV_ARGS, ""))
    rest = [*extra, *rest]
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(rest)
    config_path = known.config or os.environ.get(ENV_CONFIG)
    # precedence: defaults < config file < COCAINE_HTTP_<OPTION> < COCAINE_HTTP_ARGS < argv
    parser = build_parser(env=False)
    if config_path:
        parser.set_defaults(**load_config_file(config_path))
    apply_env(parser)
    as_worker = bool(runtime.get("endpoint") and runtime.get("uuid"))
    ignored: list[str] = []
    # intermixed: targets may come before and after options (TARGET --threads 4 TARGET2=api)
    if as_worker:
        # The runtime may add flags we do not know (PROTOCOL.md §5 item 1): ignore them.
        ns, ignored = parser.parse_known_intermixed_args(rest)
    else:
        ns = parser.parse_intermixed_args(rest)
    if not ns.targets:
        env_targets = os.environ.get(ENV_APP, "")
        if env_targets.strip():
            ns.targets = split_env_targets(env_targets)
    return Options(ns, runtime, ignored)
