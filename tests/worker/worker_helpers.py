"""Helpers of the worker tests (importable because tests/worker/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import glob
import os
import sys
import uuid as uuid_mod
from collections.abc import Awaitable, Callable
from typing import Any

from helpers.waiting import until as until  # the worker tests import it from here

from cocaine_http.aio.worker import Worker
from cocaine_http.runtime import Engine, Slave

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(TESTS_DIR, "helpers", "workers", "echo_worker.py")
COMMAND = [sys.executable, WORKER]


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    """Run *coro* on a fresh loop with a hard timeout (no test may hang)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def child_pids() -> set[int]:
    """Live children of this process (zombies excluded)."""
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    live = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


def make_engine(gen: str, runtime_dir: str, *, env: dict[str, str] | None = None, **kwargs: Any) -> Engine:
    """An engine for the test worker: one app, generous concurrency, headers as the observed 0.12.3."""
    kwargs.setdefault("concurrency", 2000)
    kwargs.setdefault("queue_limit", 2000)
    kwargs.setdefault("pool_limit", 1)
    kwargs.setdefault("autospawn", False)
    if gen == "B":
        kwargs.setdefault("headers", "indexed")
    return Engine("echo", COMMAND, generation=gen, runtime_dir=runtime_dir, env=env or {}, **kwargs)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def expected_worker(engine: Engine, gen: str, **options: Any) -> tuple[Worker, Slave]:
    """A :class:`Worker` of this test's process for *engine*, not served yet,
    and the slave *engine* expects it as (signals left to the test runner)."""
    uuid = str(uuid_mod.uuid4())
    slave = engine.expect(uuid)
    protocol = 1 if gen == "B" else 0
    worker = Worker(
        [], endpoint=engine.endpoint, uuid=uuid, protocol=protocol, handle_signals=False, **options
    )
    return worker, slave


async def serve_in_process(
    engine: Engine, gen: str, setup: Callable[[Worker], Any], **options: Any
) -> tuple[Worker, Slave, asyncio.Task[int]]:
    """An "echo" :func:`expected_worker`, given its handlers by *setup*, served in
    this loop until the engine has seen it active."""
    worker, slave = expected_worker(engine, gen, app="echo", **options)
    setup(worker)
    task = asyncio.ensure_future(worker.serve())
    await slave.wait_active(5)
    return worker, slave, task


async def finish(engine: Engine, slave: Slave, task: asyncio.Task[int]) -> int:
    """Terminate a worker of :func:`serve_in_process`; its exit code."""
    await engine.terminate(slave)
    return await asyncio.wait_for(task, 5)
