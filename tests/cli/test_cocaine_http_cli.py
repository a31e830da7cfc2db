"""The cocaine-http command line: options, targets, config files, init, the entry points."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from cocaine_http import __version__
from cocaine_http.cli import (
    AppSpec,
    load_config_file,
    main,
    parse_app_specs,
    parse_options,
    split_spec,
)
from cocaine_http.errors import ConfigError
from cocaine_http.http.envelope import decode_response, encode_request
from cocaine_http.protocol.frames import Generation
from cocaine_http.runtime.engine import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(
    *args: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COCAINE_HTTP_")}
    full.update(PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, cwd=cwd or ROOT, env=full)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("COCAINE_HTTP_") and name != "COCAINE_HTTP_DECODER":
            monkeypatch.delenv(name, raising=False)


# -- target syntax -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target", "event"),
    [
        ("mod:app", "mod:app", "http"),
        ("mod:app=api", "mod:app", "api"),
        ("pkg.mod:obj.app=v1.api", "pkg.mod:obj.app", "v1.api"),
        ("mod:app=*", "mod:app", "*"),
        ("mod:create_app()", "mod:create_app()", "http"),
        ("mod:create_app(debug=True)", "mod:create_app(debug=True)", "http"),
        ("mod:create_app(debug=True)=api", "mod:create_app(debug=True)", "api"),
        ('mod:make(x="a=b")', 'mod:make(x="a=b")', "http"),
        ('mod:make(x="a=b")=e', 'mod:make(x="a=b")', "e"),
        ("mod", "mod", "http"),
    ],
)
def test_split_spec(text: str, target: str, event: str) -> None:
    assert split_spec(text) == AppSpec(target, event)


def test_duplicate_event_rejected() -> None:
    with pytest.raises(ConfigError, match="mapped twice"):
        parse_app_specs(["a:app", "b:app"])
    assert [s.event for s in parse_app_specs(["a:app", "b:app=api"], "web")] == ["web", "api"]


# -- options and runtime flags -------------------------------------------------------------

RUNTIME = [
    "--app",
    "web",
    "--endpoint",
    "/run/web.1",
    "--locator",
    "h:10053",
    "--protocol",
    "1",
    "--uuid",
    "u",
]


def test_runtime_flags_are_taken_out_anywhere() -> None:
    opts = parse_options(["--threads", "4", *RUNTIME[:4], "mod:app", *RUNTIME[4:], "--root-path", "/x"])
    assert opts.as_worker
    assert opts.runtime == {
        "app": "web",
        "endpoint": "/run/web.1",
        "locator": "h:10053",
        "protocol": "1",
        "uuid": "u",
    }
    assert opts.ns.targets == ["mod:app"]
    assert (opts.ns.threads, opts.ns.root_path) == (4, "/x")


def test_app_flag_is_never_the_target() -> None:
    opts = parse_options(["--app", "mod:app"])
    assert not opts.as_worker and opts.ns.targets == []


def test_targets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCAINE_HTTP_APP", 'a:app  b:make("x y")=api')
    assert parse_options(RUNTIME).ns.targets == ["a:app", 'b:make("x y")=api']
    assert parse_options([*RUNTIME, "c:app"]).ns.targets == ["c:app"]  # the command line wins


def test_extra_args_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCAINE_HTTP_ARGS", "--threads 3 --root-path '/a b'")
    ns = parse_options([*RUNTIME, "m:a", "--threads", "5"]).ns
    assert (ns.threads, ns.root_path) == (5, "/a b")


def test_unknown_flags_ignored_only_as_worker() -> None:
    opts = parse_options([*RUNTIME, "m:a", "--new-runtime-flag", "v"])
    assert opts.ignored == ["--new-runtime-flag", "v"]
    assert main(["m:a", "--no-such-option"]) == 2


def test_config_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"targets": ["x:app=api"], "threads": 2, "env": {"A": "1"}, "root-path": "/r"}))
    assert load_config_file(str(js)) == {
        "targets": ["x:app=api"],
        "threads": 2,
        "env": ["A=1"],
        "root_path": "/r",
    }
    py = tmp_path / "c.py"
    py.write_text("import os\nthreads = 2 * 3\naccess_log = True\n_private = 1\nunrelated = 5\n")
    assert load_config_file(str(py)) == {"threads": 6, "access_log": True}
    ns = parse_options(["--config", str(js), *RUNTIME, "--threads", "9"]).ns
    assert (ns.targets, ns.threads, ns.root_path, ns.env) == (["x:app=api"], 9, "/r", ["A=1"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"thread": 1}')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config_file(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(str(tmp_path / "missing.json"))


# -- without the runtime ----------------------------------------------------------------------


def test_without_runtime_flags_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples.flask_app.app:app", "--app-dir", ROOT]) == 2
    err = capsys.readouterr().err
    assert "examples.flask_app.app:app: WSGI app, event 'http'" in err
    assert "cocaine-http dev examples.flask_app.app:app" in err
    assert "cocaine-http init" in err


def test_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--check", "examples.fastapi_app.app:app=api", "examples.flask_app.app:app", "--app-dir", ROOT])
        == 0
    )
    out = capsys.readouterr().out
    assert "examples.fastapi_app.app:app: ASGI app, event 'api'" in out
    assert "examples.flask_app.app:app: WSGI app, event 'http'" in out


def test_import_errors_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "no_such_module_xyz:app"]) == 4
    assert "could not import module 'no_such_module_xyz'" in capsys.readouterr().err


def test_dev_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    calls = []
    if importlib.util.find_spec("cocaine_http.runtime.cli") is None:
        assert main(["dev", "m:a"]) == 2
        return
    import cocaine_http.runtime.cli as rcli

    monkeypatch.setattr(rcli, "main", lambda argv: calls.append(argv) or 0)
    assert main(["dev", "m:a", "--bind", "127.0.0.1:0"]) == 0
    assert main(["runtime", "--x"]) == 0
    assert calls == [["dev", "m:a", "--bind", "127.0.0.1:0"], ["runtime", "--x"]]


# -- entry points -----------------------------------------------------------------------------


def test_version_and_help_via_python_m() -> None:
    proc = run(sys.executable, "-m", "cocaine_http", "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"cocaine-http {__version__}"
    proc = run(sys.executable, "-m", "cocaine_http", "--help")
    assert proc.returncode == 0 and "TARGET[=EVENT]" in proc.stdout and "--root-path" in proc.stdout


def test_console_script_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        scripts = tomllib.load(fh)["project"]["scripts"]
    assert scripts["cocaine-http"] == "cocaine_http.cli:main"
    script = shutil.which("cocaine-http") or os.path.join(os.path.dirname(sys.executable), "cocaine-http")
    if os.path.exists(script):
        proc = run(script, "--version")
    else:  # not installed into this environment: call the entry point the way its wrapper does
        proc = run(
            sys.executable,
            "-c",
            "import sys; from cocaine_http.cli import main; sys.exit(main())",
            "--version",
        )
    assert proc.returncode == 0 and proc.stdout.strip() == f"cocaine-http {__version__}"


# -- init ----------------------------------------------------------------------------------------

HELLO = textwrap.dedent(
    """
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello from " + environ["SCRIPT_NAME"].encode() + b" " + environ["PATH_INFO"].encode()]
    """
)


def test_init_writes_manifest_and_launcher(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "hello.py").write_text(HELLO)
    proc = run(
        sys.executable,
        "-m",
        "cocaine_http",
        "init",
        "hello:app",
        "--dir",
        str(tmp_path),
        "--name",
        "hello",
        "--root-path",
        "/hello/http",
        "--threads",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "cocaine-tool app upload --name hello" in proc.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == {
        "slave": "cocaine-http-launcher",
        "environment": {
            "COCAINE_HTTP_APP": "hello:app",
            "COCAINE_HTTP_ARGS": "--root-path /hello/http --threads 2",
        },
    }
    launcher = tmp_path / "cocaine-http-launcher"
    assert launcher.stat().st_mode & stat.S_IXUSR
    assert launcher.read_text().startswith("#!/bin/sh\n")  # portable: finds a python where unpacked
    assert sys.executable not in launcher.read_text()
    again = run(sys.executable, "-m", "cocaine_http", "init", "hello:app", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists" in again.stderr
    bad = run(
        sys.executable,
        "-m",
        "cocaine_http",
        "init",
        "hello:app",
        "--dir",
        str(tmp_path / "x"),
        "--thread",
        "2",
    )
    assert bad.returncode == 2


@pytest.mark.parametrize("gen", [Generation.A, Generation.B], ids=["A", "B"])
def test_init_output_runs_under_the_engine(tmp_path, gen: Generation) -> None:  # type: ignore[no-untyped-def]
    """The runtime's way: exec the manifest's slave path with only its flags, env from the manifest."""
    (tmp_path / "hello.py").write_text(HELLO)
    proc = run(
        sys.executable, "-m", "cocaine_http", "init", "hello:app", "--dir", str(tmp_path), "--root-path", "/h"
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())

    async def go() -> tuple[int, bytes]:
        slave = str(tmp_path / manifest["slave"])
        env = {k: v for k, v in manifest["environment"].items()}
        env["COCAINE_HTTP_PYTHON"] = sys.executable  # the host's python with cocaine_http
        saved = {k: os.environ.pop(k) for k in ("PYTHONPATH",) if k in os.environ}
        try:
            async with Engine(
                "hello", slave, generation=gen, runtime_dir=str(tmp_path / "run"), env=env
            ) as engine:
                await engine.start(1, timeout=20)
                reply = await engine.invoke(
                    "http", [encode_request("GET", "/x", [("Host", "h")], generation=gen)]
                )
                try:
                    status, _, body = decode_response(reply.chunks, gen)
                except ValueError as exc:
                    output = [line for s in engine.slaves.values() for line in s.output]
                    raise AssertionError(f"{exc}: {reply!r}\n{output}") from None
                return status, body
        finally:
            os.environ.update(saved)

    status, body = asyncio.run(go())
    assert (status, body) == (200, b"hello from /h /x")


@pytest.mark.parametrize("example", ["flask_app", "fastapi_app", "django_app"])
def test_example_manifests_run_as_deployed(example: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """cwd = the example dir (the app archive's root), env = the manifest's environment.

    The launchers are executed as the runtime does, by path; COCAINE_HTTP_PYTHON (in the
    environment, as a deployer may put it in the manifest) points them at this interpreter,
    the one that has the frameworks.
    """
    directory = os.path.join(ROOT, "examples", example)
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    launcher = os.path.join(directory, manifest["slave"])
    assert os.access(launcher, os.X_OK)

    async def go() -> tuple[int, bytes]:
        env = {**manifest["environment"], "PYTHONPATH": ROOT, "COCAINE_HTTP_PYTHON": sys.executable}
        async with Engine(
            "ex",
            launcher,
            generation=Generation.B,
            runtime_dir=str(tmp_path),
            cwd=directory,
            env=env,
        ) as engine:
            await engine.start(1, timeout=20)
            reply = await engine.invoke("http", [encode_request("GET", "/", [("Host", "h")])])
            status, _, body = decode_response(reply.chunks, Generation.B)
            return status, body

    assert asyncio.run(go()) == (200, b"Hello, world!\n")


def test_request_idle_timeout_flag_reaches_the_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``--request-idle-timeout``: an http invocation that never sends its
    request is failed by the worker after that long, with its own error."""
    (tmp_path / "hello.py").write_text(HELLO)

    async def go() -> tuple[object, object]:
        command = [sys.executable, "-m", "cocaine_http", "hello:app", "--request-idle-timeout", "0.3"]
        env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
        async with Engine(
            "hello",
            command,
            generation=Generation.B,
            runtime_dir=str(tmp_path / "run"),
            env=env,
            cwd=str(tmp_path),
        ) as engine:
            await engine.start(1, timeout=20)
            silent = await engine.open("http")
            idle = await silent.reply(10)
            ok = await engine.invoke("http", [encode_request("GET", "/x", [("Host", "h")])])
            return idle.error, decode_response(ok.chunks, Generation.B)[0]

    error, status = asyncio.run(go())
    assert error == ((42, 263), "the request sent nothing for 0.3 s")
    assert status == 200
