"""The in-process benchmarks run as docs/worker.md and native/README.md give them (shortened)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cocaine_http.protocol import codec

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")


def run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("protocol", ["0", "1"])
def test_worker_pipeline_batched(protocol: str) -> None:
    # 64 requests per read, every one answered (the script checks the writes and that no session is left)
    backends = ",".join(b if b != "pure" else "python" for b in codec.available_backends())
    script = os.path.join(BENCH, "worker_pipeline.py")
    args = ["--protocol", protocol, "-n", "1280", "--batch", "64", "--rounds", "1", "--backends", backends]
    out = run(script, *args)
    assert "64 per read" in out and "us/request" in out, out


def test_decoder_bench_times_records() -> None:
    out = run(os.path.join(BENCH, "decoder.py"), "--quick", "--repeat", "1")
    assert "msgpack only" in out, out
    if "native" in codec.available_backends():
        assert "native rec" in out, out
