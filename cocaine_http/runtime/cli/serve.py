"""Running the local runtime from the command line: start it, print where everything
listens, serve until Ctrl-C or SIGTERM, stop every worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from ..local import LocalRuntime
from ..logging import Console
from .apps import app_specs, dev_worker_args, front_logs_access, spec_logs_access
from .parsers import DEV_BACKLOG, DEV_CONCURRENCY
from .reload import Reloader


def banner(rt: LocalRuntime, out: TextIO, title: str, reload: bool = False) -> None:
    """Where everything listens, once the runtime has started (tests read it to find the ports)."""
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


async def serve(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Check the apps, start the runtime, serve until a signal, stop every worker; the exit code."""
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
