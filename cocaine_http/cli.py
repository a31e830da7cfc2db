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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cocaine-http",
        description=(
            "Serve an unmodified WSGI or ASGI app (Flask, Django, FastAPI ...) as a Cocaine worker. "
            "The cocaine runtime starts this command with its own flags (--app NAME --endpoint PATH "
            "--locator HOST:PORT --uuid ID [--protocol 1]); to try an app locally use "
            "'cocaine-http dev TARGET', to make a deployable manifest 'cocaine-http init TARGET'."
        ),
        epilog=(
            "subcommands: init (write manifest.json + launcher), dev / runtime (local runtime). "
            f"Environment: {ENV_APP} (targets), {ENV_ARGS} (extra options), {ENV_CONFIG} (config file). "
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
    p.add_argument(
        "--event", default=DEFAULT_EVENT, help="event served by targets without '=EVENT' (default: http)"
    )
    p.add_argument(
        "--interface", choices=("auto", "wsgi", "asgi"), default="auto", help="app interface (default: auto)"
    )
    p.add_argument("--factory", action="store_true", help="call ATTR without arguments to get the app")
    p.add_argument("--threads", type=int, default=None, help="threads running WSGI apps (default: 8)")
    p.add_argument("--root-path", default="", help="prefix the front-end strips (SCRIPT_NAME / root_path)")
    p.add_argument(
        "--lifespan", choices=("auto", "on", "off"), default="auto", help="ASGI lifespan (default: auto)"
    )
    p.add_argument(
        "--timeout", type=float, default=None, help="graceful terminate: seconds in-flight requests get"
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=False, help="log every request"
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable"
    )
    p.add_argument("--config", default=None, metavar="FILE", help="settings file (.json or .py)")
    p.add_argument("--chdir", default=None, metavar="DIR", help="change to DIR before importing the app")
    p.add_argument("--app-dir", default=None, metavar="DIR", help="put DIR first on sys.path (default: cwd)")
    p.add_argument(
        "--keep-cookie-pairs", action="store_true", help="do not drop the Tornado proxy's cookie pairs"
    )
    p.add_argument("--check", action="store_true", help="import the app(s), report the interface, and exit")
    return p


_CONFIG_KEYS = {
    "targets",
    "event",
    "interface",
    "factory",
    "threads",
    "root_path",
    "lifespan",
    "timeout",
    "log_level",
    "access_log",
    "env",
    "chdir",
    "app_dir",
    "keep_cookie_pairs",
}


def load_config_file(path: str) -> dict[str, Any]:
    """Settings from a ``.json`` object or a ``.py`` file's module-level names."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    if path.endswith(".py"):
        try:
            ns = runpy.run_path(path)
        except Exception as exc:
            raise ConfigError(f"config file {path!r} failed: {type(exc).__name__}: {exc}") from exc
        values = {k: v for k, v in ns.items() if not k.startswith("_") and k in _CONFIG_KEYS}
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"config file {path!r} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path!r} must hold a JSON object")
        values = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - _CONFIG_KEYS)
        if unknown:
            raise ConfigError(f"config file {path!r}: unknown setting(s) {', '.join(unknown)}")
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
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(rest)
    config_path = known.config or os.environ.get(ENV_CONFIG)
    if config_path:
        parser.set_defaults(**load_config_file(config_path))
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
        out.append(Loaded(spec, app, detect_interface(app, ns.interface)))
    return out


def install(worker: Any, loaded: Sequence[Loaded], ns: argparse.Namespace) -> None:
    """Register every loaded app on *worker* (handlers, lifespan hooks)."""
    from .compat.asgi import ASGIHandler, Lifespan
    from .compat.wsgi import InlineWSGIHandler, WSGIHandler

    generation = worker.config.generation
    common = {
        "generation": generation,
        "root_path": ns.root_path,
        "access_log": ns.access_log,
        "drop_cookie_pairs": not ns.keep_cookie_pairs,
    }
    for item in loaded:
        handler: Any
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
        log.info("serving %s (%s) on event %r", item.spec.target, item.interface.upper(), item.spec.event)


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
    _setup_logging(ns.log_level)
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
    from .worker import Worker

    options: dict[str, Any] = {}
    if ns.threads is not None:
        options["threads"] = ns.threads
    if ns.timeout is not None:
        options["grace_period"] = ns.timeout
    runtime_argv = [x for k, v in opts.runtime.items() for x in (f"--{k}", v)]
    worker = Worker(runtime_argv, **options)
    cfg = worker.config
    window = 5.0 if cfg.protocol == 0 else 10.0  # the runtime's kill window after terminate
    if cfg.grace_period + cfg.shutdown_timeout >= window:
        log.warning(
            "--timeout %.1f s + shutdown hooks (%.2f s) reach the runtime's %.0f s kill window: "
            "the worker may be killed before it says goodbye",
            cfg.grace_period,
            cfg.shutdown_timeout,
            window,
        )
    install(worker, loaded, ns)
    return int(worker.run(exit=False))


# -- init ----------------------------------------------------------------------

_LAUNCHER = '''#!{shebang}
# Generated by `cocaine-http init` (cocaine-http {version}).
#
# The cocaine runtime executes this file as the app's "slave", passing only its
# own flags (--app NAME --endpoint PATH --locator HOST:PORT --uuid ID
# [--protocol 1]). The app to serve comes from COCAINE_HTTP_APP (and extra
# options from COCAINE_HTTP_ARGS) in the manifest's "environment".
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
{fallback}from cocaine_http.cli import main

if __name__ == "__main__":
    sys.exit(main(["--app-dir", HERE, *sys.argv[1:]]))
'''

_FALLBACK = '''try:
    import cocaine_http  # noqa: F401
except ImportError:  # not installed for this interpreter: use the copy init ran from
    sys.path.insert(0, {path!r})

'''


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
        help="interpreter for the launcher's shebang, e.g. '/usr/bin/env python3' "
        "(default: this interpreter)",
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
            check.parse_args(["x:y", *extra])
        except SystemExit:
            return 2
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
    if extra:
        environment[ENV_ARGS] = shlex.join(extra)
    manifest = {"slave": LAUNCHER_NAME, "environment": environment}
    with open(manifest_path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    if ns.python:
        shebang, fallback = ns.python, ""
    else:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        shebang, fallback = sys.executable, _FALLBACK.format(path=package_parent)
    with open(launcher_path, "w", encoding="utf-8") as fh:
        fh.write(_LAUNCHER.format(shebang=shebang, version=__version__, fallback=fallback))
    mode = os.stat(launcher_path).st_mode
    os.chmod(launcher_path, mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    name = ns.name or os.path.basename(directory) or "myapp"
    print(
        f"wrote {manifest_path}\nwrote {launcher_path}\n\n"
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


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Returns the exit code (the wrapper passes it to ``sys.exit``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in SUBCOMMANDS_RUNTIME:
            return _runtime_cli(args)
        if args and args[0] == "init":
            return init_main(args[1:])
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
