"""``cocaine-http init``: a launcher that runs wherever the app archive is unpacked, and the
root path the cocaine proxies need (``/APP/EVENT``, PROTOCOL.md §2.8/§3.9)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cocaine_http.http.envelope import decode_response, encode_request
from cocaine_http.protocol.frames import Generation
from cocaine_http.runtime.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
HELLO = textwrap.dedent(
    """
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from " + environ["SCRIPT_NAME"].encode() + b" " + environ["PATH_INFO"].encode()]
    """
)


def init(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "cocaine_http", "init", "hello:app", "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def serve_once(directory: Path, run_dir: Path, gen: Generation) -> tuple[int, bytes]:
    """What the runtime does: exec the manifest's slave in the unpacked directory, env from the manifest."""
    manifest = json.loads((directory / "manifest.json").read_text())

    async def go() -> tuple[int, bytes]:
        async with Engine(
            "hello",
            str(directory / manifest["slave"]),
            generation=gen,
            runtime_dir=str(run_dir),
            env=dict(manifest["environment"]),
            cwd=str(directory),
        ) as engine:
            await engine.start(1, timeout=30)
            request = encode_request("GET", "/x", [("Host", "h")], generation=gen)
            reply = await engine.invoke("http", [request])
            status, _, body = decode_response(reply.chunks, gen)
            return status, body

    return asyncio.run(go())


@pytest.mark.parametrize("gen", [Generation.A, Generation.B], ids=["A", "B"])
def test_launcher_runs_where_unpacked_with_the_proxy_root_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gen: Generation
) -> None:
    built = tmp_path / "built"
    built.mkdir()
    (built / "hello.py").write_text(HELLO)
    res = init(built)
    assert res.returncode == 0, res.stderr
    assert "python3" in res.stdout and "--python" in res.stdout  # says how it finds its interpreter
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["environment"]["COCAINE_HTTP_ARGS"] == "--root-path auto"
    text = (built / "cocaine-http-launcher").read_text()
    assert text.startswith("#!/bin/sh\n") and str(tmp_path) not in text and sys.executable not in text
    # "unpacked" somewhere else, on a host whose python3 (on PATH) has cocaine_http
    unpacked = tmp_path / "elsewhere" / "app"
    shutil.copytree(built, unpacked)
    shutil.rmtree(built)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PYTHONPATH", raising=False)  # cocaine_http comes from that python's install
    monkeypatch.delenv("COCAINE_HTTP_PYTHON", raising=False)
    status, body = serve_once(unpacked, tmp_path / "run", gen)
    # the engine's app is "hello": the proxies route /hello/http/x and pass /x
    assert (status, body) == (200, b"hello from /hello/http /x")


def test_launcher_without_a_usable_python_says_so(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    assert init(tmp_path, "--root-path", "").returncode == 0
    assert "COCAINE_HTTP_ARGS" not in json.loads((tmp_path / "manifest.json").read_text())["environment"]
    bindir = tmp_path / "bin"  # only what the shell part needs, no python at all
    bindir.mkdir()
    os.symlink(shutil.which("dirname"), bindir / "dirname")
    res = subprocess.run(
        [str(tmp_path / "cocaine-http-launcher"), "--app", "hello"],
        env={"PATH": str(bindir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 127
    assert "no python here has cocaine_http" in res.stderr and "COCAINE_HTTP_PYTHON" in res.stderr


def test_python_flag_pins_the_interpreter(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO)
    res = init(tmp_path, "--python", sys.executable)
    assert res.returncode == 0, res.stderr
    assert f"its interpreter is {sys.executable}" in res.stdout
    assert (tmp_path / "cocaine-http-launcher").read_text().startswith(f"#!{sys.executable}\n")
    status, body = serve_once(tmp_path, tmp_path / "run", Generation.B)
    assert (status, body) == (200, b"hello from /hello/http /x")


@pytest.mark.parametrize("example", ["flask_app", "fastapi_app", "django_app"])
def test_checked_in_launchers_are_what_init_writes(example: str) -> None:
    """The examples' launchers are `init` output (docs say so): regenerate them when the template changes."""
    from cocaine_http.cli import launcher_text

    def unversioned(text: str) -> str:
        return re.sub(r"\(cocaine-http [^)]*\)", "(cocaine-http VERSION)", text)

    path = ROOT / "examples" / example / "cocaine-http-launcher"
    assert unversioned(path.read_text()) == unversioned(launcher_text())
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["environment"]["COCAINE_HTTP_ARGS"] == "--root-path auto"
