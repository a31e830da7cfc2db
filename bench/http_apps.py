"""HTTP apps per core: the hello examples through cocaine-http vs gunicorn, uvicorn and granian.

The figure that decides is the server's **CPU per request** (user + system
time of the server's whole process tree, read from ``/proc``, over the
requests it answered): per-core capacity is ``1e6 / cpu_us`` requests per
second, and it holds on a shared, noisy machine where wall-clock req/s does
not. Requests per second are printed too.

* HTTP servers (gunicorn sync, granian WSGI with one blocking thread;
  uvicorn, granian ASGI) listen on a loopback port chosen by binding port 0
  and are driven by ``wrk`` (64 keep-alive connections by default).
* cocaine-http receives the request already parsed, as from a cocaine HTTP
  proxy: one HTTP envelope per invocation. Three drivers:

  - ``python``: :class:`cocaine_http.runtime.engine.Engine` in this process,
    W invocations in flight. Its own CPU per request is measured and
    printed (``driver``): when it is not well below the worker's, the
    worker is not saturated and its figure is pessimistic;
  - ``node``: the fake engine of ``../shared/bench-engine`` (``--node-engine
    PATH/fake-engine.js``, set up as its README says), about 2 us of its
    own CPU per request; it sends only its own ``GET /``;
  - ``c``: ``bench/floor_engine.c`` (built with ``cc`` on the fly, as
    ``bench/worker_floor.py`` builds it), which sends the envelope of
    ``--request`` and ``--headers`` from a file and checks each answer's
    status: about 0.5 us of its own CPU per request, whatever the request.

  ``both`` runs python and node, ``all`` the three.

* Servers and workers run on one CPU (``--cpu``, default the last allowed),
  drivers on another when there is one. Every target of an app is started
  once and the rounds interleave them, so load from elsewhere on the
  machine hits every target alike; medians per target are printed.

Usage::

    python bench/http_apps.py [--duration 5] [--connections 64] [--rounds 3]
                              [--only flask|fastapi] [--driver python|node|c|both|all]
                              [--node-engine /tmp/bench-engine/fake-engine.js]
                              [--minimal] [--floor] [--headers hello|browser]
                              [--request get|json]

``--headers`` and ``--request`` choose what every server is sent
(``bench/request_headers.py``): the hello ``GET /`` by default, ``--request
json`` a JSON ``POST`` the apps parse and answer with ``201``. The node
driver sends only the hello, so those runs leave it out.

``--minimal`` adds the bare workers of ``bench/minimal_http.py``, ``--floor``
the app alone with no server (``bench/app_alone.py``): its line against
granian is the most any server could reach on this machine.

Targets (docs/http.md): per core, cocaine-http serves the Flask hello at
least 1.5x granian's WSGI and the FastAPI hello at least 1.5x granian's ASGI.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cocaine_http.http.envelope import decode_response  # noqa: E402
from cocaine_http.protocol.frames import Generation  # noqa: E402
from cocaine_http.runtime.engine import Engine  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import worker_floor  # noqa: E402  (its build of floor_engine.c)
from request_headers import HEADER_SETS, REQUESTS, BenchRequest  # noqa: E402

APPS = {"flask": "examples.flask_app.app:app", "fastapi": "examples.fastapi_app.app:app"}
EXPECTED = REQUESTS["get"].expect  # the hello's body (readiness, the node engine's check)
#: (app, cocaine variant, baseline): the per-core ratio the project aims for.
TARGETS = {("flask", "granian-wsgi"): 1.5, ("fastapi", "granian-asgi"): 1.5}
BIN = os.path.dirname(sys.executable)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    rps: float
    cpu_us: float  # server (worker) CPU per request
    driver_us: float | None = None  # the driver's own CPU per request, when measured

    @property
    def per_core(self) -> float:
        return 1e6 / self.cpu_us if self.cpu_us else 0.0


# -- CPU of a process tree, from /proc ------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) used so far by *pid* and its live descendants."""
    tree = _children()
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        todo.extend(tree.get(p, ()))
    return total


# -- HTTP servers driven by wrk --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(kind: str, app: str, port: int) -> list[str]:
    bind = ["--host", "127.0.0.1", "--port", str(port)]
    if kind == "gunicorn-sync":
        return [
            f"{BIN}/gunicorn",
            "-w",
            "1",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            app,
        ]
    if kind == "uvicorn":
        return [f"{BIN}/uvicorn", *bind, "--workers", "1", "--log-level", "warning", "--no-access-log", app]
    if kind in ("granian-wsgi", "granian-asgi"):
        iface = kind.split("-")[1]
        return [
            f"{BIN}/granian", "--interface", iface, *bind, "--workers", "1", "--runtime-threads", "1",
            "--blocking-threads", "1", "--no-ws", "--log-level", "warning", "--no-access-log", app,
        ]  # fmt: skip
    raise ValueError(kind)


def wait_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            if EXPECTED in data:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


_WRK_TOTAL = re.compile(r"(\d+) requests in")
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")


def wrk(
    port: int, seconds: float, connections: int, cpu: int | None, headers: str = "hello", request: str = "get"
) -> tuple[int, float, str]:
    req = REQUESTS[request]
    url = f"http://127.0.0.1:{port}{req.path}"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]
    if headers != "hello":  # wrk's own request is the hello one: Host, and nothing else
        cmd[1:1] = [arg for name, value in HEADER_SETS[headers] for arg in ("-H", f"{name}: {value}")]
    if req.body:  # method and body come from a script (wrk adds the Content-Length)
        cmd[1:1] = ["-s", wrk_script(req)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - t0
    match = _WRK_TOTAL.search(out)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return int(match.group(1)), elapsed, out


def wrk_script(req: BenchRequest) -> str:
    """The path of a wrk Lua script that sends *req*'s method, body and type (written once)."""
    path = os.path.join(tempfile.gettempdir(), f"http_apps_{req.method}_{os.getpid()}.lua")
    if not os.path.exists(path):
        lines = [f'wrk.method = "{req.method}"', f"wrk.body = [[{req.body.decode()}]]"]
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in req.extra if k.lower() != "content-length"]
        with open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        atexit.register(os.unlink, path)
    return path


@contextlib.contextmanager
def http_server(kind: str, app: str, cpu: int) -> Iterator[tuple[int, int]]:
    """Start one server pinned to *cpu*; yields ``(port, pid)``."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), *server_command(kind, app, port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(port, proc)
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure_http(port_pid: tuple[int, int], args: argparse.Namespace) -> Figure:
    port, pid = port_pid
    before = tree_cpu(pid)
    n, elapsed, out = wrk(port, args.duration, args.connections, args.driver_cpu, args.headers, args.request)
    used = tree_cpu(pid) - before
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} non-2xx responses:\n{out}")
    return Figure(n / elapsed, used / n * 1e6)


# -- cocaine-http, as from a proxy ------------------------------------------------------------


def workers(name: str, app: str, minimal: bool) -> list[tuple[str, list[str]]]:
    """The cocaine-side targets of app *name*: (label, the worker's command without the runtime's flags)."""
    cocaine = [f"{BIN}/cocaine-http", app, "--app-dir", ROOT, "--log-level", "warning"]
    if name == "flask":
        found = [("cocaine-http --threads 0", [*cocaine, "--threads", "0"])]
        found.append(("cocaine-http (8 threads)", cocaine))
    else:
        found = [("cocaine-http", cocaine)]
    if minimal:  # the floor of the cocaine side: bench/minimal_http.py
        kind = "wsgi" if name == "flask" else "asgi"
        found.append((f"minimal {kind} worker", [sys.executable, f"{ROOT}/bench/minimal_http.py", kind, app]))
    return found


async def python_driver_round(
    engine: Engine, seconds: float, window: int, headers: str = "hello", request: str = "get"
) -> Figure:
    gen = engine.generation
    req = REQUESTS[request]
    blob = req.envelope(headers, gen)
    pid = next(iter(engine.slaves.values())).pid
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            reply = await engine.invoke("http", [blob], timeout=30)
            status, _, body = decode_response(reply.chunks, gen)
            if status != req.status or req.expect not in body:
                raise RuntimeError(f"unexpected reply {status} {body!r} {reply.error}")
            done += 1

    wcpu = tree_cpu(pid)
    own = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(window)))
    elapsed = time.perf_counter() - t0
    own2 = resource.getrusage(resource.RUSAGE_SELF)
    used = tree_cpu(pid) - wcpu
    driver = (own2.ru_utime - own.ru_utime) + (own2.ru_stime - own.ru_stime)
    return Figure(done / elapsed, used / done * 1e6, driver / done * 1e6)


@contextlib.asynccontextmanager
async def python_engine(command: list[str], args: argparse.Namespace) -> AsyncIterator[Engine]:
    """One worker behind the in-process Engine, warmed up."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Engine(
            "bench",
            ["taskset", "-c", str(args.cpu), *command],
            generation=Generation.parse(args.generation),
            runtime_dir=tmp,
            cwd=ROOT,
            env={"PYTHONPATH": ROOT},
            concurrency=args.connections,
            queue_limit=args.connections * 4,
        ) as engine:
            await engine.start(1, timeout=120)  # a loaded machine imports slowly
            await python_driver_round(engine, 1.0, args.connections, args.headers, args.request)  # warm-up
            yield engine


def app_alone_round(name: str, args: argparse.Namespace) -> Figure:
    """The app with no server (bench/app_alone.py), on the servers' CPU: the floor under them all."""
    interface = "wsgi" if name == "flask" else "asgi"
    script = os.path.join(ROOT, "bench", "app_alone.py")
    cmd = ["taskset", "-c", str(args.cpu), sys.executable, script, interface, APPS[name]]
    cmd += ["--seconds", str(args.duration), "--headers", args.headers, "--request", args.request]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return Figure(result["n"] / args.duration, result["cpu_us"])


def node_round(command: list[str], args: argparse.Namespace) -> Figure:
    """One run of the node fake engine (it starts and stops its own worker)."""
    n = max(2000, int(args.duration * args.node_rate))  # it runs a count, not a duration
    cmd = [
        "node", args.node_engine, "--http", "GET:/", "--expect-body", EXPECTED.decode(),
        "-w", str(args.connections), "-n", str(n), "--warmup", str(n // 10),
        "--worker-cpu", str(args.cpu), "--json",
        "--proto", "1" if Generation.parse(args.generation) is Generation.B else "0",
        "--", *command,
    ]  # fmt: skip
    if args.driver_cpu is not None:
        cmd = ["taskset", "-c", str(args.driver_cpu), *cmd]
    # The engine starts the worker with this environment: this tree's package
    # first, as the python driver's workers get it (not whichever is installed).
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not result.get("ok"):
        raise RuntimeError(f"node engine run failed: {result}")
    return Figure(result["rps"], result["workerCpuUsPerReq"], result["engineCpuUsPerReq"])


def c_round(engine: str, command: list[str], args: argparse.Namespace) -> Figure:
    """One run of bench/floor_engine.c (it starts and stops its own worker) with the
    envelope of ``--request`` and ``--headers``; every answer's head is checked."""
    gen = Generation.parse(args.generation)
    req = REQUESTS[args.request]
    blob = req.envelope(args.headers, gen)
    head = b"\x92" + msgpack.packb(req.status)  # the reply's first chunk: [status, headers]
    n = max(2000, int(args.duration * args.node_rate))  # it runs a count, not a duration
    with tempfile.NamedTemporaryFile(suffix=".envelope") as envelope:
        envelope.write(blob)
        envelope.flush()
        cmd = [
            engine, "--proto", "1" if gen is Generation.B else "0", "-n", str(n), "--warmup", str(n // 10),
            "-w", str(args.connections), "--event", "http", "--payload-file", envelope.name,
            "--expect-prefix", head.hex(), "--worker-cpu", str(args.cpu),
            "--engine-cpu", str(args.driver_cpu if args.driver_cpu is not None else -1), "--", *command,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": ROOT}  # this tree's package, as the other drivers' workers get it
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    if proc.returncode != 0 or not result.get("ok"):
        raise RuntimeError(f"C engine run failed ({proc.returncode}): {result or proc.stderr[-2000:]}")
    return Figure(result["rps"], result["worker_cpu_us"], result["engine_cpu_us"])


# -- main ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(name: str, target: str, figures: list[Figure]) -> Figure:
    m = Figure(median([f.rps for f in figures]), median([f.cpu_us for f in figures]))
    drivers = [f.driver_us for f in figures if f.driver_us is not None]
    if drivers:
        m.driver_us = median(drivers)
    driver = f"   driver {m.driver_us:6.1f} us/req" if m.driver_us is not None else ""
    print(
        f"{name:8s} {target:34s} {m.rps:7.0f} req/s  {m.cpu_us:6.1f} us CPU/req  "
        f"{m.per_core:7.0f} req/s per core{driver}   "
        f"(CPU per round: {', '.join(f'{f.cpu_us:.0f}' for f in figures)})",
        flush=True,
    )
    return m


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument(
        "--connections", "-c", type=int, default=64, help="connections / invocations in flight (64)"
    )
    p.add_argument("--rounds", type=int, default=3, help="measurements per target; medians are printed (3)")
    p.add_argument(
        "--cpu", type=int, default=None, help="CPU for servers and workers (default: last allowed)"
    )
    p.add_argument("--generation", default="B", help="protocol generation for cocaine-http (A or B)")
    p.add_argument("--only", choices=sorted(APPS), default=None)
    p.add_argument("--driver", choices=("python", "node", "c", "both", "all"), default="python")
    p.add_argument("--node-engine", default="/tmp/bench-engine/fake-engine.js", help="bench-engine's script")
    p.add_argument(
        "--node-rate",
        type=float,
        default=12000.0,
        help="node and C engines: requests per --duration second (12000: a round long enough to tell 3 %%)",
    )
    p.add_argument(
        "--headers",
        choices=sorted(HEADER_SETS),
        default="hello",
        help="request headers: hello (Host, User-Agent) or browser (a dozen, as behind a proxy; "
        "the node driver sends its own three, so it is left out)",
    )
    p.add_argument(
        "--request",
        choices=sorted(REQUESTS),
        default="get",
        help="get: the hello GET /; json: POST /json, a 437-byte JSON object the apps parse and "
        "answer with 201 (the node driver sends only GET /, so it is left out)",
    )
    p.add_argument("--skip-http", action="store_true", help="only the cocaine-http workers")
    p.add_argument("--minimal", action="store_true", help="also bench/minimal_http.py's workers (the floor)")
    p.add_argument(
        "--floor", action="store_true", help="also the app alone, no server (bench/app_alone.py): the ceiling"
    )
    args = p.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    args.cpu = args.cpu if args.cpu is not None else allowed[-1]
    others = [c for c in allowed if c != args.cpu]
    args.driver_cpu = others[0] if others else None
    if args.driver_cpu is not None:
        os.sched_setaffinity(0, {args.driver_cpu})
    if not args.skip_http and shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk), or pass --skip-http")
    print(
        f"servers/workers on CPU {args.cpu}, drivers on CPU {args.driver_cpu}; {args.duration:g} s x "
        f"{args.rounds} rounds, {args.connections} in flight\n",
        flush=True,
    )
    for name in APPS:
        if not args.only or args.only == name:
            asyncio.run(run_app(name, args))


async def run_app(name: str, args: argparse.Namespace) -> None:
    """Every target of one app, kept running; the rounds interleave them, so load
    from elsewhere on the machine hits every target alike."""
    app = APPS[name]
    bases = ("gunicorn-sync", "granian-wsgi") if name == "flask" else ("uvicorn", "granian-asgi")
    measures: dict[str, Callable[[], Awaitable[Figure]]] = {}
    async with contextlib.AsyncExitStack() as stack:
        if not args.skip_http:
            for kind in bases:
                server = stack.enter_context(http_server(kind, app, args.cpu))
                await asyncio.to_thread(measure_http, server, args)  # warm-up
                measures[kind] = functools.partial(asyncio.to_thread, measure_http, server, args)
        c_engine = None
        if args.driver in ("c", "all"):
            build_dir = stack.enter_context(tempfile.TemporaryDirectory())
            c_engine = await asyncio.to_thread(worker_floor.build_engine, build_dir)
        for label, command in workers(name, app, args.minimal):
            if args.driver in ("python", "both", "all"):
                engine = await stack.enter_async_context(python_engine(command, args))
                measures[f"{label} [python driver]"] = functools.partial(
                    python_driver_round, engine, args.duration, args.connections, args.headers, args.request
                )
            if args.driver in ("node", "both", "all") and args.headers == "hello" and args.request == "get":
                measures[f"{label} [node driver]"] = functools.partial(
                    asyncio.to_thread, node_round, command, args
                )
            if c_engine is not None:
                measures[f"{label} [C driver]"] = functools.partial(
                    asyncio.to_thread, c_round, c_engine, command, args
                )
        if args.floor:
            alone = functools.partial(asyncio.to_thread, app_alone_round, name, args)
            measures["app alone (no server)"] = alone
        figures: dict[str, list[Figure]] = {target: [] for target in measures}
        for _ in range(args.rounds):
            for target, measure in measures.items():
                figures[target].append(await measure())
    results = {target: report(name, target, values) for target, values in figures.items()}
    for (app_name, base), goal in TARGETS.items():
        if app_name != name or base not in results:
            continue
        for label, fig in results.items():
            if label.startswith(("cocaine-http", "minimal", "app alone")):
                ratio = fig.per_core / results[base].per_core
                verdict = "met" if ratio >= goal else "NOT met"
                print(f"{name:8s} {label} / {base}: {ratio:.2f}x per core (target {goal}x: {verdict})")
    print(flush=True)


if __name__ == "__main__":
    main()
