"""Large request bodies through ``cocaine-http dev``: streamed in chunks, bounded, refused with 413.

The apps are ``bench/upload.py``'s (run from ``bench/`` as ``upload:wsgi_app``
and ``upload:asgi_app``), as the benchmark runs them. Checks are on what
comes back (digests, statuses, the worker's pid), never on timing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocaine_http.protocol import codec

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
_spec = importlib.util.spec_from_file_location("bench_upload", BENCH / "upload.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MiB = 1 << 20
LIMIT = 40 * MiB  # --max-body-size of the runtimes below


class Dev:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port

    def pid(self) -> int:
        status, body = bench.get(self.port, "/pid")
        assert status == 200, body
        return int(json.loads(body)["pid"])


@pytest.fixture(
    scope="module",
    params=[("wsgi", "0.11"), ("wsgi", "0.12"), ("asgi", "0.11"), ("asgi", "0.12")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def dev(request: pytest.FixtureRequest) -> Iterator[Dev]:
    kind, protocol = request.param
    proc, port = bench.start_dev(f"upload:{kind}_app", "--protocol", protocol, "--max-body-size", str(LIMIT))
    try:
        yield Dev(proc, port)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_32_mib_upload_arrives_whole_and_in_order(dev: Dev, chunked: bool) -> None:
    status, body, expected = bench.upload(dev.port, "/pieces", 32 * MiB + 12345, chunked=chunked)
    answer = json.loads(body)
    assert status == 200, body
    assert (answer["sha256"], answer["size"]) == (expected, 32 * MiB + 12345)
    if "messages" in answer:  # ASGI: the app got the body in pieces, not as one message
        assert answer["messages"] > 32


def test_other_sessions_are_served_while_an_upload_is_under_way(dev: Dev) -> None:
    started, hold = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["answer"] = bench.upload(dev.port, "/pieces", 24 * MiB, started=started, hold=hold)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(60), result
        # 8 MiB are in: the upload's session is open on the worker and waiting for more
        for _ in range(3):
            status, body = bench.get(dev.port, "/ping")
            assert (status, json.loads(body)) == (200, {"pong": True})
    finally:
        hold.set()
        thread.join(120)
    assert "error" not in result, result
    status, body, expected = result["answer"]  # type: ignore[misc]
    assert status == 200 and json.loads(body)["sha256"] == expected


def test_an_app_that_answers_without_reading_the_body(dev: Dev) -> None:
    pid = dev.pid()
    for chunked in (False, True):
        status, body, _ = bench.upload(dev.port, "/ignore", 24 * MiB, chunked=chunked)
        assert (status, json.loads(body)) == (200, {"ignored": True})
    assert dev.pid() == pid


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_oversize_bodies_get_413_and_the_worker_stays(dev: Dev) -> None:
    pid = dev.pid()
    # declared too large: refused from the head alone, before any body byte is sent
    head = b"POST /pieces HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
    assert _raw(dev.port, head).startswith(b"HTTP/1.1 413 ")
    # chunked: refused once the running total passes the limit (mid-stream, after the worker got chunks)
    with socket.create_connection(("127.0.0.1", dev.port), timeout=30) as sock:
        sock.sendall(b"POST /pieces HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = bench.block(0)
        answer = b""
        try:
            for _ in range(LIMIT // MiB + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the front answered and closed while we were still sending
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # the same worker serves on, and a body at the limit is accepted
    assert dev.pid() == pid
    status, body, expected = bench.upload(dev.port, "/pieces", LIMIT)
    assert status == 200 and json.loads(body)["sha256"] == expected
    assert dev.pid() == pid


@pytest.mark.parametrize(
    ("app", "path", "threads"),
    [("wsgi", "/pieces", "8"), ("wsgi", "/whole", "8"), ("wsgi", "/whole", "0"), ("asgi", "/pieces", "8")],
)
def test_a_body_in_one_frame_costs_the_worker_about_its_size(app: str, path: str, threads: str) -> None:
    """The proxies send a request's body in one frame (``--body-chunk-size 0``
    makes the dev front do the same). The worker's decoder collects the
    envelope's body by itself as it arrives, into the ``bytes`` the app gets
    (``wsgi.input``'s first chunk, which ``read()`` returns as it is; the
    first ``http.request``'s body). Three times the body when the reads were
    kept in a list to be joined and the joined buffer kept until the next
    read; twice when the payload was cut from the frame (bench/upload.py
    --chunk 0). Both decoders collect it (the pure twin kept the open frame
    for its length walk, then the payload, then the body: 3x)."""
    options = ["--body-chunk-size", "0", "--max-body-size", str(LIMIT), "--threads", threads]
    proc, port = bench.start_dev(f"upload:{app}_app", *options)
    try:
        status, body = bench.get(port, "/pid")
        assert status == 200, body
        worker = int(json.loads(body)["pid"])
        size = 32 * MiB
        peak = bench.Peak(worker)
        status, body, expected = bench.upload(port, path, size)
        assert status == 200 and json.loads(body)["sha256"] == expected, body
        ratio = peak.growth_mib() * MiB / size
        assert ratio <= 1.3, (codec.BACKEND, ratio)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


# -- wsgi.input against gunicorn ----------------------------------------------------------


@pytest.fixture(scope="module")
def gunicorn() -> Iterator[int]:
    pytest.importorskip("gunicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{sock.fileno()}",
            "--workers",
            "1",
            "--chdir",
            str(BENCH),
            "upload:wsgi_app",
        ],
        pass_fds=[sock.fileno()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bench.get(port, "/ping")  # the listening socket queues this until gunicorn accepts
        yield port
    finally:
        sock.close()
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def dev_wsgi() -> Iterator[int]:
    # a small body chunk, so the reads below cross many chunk boundaries
    proc, port = bench.start_dev("upload:wsgi_app", "--body-chunk-size", "4096")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


def _bodies() -> list[bytes]:
    lines = b"".join(b"line %d %s\n" % (i, b"x" * (i * 37 % 300)) for i in range(2000))
    return [
        b"",
        b"no newline at all",
        b"\n\n\n",
        lines,
        lines + b"tail without newline",
        hashlib.sha256(b"seed").digest() * 40000,  # 1.28 MB of binary, newlines where they fall
        b"y" * 200000 + b"\n" + b"z" * 10,
    ]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("index", range(len(_bodies())))
def test_wsgi_input_reads_like_gunicorn(gunicorn: int, dev_wsgi: int, index: int, chunked: bool) -> None:
    body = _bodies()[index]
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(p), p) for p in (body[i : i + 3000] for i in range(0, len(body), 3000))
        )
        payload += b"0\r\n\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % len(body)
        payload = body
    request = b"POST /ops HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + framing + b"\r\n" + payload
    answers = []
    for port in (gunicorn, dev_wsgi):
        raw = _raw(port, request)
        head, _, content = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
        answers.append(json.loads(content)["reads"])
    theirs, ours = answers
    assert ours == theirs
    assert "".join(ours).encode("latin-1") == body


def test_the_benchmark_runs() -> None:
    """``python bench/upload.py`` as docs/runtime.md cites it, at a small size (figures not judged)."""
    res = subprocess.run(
        [sys.executable, str(BENCH / "upload.py"), "--size", "16", "--whole", "16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count('"digest_ok": true') == 6 and '"digest_ok": false' not in res.stdout, res.stdout
    assert "targets" in res.stdout.splitlines()[-1]
