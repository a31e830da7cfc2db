"""``--access-log-format``: gunicorn's atoms, computed from one request record."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cocaine_http.accesslog import DEFAULT_FORMAT, AccessFormat, AccessRecord
from cocaine_http.errors import ConfigError


def record(**kw: object) -> AccessRecord:
    headers = [
        (b"referer", b"http://r/"),
        (b"user-agent", b"ua/3"),
        (b"authorization", b"Basic " + base64.b64encode(b"alice:secret")),
    ]
    args: dict = {"client": "192.0.2.1", "start": time.mktime((2026, 12, 7, 1, 2, 3, 0, 0, -1))}
    args.update(kw)
    headers = args.pop("headers", headers)  # type: ignore[assignment]
    return AccessRecord("POST", b"/a/b?x=1&y=2", "1.1", headers, 201, 0, 1.5, **args)


def test_default_format_is_gunicorns() -> None:
    line = AccessFormat().line(record())
    stamp = time.strftime("%z", time.localtime(record().start))
    request = '"POST /a/b?x=1&y=2 HTTP/1.1"'
    assert line == f'192.0.2.1 - alice [07/Dec/2026:01:02:03 {stamp}] {request} 201 - "http://r/" "ua/3"'
    assert DEFAULT_FORMAT == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


def test_request_time_within_and_across_seconds() -> None:
    # %(t)s is kept for the second it was made for: same second, same text; the next one differs
    start = time.mktime((2026, 12, 7, 1, 2, 3, 0, 0, -1))
    fmt = AccessFormat("%(t)s")
    stamp = time.strftime("%z", time.localtime(start))
    first = fmt.line(record(start=start + 0.1))
    assert first == f"[07/Dec/2026:01:02:03 {stamp}]"
    assert fmt.line(record(start=start + 0.9)) == first
    assert fmt.line(record(start=start + 1.0)) == f"[07/Dec/2026:01:02:04 {stamp}]"
    assert fmt.line(record(start=start - 3600)) == f"[07/Dec/2026:00:02:03 {stamp}]"


def test_every_atom() -> None:
    os.environ["CH_ACCESS_TEST"] = "e1"
    fmt = (
        "%(m)s|%(U)s|%(q)s|%(H)s|%(B)s|%(b)s|%(T)s|%(M)s|%(D)s|%(L)s|"
        "%({user-agent}i)s|%({nope}i)s|%({x}o)s|%({CH_ACCESS_TEST}e)s|%(zz)s|%%"
    )
    line = AccessFormat(fmt).line(record(response_headers=[(b"X", b"out")]))
    assert line == "POST|/a/b|x=1&y=2|HTTP/1.1|0|-|1|1500|1500000|1.500000|ua/3|-|out|e1|-|%"
    assert AccessFormat("%(p)s").line(record()) == f"<{os.getpid()}>"
    assert AccessFormat("%(u)s %(h)s").line(record(client=None, headers=[])) == "- -"


def test_stamps_follow_the_second_and_header_atoms_ignore_case() -> None:
    fmt = AccessFormat("%(t)s %({User-AGENT}i)s %({x}o)s")
    start = record().start
    first = fmt.line(record(start=start + 0.25, response_headers=[(b"X", b"o")]))
    assert first == fmt.line(record(start=start + 0.75, response_headers=[(b"x", b"o")]))
    later = fmt.line(record(start=start + 61, response_headers=[(b"X", b"o")]))
    assert first.startswith("[07/Dec/2026:01:02:03 ") and later.startswith("[07/Dec/2026:01:03:04 ")
    assert first.endswith("] ua/3 o") and later.endswith("] ua/3 o")


def test_bad_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="access-log-format"):
        AccessFormat("%(h)d")


def test_init_checks_the_format_before_writing(tmp_path: Path) -> None:
    def init(fmt: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cocaine_http", "init", "app:app", "--dir", str(tmp_path / "d"),
             "--access-log-format", fmt],
            capture_output=True, text=True, timeout=60,
        )

    bad = init("%(h)d")
    assert bad.returncode == 2 and "bad --access-log-format" in bad.stderr
    assert not (tmp_path / "d").exists()
    good = init("%(h)s %(L)s")
    assert good.returncode == 0, good.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    args = manifest["environment"]["COCAINE_HTTP_ARGS"]
    assert args == "--root-path auto --access-log-format '%(h)s %(L)s'"
