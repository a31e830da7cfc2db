"""The environment: ``COCAINE_HTTP_<OPTION>`` for every option, and the command's own variables.

A variable becomes its option's default, so a flag on the command line still wins;
the runtime starts workers with only its own flags, so the manifest's environment is
where an app's settings live.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from ..errors import ConfigError
from .options import DeprecatedAlias

#: The targets (same syntax as on the command line, several separated by spaces).
ENV_APP = "COCAINE_HTTP_APP"
#: Extra options, in shell syntax.
ENV_ARGS = "COCAINE_HTTP_ARGS"
#: A settings file, as ``--config``.
ENV_CONFIG = "COCAINE_HTTP_CONFIG"
ENV_PREFIX = "COCAINE_HTTP_"
#: Options never read from the environment (the targets have COCAINE_HTTP_APP).
_NO_ENV = frozenset({"help", "version", "check", "targets"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_name(dest: str) -> str:
    """``root_path`` -> ``COCAINE_HTTP_ROOT_PATH``: the variable of an option."""
    return ENV_PREFIX + dest.upper()


def _env_bool(var: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{var}={value!r}: expected 1/0, true/false, yes/no or on/off")


def _env_value(action: argparse.Action, var: str, value: str) -> Any:
    def one(text: str) -> Any:
        try:
            out = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            kind = "an integer" if action.type is int else "a number" if action.type is float else None
            raise ConfigError(f"{var}={value!r}: {f'expected {kind}' if kind else exc}") from None
        if action.choices is not None and out not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ConfigError(f"{var}={value!r}: expected one of {choices}")
        return out

    if action.nargs == 0:  # store_true / store_const / --x/--no-x
        flag = _env_bool(var, value)
        if isinstance(action, argparse.BooleanOptionalAction):
            return flag
        return action.const if flag else action.default
    if isinstance(action, argparse._AppendAction):  # repeatable: several values, shell syntax
        return [one(item) for item in shlex.split(value)]
    return one(value)


def apply_env(parser: argparse.ArgumentParser, environ: Any = None) -> argparse.ArgumentParser:
    """Give every option of *parser* a ``COCAINE_HTTP_<OPTION>`` variable.

    The variable's name comes from the option's ``dest`` (``--root-path`` ->
    ``COCAINE_HTTP_ROOT_PATH``); a value set there becomes the option's
    default, so a flag on the command line still wins. ``--help`` shows the
    names. Options whose default is ``SUPPRESS`` (deprecated aliases, and the
    worker options ``dev`` only passes on) get the note but are not read here.
    """
    environ = os.environ if environ is None else environ
    for action in parser._actions:
        if not action.option_strings or action.dest in _NO_ENV or isinstance(action, DeprecatedAlias):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        var = env_name(action.dest)
        action.help = f"{action.help or ''} [env {var}]".strip()
        if action.default is argparse.SUPPRESS or var not in environ:
            continue
        action.default = _env_value(action, var, environ[var])
    return parser
