"""``cocaine-http dev`` and ``cocaine-http runtime``: the local runtime from the command line.

::

    cocaine-http dev MODULE:ATTR [--bind HOST:PORT] [--workers N] [--protocol 0.11|0.12]
                     [--reload] [--locator-port PORT] [--name APP] [--storage DIR] [...] [-- WORKER ARGS]
    cocaine-http runtime --apps DIR [--apps DIR ...] [--bind HOST:PORT | --no-http] [...]

``dev`` runs one Python app (its workers are ``python -m cocaine_http
MODULE:ATTR`` plus the runtime's flags) behind the HTTP front; ``runtime``
runs apps given as directories holding ``manifest.json`` (a directory of
such directories works too) plus whatever ``runlists/default`` in
``--storage`` lists. Both print where everything listens, serve until
Ctrl-C or SIGTERM, then stop every worker before exiting.

Exit codes: 0 after a clean stop, 1 when the runtime could not start (a
port in use, an app that cannot be found), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..protocol.frames import Generation
from .local import LocalRuntime
from .logging import Console, parse_level
from .node import AppSpec, spec_from_directory, spec_from_target

__all__ = ["build_parser", "main"]

DEFAULT_BIND = "127.0.0.1:8080"
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
    p.add_argument("--host", default="127.0.0.1", help="address services listen on (default 127.0.0.1)")
    p.add_argument("--storage", default=None, metavar="DIR", help="keep storage in DIR (default: memory)")
    p.add_argument(
        "--runtime-dir",
        default=None,
        metavar="DIR",
        help="where worker sockets live (default: a temporary directory)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="HTTP front: wait this long for a response head or the next body chunk (default 30)",
    )
    p.add_argument(
        "--max-body-size",
        type=int,
        default=16 * 1024 * 1024,
        metavar="BYTES",
        help="HTTP front: largest request body (default 16 MiB)",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocaine-http", description="The embedded local cocaine runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run one Python app behind the HTTP front")
    dev.add_argument("target", metavar="MODULE:ATTR", help="the WSGI/ASGI app, as for cocaine-http")
    dev.add_argument("--bind", default=DEFAULT_BIND, help=f"HTTP front address (default {DEFAULT_BIND})")
    dev.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    dev.add_argument("--name", default=None, help="app name (default: from MODULE)")
    dev.add_argument("--reload", action="store_true", help="restart the workers when a .py file changes")
    _common(dev)
    rt = sub.add_parser("runtime", help="run apps given as manifest directories")
    rt.add_argument(
        "--apps",
        action="append",
        default=[],
        metavar="DIR",
        help="an app directory (manifest.json) or a directory of them; repeatable",
    )
    rt.add_argument("--bind", default=DEFAULT_BIND, help=f"HTTP front address (default {DEFAULT_BIND})")
    rt.add_argument("--no-http", action="store_true", help="no HTTP front")
    rt.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="pool size of every app (default: the profile's pool-limit, started on demand)",
    )
    _common(rt)
    return parser


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


def banner(rt: LocalRuntime, out: TextIO, title: str, reload: bool = False) -> None:
    gen = rt.generation
    lines = [f"cocaine-http {title}  (protocol {gen.value}, generation {gen.name})"]
    if rt.front is not None:
        default = rt.front.default_app
        lines.append(f"  HTTP       {rt.front_url}" + (f"  ->  app {default}" if default else ""))
    lines.append(f"  locator    {rt.host}:{rt.locator_port}")
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


async def _watch(rt: LocalRuntime, spec: AppSpec, workers: int, root: Path, period: float = 1.0) -> None:
    """Restart *spec*'s app when a ``.py`` file under *root* changes (polling, no dependency)."""
    before = _snapshot(root)
    while True:
        await asyncio.sleep(period)
        now = _snapshot(root)
        if now == before:
            continue
        changed = sorted(set(now.items()) ^ set(before.items()))
        before = now
        rt.console.emit("info", "reload", f"{changed[0][0]} changed; restarting {spec.name}")
        await rt.stop_app(spec.name)
        try:
            await rt.start_app(spec, pool_size=workers)
        except Exception as exc:
            rt.console.emit("error", "reload", f"{spec.name} did not start: {exc}")


async def serve(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    console = Console(level=args.log_level)
    specs: list[Any]
    if args.command == "dev":
        extra = list(getattr(args, "worker_args", []))
        specs = [spec_from_target(args.target, args.name, extra_args=extra)]
        bind: str | None = args.bind
        workers = args.workers
    else:
        try:
            specs = app_directories(args.apps) if args.apps else []
        except (ValueError, OSError) as exc:
            print(f"cocaine-http runtime: {exc}", file=sys.stderr)
            return 1
        bind = None if args.no_http else args.bind
        workers = args.workers
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
        host=args.host,
        port_range=args.port_range,
        send_headers=args.headers,
        console=console,
        profile=profile,
        front_options={
            "timeout": args.timeout,
            "max_body_size": args.max_body_size,
            "date_header": not args.no_date_header,
            "server_header": not args.no_server_header,
        },
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
        title = f"dev {args.target}" if args.command == "dev" else "runtime"
        banner(rt, out, title, reload=args.command == "dev" and args.reload)
        watcher = None
        if args.command == "dev" and args.reload:
            watcher = loop.create_task(_watch(rt, specs[0], workers, Path.cwd()))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; *argv* starts with the subcommand (``dev`` or ``runtime``)."""
    items = list(sys.argv[1:] if argv is None else argv)
    worker_args: list[str] = []
    if "--" in items:
        cut = items.index("--")
        items, worker_args = items[:cut], items[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(items)
    args.worker_args = worker_args
    try:
        parse_level(args.log_level)
    except ValueError as exc:
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
