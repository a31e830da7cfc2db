"""The console script: which command runs (the worker, ``init``, ``help``, ``dev``/``runtime``),
and how errors become exit codes."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from ..errors import AppImportError, StartupError
from .scaffold import init_main
from .settings import build_parser
from .worker import serve

#: The subcommands of the local runtime (:mod:`cocaine_http.runtime.cli`), optional in an install.
SUBCOMMANDS_RUNTIME = ("dev", "runtime")


def _runtime_cli(argv: Sequence[str]) -> int:
    """Hand ``dev``/``runtime`` to the local runtime, imported only now: an install may leave it
    out, and a worker started by the cloud never needs it."""
    if importlib.util.find_spec("cocaine_http.runtime") is None or (
        importlib.util.find_spec("cocaine_http.runtime.cli") is None
    ):
        print(
            f"cocaine-http {argv[0]}: the local runtime (cocaine_http.runtime.cli) is not available "
            "in this installation",
            file=sys.stderr,
        )
        return 2
    from ..runtime import cli as runtime_cli

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
