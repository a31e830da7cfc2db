"""The Engine as the runtime: the exact argv, cwd and environment a worker is started with."""

from __future__ import annotations

import json
import os
import sys

import pytest
from worker_helpers import run

from cocaine_http.runtime import Engine

REPORT = "import json, os, sys; print(json.dumps([sys.argv[1:], os.getcwd(), os.environ.get('MANIFEST_VAR'), os.environ.get('PATH')]), flush=True)"  # noqa: E501


@pytest.mark.parametrize(
    ("gen", "locator", "expected_locator"),
    [
        ("A", "node1.example.net:10053", "node1.example.net:10053"),
        ("B", ["127.0.0.1:10053", "[::1]:10053"], "127.0.0.1:10053,[::1]:10053"),
    ],
)
def test_worker_argv_cwd_and_environment(
    runtime_dir: str, gen: str, locator: object, expected_locator: str
) -> None:
    here = os.path.realpath(runtime_dir)

    async def body() -> None:
        engine = Engine(
            "web",
            [sys.executable, "-c", REPORT],
            generation=gen,
            runtime_dir=runtime_dir,
            locator=locator,  # type: ignore[arg-type]
            cwd=runtime_dir,
            env={"MANIFEST_VAR": "from-manifest", "PATH": "/manifest/loses"},
        )
        async with engine:
            slave = await engine.spawn("my-sticky-worker")
            await slave.wait(10)
            argv, cwd, manifest_var, path = json.loads(slave.lines("stdout")[0])
            endpoint = os.path.join(runtime_dir, f"web.{os.getpid()}")
            expected = ["--app", "web", "--endpoint", endpoint, "--locator", expected_locator]
            if gen == "B":
                expected += ["--protocol", "1"]
            assert argv == [*expected, "--uuid", "my-sticky-worker"]
            assert cwd == here
            assert manifest_var == "from-manifest"
            assert path == os.environ["PATH"]  # on a clash the runtime's own value wins (§2.4.1)

    run(body())
