"""``cocaine-http TARGET``: run as the worker the cocaine runtime started, or explain how to.

With ``--endpoint`` and ``--uuid`` among the runtime's flags the process is a
worker; without them it says what to run instead (``dev``, ``init``, ``--check``).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from .apps import Loaded, install, load_apps
from .settings import Options, parse_options

log = logging.getLogger("cocaine_http.cli")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )


def _apply_environment(ns: argparse.Namespace) -> None:
    """``--env``, ``--chdir``, ``--app-dir``: what the app's import must already see."""
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
    from ..importer import add_app_dir

    add_app_dir(ns.app_dir)
    if ns.app_dir is not None and ns.chdir is None:
        add_app_dir(None)  # the cwd (the runtime's spool dir) stays importable too


def _not_a_worker(opts: Options, loaded: Sequence[Loaded] | None) -> int:
    """Started by hand, not by a runtime: say what to run instead (exit code 2)."""
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
    """The worker command: its logging set up first, so the app's import-time records are kept."""
    opts = parse_options(argv)
    ns = opts.ns
    handler = None
    if opts.as_worker and not ns.check:
        from ..logs import install as install_logging

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
    for arg in opts.ignored:
        log.warning("ignoring unknown argument %r", arg)
    _apply_environment(ns)
    if not opts.as_worker and not ns.check:
        loaded = load_apps(ns) if ns.targets else None
        return _not_a_worker(opts, loaded)
    loaded = load_apps(ns)
    if ns.check:
        for item in loaded:
            print(f"{item.spec.target}: {item.interface.upper()} app, event {item.spec.event!r}")
        return 0
    from ..aio.worker import Worker

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
    if ns.gc_freeze:
        freeze_startup_heap()
    return int(worker.run(exit=False))


def freeze_startup_heap() -> None:
    """Take what starting the worker made (the apps' imports, above all) out of the
    garbage collector's sight: collected once, then ``gc.freeze()``.

    Those objects live as long as the process, yet each full collection walks
    them all, on the loop's thread, between two requests: 50,000-odd objects
    for the FastAPI example, 9-16 ms a pass, the worst latency of a benchmark
    run. Frozen, a full pass walks only what requests left behind
    (node bench-engine, 66,000 hello requests, W 64: the full passes took
    41-76 ms before and 8-14 ms after, in total; the slowest request
    13-24 ms before, 6-9 ms after; CPU per request within the noise).
    Garbage cycles among the frozen objects are not freed any more;
    ``--no-gc-freeze`` keeps the collector as it was.
    """
    gc.collect()
    gc.freeze()
