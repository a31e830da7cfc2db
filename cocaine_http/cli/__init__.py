"""``cocaine-http``: serve an unmodified WSGI or ASGI app as a Cocaine worker.

::

    cocaine-http [OPTIONS] TARGET[=EVENT] [TARGET=EVENT ...]     run as a worker (runtime flags mixed in)
    cocaine-http init TARGET [--dir DIR] [--name APP] [--python CMD] [--force] [OPTIONS]
    cocaine-http dev ... / cocaine-http runtime ...              the local runtime (cocaine_http.runtime.cli)

``TARGET`` is gunicorn/uvicorn's ``MODULE:ATTR`` (``pkg.wsgi:application``,
``app:create_app()``, ``app:create_app("prod", debug=True)``), see
:mod:`cocaine_http.importer`. Each target serves one event: ``=EVENT``
names it, otherwise ``--event`` (default ``http``); ``=*`` makes it the
handler of every event nobody else handles. Without a positional target,
``COCAINE_HTTP_APP`` is read (same syntax, several separated by spaces).

The runtime execs the manifest's ``slave`` with only its own flags
(``--app NAME --endpoint PATH --locator HOST:PORT --uuid ID [--protocol 1]``,
PROTOCOL.md §5 item 2). They are taken out of argv before our options are
parsed, so they can appear anywhere; ``--app`` is the runtime's (the cocaine
app name), never our target. With ``--endpoint`` and ``--uuid`` present the
process runs as a worker; without them it explains what to do instead.

Settings, lowest precedence first: defaults, ``--config FILE`` (or
``COCAINE_HTTP_CONFIG``; ``.json`` = an object, ``.py`` = module-level
variables, keys are the long option names with ``_``), ``COCAINE_HTTP_ARGS``
(extra options, shell syntax), the command line. Exit codes: 0 ok, 1 runtime
connection lost, 2 bad configuration, 3 disowned/startup failure, 4 the app
could not be imported.

The package, one concept per module: :mod:`.targets` (``TARGET[=EVENT]``),
:mod:`.options` (the option table), :mod:`.environ` (the variables),
:mod:`.settings` (the parser, config files, precedence), :mod:`.apps` (importing
and registering the apps), :mod:`.worker` (serving), :mod:`.scaffold` (``init``),
:mod:`.command` (the console script).
"""

from __future__ import annotations

# Every public name of the former cli.py stays importable from here (the tests, the launcher
# and users' scripts import them); ``X as X`` re-exports them without widening ``__all__``.
from .apps import ROOT_PATH_AUTO as ROOT_PATH_AUTO
from .apps import Loaded as Loaded
from .apps import install as install
from .apps import interface_mismatch as interface_mismatch
from .apps import load_apps as load_apps
from .apps import root_path as root_path
from .command import SUBCOMMANDS_RUNTIME as SUBCOMMANDS_RUNTIME
from .command import help_main as help_main
from .command import main
from .environ import ENV_APP as ENV_APP
from .environ import ENV_ARGS as ENV_ARGS
from .environ import ENV_CONFIG as ENV_CONFIG
from .environ import ENV_PREFIX as ENV_PREFIX
from .environ import apply_env as apply_env
from .environ import env_name as env_name
from .options import LOG_LEVELS as LOG_LEVELS
from .options import OPTIONS as OPTIONS
from .options import DeprecatedAlias as DeprecatedAlias
from .options import Option as Option
from .options import add_options as add_options
from .options import worker_argv as worker_argv
from .scaffold import LAUNCHER_NAME as LAUNCHER_NAME
from .scaffold import build_init_parser as build_init_parser
from .scaffold import init_main
from .scaffold import launcher_text as launcher_text
from .settings import Options as Options
from .settings import build_parser, load_config_file
from .settings import parse_options as parse_options
from .targets import DEFAULT_EVENT as DEFAULT_EVENT
from .targets import AppSpec, parse_app_specs
from .targets import split_spec as split_spec
from .worker import serve as serve

__all__ = ["AppSpec", "build_parser", "init_main", "load_config_file", "main", "parse_app_specs"]
