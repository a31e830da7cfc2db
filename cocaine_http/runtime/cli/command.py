"""The entry point of ``dev`` and ``runtime``: parse, check what argparse cannot, run."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from ...accesslog import AccessFormat
from ...cli.settings import build_parser as worker_parser
from ...errors import ConfigError
from ..logging import parse_level
from .parsers import subcommand_parsers
from .serve import serve


def _dev_only(parser: argparse.ArgumentParser, worker_args: Sequence[str]) -> str:
    """The first item of *worker_args* that is one of *parser*'s own options but not a worker's."""
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
    parser, subs = subcommand_parsers()
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
