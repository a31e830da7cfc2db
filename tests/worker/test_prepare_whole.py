"""A handler's request stage (``prepare_whole``, aio/handlers.py), through a real worker.

For the whole requests of a read the worker calls every request stage
before it starts any of their handlers, then runs the coroutine each stage
returned in place of ``handler(request, response)``; ``None`` means the
handler is called as usual. A request still arriving is not prepared, a
failing stage is the handler's failure, and only async handlers have a
request stage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import msgpack
from test_worker_reads import raw_peer, session_of
from worker_helpers import run

from cocaine_http.aio.handlers import IN_THREAD, registered
from cocaine_http.compat.asgi import ASGIHandler
from cocaine_http.compat.wsgi import InlineWSGIHandler, WSGIHandler


class Staged:
    """An echo handler with a request stage, recording the order of the calls."""

    def __init__(self, decline: Collection[bytes] = (), fail: Collection[bytes] = ()) -> None:
        self.log: list[str] = []
        self.decline = decline
        self.fail = fail

    def prepare_whole(self, request: Any, response: Any) -> Any:
        name = request.event + str(request.session)
        if request._chunks[0] in self.decline:  # the test's peek: declined, nothing taken
            self.log.append(f"declined {name}")
            return None
        first = request.read_buffered()
        self.log.append(f"prepared {first.decode()}")
        if first in self.fail:
            raise ValueError(f"cannot stage {first.decode()}")
        return self._rest(request, response, first)

    async def _rest(self, request: Any, response: Any, first: bytes) -> None:
        self.log.append(f"ran {first.decode()}")
        await response.write(first + await request.read_all())

    async def __call__(self, request: Any, response: Any) -> None:
        first = await request.read()
        self.log.append(f"called {first.decode()}")
        await response.write(first + await request.read_all())


def ends(gen: str, frame: list[Any]) -> bool:
    """A's choke, B's close or error: the session's last frame."""
    return frame[0] == 6 if gen == "A" else frame[1] in (1, 2)


async def serve(
    gen: str, runtime_dir: str, handler: Any, payloads: list[bytes], open_last: bool = False
) -> dict[int, list[Any]]:
    """Send one session per payload (two chunks: the payload, then ``.``) in one write,
    the last one without its end when *open_last* (a second write ends it once the
    others are answered); the frames each session got, by session."""
    async with raw_peer(gen, runtime_dir, handler) as peer:
        enc, first = peer.enc, session_of(gen)
        ids = [first + 2 * i for i in range(len(payloads))]
        data = b""
        for i, (s, payload) in enumerate(zip(ids, payloads, strict=True)):
            data += enc.invoke(s, "echo") + enc.chunk(s, payload) + enc.chunk(s, b".")
            if not (open_last and i == len(ids) - 1):
                data += enc.choke(s)
        peer.writer.write(data)
        unpacker = msgpack.Unpacker(raw=True)
        got: dict[int, list[Any]] = {s: [] for s in ids}
        done: set[int] = set()
        while len(done) < len(ids) - (1 if open_last else 0):
            unpacker.feed(await asyncio.wait_for(peer.reader.read(65536), 5))
            for frame in unpacker:
                s = frame[1] if gen == "A" else frame[0]
                got[s].append(frame)
                if ends(gen, frame):
                    done.add(s)
        if open_last:
            peer.writer.write(enc.choke(ids[-1]))
            while ids[-1] not in done:
                unpacker.feed(await asyncio.wait_for(peer.reader.read(65536), 5))
                for frame in unpacker:
                    got[ids[-1]].append(frame)
                    if ends(gen, frame):
                        done.add(ids[-1])
        peer.writer.write(enc.terminate(1, "done"))
        assert await asyncio.wait_for(peer.serving, 5) == 0
    return got


def chunks(gen: str, frames: list[Any]) -> list[bytes]:
    kind = 4 if gen == "A" else 0
    return [f[2][0] for f in frames if (f[0] if gen == "A" else f[1]) == kind]


def test_every_request_stage_of_a_read_runs_before_any_handler(gen: str, runtime_dir: str) -> None:
    handler = Staged()
    got = run(serve(gen, runtime_dir, handler, [b"a", b"b", b"c"]))
    assert handler.log == ["prepared a", "prepared b", "prepared c", "ran a", "ran b", "ran c"]
    assert [chunks(gen, frames) for frames in got.values()] == [[b"a."], [b"b."], [b"c."]]


def test_a_declined_stage_leaves_the_request_to_the_handler(gen: str, runtime_dir: str) -> None:
    handler = Staged(decline={b"b"})
    got = run(serve(gen, runtime_dir, handler, [b"a", b"b"]))
    assert handler.log[:2] == ["prepared a", f"declined echo{session_of(gen) + 2}"]
    assert sorted(handler.log[2:]) == ["called b", "ran a"]
    assert [chunks(gen, frames) for frames in got.values()] == [[b"a."], [b"b."]]


def test_a_failing_stage_fails_its_session_only(gen: str, runtime_dir: str) -> None:
    handler = Staged(fail={b"b"})
    got = run(serve(gen, runtime_dir, handler, [b"a", b"b", b"c"]))
    failed = list(got.values())[1]
    assert chunks(gen, failed) == []
    assert any(b"cannot stage b" in msgpack.packb(f) for f in failed)  # the error reply names it
    assert [chunks(gen, frames) for frames in got.values()] == [[b"a."], [], [b"c."]]


def test_a_request_still_arriving_is_not_prepared(gen: str, runtime_dir: str) -> None:
    handler = Staged()
    got = run(serve(gen, runtime_dir, handler, [b"a", b"b"], open_last=True))
    assert handler.log == ["prepared a", "ran a", "called b"]
    assert [chunks(gen, frames) for frames in got.values()] == [[b"a."], [b"b."]]


def test_only_async_handlers_have_a_request_stage() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        return []

    class Threaded:
        def prepare_whole(self, request: Any, response: Any) -> None:
            raise AssertionError("never called")

        def __call__(self, request: Any, response: Any) -> None:
            pass

    class NotCallable:
        prepare_whole = "a name, not a method"

        async def __call__(self, request: Any, response: Any) -> None:
            pass

    assert registered(Threaded())[1:] == (IN_THREAD, None)
    assert registered(NotCallable())[2] is None
    assert registered(WSGIHandler(app))[2] is None
    inline = InlineWSGIHandler(app)
    assert registered(inline)[2] == inline.prepare_whole
    asgi = ASGIHandler(app)
    assert registered(asgi)[2] == asgi.prepare_whole
