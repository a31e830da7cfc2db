"""The command line as a Flask/Django/FastAPI user drives it: real processes, real ports (loopback).

``dev`` imports its targets before anything starts, takes the worker's options directly,
every option can come from ``COCAINE_HTTP_<OPTION>``, ``help``, ``--check`` of the
interface, deprecated aliases, ``make run PORT=``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any COCAINE_HTTP_* setting (but the decoder choice)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    if "COCAINE_HTTP_DECODER" in os.environ:
        env["COCAINE_HTTP_DECODER"] = os.environ["COCAINE_HTTP_DECODER"]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cocaine_http", *args],
        cwd=ROOT,
        env=env or environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Dev:
    """A running ``cocaine-http`` process with a banner; the banner's addresses by name."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, **popen: object) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env or environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,  # type: ignore[call-overload]
        )
        self.seen: dict[str, str] = {}
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if match := re.match(r"\s+(HTTP|locator|app)\s+(\S+)", line):
                self.seen.setdefault(match.group(1), match.group(2))
            if "Ctrl-C to stop" in line:
                return
        self.proc.kill()
        self.proc.communicate(timeout=20)
        raise AssertionError("no banner:\n" + "".join(self.lines))

    @property
    def banner(self) -> str:
        return "".join(self.lines)

    def stop(self, group: bool = False) -> str:
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        # make itself dies of the SIGINT (-2) after its child stopped cleanly
        assert self.proc.returncode in ((0, -signal.SIGINT) if group else (0,)), out
        assert "runtime: stopped" in out, out
        return out


def dev(*args: str, env: dict[str, str] | None = None) -> Dev:
    return Dev([sys.executable, "-m", "cocaine_http", "dev", *args], env)


LOOPBACK = ("-b", "127.0.0.1:0", "--locator-port", "0")


# -- 1. targets are imported before anything starts ----------------------------------------


def test_dev_import_failure_stops_before_the_banner() -> None:
    started = time.monotonic()
    res = run("dev", "nosuchmod:app", *LOOPBACK)
    assert res.returncode == 4, res
    assert "Ctrl-C" not in res.stdout and "HTTP" not in res.stdout
    # word for word what docs/runtime.md shows
    assert res.stderr.strip().splitlines() == [
        "cocaine-http dev: app nosuchmod (module nosuchmod:app) cannot start:",
        "cocaine-http: could not import module 'nosuchmod' (not found on sys.path; use --app-dir or --chdir)",
    ]
    assert time.monotonic() - started < 30  # no backoff rounds

    res = run("dev", "optapp:nope", "--app-dir", str(APPS), *LOOPBACK)
    assert res.returncode == 4 and "attribute 'nope' not found in 'optapp'" in res.stderr, res.stderr
    assert "Ctrl-C" not in res.stdout


def test_runtime_checks_cocaine_http_manifests_first(tmp_path: Path) -> None:
    app = tmp_path / "broken"
    app.mkdir()
    (app / "manifest.json").write_text(
        json.dumps({"slave": "cocaine-http-launcher", "environment": {"COCAINE_HTTP_APP": "nosuchmod:app"}})
    )
    init = run("init", "nosuchmod:app", "--dir", str(tmp_path / "init"))
    assert init.returncode == 0, init.stderr
    (app / "cocaine-http-launcher").write_text((tmp_path / "init" / "cocaine-http-launcher").read_text())
    (app / "cocaine-http-launcher").chmod(0o755)
    res = run(
        "runtime", "--apps", str(app), "--no-http", "--locator-port", "0",
        env=environment(COCAINE_HTTP_PYTHON=sys.executable),
    )  # fmt: skip
    assert res.returncode == 4, res
    assert "app broken" in res.stderr and "'nosuchmod'" in res.stderr
    assert "Ctrl-C" not in res.stdout


# -- 2. dev takes the worker's options, several targets, '--' still works -------------------


def test_dev_takes_worker_options_and_several_targets() -> None:
    d = dev(
        "optapp:app", "optapp:other=other", "--root-path", "/pre", "--env", "CLI_TEST_MARKER=m1",
        "--app-dir", str(APPS), "-w", "2", "--access-log", *LOOPBACK,
    )  # fmt: skip
    try:
        assert "pool 2 workers" in d.banner
        url = d.seen["HTTP"]
        r = httpx.get(url + "/pre/x", timeout=20)
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["script_name"], got["path_info"], got["marker"]) == ("/pre", "/x", "m1")
        assert got["gc_frozen"] > 1000  # --gc-freeze is on by default: the imports' objects are frozen
        r = httpx.get(url + "/optapp/other/y", timeout=20)
        assert (r.status_code, r.text) == (200, "other /y")
    finally:
        out = d.stop()
    assert "GET /pre/x" in out  # --access-log reached the workers


def test_double_dash_passes_on_and_refuses_dev_options() -> None:
    d = dev("optapp:app", "--app-dir", str(APPS), *LOOPBACK, "--", "--root-path", "/old")
    try:
        assert httpx.get(d.seen["HTTP"] + "/old/z", timeout=20).json()["script_name"] == "/old"
    finally:
        d.stop()
    res = run("dev", "optapp:app", "--app-dir", str(APPS), "--", "--bind", "127.0.0.1:0")
    assert res.returncode == 2
    assert "--bind after '--'" in res.stderr and "before '--'" in res.stderr


# -- 3. configuration from the environment -------------------------------------------------


def test_environment_configures_dev_workers_and_clients() -> None:
    env = environment(
        COCAINE_HTTP_BIND="127.0.0.1:0",
        COCAINE_HTTP_LOCATOR_PORT="0",
        COCAINE_HTTP_APP_DIR=str(APPS),
        COCAINE_HTTP_ROOT_PATH="/env",
        COCAINE_HTTP_ENV="CLI_TEST_MARKER=fromenv",
        COCAINE_HTTP_PROTOCOL="0.11",
        COCAINE_HTTP_GC_FREEZE="off",
    )
    d = dev("optapp:app", "--root-path", "/flag", env=env)
    try:
        assert "protocol 0.11" in d.banner
        got = httpx.get(d.seen["HTTP"] + "/flag/q", timeout=20).json()
        assert got["script_name"] == "/flag"  # the flag wins over COCAINE_HTTP_ROOT_PATH
        assert got["marker"] == "fromenv"  # COCAINE_HTTP_ENV reached the worker
        assert got["gc_frozen"] == 0  # COCAINE_HTTP_GC_FREEZE=off: nothing frozen
        # a script outside any worker finds this runtime through COCAINE_HTTP_LOCATOR (+ _PROTOCOL)
        script = (
            "from cocaine_http import SyncClient\n"
            "c = SyncClient()\n"
            "s = c.storage()\n"
            "s.write('cli', 'k', b'v1')\n"
            "print(c.generation.name, s.read('cli', 'k').decode())\n"
            "c.close()\n"
        )
        client_env = environment(COCAINE_HTTP_LOCATOR=d.seen["locator"], COCAINE_HTTP_PROTOCOL="0.11")
        res = subprocess.run(
            [sys.executable, "-c", script], env=client_env, capture_output=True, text=True, timeout=60
        )
        assert (res.returncode, res.stdout.strip()) == (0, "A v1"), res.stderr
    finally:
        d.stop()


def test_bad_environment_values_are_named() -> None:
    apps = str(APPS)
    res = run("--check", "optapp:app", env=environment(COCAINE_HTTP_THREADS="x8", COCAINE_HTTP_APP_DIR=apps))
    assert res.returncode == 2 and "COCAINE_HTTP_THREADS='x8'" in res.stderr, res.stderr
    res = run("--check", "optapp:app", env=environment(COCAINE_HTTP_ACCESS_LOG="maybe"))
    assert res.returncode == 2 and "COCAINE_HTTP_ACCESS_LOG='maybe'" in res.stderr, res.stderr
    res = run("dev", "optapp:app", env=environment(COCAINE_HTTP_WORKERS="x"))
    assert res.returncode == 2 and "COCAINE_HTTP_WORKERS='x'" in res.stderr, res.stderr
    ok = run("--check", "optapp:app", env=environment(COCAINE_HTTP_APP_DIR=apps, COCAINE_HTTP_THREADS="3"))
    assert ok.returncode == 0 and "WSGI app" in ok.stdout, ok.stderr


def test_help_names_the_variables() -> None:
    for args, names in [
        (("--help",), ("COCAINE_HTTP_THREADS", "COCAINE_HTTP_ROOT_PATH", "COCAINE_HTTP_APP")),
        (("dev", "--help"), ("COCAINE_HTTP_BIND", "COCAINE_HTTP_WORKERS", "COCAINE_HTTP_THREADS", "-w N")),
        (("runtime", "--help"), ("COCAINE_HTTP_APPS", "COCAINE_HTTP_SERVICES_HOST", "-b BIND")),
    ]:
        res = run(*args)
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stdout.split())
        for name in names:
            assert name in text, (args, name)


# -- 7. paper cuts ---------------------------------------------------------------------------


def test_help_command() -> None:
    res = run("help")
    assert res.returncode == 0 and "usage: cocaine-http" in res.stdout and "--threads" in res.stdout
    res = run("help", "dev")
    assert res.returncode == 0 and "usage: cocaine-http dev" in res.stdout
    res = run("help", "init")
    assert res.returncode == 0 and "usage: cocaine-http init" in res.stdout
    res = run("help", "bogus")
    assert res.returncode == 2 and "no command 'bogus'" in res.stderr and "could not import" not in res.stderr


def test_check_verifies_the_interface() -> None:
    common = ("--app-dir", str(APPS), "--check")
    res = run(*common, "optapp:asgi", "--interface", "wsgi")
    assert res.returncode == 2 and "--interface wsgi does not fit" in res.stderr, res.stderr
    res = run(*common, "optapp:app", "--interface", "asgi")
    assert res.returncode == 2 and "--interface asgi does not fit" in res.stderr, res.stderr
    res = run(*common, "optapp:asgi", "--interface", "asgi")
    assert res.returncode == 0 and "ASGI app" in res.stdout, res.stderr
    res = run(*common, "optapp:flask")  # auto
    assert res.returncode == 0 and "WSGI app" in res.stdout, res.stderr
    # dev runs the same check before it starts
    res = run("dev", "optapp:asgi", "--interface", "wsgi", "--app-dir", str(APPS), *LOOPBACK)
    assert res.returncode == 2 and "does not fit" in res.stderr and "Ctrl-C" not in res.stdout


def test_renamed_options_keep_their_old_names() -> None:
    res = run("--check", "optapp:app", "--app-dir", str(APPS), "--timeout", "1")
    assert res.returncode == 0
    assert "--timeout is deprecated, use --grace-period" in res.stderr
    res = run("dev", "nosuchmod:app", "--host", "127.0.0.1", "--timeout", "5", *LOOPBACK)
    assert res.returncode == 4
    assert "--host is deprecated, use --services-host" in res.stderr and "--bind" in res.stderr
    assert "--timeout is deprecated, use --front-timeout" in res.stderr


def test_root_path_auto_makes_flask_redirects_go_through_the_proxy_path() -> None:
    d = dev("optapp:flask", "--root-path", "auto", "--app-dir", str(APPS), *LOOPBACK)
    try:
        # the front routes /<app>/<event>/<rest> like the cocaine proxies: the app sees /<rest>
        r = httpx.get(d.seen["HTTP"] + "/optapp/http/go", timeout=20)
        assert r.status_code == 302, r.text
        assert r.headers["location"] == "/optapp/http/me"
        assert httpx.get(d.seen["HTTP"] + "/optapp/http/me", timeout=20).text == "me"
    finally:
        d.stop()


def test_make_run_takes_port() -> None:
    if not (ROOT / ".venv" / ".installed-stamp").exists():
        pytest.skip("make run needs the repository's .venv (make setup)")
    env = environment(COCAINE_HTTP_LOCATOR_PORT="0")
    d = Dev(["make", "-s", "run", "PORT=0"], env, start_new_session=True)
    try:
        url = d.seen["HTTP"]
        assert not url.endswith(":8080")
        r = httpx.get(url + "/", timeout=20)
        assert (r.status_code, r.text) == (200, "Hello, world!\n")
    finally:
        d.stop(group=True)


def test_bind_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "front.sock"
    d = dev("optapp:app", "--app-dir", str(APPS), "-b", f"unix:{sock}", "--locator-port", "0")
    try:
        assert d.seen["HTTP"] == f"unix:{sock}"
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=20) as client:
            r = client.get("http://localhost/u")
        assert r.status_code == 200 and r.json()["path_info"] == "/u"
    finally:
        d.stop()
    res = run("dev", "optapp:app", "-b", "localhost:http")
    assert res.returncode == 2 and "HOST:PORT or unix:PATH" in res.stderr and "int()" not in res.stderr


def test_every_worker_option_goes_through_dev_and_the_environment() -> None:
    """The option table's contract, for each entry (so a new one-line option needs no more code):
    dev parses it and hands it to the worker unchanged, and its variable sets it in the worker."""
    import argparse

    from cocaine_http.cli import OPTIONS, build_parser, env_name, worker_argv
    from cocaine_http.runtime.cli.parsers import subcommand_parsers

    def sample(kwargs: dict[str, object]) -> tuple[list[str], str, object]:
        action = kwargs.get("action")
        if action == "store_true":
            return [], "1", True
        if action is argparse.BooleanOptionalAction:
            return [], "yes", True
        if action == "append":
            return ["A=1"], "A=1", ["A=1"]
        if kwargs.get("choices"):
            value = list(kwargs["choices"])[-1]  # type: ignore[call-overload]
            return [str(value)], str(value), value
        if kwargs.get("type") is int:
            return ["3"], "3", 3
        if kwargs.get("type") is float:
            return ["2.5"], "2.5", 2.5
        return ["/x/y"], "/x/y", "/x/y"

    for opt in OPTIONS:
        args, env_value, expected = sample(opt.kwargs)
        flag = opt.flags[0]
        worker = build_parser({}).parse_args(["t:app", flag, *args])
        assert getattr(worker, opt.dest) == expected, flag
        from_env = build_parser({env_name(opt.dest): env_value}).parse_args(["t:app"])
        assert getattr(from_env, opt.dest) == expected, (flag, env_name(opt.dest))
        if not opt.dev:
            continue
        dev_ns = subcommand_parsers({})[1]["dev"].parse_intermixed_args(["t:app", flag, *args])
        passed_on = build_parser({}).parse_args(["t:app", *worker_argv(dev_ns)])
        assert getattr(passed_on, opt.dest) == expected, flag
        untouched = subcommand_parsers({})[1]["dev"].parse_intermixed_args(["t:app"])
        assert worker_argv(untouched) == []  # defaults stay the worker's own
