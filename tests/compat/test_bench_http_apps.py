"""bench/http_apps.py runs (its cocaine-http side, briefly) and reads CPU from /proc right."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from http_harness import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import http_apps


def test_tree_cpu_counts_this_process() -> None:
    before = time.process_time()
    start = http_apps.tree_cpu(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    used = http_apps.tree_cpu(os.getpid()) - start
    spent = time.process_time() - before
    assert used >= spent - 0.05  # /proc counts in clock ticks (10 ms)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and taskset")
@pytest.mark.parametrize(
    ("headers", "request_kind", "driver"),
    [
        ("hello", "get", "python"),
        ("browser", "get", "python"),
        ("hello", "json", "python"),
        ("browser", "json", "c"),
    ],
)
def test_bench_runs_the_workers_and_reports_cpu_per_request(
    headers: str, request_kind: str, driver: str
) -> None:
    # (each answer is checked by the driver: the python one the hello's text, or json's
    # 201 with the object echoed; the C one every answer's status)
    out = subprocess.run(
        [sys.executable, "bench/http_apps.py", "--skip-http", "--driver", driver,
         "--duration", "1", "--rounds", "1", "--only", "flask", "--headers", headers,
         "--request", request_kind, "--node-rate", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=True,
    ).stdout  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith("flask ")]
    assert len(lines) == 2, out  # inline and threaded
    for line in lines:
        assert f"[{driver if driver == 'python' else 'C'} driver]" in line, line
        match = re.search(r"([\d.]+) us CPU/req .* driver +([\d.]+) us/req", line)
        assert match is not None and float(match.group(1)) > 0 and float(match.group(2)) > 0, line
        if driver == "c":  # the driver that is not the bottleneck: well under a third of the worker
            assert float(match.group(2)) < float(match.group(1)) / 3, line
