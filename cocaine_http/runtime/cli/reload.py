"""``dev --reload``: watch the sources, check the import in a child process, restart the app.

Polling, so that it needs no dependency; a broken import is reported in one line
rather than as a crash loop of workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..local import LocalRuntime
from ..logging import Console
from ..node import AppSpec

#: Seconds ``dev --reload`` gives the app's import check.
CHECK_TIMEOUT = 60.0


def _snapshot(root: Path) -> dict[str, float]:
    """The mtime of every ``.py`` under *root* (hidden, cache and build directories left out)."""
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
