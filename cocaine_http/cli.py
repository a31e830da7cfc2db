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
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import runpy
import shlex
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._version import __version__
from .accesslog import DEFAULT_FORMAT as DEFAULT_ACCESS_FORMAT
from .config import RUNTIME_FLAGS, split_args
from .errors import AppImportError, ConfigError, StartupError

__all__ = ["AppSpec", "build_parser", "init_main", "load_config_file", "main", "parse_app_specs"]

log = logging.getLogger("cocaine_http.cli")

ENV_APP = "COCAINE_HTTP_APP"
ENV_ARGS = "COCAINE_HTTP_ARGS"
ENV_CONFIG = "COCAINE_HTTP_CONFIG"
DEFAULT_EVENT = "http"
LAUNCHER_NAME = "cocaine-http-launcher"
SUBCOMMANDS_RUNTIME = ("dev", "runtime")

_EVENT_RE = re.compile(r"^(?:\*|[A-Za-z0-9_.\-]+)$")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One ``TARGET[=EVENT]`` of the command line."""

    target: str
    event: str


def _balanced(text: str) -> bool:
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


def _split_env_targets(value: str) -> list[str]:
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
    specs = [split_spec(item, default_event) for item in items if item.strip()]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.event in seen:
            raise ConfigError(f"event {spec.event!r} is mapped twice ({seen[spec.event]} and {spec.target})")
        seen[spec.event] = spec.target
    return specs


# -- options -------------------------------------------------------------------


ENV_PREFIX = "COCAINE_HTTP_"
#: Options never read from the environment (the targets have COCAINE_HTTP_APP).
_NO_ENV = frozenset({"help", "version", "check", "targets"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_name(dest: str) -> str:
    """``root_path`` -> ``COCAINE_HTTP_ROOT_PATH``: the variable of an option."""
    return ENV_PREFIX + dest.upper()


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
            kind = {int: "an integer", float: "a number"}.get(action.type)  # type: ignore[call-overload]
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
        "--timeout", action=DeprecatedAlias, dest="grace_period", type=float, metavar="S",
        new="--grace-period"
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
        values["targets"] = _split_env_targets(values["targets"])
    return values


@dataclass(slots=True)
class Options:
    ns: argparse.Namespace
    runtime: dict[str, str]
    ignored: list[str]

    @property
    def as_worker(self) -> bool:
        return bool(self.runtime.get("endpoint") and self.runtime.get("uuid"))


def parse_options(argv: Sequence[str]) -> Options:
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
            ns.targets = _split_env_targets(env_targets)
    return Options(ns, runtime, ignored)


# -- serving -------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def _apply_environment(ns: argparse.Namespace) -> None:
    for item in ns.env:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"--env expects KEY=VALUE, got {item!r}")
        os.environ[key] = value
    if ns.chdir:
        try:
            os.chdir(ns.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {ns.chdir!r}: {exc.strerror}") from None
    from .importer import add_app_dir

    add_app_dir(ns.app_dir)
    if ns.app_dir is not None and ns.chdir is None:
        add_app_dir(None)  # the cwd (the runtime's spool dir) stays importable too


@dataclass(slots=True)
class Loaded:
    spec: AppSpec
    app: Any
    interface: str


def load_apps(ns: argparse.Namespace) -> list[Loaded]:
    from .compat.detect import detect_interface
    from .importer import import_app

    specs = parse_app_specs(ns.targets, ns.event)
    if not specs:
        raise ConfigError(
            f"no app given: pass TARGET (MODULE:ATTR, e.g. myproject.wsgi:application) or set {ENV_APP}"
        )
    out = []
    for spec in specs:
        app = import_app(spec.target, factory=ns.factory)
        interface = detect_interface(app, ns.interface)
        mismatch = interface_mismatch(app, interface)
        if mismatch:
            raise ConfigError(f"{spec.target}: --interface {interface} does not fit: {mismatch}")
        out.append(Loaded(spec, app, interface))
    return out


def interface_mismatch(app: Any, interface: str) -> str:
    """Why *app* surely cannot be served as *interface* (``""``: it may be).

    Only unambiguous signs count, so an explicit ``--interface`` still wins where the
    detection guesses: an ``async`` callable is not WSGI; a plain callable taking exactly
    ``(environ, start_response)`` is not ASGI."""
    import inspect

    from asgiref.sync import iscoroutinefunction

    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if inspect.isclass(app):
        return ""  # ASGI 2 classes, or WSGI apps as classes: nothing sure to say
    if interface == "wsgi":
        if iscoroutinefunction(app) or (call is not None and iscoroutinefunction(call)):
            return "the app is an async (ASGI) callable; use --interface asgi or auto"
        return ""
    if call is None or iscoroutinefunction(call):
        return ""
    try:
        params = list(inspect.signature(call).parameters.values())
    except (TypeError, ValueError):
        return ""
    plain = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(plain) == 2 and all(p.default is p.empty for p in plain) and len(params) == 2:
        names = ", ".join(p.name for p in plain)
        return f"the app is a plain callable ({names}), a WSGI app; use --interface wsgi or auto"
    return ""


ROOT_PATH_AUTO = "auto"


def root_path(option: str, app: str, event: str) -> str:
    """``--root-path``; ``auto`` is ``/<app>/<event>``, the prefix the proxies strip from
    ``/<app>/<event>/<rest>`` (PROTOCOL.md §2.8, §3.9), so the app's own URLs (redirects,
    ``url_for``) point back through the proxy. ``""`` for the catch-all event ``*``."""
    if option.strip().lower() != ROOT_PATH_AUTO:
        return option
    if not app or event == "*":
        return ""
    return f"/{app}/{event}"


def install(worker: Any, loaded: Sequence[Loaded], ns: argparse.Namespace) -> None:
    """Register every loaded app on *worker* (handlers, lifespan hooks)."""
    from .compat.asgi import ASGIHandler, Lifespan
    from .compat.common import set_forwarded_allow_ips
    from .compat.wsgi import InlineWSGIHandler, WSGIHandler

    generation = worker.config.generation
    trust = set_forwarded_allow_ips(ns.forwarded_allow_ips)
    log.debug("X-Forwarded-For/-Proto trusted from %s", trust.spec or "nobody")
    common = {
        "generation": generation,
        "access_log": ns.access_log or bool(ns.access_log_format),
        "access_log_format": ns.access_log_format,
        "drop_cookie_pairs": not ns.keep_cookie_pairs,
        "app_name": worker.config.app,
    }
    for item in loaded:
        handler: Any
        common["root_path"] = root_path(ns.root_path, worker.config.app, item.spec.event)
        if item.interface == "asgi":
            lifespan = Lifespan(item.app, ns.lifespan)
            handler = ASGIHandler(item.app, lifespan=lifespan, **common)
            worker.on_startup.append(lifespan.startup)
            worker.on_shutdown.append(lifespan.shutdown)
            worker.events.on("terminate", handler.shutting_down)
        else:
            inline = worker.config.threads == 0  # --threads 0: the app runs on the loop thread
            handler = (InlineWSGIHandler if inline else WSGIHandler)(item.app, **common)
        if item.spec.event == "*":
            worker.on_default(handler)
        else:
            worker.on(item.spec.event, handler)
        log.info(
            "serving %s (%s) on event %r, root path %r",
            item.spec.target,
            item.interface.upper(),
            item.spec.event,
            common["root_path"],
        )


def _not_a_worker(opts: Options, loaded: Sequence[Loaded] | None) -> int:
    ns = opts.ns
    lines = []
    if opts.runtime.get("app") and not opts.as_worker:
        lines.append(
            f"note: --app is the cocaine runtime's flag (the app's name), not the target; "
            f"give the target positionally: cocaine-http {opts.runtime['app']}"
        )
    if loaded:
        for item in loaded:
            lines.append(f"{item.spec.target}: {item.interface.upper()} app, event {item.spec.event!r}")
    target = " ".join(ns.targets) if ns.targets else "MODULE:ATTR"
    lines += [
        "",
        "cocaine-http runs as a worker started by the cocaine runtime, which passes",
        "--app NAME --endpoint PATH --locator HOST:PORT --uuid ID [--protocol 1].",
        f"  serve it locally with the bundled runtime:   cocaine-http dev {target}",
        f"  write a manifest + launcher for deployment:  cocaine-http init {target}",
        "  check that the app imports:                  cocaine-http --check " + target,
    ]
    print("\n".join(lines).strip("\n"), file=sys.stderr)
    return 2


def serve(argv: Sequence[str]) -> int:
    opts = parse_options(argv)
    ns = opts.ns
    handler = None
    if opts.as_worker and not ns.check:
        from .logs import install as install_logging

        # before the app is imported: its records go to the runtime's logging service
        handler = install_logging(ns.log_level)
    else:
        _setup_logging(ns.log_level or "info")
    try:
        return _serve(opts, handler)
    finally:
        if handler is not None:
            handler.close_logger()  # what is still held or queued goes to stderr


def _serve(opts: Options, handler: Any) -> int:
    ns = opts.ns
    for item in opts.ignored:
        log.warning("ignoring unknown argument %r", item)
    _apply_environment(ns)
    if not opts.as_worker and not ns.check:
        loaded = load_apps(ns) if ns.targets else None
        return _not_a_worker(opts, loaded)
    loaded = load_apps(ns)
    if ns.check:
        for item in loaded:
            print(f"{item.spec.target}: {item.interface.upper()} app, event {item.spec.event!r}")
        return 0
    from .aio.worker import Worker

    options: dict[str, Any] = {}
    if ns.threads is not None:
        options["threads"] = ns.threads
    if ns.grace_period is not None:
        options["grace_period"] = ns.grace_period
    if ns.request_idle_timeout is not None:
        options["request_idle_timeout"] = ns.request_idle_timeout
    runtime_argv = [x for k, v in opts.runtime.items() for x in (f"--{k}", v)]
    worker = Worker(runtime_argv, **options)
    cfg = worker.config
    window = 5.0 if cfg.protocol == 0 else 10.0  # the runtime's kill window after terminate
    if cfg.grace_period + cfg.shutdown_timeout >= window:
        log.warning(
            "--grace-period %.1f s + shutdown hooks (%.2f s) reach the runtime's %.0f s kill window: "
            "the worker may be killed before it says goodbye",
            cfg.grace_period,
            cfg.shutdown_timeout,
            window,
        )
    if handler is not None:
        handler.bind(worker, runtime_argv)
    install(worker, loaded, ns)
    return int(worker.run(exit=False))


# -- init ----------------------------------------------------------------------

_HEADER = """\
# Generated by `cocaine-http init` (cocaine-http {version}).
#
# The cocaine runtime executes this file as the app's "slave", passing only its
# own flags (--app NAME --endpoint PATH --locator HOST:PORT --uuid ID
# [--protocol 1]). The app to serve comes from COCAINE_HTTP_APP (and extra
# options from COCAINE_HTTP_ARGS) in the manifest's "environment".
"""

# A shell script and a Python script at once: sh runs the part up to `exit`, which
# picks an interpreter and execs it on this same file; to Python that part is a string.
_FIND_PYTHON = """\
#
# The shell part finds the interpreter wherever the app is unpacked:
# $COCAINE_HTTP_PYTHON if set (e.g. in the manifest's environment), else the first
# of ./.venv/bin/python, ./venv/bin/python, python3, python that has cocaine_http.
''':'
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -n "${COCAINE_HTTP_PYTHON:-}" ]; then exec "$COCAINE_HTTP_PYTHON" "$0" "$@"; fi
# find_spec, not an import: the check costs one interpreter start, not the package's import
has="import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('cocaine_http', 'msgpack'))))"
for py in "$here/.venv/bin/python" "$here/venv/bin/python" python3 python; do
    if "$py" -c "$has" >/dev/null 2>&1; then exec "$py" "$0" "$@"; fi
done
echo "$0: no python here has cocaine_http (tried $here/.venv/bin/python," \\
    "$here/venv/bin/python, python3, python): install cocaine-http on this host" \\
    "or set COCAINE_HTTP_PYTHON in the manifest's environment" >&2
exit 127
'''
"""

_BODY = """\
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
from cocaine_http.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--app-dir", HERE, *sys.argv[1:]]))
"""


def launcher_text(python: str | None = None) -> str:
    """The launcher: portable (``/bin/sh`` finding a python) or, with *python*, that interpreter."""
    if python:
        return f"#!{python}\n" + _HEADER.format(version=__version__) + _BODY
    return "#!/bin/sh\n" + _HEADER.format(version=__version__) + _FIND_PYTHON + _BODY


def build_init_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cocaine-http init",
        description=(
            "Write manifest.json and an executable launcher for a Cocaine app that serves TARGET. "
            "Options after TARGET that cocaine-http understands (--threads, --root-path ...) are stored "
            f"in the manifest's environment as {ENV_ARGS}."
        ),
        allow_abbrev=False,
    )
    p.add_argument("target", metavar="TARGET[=EVENT]", nargs="+", help="the app(s), as for cocaine-http")
    p.add_argument("--dir", default=".", help="where to write the files (default: .)")
    p.add_argument("--name", default=None, help="the cocaine app name (for the printed upload command)")
    p.add_argument(
        "--python",
        default=None,
        metavar="INTERPRETER",
        help="pin the launcher's interpreter (its shebang), e.g. /opt/venv/bin/python; by default "
        "the launcher finds one on the host: $COCAINE_HTTP_PYTHON, ./.venv, ./venv, python3, python",
    )
    p.add_argument(
        "--root-path",
        default=ROOT_PATH_AUTO,
        help="the prefix the proxies strip; default 'auto': /APP/EVENT as they route "
        "/APP/EVENT/PATH (an empty string turns it off)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return p


def init_main(argv: Sequence[str]) -> int:
    parser = build_init_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra:
        # validate what goes into COCAINE_HTTP_ARGS with the real parser now, not at deploy time
        check = build_parser()
        try:
            checked = check.parse_args(["x:y", *extra])
        except SystemExit:
            return 2
        if checked.access_log_format is not None:
            from .accesslog import AccessFormat

            AccessFormat(checked.access_log_format)  # ConfigError now, not at deploy time
    parse_app_specs(ns.target)  # validates the syntax and the event mapping
    from .importer import parse_target

    for item in ns.target:
        parse_target(split_spec(item).target)
    directory = os.path.abspath(ns.dir)
    os.makedirs(directory, exist_ok=True)
    manifest_path = os.path.join(directory, "manifest.json")
    launcher_path = os.path.join(directory, LAUNCHER_NAME)
    for path in (manifest_path, launcher_path):
        if os.path.exists(path) and not ns.force:
            print(f"cocaine-http init: {path} exists (use --force to overwrite)", file=sys.stderr)
            return 2
    environment = {ENV_APP: " ".join(ns.target)}
    if ns.root_path:
        extra = ["--root-path", ns.root_path, *extra]
    if extra:
        environment[ENV_ARGS] = shlex.join(extra)
    manifest = {"slave": LAUNCHER_NAME, "environment": environment}
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    with open(launcher_path, "w", encoding="utf-8") as fh:
        fh.write(launcher_text(ns.python))
    mode = os.stat(launcher_path).st_mode
    os.chmod(launcher_path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    name = ns.name or os.path.basename(directory) or "myapp"
    if ns.python:
        interpreter = f"  its interpreter is {ns.python} (--python): it must exist on the cloud's hosts\n"
    else:
        interpreter = (
            "  it runs $COCAINE_HTTP_PYTHON, ./.venv/bin/python, ./venv/bin/python, python3 or python,\n"
            "  the first that has cocaine_http (pin one with --python INTERPRETER)\n"
        )
    print(
        f"wrote {manifest_path}\nwrote {launcher_path}\n{interpreter}\n"
        "deploy (the app archive must contain the launcher and your code):\n"
        f"  tar -czf {name}.tar.gz -C {directory} .\n"
        f"  cocaine-tool app upload --name {name} --manifest {manifest_path} --package {name}.tar.gz\n"
        f"  cocaine-tool app start --name {name} --profile default\n"
        f"try it locally first:  cocaine-http dev {' '.join(ns.target)}"
    )
    return 0


# -- entry point ---------------------------------------------------------------


def _runtime_cli(argv: Sequence[str]) -> int:
    if importlib.util.find_spec("cocaine_http.runtime") is None or (
        importlib.util.find_spec("cocaine_http.runtime.cli") is None
    ):
        print(
            f"cocaine-http {argv[0]}: the local runtime (cocaine_http.runtime.cli) is not available "
            "in this installation",
            file=sys.stderr,
        )
        return 2
    from .runtime import cli as runtime_cli  # type: ignore[attr-defined]

    return int(runtime_cli.main(list(argv)) or 0)


def help_main(argv: Sequence[str]) -> int:
    """``cocaine-http help [COMMAND]``: the help of the worker or of a subcommand."""
    if not argv:
        build_parser().print_help()
        return 0
    if argv[0] in SUBCOMMANDS_RUNTIME:
        return _runtime_cli([argv[0], "--help"])
    if argv[0] == "init":
        return init_main(["--help"])
    if argv[0] == "help":
        print("usage: cocaine-http help [dev | runtime | init]")
        return 0
    print(
        f"cocaine-http help: no command {argv[0]!r}; commands: dev, runtime, init "
        "(and the worker itself: cocaine-http help)",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code (the wrapper passes it to ``sys.exit``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS_RUNTIME:
            return _runtime_cli(args)
        if args and args[0] == "init":
            return init_main(args[1:])
        if args and args[0] == "help":
            return help_main(args[1:])
        return serve(args)
    except StartupError as exc:
        print(f"cocaine-http: {exc}", file=sys.stderr)
        if isinstance(exc, AppImportError) and exc.__cause__ is not None:
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        return 130
