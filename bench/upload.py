"""Large uploads through ``cocaine-http dev``: memory of the front and the worker, digests, latency.

For each app (a WSGI and an ASGI one, both in this file) a ``cocaine-http
dev`` is started on a loopback port chosen by the kernel, and:

* a ``--size`` MiB body (1 GiB by default) is uploaded with ``Content-Length``
  while the app reads it in 64 KiB pieces and answers its sha256; while it
  runs, small requests on another connection must be answered (the first one
  once the upload is under way; their count is reported);
* the same with ``Transfer-Encoding: chunked``;
* WSGI only: a ``--whole`` MiB body (200) read with one ``wsgi.input.read()``,
  and a 64 MiB one, timed inside the app (wall and thread CPU time of that
  call).

Peak RSS growth is the process's ``VmHWM`` after the upload minus its
``VmRSS`` before, with the peak reset first (``/proc/PID/clear_refs``), for
the runtime process (the front) and the worker. Targets: growth <= 64 MiB
each for the streamed upload; the worker's peak for the body read whole
<= 1.3 x the body. With ``--chunk 0`` (each body in one frame, as the
proxies send it) the worker's bound is 1.3 x the body for every upload (its
decoder collects the envelope's body where the app gets it: docs/worker.md),
and the front's growth is reported but not bounded: it holds the whole body
to send it in one frame.

Usage::

    python bench/upload.py [--size 1024] [--whole 200] [--chunk BYTES] [--only wsgi|asgi]

The apps are also what ``tests/runtime/test_rt_upload.py`` runs (from this
directory: ``cocaine-http dev upload:wsgi_app``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
PIECE = 64 * 1024

# -- the apps ---------------------------------------------------------------------------


def _answer(start_response: Any, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """``/ping``, ``/pid``; any other path: the body's sha256, read in 64 KiB pieces
    (``/whole``: with one ``read()``; ``/lines``: by iteration)."""
    path = environ["PATH_INFO"]
    if path == "/ping":
        return _answer(start_response, {"pong": True})
    if path == "/pid":
        return _answer(start_response, {"pid": os.getpid()})
    if path == "/ignore":  # answers without reading the body
        return _answer(start_response, {"ignored": True})
    stream = environ["wsgi.input"]
    if path == "/ops":  # a mix of PEP 3333 reads, to compare servers
        taken = [stream.readline(), stream.read(5), stream.readline(10), stream.read(0), stream.readline()]
        taken += [stream.read(70000), stream.readline(1)]
        lines = iter(stream)
        taken += [next(lines, b"") for _ in range(3)]
        taken += stream.readlines()  # (no hint: servers may ignore it, gunicorn does)
        taken.append(stream.read())
        return _answer(start_response, {"reads": [t.decode("latin-1") for t in taken]})
    digest = hashlib.sha256()
    size = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    if path == "/whole":
        data = stream.read()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        digest.update(data)
        size = len(data)
        del data
    elif path == "/lines":
        for line in stream:
            digest.update(line)
            size += len(line)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    else:
        while piece := stream.read(PIECE):
            digest.update(piece)
            size += len(piece)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return _answer(start_response, {"sha256": digest.hexdigest(), "size": size, "wall": wall, "cpu": cpu})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same routes for ASGI: the body's sha256 over the ``http.request`` messages."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body: dict[str, Any]
    if scope["path"] == "/ping":
        body = {"pong": True}
    elif scope["path"] == "/pid":
        body = {"pid": os.getpid()}
    elif scope["path"] == "/ignore":
        body = {"ignored": True}
    else:
        digest = hashlib.sha256()
        size = 0
        messages = 0
        while True:
            messages += 1
            message = await receive()
            if message["type"] != "http.request":
                return
            digest.update(message["body"])
            size += len(message["body"])
            if not message.get("more_body"):
                break
        body = {"sha256": digest.hexdigest(), "size": size, "messages": messages}
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# -- a minimal HTTP client (no buffering of the body on our side) -----------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def block(i: int, size: int = MiB) -> bytes:
    """The *i*-th piece of an upload: a fixed pattern with its index, so order matters."""
    base = hashlib.sha256(b"upload").digest() * (size // 32)
    return i.to_bytes(8, "big") + base[8:size]


def upload(
    port: int,
    path: str,
    size: int,
    *,
    chunked: bool = False,
    started: threading.Event | None = None,
    hold: threading.Event | None = None,
) -> tuple[int, bytes, str]:
    """POST *size* bytes of :func:`block` pieces; returns (status, body, expected sha256).

    Once 8 MiB are sent *started* is set, and the rest waits for *hold* (if given).
    """
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: bench\r\n%s\r\n\r\n" % (path.encode(), framing))
        sent = 0
        i = 0
        while sent < size:
            piece = block(i)[: size - sent]
            digest.update(piece)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
            i += 1
            if sent >= 8 * MiB and started is not None and not started.is_set():
                started.set()
                if hold is not None and not hold.wait(60):
                    raise TimeoutError("the upload was held for 60 s")
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        if started is not None:
            started.set()
        status, body = read_response(sock)
    return status, body, digest.hexdigest()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"connection closed after {data!r}")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    match = _STATUS.match(head)
    assert match is not None, head
    status = int(match.group(1))
    if re.search(rb"(?i)\r\ntransfer-encoding:\s*chunked", head):  # (A drops the app's Content-Length)
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += _recv(sock)
            line, _, rest = rest.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += _recv(sock)
            if size == 0:
                return status, body
            body += rest[:size]
            rest = rest[size + 2 :]
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    want = int(length.group(1)) if length else 0
    while len(rest) < want:
        rest += _recv(sock)
    return status, rest


def _recv(sock: socket.socket) -> bytes:
    more = sock.recv(65536)
    if not more:
        raise ConnectionError("connection closed mid-response")
    return more


def get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode())
        return read_response(sock)


# -- processes --------------------------------------------------------------------------------


def start_dev(target: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cocaine_http",
            "dev",
            target,
            "--bind",
            "127.0.0.1:0",
            "--locator-port",
            "0",
            *extra,
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    port = 0
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.match(r"\s+HTTP\s+http://[^:]+:(\d+)", line):
            port = int(match.group(1))
        if "Ctrl-C to stop" in line and port:
            # drain the console so the runtime never blocks on a full pipe
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, port
    proc.kill()
    raise RuntimeError("cocaine-http dev did not start:\n" + "".join(lines))


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Peak:
    """Peak RSS growth of a process from now on (resets its high-water mark)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        self.base = status_kib(pid, "VmRSS")

    def growth_mib(self) -> float:
        return (status_kib(self.pid, "VmHWM") - self.base) / 1024


# -- the measurements ---------------------------------------------------------------------------


def settled(port: int) -> None:
    """After a ping, the last upload's request has been let go: the worker has
    read past it (the decoder keeps its last batch until the next read)."""
    status, _ = get(port, "/ping")
    assert status == 200, status


def streamed(port: int, worker: int, runtime: int, size: int, chunked: bool) -> dict[str, Any]:
    settled(port)
    front_peak, worker_peak = Peak(runtime), Peak(worker)
    front_cpu, worker_cpu = cpu_seconds(runtime), cpu_seconds(worker)
    started = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        result["answer"] = upload(port, "/pieces", size, chunked=chunked, started=started)

    thread = threading.Thread(target=run)
    began = time.perf_counter()
    thread.start()
    started.wait(120)
    pings = 0
    ping_ms = []
    while thread.is_alive() and pings < 1000:
        t = time.perf_counter()
        status, _ = get(port, "/ping")
        assert status == 200, status
        ping_ms.append((time.perf_counter() - t) * 1000)
        pings += 1
        thread.join(0.05)
    thread.join()
    took = time.perf_counter() - began
    front_cpu, worker_cpu = cpu_seconds(runtime) - front_cpu, cpu_seconds(worker) - worker_cpu
    status, body, expected = result["answer"]
    answer = json.loads(body)
    return {
        "status": status,
        "digest_ok": answer.get("sha256") == expected and answer.get("size") == size,
        "seconds": round(took, 2),
        "front_peak_growth_mib": round(front_peak.growth_mib(), 1),
        "worker_peak_growth_mib": round(worker_peak.growth_mib(), 1),
        # (the pings' share included: a few ms each)
        "front_cpu_s_per_gib": round(front_cpu * (1 << 30) / size, 2),
        "worker_cpu_s_per_gib": round(worker_cpu * (1 << 30) / size, 2),
        "pings_during_upload": pings,
        "ping_ms_max": round(max(ping_ms), 1) if ping_ms else None,
    }


def whole(port: int, worker: int, size: int) -> dict[str, Any]:
    settled(port)
    worker_peak = Peak(worker)
    status, body, expected = upload(port, "/whole", size)
    answer = json.loads(body)
    return {
        "status": status,
        "digest_ok": answer.get("sha256") == expected and answer.get("size") == size,
        "read_wall_s": round(answer["wall"], 3),
        "read_cpu_s": round(answer["cpu"], 3),
        "worker_peak_growth_mib": round(worker_peak.growth_mib(), 1),
        "worker_peak_over_body": round(worker_peak.growth_mib() * MiB / size, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB streamed (default 1024)")
    parser.add_argument("--whole", type=int, default=200, help="MiB read with one read() (default 200)")
    parser.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="the front's --body-chunk-size (0: every body in one frame, as the proxies send it)",
    )
    parser.add_argument("--only", choices=["wsgi", "asgi"], default=None)
    args = parser.parse_args()
    limit = str(max(args.size, args.whole, 64) * MiB + 1)
    extra = ["--max-body-size", limit]
    if args.chunk is not None:
        extra += ["--body-chunk-size", str(args.chunk)]
    report: dict[str, Any] = {}
    for kind in ("wsgi", "asgi"):
        if args.only and kind != args.only:
            continue
        proc, port = start_dev(f"upload:{kind}_app", *extra)
        try:
            worker = json.loads(get(port, "/pid")[1])["pid"]
            out: dict[str, Any] = {}
            out["content_length"] = streamed(port, worker, proc.pid, args.size * MiB, False)
            out["chunked"] = streamed(port, worker, proc.pid, args.size * MiB, True)
            if kind == "wsgi":
                out[f"read_whole_{args.whole}mib"] = whole(port, worker, args.whole * MiB)
                out["read_whole_64mib"] = whole(port, worker, 64 * MiB)
            report[kind] = out
            print(kind, json.dumps(out, indent=1), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    # Each body in one frame (--chunk 0): the front holds it whole to send it,
    # and the worker's bound is the body's, as for a body read whole.
    one_frame = args.chunk == 0
    worker_bound = 1.3 * args.size if one_frame else 64
    ok = all(
        r["digest_ok"]
        and (one_frame or r["front_peak_growth_mib"] <= 64)
        and r["worker_peak_growth_mib"] <= worker_bound
        for k in report.values()
        for name, r in k.items()
        if name in ("content_length", "chunked")
    )
    wsgi = report.get("wsgi", {}).get(f"read_whole_{args.whole}mib")
    if wsgi is not None:
        ok = ok and wsgi["digest_ok"] and wsgi["worker_peak_over_body"] <= 1.3
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
