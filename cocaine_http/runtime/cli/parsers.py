"""The parsers of ``cocaine-http dev`` and ``cocaine-http runtime``.

``dev`` also takes the worker's options (:data:`cocaine_http.cli.options.OPTIONS`)
and passes them on; both read ``COCAINE_HTTP_<OPTION>`` for their own options.
"""

from __future__ import annotations

import argparse
from typing import Any

from ...cli.environ import ENV_PREFIX, apply_env
from ...cli.options import DeprecatedAlias, add_options
from ...protocol.frames import Generation
from ..front import parse_bind

DEFAULT_BIND = "127.0.0.1:8080"
BIND_HELP = f"HTTP address: HOST:PORT or unix:PATH (default {DEFAULT_BIND})"
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
    """The options ``dev`` and ``runtime`` share: the emulated cloud, its front and its pools."""
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
        "--host",
        action=DeprecatedAlias,
        dest="services_host",
        metavar="HOST",
        new="--services-host",
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
        "--timeout",
        action=DeprecatedAlias,
        dest="front_timeout",
        type=float,
        metavar="S",
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


def subcommand_parsers(
    environ: Any = None,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top parser, and the parsers of ``dev`` and ``runtime`` by name (``main`` parses with
    the subcommand's own parser, so that targets and options may be intermixed)."""
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
    return subcommand_parsers(environ)[0]
