"""docs/quickstart.md, run: each framework's marked blocks against a fresh project in tmp.

``<!-- quickstart NAME file PATH -->`` before a fenced block: the block is written to
PATH in the project. ``<!-- quickstart NAME run -->``: the block's commands are run in
order with bash, in the project directory, with this interpreter's scripts first on
PATH. ``pip install`` lines are skipped (the test environment has the packages);
``cocaine-http dev``/``runtime`` start in the background on free ports
(``--bind 127.0.0.1:0 --locator-port 0``) and get SIGINT (Ctrl-C) at the end of their
block, which must exit 0; ``http://127.0.0.1:8080`` in later lines becomes the URL
they print. A ``# -> TEXT`` comment means TEXT must be in the command's output.
Blocks without a marker (the ``cocaine-tool`` upload) are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
MARKER = re.compile(r"^<!-- quickstart (\w+) (file (\S+)|run) -->$")
SERVERS = ("cocaine-http dev ", "cocaine-http runtime ")


def steps(name: str) -> list[tuple[str, str | None, str]]:
    """``(kind, path, text)`` of *name*'s marked blocks, in document order."""
    out = []
    lines = DOC.read_text().splitlines()
    for i, line in enumerate(lines):
        match = MARKER.match(line)
        if not match or match.group(1) != name:
            continue
        assert lines[i + 1].startswith("```"), f"{DOC}:{i + 2}: a fenced block must follow the marker"
        end = lines.index("```", i + 2)
        kind = "file" if match.group(3) else "run"
        out.append((kind, match.group(3), "\n".join(lines[i + 2 : end]) + "\n"))
    return out


class Server:
    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        argv = [*shlex.split(command), "--bind", "127.0.0.1:0", "--locator-port", "0"]
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.banner = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.banner.wait(60):
            self.proc.kill()
            raise AssertionError(f"{command}: no banner:\n" + "\n".join(self.lines))
        found = [m.group(1) for m in map(re.compile(r"^\s+HTTP\s+(\S+)").match, self.lines) if m]
        assert found, self.lines
        self.url = found[0]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Ctrl-C to stop" in line:
                self.banner.set()
        self.banner.set()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        output = "\n".join(self.lines)
        assert self.proc.returncode == 0, output
        return output


def run_block(text: str, cwd: Path, env: dict[str, str]) -> None:
    server: Server | None = None
    try:
        for raw in text.splitlines():
            command, _, comment = raw.partition(" #")
            command = command.strip()
            if not command or command.startswith("pip install "):
                continue
            comment = comment.strip()
            expected = comment.removeprefix("->").strip() if comment.startswith("->") else None
            if command.startswith(SERVERS):
                assert server is None, "one server per block"
                server = Server(command, cwd, env)
                continue
            if server is not None:
                command = command.replace("http://127.0.0.1:8080", server.url)
            started = time.monotonic()
            res = subprocess.run(
                ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
            )
            where = f"{command!r} (exit {res.returncode}, {time.monotonic() - started:.1f}s)"
            assert res.returncode == 0, f"{where}\n{res.stdout}\n{res.stderr}"
            if expected is not None:
                assert expected in res.stdout, f"{where}: {expected!r} not in\n{res.stdout}"
    finally:
        if server is not None:
            output = server.stop()
            assert "Traceback" not in output, output


@pytest.mark.parametrize("name", ["flask", "django", "fastapi"])
def test_quickstart(name: str, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COCAINE_HTTP_", "DJANGO_"))}
    env.update(PATH=os.pathsep.join([bindir, env.get("PATH", "")]), NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
    blocks = steps(name)
    assert [kind for kind, _, _ in blocks].count("run") >= 2, "the doc lost its runnable steps"
    for kind, path, text in blocks:
        if kind == "file":
            assert path is not None
            (project / path).write_text(text)
        else:
            run_block(text, project, env)
    assert (project / "manifest.json").exists() and os.access(project / "cocaine-http-launcher", os.X_OK)


def test_the_upload_step_is_shown_but_not_marked() -> None:
    text = DOC.read_text()
    assert "cocaine-tool app upload --name shop --manifest manifest.json --package shop.tar.gz" in text
    marked = "".join(t for name in ("flask", "django", "fastapi") for _, _, t in steps(name))
    assert "cocaine-tool" not in marked
