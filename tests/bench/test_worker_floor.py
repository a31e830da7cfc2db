"""The C benchmark engine of bench/worker_floor.py: it builds, speaks both wires and
checks every echoed byte (--verify), against the framework's worker, the bare one and the
bare one with the handler API on top (shaped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")
sys.path.insert(0, BENCH)

import worker_floor  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")) or not sys.platform.startswith("linux"),
    reason="needs a C compiler and Linux",
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> str:
    return worker_floor.build_engine(str(tmp_path_factory.mktemp("floor")))


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("kind", ["framework", "shaped", "minimal"])
def test_verified_echo(engine: str, kind: str, protocol: int) -> None:
    # 300 B: a raw16 payload whose bytes take every value; 8 sessions in flight
    res = worker_floor.run_case(
        engine, kind, protocol, 300, 8, 400, warmup=20, verify=True, cpus=(-1, -1), timeout=120
    )
    assert res["ok"], res
    assert (res["bad"], res["errors"], res["n"], res["s"], res["w"]) == (0, 0, 400, 300, 8)
    assert res["rps"] > 0 and res["worker_cpu_us"] >= 0
    # the worker answered the terminate and exited 0, as it does under a runtime
    assert res["worker_terminated"] is True and res["exit"] == 0, res["stderr"]


def test_verify_catches_a_wrong_echo(engine: str, tmp_path) -> None:
    """A worker that flips one byte of each echo fails the run: verify mode really compares."""
    script = tmp_path / "bad_echo.py"
    script.write_text(
        "from cocaine_http.aio.worker import Worker\n"
        "w = Worker()\n"
        "@w.on('echo')\n"
        "async def echo(request, response):\n"
        "    async for chunk in request:\n"
        "        await response.write(bytes([chunk[0] ^ 1]) + chunk[1:])\n"
        "w.run()\n"
    )
    proc = subprocess.run(
        [engine, "--proto", "0", "-n", "50", "--warmup", "0", "-s", "16", "-w", "4", "--verify",
         "--engine-cpu", "-1", "--worker-cpu", "-1", "--", sys.executable, str(script)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert '"ok": false' in proc.stdout and '"bad": 50' in proc.stdout, proc.stdout


def test_the_documented_command_runs() -> None:
    """`python bench/worker_floor.py ...` (docs/worker.md), shortened: its table and ratios come out."""
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "worker_floor.py"), "--verify", "-n", "1000", "--rounds", "1",
         "--cases", "16x4", "--protocol", "1", "--cpus=-1,-1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "worker CPU us/req" in proc.stdout and "B size    16 W   4: req/s x" in proc.stdout, proc.stdout
