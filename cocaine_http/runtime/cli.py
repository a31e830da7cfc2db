"""``cocaine-http dev`` and ``cocaine-http runtime``: the local runtime from the command line.

::

    cocaine-http dev MODULE:ATTR [--bind HOST:PORT] [--workers N] [--protocol 0.11|0.12]
                     [--reload] [--locator-port PORT] [--name APP] [--storage DIR] [...] [-- WORKER ARGS]
    cocaine-http runtime --apps DIR [--apps DIR ...] [--bind HOST:PORT | --no-http] [--default-app NAME] [...]

``dev`` runs one Python app (its workers are ``python -m cocaine_http
MODULE:ATTR`` plus the runtime's flags) behind the HTTP front; ``runtime``
runs apps given as directories holding ``manifest.json`` (a directory of
such directories works too) plus whatever ``runlists/default`` in
``--storage`` lists; the HTTP front routes ``/<app>/<event>/...`` only (``/``
lists the apps) unless ``--default-app`` names one. Both print where everything listens, serve until
Ctrl-C or SIGTERM, then stop every worker before exiting.

Exit codes: 0 after a clean stop, 1 when the runtime could not start (a
port in use, an app that cannot be found), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..accesslog import AccessFormat
from ..cli import ENV_APP, ENV_PREFIX, DeprecatedAlias, add_options, apply_env, worker_argv
from ..errors import ConfigError
from ..protocol.frames import Generation
from .front import parse_bind
from .local import LocalRuntime
from .logging import Console, parse_level
from .node import AppSpec, spec_from_directory, spec_from_target

__all__ = ["build_parser", "main"]

DEFAULT_BIND = "127.0.0.1:8080"
BIND_HELP = f"HTTP address: HOST:PORT or unix:PATH (default {DEFAULT_BIND})"
#: Seconds ``dev --reload`` gives the app's import check.
CHECK_TIMEOUT = 60.0
# dev: sessions per worker and waiting events, so that an async app takes a few
# hundred concurrent requests before load is shed (the profile's 10 and 100 shed
# at ~110); the figures of gunicorn's worker_connections and backlog
DEV_CONCURRENCY = 1000
DEV_BACKLOG = 2048


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi) + 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST, got {text!r}") from None


def _bind(text: str) -> str:
    try:
        parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _generation(text: str) -> Generation:
    try:
        return Generation.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        type=_generation,
        default=Generation.B,
        metavar="0.11|0.12",
        help="protocol generation to emulate (default 0.12)",
    )
    p.add_argument(
        "--locator-port",
        type=int,
        default=10053,
        metavar="PORT",
        help="locator port (default 10053; 0 = any free port)",
    )
    p.add_argument(
        "--port-range",
        type=_port_range,
        default=None,
        metavar="FIRST-LAST",
        help="ports for services and apps, lowest free first (default: ephemeral)",
    )
    p.add_argument(
        "--services-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the locator and services listen on (default 127.0.0.1); the HTTP address is --bind",
    )
    p.add_argument(
        "--host", action=DeprecatedAlias, dest="services_host", metavar="HOST", new="--services-host",
        note=" (it sets the services' address; the HTTP address is --bind HOST:PORT)",
    )
    p.add_argument("--storage", default=None, metavar="DIR", help="keep storage in DIR (default: memory)")
    p.add_argument(
        "--runtime-dir",
        default=None,
        metavar="DIR",
        help="where worker sockets live (default: a temporary directory)",
    )
    p.add_argument(
        "--front-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="HTTP front: wait this long for a response head or the next body chunk (default 30)",
    )
    p.add_argument(
        "--timeout", action=DeprecatedAlias, dest="front_timeout", type=float, metavar="S",
        new="--front-timeout",
    )
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on Ctrl-C/SIGTERM, stop accepting and let requests in flight finish "
        "for this long before the workers are stopped (default 30, as gunicorn)",
    )
    p.add_argument(
        "--max-body-size",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="HTTP front: largest request body (default 16 MiB)",
    )
    p.add_argument(
        "--body-chunk-size",
        type=int,
        default=256 * 1024,
        metavar="BYTES",
        help="HTTP front: larger bodies stream to the worker in chunks of this size; "
        "0 sends every body whole in the envelope, as the proxies do (default 256 KiB)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="sessions each worker runs at once (profile concurrency; "
        f"default: dev {DEV_CONCURRENCY}, runtime the profile's, 10)",
    )
    p.add_argument(
        "--backlog",
        type=int,
        default=None,
        metavar="N",
        help="requests that wait for a free session before 503 (profile queue-limit; "
        f"default: dev {DEV_BACKLOG}, runtime the profile's, 100)",
    )
    p.add_argument("--no-date-header", action="store_true", help="HTTP front: no Date header on responses")
    p.add_argument(
        "--no-server-header", action="store_true", help="HTTP front: no Server: cocaine-http on responses"
    )
    p.add_argument(
        "--log-level",
        default="info",
        metavar="LEVEL",
        help="console verbosity: debug, info, warning, error (default info)",
    )
    p.add_argument(
        "--headers",
        action="store_true",
        help="B: send the literal tracing headers on every frame, like a 0.12.14 runtime",
    )


def _parsers(environ: Any = None) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="cocaine-http", description="The embedded local cocaine runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser(
        "dev",
        help="run a Python app behind the HTTP front",
        description="Serve TARGET(s) with the local runtime: one app, its workers running "
        "'python -m cocaine_http TARGET...', behind an HTTP front. The targets are imported first; "
        "a target that does not import stops here. Worker options (--threads, --root-path ...) "
        "are taken directly; anything after '--' is also passed to the workers as is.",
        epilog=f"Every option can come from the environment as {ENV_PREFIX}<OPTION> "
        f"(e.g. {ENV_PREFIX}BIND=127.0.0.1:9000); flags win. The workers read the variables of "
        "their own options themselves.",
        allow_abbrev=False,
    )
    dev.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET[=EVENT]",
        help="the WSGI/ASGI app(s), as for cocaine-http (MODULE:ATTR, several with =EVENT)",
    )
    dev.add_argument("-b", "--bind", type=_bind, default=DEFAULT_BIND, help=BIND_HELP)
    dev.add_argument("-w", "--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    dev.add_argument("--name", default=None, help="app name (default: from MODULE)")
    dev.add_argument("--reload", action="store_true", help="restart the workers when a .py file changes")
    _common(dev)
    worker = dev.add_argument_group("worker options (passed to every worker; see cocaine-http --help)")
    add_options(worker, for_dev=True)
    rt = sub.add_parser(
        "runtime",
        help="run apps given as manifest directories",
        epilog=f"Every option can come from the environment as {ENV_PREFIX}<OPTION>; flags win.",
        allow_abbrev=False,
    )
    rt.add_argument(
        "--apps",
        action="append",
        default=[],
        metavar="DIR",
        help="an app directory (manifest.json) or a directory of them; repeatable",
    )
    rt.add_argument("-b", "--bind", type=_bind, default=DEFAULT_BIND, help=BIND_HELP)
    rt.add_argument("--no-http", action="store_true", help="no HTTP front")
    # dev takes these two from the worker options, and its front follows them
    rt.add_argument(
        "--access-log-format",
        default=None,
        metavar="FORMAT",
        help="the HTTP front's access lines, in gunicorn's atoms (default: gunicorn's)",
    )
    rt.add_argument("--no-access-log", action="store_true", help="no access lines from the HTTP front")
    rt.add_argument(
        "--default-app",
        default=None,
        metavar="NAME",
        help="serve / and paths that name no app with this app (default: none; / lists the apps)",
    )
    rt.add_argument(
        "-w",
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="pool size of every app (default: the profile's pool-limit, started on demand)",
    )
    _common(rt)
    apply_env(dev, environ)
    apply_env(rt, environ)
    return parser, {"dev": dev, "runtime": rt}


def build_parser(environ: Any = None) -> argparse.ArgumentParser:
    """Both subcommands (``dev``, ``runtime``) under one parser."""
    return _parsers(environ)[0]


def app_directories(paths: Sequence[str]) -> list[AppSpec]:
    """``--apps`` values → specs: an app directory, or a directory of app directories."""
    specs = []
    for path in paths:
        base = Path(path)
        if (base / "manifest.json").exists():
            specs.append(spec_from_directory(base))
            continue
        if not base.is_dir():
            raise ValueError(f"{path}: not a directory")
        found = sorted(d for d in base.iterdir() if (d / "manifest.json").exists())
        if not found:
            raise ValueError(f"{path}: no manifest.json in it nor in its subdirectories")
        specs.extend(spec_from_directory(d) for d in found)
    return specs


def logs_access(worker_args: Sequence[str]) -> bool:
    """Whether workers started with *worker_args* write access lines themselves (then the
    front writes lines only for the requests it answers itself: one line per request)."""
    on = False
    for arg in worker_args:
        if arg == "--access-log" or arg.startswith("--access-log-format"):
            on = True
        elif arg == "--no-access-log":
            on = False
    return on


def front_logs_access(args: argparse.Namespace) -> bool:
    """Whether the front writes access lines: not after ``runtime --no-access-log`` nor
    ``dev --no-access-log`` (a worker option there, which dev's front follows too)."""
    return getattr(args, "access_log", None) is not False and not getattr(args, "no_access_log", False)


def spec_logs_access(spec: AppSpec) -> bool:
    """Whether *spec*'s workers are ``cocaine-http`` workers told to log access, on their
    command line or in the manifest's ``COCAINE_HTTP_ARGS``."""
    try:
        extra = shlex.split(spec.env.get("COCAINE_HTTP_ARGS", ""))
    except ValueError:
        extra = []
    return logs_access([*spec.argv[1:], *extra])


def banner(rt: LocalRuntime, out: TextIO, title: str, reload: bool = False) -> None:
    gen = rt.generation
    lines = [f"cocaine-http {title}  (protocol {gen.value}, generation {gen.name})"]
    if rt.front is not None:
        default = rt.front.default_app
        lines.append(f"  HTTP       {rt.front_url}" + (f"  ->  app {default}" if default else ""))
    locator = f"{rt.host}:{rt.locator_port}"
    lines.append(f"  locator    {locator}  (clients elsewhere: COCAINE_HTTP_LOCATOR={locator})")
    services = "  ".join(f"{n} :{rt.port_of(n)}" for n in ("logging", "node", "storage"))
    lines.append(f"  services   {services}")
    storage = f"files in {rt.storage_dir}" if rt.storage_dir else "memory"
    lines.append(f"  storage    {storage}")
    for name, app in rt.apps.items():
        pool = app.pool
        size = (
            f"{pool.min_workers} worker{'s' if pool.min_workers != 1 else ''}"
            if pool.min_workers
            else "on demand"
        )
        lines.append(
            f"  app        {name} :{rt.port_of(name)}  pool {size} (limit {pool.pool_limit}, "
            f"{pool.concurrency} sessions each, queue {pool.queue_limit})"
        )
        lines.append(f"             {' '.join(app.spec.argv)}")
    if reload:
        lines.append("  reload     on: workers restart when a .py file changes")
    lines.append("  Ctrl-C to stop")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _snapshot(root: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in ("__pycache__", "node_modules")
            and not d.endswith(".egg-info")
        ]
        for name in filenames:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    out[path] = os.stat(path).st_mtime
        if len(out) > 20000:
            break
    return out


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')


def brief_import_error(stderr: str, cwd: str) -> str:
    """``cocaine-http --check``'s complaint in one line: its message, plus where in the
    app's own code it was raised when the message does not say."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "the import check failed without a message"
    first = next((i for i, line in enumerate(lines) if line.startswith("cocaine-http: ")), None)
    if first is None:
        return lines[-1].strip()
    message = lines[first].removeprefix("cocaine-http: ")
    where = ""
    for line in lines[first + 1 :]:
        match = _FRAME.match(line)
        own = match is not None and f"{os.sep}cocaine_http{os.sep}" in match.group(1)
        if match and not own and not match.group(1).startswith("<"):
            path = match.group(1)
            with contextlib.suppress(ValueError):
                if os.path.abspath(path).startswith(os.path.abspath(cwd) + os.sep):
                    path = os.path.relpath(path, cwd)
            where = f"{path}, line {match.group(2)}"
    if where and f"line {where.rpartition('line ')[2]}" not in message:
        message += f" ({where})"
    return message


async def import_problem(spec: AppSpec, target: str, worker_args: Sequence[str]) -> str | None:
    """Import *target* as the workers would, in a child process (``cocaine-http --check``):
    ``None`` when it imports, else a one-line description."""
    proc = await asyncio.create_subprocess_exec(
        spec.argv[0],
        "-m",
        "cocaine_http",
        "--check",
        target,
        *worker_args,
        "--log-level",
        "critical",  # the app's own records at import are not the problem
        cwd=spec.cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **spec.env},
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"importing took over {CHECK_TIMEOUT:.0f} s"
    if proc.returncode == 0:
        return None
    return brief_import_error(err.decode("utf-8", "replace"), spec.cwd or os.getcwd())


class Reloader:
    """``dev --reload``: restart the app when a ``.py`` file under *root* changes (polling,
    no dependency). A change that breaks the import is reported once, in one line, and
    again only when the problem changes; the app stays stopped until it imports again."""

    def __init__(
        self, console: Console, spec: AppSpec, target: str, worker_args: Sequence[str], workers: int
    ) -> None:
        self.console, self.spec, self.target = console, spec, target
        self.worker_args = list(worker_args)
        self.workers = workers
        self.problem: str | None = None

    async def check(self, report: bool = True) -> bool:
        """Check the import; report a new problem. ``True`` when it imports."""
        problem = await import_problem(self.spec, self.target, self.worker_args)
        if report:
            self.report(problem)
        else:
            self.problem = problem
        return problem is None

    def report(self, problem: str | None) -> None:
        if problem is not None and problem != self.problem:
            self.console.emit(
                "error", "reload", f"{self.spec.name} cannot be imported: {problem}; waiting for a change"
            )
        elif problem is None and self.problem is not None:
            self.console.emit("info", "reload", f"{self.spec.name} imports again")
        self.problem = problem

    async def watch(self, rt: LocalRuntime, root: Path, period: float = 1.0) -> None:
        spec = self.spec
        before = _snapshot(root)
        while True:
            await asyncio.sleep(period)
            now = _snapshot(root)
            if now == before:
                continue
            changed = sorted(set(now.items()) ^ set(before.items()))
            before = now
            if self.problem is None:
                rt.console.emit("info", "reload", f"{changed[0][0]} changed; restarting {spec.name}")
            else:
                rt.console.emit("debug", "reload", f"{changed[0][0]} changed; checking the import again")
            ok = await self.check()
            await rt.stop_app(spec.name)
            if not ok:
                continue
            try:
                await rt.start_app(spec, pool_size=self.workers)
            except Exception as exc:
                rt.console.emit("error", "reload", f"{spec.name} did not start: {exc}")


def dev_worker_args(args: argparse.Namespace) -> list[str]:
    """What ``dev`` adds to its first target's worker command: the other targets, the worker
    options it was given, the words after ``--``, and its own log level unless one is there."""
    extra = [*args.targets[1:], *worker_argv(args), *getattr(args, "worker_args", [])]
    if not any(a == "--log-level" or a.startswith("--log-level=") for a in extra):
        extra += ["--log-level", parse_level(args.log_level)]  # the workers log what the console shows
    return extra


def app_specs(args: argparse.Namespace) -> tuple[list[Any], int]:
    """The apps to run, each checked to import (``cocaine-http --check``) before anything starts.

    Returns ``(specs, 0)``, or ``([], exit code)`` after saying on stderr what failed and how to fix it.
    Under ``dev --reload`` a failing import is not fatal: the :class:`Reloader` reports it and
    waits for a change.
    """
    if args.command == "dev":
        specs = [spec_from_target(args.targets[0], args.name, extra_args=dev_worker_args(args))]
        if args.reload:
            return specs, 0
    else:
        try:
            specs = app_directories(args.apps) if args.apps else []
        except (ValueError, OSError) as exc:
            print(f"cocaine-http runtime: {exc}", file=sys.stderr)
            return [], 1
    for spec in specs:
        code = check_app(spec, args.command)
        if code:
            return [], code
    return specs, 0


def check_app(spec: AppSpec, command: str, timeout: float = 120.0) -> int:
    """Run the app's worker command with ``--check`` (import the targets, check the interface).

    Only apps served by cocaine-http are checked: ``dev`` targets, and manifests whose
    environment names ``COCAINE_HTTP_APP`` (what ``cocaine-http init`` writes). The
    environment is the one the worker will get.
    """
    is_ours = spec.argv[1:3] == ["-m", "cocaine_http"] or ENV_APP in spec.env
    if not is_ours:
        return 0
    env = {**spec.env, **os.environ}
    try:
        proc = subprocess.run(
            [*spec.argv, "--check"], cwd=spec.cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"cocaine-http {command}: app {spec.name}: import took over {timeout:.0f} s", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cocaine-http {command}: app {spec.name}: cannot run {spec.argv[0]}: {exc}", file=sys.stderr)
        return 1
    if proc.returncode == 0:
        return 0
    detail = proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}"
    print(f"cocaine-http {command}: app {spec.name} ({spec.source}) cannot start:\n{detail}", file=sys.stderr)
    return proc.returncode if proc.returncode > 0 else 1


async def serve(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    console = Console(level=args.log_level)
    specs: list[Any]
    specs, failed = app_specs(args)
    if failed:
        return failed
    default_app: str | None
    if args.command == "dev":
        bind: str | None = args.bind
        default_app = specs[0].name
    else:
        bind = None if args.no_http else args.bind
        default_app = args.default_app
        if default_app is not None and default_app not in {spec.name for spec in specs}:
            names = ", ".join(spec.name for spec in specs) or "none"
            message = f"--default-app {default_app}: no such app ({names})"
            print(f"cocaine-http runtime: {message}", file=sys.stderr)
            return 1
    workers = args.workers
    # apps whose workers write access lines themselves: the front then does not, for them
    workers_log_access = {spec.name for spec in specs if spec_logs_access(spec)}
    reloader = None
    if args.command == "dev" and args.reload:
        reloader = Reloader(console, specs[0], args.targets[0], dev_worker_args(args), workers)
        if not await reloader.check(report=False):
            specs = []  # started by the reloader once it imports
    profile = {}
    concurrency, backlog = args.concurrency, args.backlog
    if args.command == "dev":
        concurrency = DEV_CONCURRENCY if concurrency is None else concurrency
        backlog = DEV_BACKLOG if backlog is None else backlog
    if concurrency is not None:
        profile["concurrency"] = concurrency
    if backlog is not None:
        profile["queue-limit"] = backlog
    rt = LocalRuntime(
        args.protocol,
        locator_port=args.locator_port,
        bind=bind,
        apps=specs,
        workers=workers,
        storage_dir=args.storage,
        runtime_dir=args.runtime_dir,
        host=args.services_host,
        port_range=args.port_range,
        send_headers=args.headers,
        console=console,
        profile=profile,
        front_options={
            "timeout": args.front_timeout,
            "max_body_size": args.max_body_size,
            "access_log": front_logs_access(args),
            "access_log_format": getattr(args, "access_log_format", None),
            "workers_log_access": workers_log_access,
            "graceful_timeout": args.graceful_timeout,
            "body_chunk_size": args.body_chunk_size,
            "date_header": not args.no_date_header,
            "server_header": not args.no_server_header,
        },
        default_app=default_app,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            console.emit("info", "runtime", "stopping (Ctrl-C again to force)")
            stop.set()
        else:
            os._exit(130)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        try:
            await rt.start()
        except OSError as exc:
            hint = ""
            if args.locator_port and str(args.locator_port) in str(exc):
                hint = " (another runtime? try --locator-port 0)"
            print(f"cocaine-http {args.command}: cannot start: {exc}{hint}", file=sys.stderr)
            return 1
        except (ValueError, FileNotFoundError) as exc:
            print(f"cocaine-http {args.command}: cannot start: {exc}", file=sys.stderr)
            return 1
        title = f"dev {' '.join(args.targets)}" if args.command == "dev" else "runtime"
        banner(rt, out, title, reload=reloader is not None)
        watcher = None
        if reloader is not None:
            problem, reloader.problem = reloader.problem, None
            reloader.report(problem)  # after the banner, where it is seen
            watcher = loop.create_task(reloader.watch(rt, Path.cwd()))
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await rt.stop()
        console.emit("info", "runtime", "stopped")
        return 0
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _dev_only(parser: argparse.ArgumentParser, worker_args: Sequence[str]) -> str:
    """The first item of *worker_args* that is one of *parser*'s own options but not a worker's."""
    from ..cli import build_parser as worker_parser

    ours = {s for a in parser._actions for s in a.option_strings}
    theirs = {s for a in worker_parser({})._actions for s in a.option_strings}
    for item in worker_args:
        name = item.partition("=")[0]
        if name in ours and name not in theirs:
            return name
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; *argv* starts with the subcommand (``dev`` or ``runtime``)."""
    items = list(sys.argv[1:] if argv is None else argv)
    worker_args: list[str] = []
    if "--" in items:
        cut = items.index("--")
        items, worker_args = items[:cut], items[cut + 1 :]
    parser, subs = _parsers()
    if not items or items[0] not in subs:
        parser.parse_args(items)  # help, or the usage error
        return 2
    sub = subs[items[0]]
    # intermixed: targets and options in any order (dev app:app --threads 4 other:app=api)
    args = sub.parse_intermixed_args(items[1:])
    args.command = items[0]
    args.worker_args = worker_args
    misplaced = _dev_only(sub, worker_args)
    if misplaced:
        sub.error(
            f"{misplaced} after '--' would go to the workers, which do not know it; "
            f"put it before '--' (dev takes the worker options directly, '--' is not needed)"
        )
    try:
        parse_level(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        AccessFormat(getattr(args, "access_log_format", None))
    except ConfigError as exc:
        parser.error(str(exc))
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.backlog is not None and args.backlog < 0:
        parser.error("--backlog must not be negative")
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
