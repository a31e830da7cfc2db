"""Small real cocaine services on loopback TCP, for the service-client tests.

Written from PROTOCOL.md §2.5-2.7 and §3.6-3.8 with plain msgpack (no
cocaine_http code): each :class:`Peer` is an asyncio TCP server speaking one
generation, recording every frame it receives (decoded, and the raw bytes)
so tests can assert what the client sent. Behaviours:

* :class:`LocatorPeer` -- resolve from a registry (A: chunk(msgpack(...)) +
  choke; B: value), unknown names as the runtime answers them, or any
  canned reply (garbage tests);
* :class:`StoragePeer` -- collections of ``key -> (bytes, tags)``;
* :class:`LoggingPeer` -- records emits; answers ``verbosity``;
* :class:`AppPeer` -- ``enqueue`` that streams back (B: echoes every write
  at once, then a summary chunk on close; A: chunks of the data, one by one);
* :class:`NodePeer`; :class:`SilentPeer` (reads, never answers);
  :class:`HangupPeer` (closes in the middle of a reply frame).

B peers enforce the runtime's channel rules (new ids strictly increasing,
nothing on a closed channel, no unknown types: else the connection drops)
and can append headers to replies the way 0.12.3 (indexed, ``cf`` widths)
or 0.12.14 (literal H0) do.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

# -- msgpack as the runtime speaks it -------------------------------------------------------------


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=True, strict_map_key=False)


P = {0: ["value", {}], 1: ["error", {}]}
S = {0: ["write", None], 1: ["error", {}], 2: ["close", {}]}
E: dict[int, Any] = {}

TABLES_A = {
    "storage": {0: "read", 1: "write", 2: "remove", 3: "find"},
    "logging": {0: "emit", 1: "verbosity"},
    "node": {0: "start_app", 1: "pause_app", 2: "list"},
    "app": {0: "enqueue", 1: "info"},
}
GRAPHS_B = {
    "storage": {0: ["read", E, P], 1: ["write", E, P], 2: ["remove", E, P], 3: ["find", E, P]},
    "logging": {0: ["emit", E, E], 1: ["verbosity", E, P], 2: ["set_verbosity", E, P]},
    "node": {0: ["start_app", E, P], 1: ["pause_app", E, P], 2: ["list", E, P], 3: ["info", E, P]},
    "app": {0: ["enqueue", S, S], 1: ["info", E, P], 2: ["control", S, P]},
}

#: 0.12.3: [80, 81, 82] with every index forced to cf + 8 bytes (27 bytes), PROTOCOL.md §3.11.
H_INDEXED = b"\x93" + b"".join(b"\xcf" + struct.pack(">Q", i) for i in (80, 81, 82))
#: 0.12.14: H0, three literal tracing headers.
H0 = pack([[False, "trace_id", b"\0" * 8], [False, "span_id", b"\0" * 8], [False, "parent_id", b"\0" * 8]])


class Conn:
    """One accepted connection: decoding, recording, and reply helpers."""

    def __init__(self, peer: Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.gen = peer.gen
        self.max_channel = 0
        self.open: dict[int, Any] = {}  # B: channel -> per-channel state of the handler
        self.closed = False

    # generic frame writers ----------------------------------------------------------------------
    def frame(self, sid: int, type_id: int, args: list[Any]) -> None:
        if self.closed:
            return
        if self.gen == "A":
            data = pack([type_id, sid, args])
        else:
            body = pack(sid) + pack(type_id) + pack(args)
            if self.peer.headers == "indexed":
                data = b"\x94" + body + H_INDEXED
            elif self.peer.headers == "h0":
                data = b"\x94" + body + H0
            else:
                data = b"\x93" + body
        self.writer.write(data)

    # A replies
    def chunk(self, sid: int, value: Any, *, raw: bool = False) -> None:
        self.frame(sid, 4, [value if raw else pack(value)])

    def choke(self, sid: int) -> None:
        self.frame(sid, 6, [])

    def a_error(self, sid: int, code: int, message: str) -> None:
        self.frame(sid, 5, [code, message])
        self.choke(sid)

    # B replies
    def value(self, ch: int, *args: Any) -> None:
        self.frame(ch, 0, list(args))

    def b_error(self, ch: int, category: int, code: int, message: str) -> None:
        self.frame(ch, 1, [[category, code], message])

    def write(self, ch: int, data: Any) -> None:
        self.frame(ch, 0, [data])

    def close(self, ch: int) -> None:
        self.frame(ch, 2, [])

    def drop(self) -> None:
        self.closed = True
        self.writer.transport.abort()

    async def run(self) -> None:
        up = unpacker()
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.peer.raw.extend(data)
                up.feed(data)
                for msg in up:
                    self.peer.frames.append(msg)
                    if not isinstance(msg, list) or len(msg) < 3:
                        self.drop()
                        return
                    if self.gen == "A":
                        type_id, sid, args = msg[0], msg[1], msg[2]
                        if len(msg) != 3:
                            self.drop()
                            return
                        await self.peer.on_a(self, sid, type_id, args)
                    else:
                        ch, type_id, args = msg[0], msg[1], msg[2]
                        if ch in self.open:
                            await self.peer.on_b_stream(self, ch, type_id, args)
                        elif ch > self.max_channel:
                            self.max_channel = ch
                            await self.peer.on_b(self, ch, type_id, args)
                        else:  # revoked channel: the runtime drops the whole connection
                            self.peer.violations.append(("revoked", ch, type_id))
                            self.drop()
                            return
                    if self.closed:
                        return
                await self.writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            self.writer.close()


class Peer:
    """Base TCP peer. Subclasses implement ``on_a`` / ``on_b`` (/ ``on_b_stream``)."""

    name = "peer"

    def __init__(self, gen: str, *, headers: str = "none") -> None:
        assert gen in ("A", "B")
        self.gen = gen
        self.headers = headers
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.conns: list[Conn] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.frames: list[Any] = []
        self.raw = bytearray()
        self.violations: list[Any] = []
        self.accepted = 0

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self, port: int | None = None) -> Peer:
        self.server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port if port is None else port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection (as a crashed service would)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for c in self.conns:
            if not c.closed:
                c.drop()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.conns.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = Conn(self, reader, writer)
        self.conns.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await conn.run()
        finally:
            self.tasks.discard(task)

    async def __aenter__(self) -> Peer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # handlers -----------------------------------------------------------------------------------
    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        conn.a_error(sid, 1, "unknown message type")

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        conn.drop()  # slot not found: the runtime drops the connection

    async def on_b_stream(self, conn: Conn, ch: int, type_id: int, args: list[Any]) -> None:
        conn.drop()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LocatorPeer(Peer):
    """``resolve`` from :attr:`registry`: ``name -> (endpoints, table_or_graph)`` or a canned reply."""

    name = "locator"

    def __init__(self, gen: str, **kw: Any) -> None:
        super().__init__(gen, **kw)
        self.registry: dict[str, tuple[list[tuple[str, int]], Any]] = {}
        #: name -> exact reply bytes, with ``{sid}`` patched in by :meth:`canned`.
        self.canned: dict[str, Any] = {}
        self.resolves: list[str] = []

    def register(
        self,
        name: str,
        peer: Peer,
        kind: str | None = None,
        *,
        endpoints: list[tuple[str, int]] | None = None,
    ) -> None:
        kind = kind or peer.name
        table = TABLES_A[kind] if self.gen == "A" else GRAPHS_B[kind]
        self.registry[name] = (endpoints or [peer.endpoint], table)

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        if method != 0:
            return conn.a_error(sid, 1, "unknown message type")
        name = text(args[0])
        self.resolves.append(name)
        if name in self.canned:
            return self.canned[name](conn, sid)
        if name not in self.registry:
            return conn.a_error(sid, 1, f"service {name} is not available")
        eps, table = self.registry[name]
        host, port = eps[0]
        conn.chunk(sid, [[host, port], 1, table])
        conn.choke(sid)

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        if method != 0:
            return conn.drop()
        name = text(args[0])
        self.resolves.append(name)
        if name in self.canned:
            return self.canned[name](conn, ch)
        if name not in self.registry:
            return conn.b_error(ch, 10, 1, "service is not available")
        eps, graph = self.registry[name]
        conn.value(ch, [[h, p] for h, p in eps], 1, graph)


class StoragePeer(Peer):
    name = "storage"

    def __init__(self, gen: str, **kw: Any) -> None:
        super().__init__(gen, **kw)
        self.data: dict[bytes, dict[bytes, tuple[bytes, list[bytes]]]] = {}

    def _do(self, method: int, args: list[Any]) -> tuple[str, Any]:
        if method == 0:
            coll, key = args
            try:
                return "value", self.data[coll][key][0]
            except KeyError:
                return "error", f"object '{text(key)}' has not been found in '{text(coll)}'"
        if method == 1:
            coll, key, value = args[:3]
            tags = args[3] if len(args) > 3 else []
            self.data.setdefault(coll, {})[key] = (value, tags)
            return "void", None
        if method == 2:
            coll, key = args
            self.data.get(coll, {}).pop(key, None)
            return "void", None
        if method == 3:
            coll, tags = args
            keys = sorted(
                k for k, (_, t) in self.data.get(coll, {}).items() if tags and all(x in t for x in tags)
            )
            return "value", keys
        return "unknown", None

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        what, result = self._do(method, args)
        if what == "value":
            conn.chunk(sid, result)
            conn.choke(sid)
        elif what == "void":
            conn.choke(sid)
        elif what == "error":
            conn.a_error(sid, 1, result)
        else:
            conn.a_error(sid, 1, "unknown message type")

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        what, result = self._do(method, args)
        if what == "value":
            conn.value(ch, result)
        elif what == "void":
            conn.value(ch)
        elif what == "error":
            conn.b_error(ch, 0x0C, 2, result)  # a storage category; backend-dependent (§8)
        else:
            conn.drop()


class LoggingPeer(Peer):
    """Records ``emit`` arguments; ``verbosity`` is the generation's number."""

    name = "logging"

    def __init__(self, gen: str, verbosity: int, **kw: Any) -> None:
        super().__init__(gen, **kw)
        self.verbosity = verbosity
        self.emits: list[list[Any]] = []
        self.verbosity_calls = 0
        self.got = asyncio.Event()

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        if method == 0:
            self.emits.append(args)
            self.got.set()
            conn.choke(sid)
        elif method == 1:
            self.verbosity_calls += 1
            conn.chunk(sid, self.verbosity)
            conn.choke(sid)
        else:
            conn.a_error(sid, 1, "unknown message type")

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        if method == 0:
            self.emits.append(args)  # mute: no reply
            self.got.set()
        elif method == 1:
            self.verbosity_calls += 1
            conn.value(ch, self.verbosity)
        else:
            conn.drop()

    async def wait_emits(self, n: int, timeout: float = 5.0) -> list[list[Any]]:
        async def until() -> None:
            while len(self.emits) < n:
                self.got.clear()
                await self.got.wait()

        await asyncio.wait_for(until(), timeout)
        return self.emits


class AppPeer(Peer):
    """An app service whose worker echoes.

    B: ``enqueue(event)`` opens a stream; each client ``write`` is echoed at
    once (``b"echo:" + data``); on ``close`` a final ``b"end:" + event`` write
    and ``close``. Event ``"fail"`` answers an error instead; ``"slow"`` never
    answers. A: ``enqueue(event, data)`` -> chunks (raw, as a worker's bytes)
    ``data`` split in 3 parts sent with short pauses, then choke.
    """

    name = "app"

    def __init__(self, gen: str, **kw: Any) -> None:
        super().__init__(gen, **kw)
        self.events: list[Any] = []
        self.client_errors: list[Any] = []

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        if method == 1:
            conn.chunk(sid, {"state": "running", "queue": {"depth": 0}})
            return conn.choke(sid)
        if method != 0:
            return conn.a_error(sid, 1, "unknown message type")
        event, data = text(args[0]), args[1]
        self.events.append((event, data))
        if event == "fail":
            return conn.a_error(sid, 2, "the queue is full")
        if event == "slow":
            return
        n = max(1, len(data) // 3)
        parts = [data[i:i + n] for i in range(0, len(data), n)] or [b""]
        for part in parts:
            conn.chunk(sid, part, raw=True)
            await conn.writer.drain()
            await asyncio.sleep(0.005)
        conn.choke(sid)

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        if method == 1:
            return conn.value(ch, {"state": "running"})
        if method != 0:
            return conn.drop()
        event = text(args[0])
        self.events.append((event, ch))
        conn.open[ch] = {"event": event, "chunks": [], "upstream_done": False}
        if event == "fail":
            conn.b_error(ch, 42, 1, "event not found")
            conn.open[ch]["upstream_done"] = True

    async def on_b_stream(self, conn: Conn, ch: int, type_id: int, args: list[Any]) -> None:
        st = conn.open[ch]
        if type_id == 0:
            st["chunks"].append(args[0])
            if not st["upstream_done"] and st["event"] != "slow":
                conn.write(ch, b"echo:" + args[0])
        elif type_id in (1, 2):
            del conn.open[ch]
            if type_id == 1:
                self.client_errors.append((ch, args))
                return
            if not st["upstream_done"] and st["event"] != "slow":
                conn.write(ch, b"end:" + st["event"].encode())
                conn.close(ch)
        else:
            self.violations.append(("type", ch, type_id))
            conn.drop()


class NodePeer(Peer):
    name = "node"

    def __init__(self, gen: str, **kw: Any) -> None:
        super().__init__(gen, **kw)
        self.running: list[str] = []

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        if method == 0:
            out = {}
            for app in args[0]:
                name = text(app)
                out[name] = (
                    "the app is already running" if name in self.running else "the app has been started"
                )
                if name not in self.running:
                    self.running.append(name)
            conn.chunk(sid, out)
        elif method == 1:
            out = {}
            for app in args[0]:
                name = text(app)
                out[name] = "the app has been stopped" if name in self.running else "the app is not running"
                if name in self.running:
                    self.running.remove(name)
            conn.chunk(sid, out)
        elif method == 2:
            conn.chunk(sid, sorted(self.running))
        else:
            return conn.a_error(sid, 1, "unknown message type")
        conn.choke(sid)

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        if method == 0:
            name = text(args[0])
            if name in self.running:
                return conn.b_error(ch, 0x51FF, 5, "app is already running")
            self.running.append(name)
            conn.value(ch)
        elif method == 1:
            name = text(args[0])
            if name not in self.running:
                return conn.b_error(ch, 0x51FF, 6, "app is not running")
            self.running.remove(name)
            conn.value(ch)
        elif method == 2:
            conn.value(ch, sorted(self.running))
        else:
            conn.drop()


class SilentPeer(Peer):
    """Accepts and reads, never answers (a hung service)."""

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        return None

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        return None


class HangupPeer(Peer):
    """Starts a reply frame and closes the connection in the middle of it."""

    async def on_a(self, conn: Conn, sid: int, method: int, args: list[Any]) -> None:
        data = pack([4, sid, [pack(b"x" * 100)]])
        conn.writer.write(data[:20])
        await conn.writer.drain()
        conn.writer.close()
        conn.closed = True

    async def on_b(self, conn: Conn, ch: int, method: int, args: list[Any]) -> None:
        data = pack([ch, 0, [b"x" * 100]])
        conn.writer.write(data[:20])
        await conn.writer.drain()
        conn.writer.close()
        conn.closed = True


class Cloud:
    """Locator + storage + logging + node + app ``echo`` of one generation, wired together."""

    def __init__(self, gen: str, *, verbosity: int | None = None, headers: str = "none") -> None:
        self.gen = gen
        if verbosity is None:
            verbosity = 3 if gen == "A" else 1  # info in both
        self.locator = LocatorPeer(gen, headers=headers)
        self.storage = StoragePeer(gen, headers=headers)
        self.logging = LoggingPeer(gen, verbosity, headers=headers)
        self.node = NodePeer(gen, headers=headers)
        self.app = AppPeer(gen, headers=headers)

    @property
    def locator_endpoint(self) -> str:
        return f"127.0.0.1:{self.locator.port}"

    async def __aenter__(self) -> Cloud:
        for p in (self.locator, self.storage, self.logging, self.node, self.app):
            await p.start()
        self.locator.register("storage", self.storage)
        self.locator.register("logging", self.logging)
        self.locator.register("node", self.node)
        self.locator.register("echo", self.app, "app")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in (self.locator, self.storage, self.logging, self.node, self.app):
            await p.stop()
