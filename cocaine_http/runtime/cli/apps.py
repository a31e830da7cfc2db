"""The apps ``dev`` and ``runtime`` run: found, checked to import before anything starts,
and who writes their access lines (the workers or the front, never both)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...cli.environ import ENV_APP
from ...cli.options import worker_argv
from ..logging import parse_level
from ..node import AppSpec, spec_from_directory, spec_from_target


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
