"""What ``cocaine-http dev`` / ``runtime`` print, as a user runs them: real processes, real ports.

* a worker's records keep their level and logger name on the runtime's console, one
  timestamp per line, tracebacks inside the record (sent through the logging service);
* ``--log-level`` reaches the workers;
* one access line per request, naming the app, with or without ``--access-log``;
  ``--access-log-format`` in gunicorn's atoms;
* ``dev --reload``: a broken import is one line, again only when the problem changes;
* ``runtime --apps``: nothing is routed to an app that was not addressed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "workers" / "rt_worker.py"

STAMP = r"\d\d:\d\d:\d\d\.\d{3}"
LINE = re.compile(rf"^{STAMP} (DEBUG|INFO|WARNING|ERROR) +(\S+): (.*)$")

FLASK_APP = '''
import logging
from flask import Flask

logging.getLogger("myapp").debug("debug at import")
app = Flask("shop")

@app.route("/")
def index():
    logging.getLogger("myapp").warning("index warn")
    return "hi"

@app.route("/boom")
def boom():
    raise RuntimeError("boom")
'''


class Proc:
    """A ``cocaine-http`` subcommand whose combined output is collected line by line."""

    def __init__(self, args: Sequence[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT)]), "NO_COLOR": "1"}
        env.pop("COCAINE_HTTP_APP", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cocaine_http", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = self.wait(r"^\s+HTTP\s+(http://\S+)").group(1)
        self.wait("Ctrl-C to stop")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<EOF>")
            self.cond.notify_all()

    def wait(self, pattern: str, timeout: float = 30.0, count: int = 1) -> re.Match[str]:
        """The *count*-th line matching *pattern*, waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in map(rx.search, self.lines) if m]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or "<EOF>" in self.lines:
                    raise AssertionError(f"no {pattern!r} (x{count}) in:\n" + "\n".join(self.lines))
                self.cond.wait(left)

    def stop(self) -> list[str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        assert self.proc.returncode == 0, "\n".join(self.lines)
        return self.lines[:-1]


def flask_project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(FLASK_APP)
    return tmp_path


def records(lines: list[str]) -> list[tuple[str, str, str]]:
    return [m.groups() for m in map(LINE.match, lines) if m]  # type: ignore[misc]


@pytest.mark.parametrize("protocol", ["0.11", "0.12"])
def test_worker_records_keep_level_and_name(tmp_path: Path, protocol: str) -> None:
    project = flask_project(tmp_path)
    common = ["--bind", "127.0.0.1:0", "--locator-port", "0", "--protocol", protocol]
    p = Proc(["dev", "app:app", "--name", "web", "--log-level", "debug", *common], project)
    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            assert client.get("/").text == "hi"
            assert client.get("/boom", headers={"User-Agent": "ua/1"}).status_code == 500
        p.wait(r'"GET /boom HTTP/1\.1" 500')
    finally:
        lines = p.stop()
    source = "app/web" if protocol == "0.11" else "web"
    recs = records(lines)
    # levels and logger names kept; debug reached the worker (--log-level debug)
    assert ("DEBUG", source, "myapp: debug at import") in recs
    assert ("WARNING", source, "myapp: index warn") in recs
    # Flask's error is one ERROR record (logger "shop"), its traceback inside it, unprefixed
    error = f"ERROR   {source}: shop: Exception on /boom [GET]"
    at = lines.index(next(line for line in lines if line.endswith(error)))
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert not any("Traceback" in line and LINE.match(line) for line in lines)
    assert "RuntimeError: boom" in lines[at + 1 : at + 40]
    # one timestamp per line: none of the worker's own
    assert not any(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines)
    # one access line per request, naming the app, gunicorn's default format
    boom = [r for r in recs if '"GET /boom HTTP/1.1"' in r[2]]
    assert len(boom) == 1 and boom[0][:2] == ("INFO", "web"), boom
    assert re.fullmatch(
        r"access: 127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /boom HTTP/1\.1" 500 \d+ "-" "ua/1"',
        boom[0][2],
    ), boom
    assert len([r for r in recs if '"GET / HTTP/1.1"' in r[2]]) == 1


def test_log_level_reaches_the_workers(tmp_path: Path) -> None:
    project = flask_project(tmp_path)
    p = Proc(["dev", "app:app", "--name", "web", "--bind", "127.0.0.1:0", "--locator-port", "0"], project)
    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            assert client.get("/").text == "hi"
        p.wait(r'"GET / HTTP/1\.1" 200')
    finally:
        lines = p.stop()
    recs = records(lines)
    assert ("WARNING", "web", "myapp: index warn") in recs
    assert not [r for r in recs if r[0] == "DEBUG"], recs  # info by default, in the workers too


def test_worker_access_log_format_gives_one_line(tmp_path: Path) -> None:
    project = flask_project(tmp_path)
    fmt = '%(h)s "%(r)s" %(s)s %(b)s %(m)s %(U)s %(q)s %(H)s %({x-tag}i)s %(L)s %(D)s %(M)s %(p)s'
    args = ["dev", "app:app", "--name", "web", "--bind", "127.0.0.1:0", "--locator-port", "0"]
    p = Proc([*args, "--", "--access-log", "--access-log-format", fmt], project)
    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            for _ in range(3):
                assert client.get("/?a=1", headers={"X-Tag": "t9", "X-Real-IP": "203.0.113.7"}).text == "hi"
        p.wait(r'"GET /\?a=1 HTTP/1\.1"', count=3)
    finally:
        lines = p.stop()
    access = [r for r in records(lines) if '"GET /?a=1 HTTP/1.1"' in r[2]]
    assert len(access) == 3, "\n".join(lines)  # one per request: the front defers to the workers
    for level, source, text in access:
        assert (level, source) == ("INFO", "web")
        match = re.fullmatch(
            # the front replaces the client's X-Real-IP with the peer's address
            r'access: 127\.0\.0\.1 "GET /\?a=1 HTTP/1\.1" 200 2 GET / a=1 HTTP/1\.1 t9 '
            r"(\d+\.\d{6}) (\d+) (\d+) <(\d+)>",
            text,
        )
        assert match, text
        seconds, micros, millis = float(match.group(1)), int(match.group(2)), int(match.group(3))
        # %(L)s is rounded to the microsecond, %(D)s truncated: they differ by at most one
        assert abs(micros - round(seconds * 1_000_000)) <= 1 and millis == micros // 1000
        assert int(match.group(4)) != p.proc.pid  # the worker's pid


def test_front_access_log_format_and_errors(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "tiny"
    app.mkdir(parents=True)
    (app / "manifest.json").write_text(json.dumps({"slave": str(WORKER)}))
    p = Proc(
        [
            "runtime",
            "--apps",
            str(tmp_path / "apps"),
            "--bind",
            "127.0.0.1:0",
            "--locator-port",
            "0",
            "--workers",
            "1",
            "--access-log-format",
            '%(m)s %(U)s %(s)s %(B)s "%(a)s"',
        ],
        tmp_path,
    )
    try:
        with httpx.Client(base_url=p.url, timeout=20, headers={"User-Agent": "ua/2"}) as client:
            assert client.get("/tiny/http/hello").text == "hello"
            assert client.get("/nosuch/http/x").status_code == 503
        p.wait(r"GET /nosuch/http/x 503")
    finally:
        lines = p.stop()
    recs = records(lines)
    assert ("INFO", "tiny", 'access: GET /tiny/http/hello 200 5 "ua/2"') in recs
    assert [r for r in recs if "/nosuch/" in r[2]] == [
        ("INFO", "nosuch", 'access: GET /nosuch/http/x 503 42 "ua/2"')
    ]


def test_runtime_routes_only_what_is_addressed(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        app = tmp_path / "apps" / name
        app.mkdir(parents=True)
        (app / "manifest.json").write_text(json.dumps({"slave": str(WORKER)}))
    base = ["runtime", "--apps", str(tmp_path / "apps"), "--bind", "127.0.0.1:0", "--locator-port", "0"]
    p = Proc([*base, "--workers", "1"], tmp_path)
    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            r = client.get("/")
            assert (r.status_code, r.text) == (404, "Invalid url\napps: /alpha/http/ /beta/http/\n")
            assert client.get("/hello").status_code == 404
            assert client.get("/nosuch/http/hello").status_code == 503
            assert client.get("/beta/http/hello").text == "hello"
        p.wait(r"GET /beta/http/hello HTTP/1\.1")
    finally:
        lines = p.stop()
    recs = records(lines)
    assert [r[1] for r in recs if r[2].startswith("access: ")] == ["http", "http", "nosuch", "beta"]
    # a default app only when named
    p = Proc([*base, "--workers", "1", "--default-app", "beta"], tmp_path)
    try:
        assert "->  app beta" in "\n".join(p.lines)
        with httpx.Client(base_url=p.url, timeout=20) as client:
            assert client.get("/hello").text == "hello"
            assert client.get("/alpha/http/hello").text == "hello"
    finally:
        p.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "cocaine_http", *base, "--default-app", "gamma"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1 and "--default-app gamma: no such app (alpha, beta)" in bad.stderr


def test_reload_reports_a_broken_import_once(tmp_path: Path) -> None:
    project = flask_project(tmp_path)
    source = project / "app.py"
    args = ["dev", "app:app", "--name", "web", "--reload", "--log-level", "debug"]
    p = Proc([*args, "--bind", "127.0.0.1:0", "--locator-port", "0"], project)

    def touch(text: str) -> None:
        source.write_text(text)
        later = time.time() + 10 * (1 + len(p.lines))  # a new mtime, whatever the clock's grain
        os.utime(source, (later, later))

    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            assert client.get("/").text == "hi"
            touch(FLASK_APP + "\ndef broken(:\n")
            p.wait(r"reload: web cannot be imported")
            assert client.get("/").status_code == 503
            touch(FLASK_APP + "\ndef broken(:\n# same problem\n")  # same line, same error
            p.wait(r"changed; checking the import again")
            touch(FLASK_APP + "\nraise ValueError('other')\n")  # a new problem: said again
            p.wait(r"reload: web cannot be imported", count=2)
            touch(FLASK_APP.replace('"hi"', '"hi again"'))
            p.wait(r"reload: web imports again")
            for _ in range(200):  # the new workers start; until then the front says 503
                r = client.get("/")
                if r.status_code == 200:
                    break
                time.sleep(0.05)
            assert r.text == "hi again"
    finally:
        lines = p.stop()
    reports = [line for line in lines if "cannot be imported" in line]
    assert len(reports) == 2, "\n".join(lines)
    assert re.search(r"SyntaxError: .*\(app\.py, line 17\); waiting for a change$", reports[0]), reports
    assert re.search(r"ValueError: other \(app\.py, line 17\); waiting for a change$", reports[1]), reports
    assert not any("Traceback" in line for line in lines), "\n".join(lines)


def test_runtime_app_with_access_log_in_its_manifest(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    project = flask_project(tmp_path / "shop")  # an app directory named shop
    init = subprocess.run(
        [
            *(sys.executable, "-m", "cocaine_http", "init", "app:app", "--python", sys.executable),
            *("--access-log-format", "W %(r)s %(s)s"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    p = Proc(["runtime", "--apps", str(project), "--bind", "127.0.0.1:0", "--locator-port", "0"], tmp_path)
    try:
        with httpx.Client(base_url=p.url, timeout=20) as client:
            assert client.get("/shop/http/").text == "hi"
            assert client.get("/shop/http/boom").status_code == 500
        p.wait(r"access: W GET /boom HTTP/1\.1 500")
    finally:
        lines = p.stop()
    access = [r for r in records(lines) if r[2].startswith("access: ")]
    # the manifest's COCAINE_HTTP_ARGS turn the workers' access log on: the front stays quiet
    assert access == [
        ("INFO", "shop", "access: W GET / HTTP/1.1 200"),
        ("INFO", "shop", "access: W GET /boom HTTP/1.1 500"),
    ], "\n".join(lines)
