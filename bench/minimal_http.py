#!/usr/bin/env python3
"""The floor of serving an HTTP app over cocaine: a WSGI and an ASGI worker with no framework.

``bench/http_apps.py`` compares cocaine-http with gunicorn, uvicorn and
granian. These two workers say what the cocaine side can reach at all in the
same harness: the wire handled with asyncio's streams and ``msgpack`` as
``bench/worker_echo.py``'s minimal echo worker does, the request envelope
unpacked without a check, the least PEP 3333 environ (or ASGI scope) the
hello apps need, the app run inline on the loop (WSGI) or as one task per
request (ASGI), and the replies packed as a proxy reads them, a read's
written together. No flow control, no limits, no errors answered, no
threads, no lifespan, no logs: not a server anyone should run, only the
cost a real one cannot go under.

    python bench/minimal_http.py wsgi examples.flask_app.app:app --app-dir . [runtime flags]
    python bench/minimal_http.py asgi examples.fastapi_app.app:app --app-dir . [runtime flags]

The runtime flags are the ones a cocaine runtime passes (``--endpoint``,
``--uuid``, ``--protocol`` ...); ``bench/http_apps.py --minimal`` starts them.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import sys
from collections.abc import Callable
from typing import Any

import msgpack


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def load(spec: str, app_dir: str) -> Any:
    sys.path.insert(0, app_dir)
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "app")


def wsgi_answer(app: Any, blob: bytes) -> tuple[int, list[list[bytes]], bytes]:
    """Run a WSGI app on one request envelope: (status, header pairs, body)."""
    method, uri, version, headers, *rest = msgpack.unpackb(blob, raw=True)
    path, _, query = uri.partition(b"?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method.decode("latin-1"),
        "SCRIPT_NAME": "",
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/" + version.decode("latin-1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(rest[0] if rest else b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = value.decode("latin-1")
    head: list[Any] = []

    def start_response(
        status: str, pairs: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[..., None]:
        head[:] = [int(status[:3]), [[k.encode("latin-1"), v.encode("latin-1")] for k, v in pairs]]
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return head[0], head[1], body


async def asgi_answer(app: Any, blob: bytes) -> tuple[int, list[list[bytes]], bytes]:
    """Run an ASGI app on one request envelope: (status, header pairs, body)."""
    method, uri, version, headers, *rest = msgpack.unpackb(blob, raw=True)
    path, _, query = uri.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": version.decode("latin-1"),
        "method": method.decode("latin-1"),
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in headers],
        "client": None,
        "server": None,
    }
    body = rest[0] if rest else b""
    sent = False
    head: list[Any] = []
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Future()  # no disconnect before the answer is out
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            head[:] = [message["status"], [[k, v] for k, v in message.get("headers", [])]]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return head[0], head[1], b"".join(parts)


def main() -> None:
    from worker_echo import minimal_connect  # this script's folder is on sys.path

    from cocaine_http.config import split_args

    kind, spec = sys.argv[1], sys.argv[2]
    flags, rest = split_args(sys.argv[3:])
    app_dir = rest[rest.index("--app-dir") + 1] if "--app-dir" in rest else "."
    app = load(spec, app_dir)
    b = flags.get("protocol") == "1"
    endpoint, uuid = flags["endpoint"], flags["uuid"]

    def reply(s: int, status: int, pairs: list[list[bytes]], body: bytes) -> bytes:
        head = pack([status, pairs])
        if b:  # B: [channel, type, args]; write 0, close 2; body chunks are the bytes themselves
            return pack([s, 0, [head]]) + pack([s, 0, [body]]) + pack([s, 2, []])
        # A: [type, session, args]; chunk 4, choke 6; body chunks are msgpack raws
        return pack([4, s, [head]]) + pack([4, s, [pack(body)]]) + pack([6, s, []])

    async def serve() -> None:
        reader, writer, beating = await minimal_connect(endpoint, uuid, b)

        # The answers of a read's tasks, written together once they have run (as
        # cocaine-http's outbox does): a write per answer would cost a system
        # call each, and make the driver read them one by one.
        answers: list[bytes] = []
        loop = asyncio.get_running_loop()

        def flush() -> None:
            writer.write(b"".join(answers))
            answers.clear()

        async def run_asgi(s: int, blob: bytes) -> None:
            answer = reply(s, *await asgi_answer(app, blob))
            if not answers:
                loop.call_soon(flush)  # after the other tasks' steps already queued
            answers.append(answer)

        tasks: set[asyncio.Task[None]] = set()
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        bodies: dict[int, list[bytes]] = {}
        while data := await reader.read(262144):
            unpacker.feed(data)
            out = []
            for msg in unpacker:
                s, t, args = (msg[0], msg[1], msg[2]) if b else (msg[1], msg[0], msg[2])
                if (b and s == 1) or (not b and t in (1, 2) and s == 0):  # control: heartbeat or terminate
                    if t == (1 if b else 2):
                        await asyncio.gather(*tasks)
                        if answers:
                            flush()
                        writer.write(pack([1, 1, args] if b else [2, 0, args]))
                        await writer.drain()
                        beating.cancel()
                        return
                elif s not in bodies:  # the invoke
                    bodies[s] = []
                elif t == (0 if b else 4):  # a chunk: the envelope
                    bodies[s].append(args[0])
                else:  # the end of the request
                    blob = b"".join(bodies.pop(s))
                    if kind == "wsgi":
                        out.append(reply(s, *wsgi_answer(app, blob)))
                    else:
                        task = asyncio.ensure_future(run_asgi(s, blob))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            if out:
                writer.write(b"".join(out))
            await writer.drain()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
