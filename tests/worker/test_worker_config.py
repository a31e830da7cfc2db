"""WorkerConfig: the runtime's argv in any order, foreign arguments tolerated, limits validated."""

from __future__ import annotations

import pytest

from cocaine_http.aio.worker import Worker
from cocaine_http.config import RUNTIME_FLAGS, WorkerConfig, split_args
from cocaine_http.errors import ConfigError
from cocaine_http.protocol.frames import Generation

A_ARGV = ["--app", "web", "--endpoint", "/run/cocaine/web.42", "--locator", "node1:10053", "--uuid", "u-1"]
B_ARGV = [
    "--app",
    "web",
    "--endpoint",
    "/run/cocaine/web.42",
    "--locator",
    "127.0.0.1:10053,[::1]:10053",
    "--protocol",
    "1",
    "--uuid",
    "8f0a6d4e-1c2b-4a55-9e0e-2f2b8e3f6a11",
]


def test_a_argv_as_the_runtime_passes_it() -> None:
    cfg = WorkerConfig.from_argv(A_ARGV)
    assert (cfg.app, cfg.endpoint, cfg.locator, cfg.uuid) == (
        "web",
        "/run/cocaine/web.42",
        "node1:10053",
        "u-1",
    )
    assert cfg.generation is Generation.A and cfg.protocol == 0
    assert cfg.locators == [("node1", 10053)]
    assert cfg.argv() == A_ARGV


def test_b_argv_with_protocol_and_locator_list() -> None:
    cfg = WorkerConfig.from_argv(B_ARGV)
    assert cfg.generation is Generation.B and cfg.protocol == 1
    assert cfg.locators == [("127.0.0.1", 10053), ("::1", 10053)]
    assert cfg.argv() == B_ARGV


def test_any_order_equals_sign_and_unknown_flags_ignored() -> None:
    argv = ["--uuid=tag", "--verbose", "--protocol", "1", "--bind", "0:80", "--app", "x", "--endpoint", "/s"]
    cfg = WorkerConfig.from_argv(argv)
    assert (cfg.uuid, cfg.app, cfg.endpoint, cfg.generation) == ("tag", "x", "/s", Generation.B)


def test_uuid_is_never_validated_a_tag_passes() -> None:
    assert WorkerConfig.from_argv([*A_ARGV[:-1], "my-sticky-worker"]).uuid == "my-sticky-worker"


def test_split_args_keeps_user_arguments_in_order() -> None:
    argv = ["myapp.wsgi:app", "--threads", "4", "--app", "web", "--workers", "3", "--uuid", "u", "-v"]
    values, rest = split_args(argv)
    assert values == {"threads": "4", "app": "web", "uuid": "u"}
    assert rest == ["myapp.wsgi:app", "--workers", "3", "-v"]
    values, rest = split_args(argv, RUNTIME_FLAGS)  # a CLI that owns --threads itself
    assert "threads" not in values and rest[:3] == ["myapp.wsgi:app", "--threads", "4"]


def test_a_trailing_flag_without_value_is_left_to_others() -> None:
    assert split_args(["--app"]) == ({}, ["--app"])


def test_threads_flag_and_keyword_overrides() -> None:
    cfg = WorkerConfig.from_argv([*A_ARGV, "--threads", "3"], grace_period=1.5, protocol=1)
    assert cfg.threads == 3 and cfg.grace_period == 1.5 and cfg.generation is Generation.B
    with pytest.raises(ConfigError):
        WorkerConfig.from_argv(["--threads", "many"])


@pytest.mark.parametrize(
    "change",
    [
        {"heartbeat_interval": 0},
        {"disown_timeout": -1},
        {"threads": -1},
        {"max_sessions": 1.5},
        {"read_low_water": 10, "read_high_water": 5},
        {"no_such_option": 1},
        {"protocol": "7"},
    ],
)
def test_bad_values_are_config_errors(change: dict) -> None:
    with pytest.raises(ConfigError):
        WorkerConfig().replace(**change)


def test_defaults_stay_inside_the_runtime_kill_windows() -> None:
    cfg = WorkerConfig()
    assert cfg.grace_period + cfg.shutdown_timeout < 5.0  # A termination-timeout
    assert cfg.heartbeat_interval < 30.0 and cfg.disown_timeout >= 30.0


def test_worker_reads_sys_argv_and_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["worker.py", *B_ARGV, "--threads", "2"])
    w = Worker(heartbeat_interval=0.5)
    assert w.config.generation is Generation.B and w.config.threads == 2
    assert w.config.heartbeat_interval == 0.5 and w.config.uuid.startswith("8f0a")


def test_serving_without_runtime_arguments_is_a_config_error() -> None:
    w = Worker([])
    with pytest.raises(SystemExit) as info:
        w.run()
    assert info.value.code == ConfigError.exit_code
