"""The in-process benchmarks run as docs/worker.md and native/README.md give them (shortened)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Any

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


@pytest.mark.parametrize(("kind", "app"), [("wsgi", "flask_app"), ("asgi", "fastapi_app")])
def test_minimal_http_workers_answer_the_hello(kind: str, app: str, tmp_path: Any) -> None:
    """bench/http_apps.py --minimal measures these: they must answer as cocaine-http does."""
    from cocaine_http.http.envelope import decode_response, encode_request
    from cocaine_http.protocol.frames import Generation
    from cocaine_http.runtime import Engine

    root = os.path.dirname(BENCH)
    command = [sys.executable, os.path.join(BENCH, "minimal_http.py"), kind, f"examples.{app}.app:app"]

    async def body() -> None:
        for gen in (Generation.A, Generation.B):
            options: dict[str, Any] = {"runtime_dir": str(tmp_path), "cwd": root, "env": {"PYTHONPATH": root}}
            async with Engine("bench", command, generation=gen, **options) as engine:
                await engine.start(1, timeout=60)
                blob = encode_request("GET", "/", [("Host", "127.0.0.1")], b"", generation=gen)
                replies = await asyncio.gather(*(engine.invoke("http", [blob], timeout=30) for _ in range(8)))
                for reply in replies:
                    status, _, text = decode_response(reply.chunks, gen)
                    assert (status, text) == (200, b"Hello, world!\n"), (reply.chunks, reply.error)

    asyncio.run(body())


@pytest.mark.parametrize(("kind", "app"), [("wsgi", "flask_app"), ("asgi", "fastapi_app")])
def test_app_alone_times_the_hello(kind: str, app: str) -> None:
    """bench/http_apps.py --floor runs this: it checks the app's first answer itself
    (200, the hello body) and exits non-zero otherwise, then reports CPU per request."""
    import json

    out = run(os.path.join(BENCH, "app_alone.py"), kind, f"examples.{app}.app:app", "--seconds", "0.2")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n"] >= 200 and result["cpu_us"] > 0, result
    # bench/wsgi_callgrind.py --floor counts a given number (a batch and a part of one here)
    out = run(os.path.join(BENCH, "app_alone.py"), kind, f"examples.{app}.app:app", "--requests", "250")
    assert json.loads(out.strip().splitlines()[-1])["n"] == 250, out
    # bench/http_apps.py --headers browser: the environ or scope of a browser's request
    out = run(os.path.join(BENCH, "app_alone.py"), kind, f"examples.{app}.app:app", "--requests", "250",
              "--headers", "browser")  # fmt: skip
    assert json.loads(out.strip().splitlines()[-1])["n"] == 250, out
    # bench/http_apps.py --request json: a JSON POST, its 201 answer checked as the hello's
    out = run(os.path.join(BENCH, "app_alone.py"), kind, f"examples.{app}.app:app", "--requests", "250",
              "--request", "json")  # fmt: skip
    assert json.loads(out.strip().splitlines()[-1])["n"] == 250, out


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")
def test_wsgi_callgrind_drives_the_hello_apps() -> None:
    """bench/wsgi_callgrind.py --check: the worker it counts answers its requests
    with 200s (the count once measured the 400 of an envelope its patch no longer
    parsed); the C engine fails the run on any other head."""
    out = run(os.path.join(BENCH, "wsgi_callgrind.py"), "--check", "-w", "16")
    assert out.count("every answer a 200") == 2, out
    out = run(os.path.join(BENCH, "wsgi_callgrind.py"), "--check", "--app", "fastapi", "-w", "16")
    assert "fastapi hello, --threads 0: every answer a 200" in out, out
