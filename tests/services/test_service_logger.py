"""Logger and CocaineLogHandler against real logging peers of both generations."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
from cocaine_peers import Cloud, LoggingPeer
from helpers.oldspec import assert_old_spec
from helpers.waiting import until
from svc_util import FAST, all_services, assert_no_leaks, make_client, run

from cocaine_http.protocol.frames import Generation
from cocaine_http.services import Client, CocaineLogHandler, Logger, LogLevel
from cocaine_http.services.logger import as_level, threshold, wire_level

A_LEVELS = {"debug": 4, "info": 3, "warning": 2, "error": 1}
B_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


def levels(gen: str) -> dict[str, int]:
    return A_LEVELS if gen == "A" else B_LEVELS


def emit_frames(peer: LoggingPeer, gen: str) -> list:
    """Frames of method 0 (emit) the peer received."""
    return [f for f in peer.frames if (f[0] if gen == "A" else f[1]) == 0]


def test_level_tables() -> None:
    assert [wire_level(Generation.A, lv) for lv in LogLevel] == [4, 3, 2, 1]
    assert [wire_level(Generation.B, lv) for lv in LogLevel] == [0, 1, 2, 3]
    assert as_level("warn") is LogLevel.WARNING and as_level(logging.CRITICAL) is LogLevel.ERROR
    assert as_level(5) is LogLevel.DEBUG and as_level(25) is LogLevel.INFO
    assert threshold(Generation.A, 0) > LogLevel.ERROR  # 0 = ignore: nothing passes
    assert threshold(Generation.A, 2) == LogLevel.WARNING
    assert threshold(Generation.B, 2) == LogLevel.WARNING
    assert threshold(Generation.B, 9) > LogLevel.ERROR
    with pytest.raises(ValueError):
        as_level("loud")


def test_verbosity_filtering_sends_no_frames_for_filtered_messages(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:  # service verbosity: info
            log = client.logger("web")
            log.debug("d0")  # queued before the verbosity is known: filtered at send time
            log.info("i1")
            await log.flush()
            assert log._threshold == LogLevel.INFO
            log.debug("d1")  # known now: filtered at once, not even queued
            log.warning("w1")
            log.warn("w2")
            log.error("e1")
            await log.flush()
            emits = await cloud.logging.wait_emits(4)
            lv = levels(gen)
            assert [(e[0], e[2]) for e in emits] == [
                (lv["info"], b"i1"), (lv["warning"], b"w1"), (lv["warning"], b"w2"), (lv["error"], b"e1")]
            assert all(e[1] == b"web" for e in emits)
            assert len(emit_frames(cloud.logging, gen)) == 4  # the debug ones never hit the wire
            assert cloud.logging.verbosity_calls == 1
            assert log.filtered == 2 and log.sent == 4
            # A: the chokes of emit come back and are discarded
            await until(lambda: all(s.pending == 0 for s in all_services(client)), what="every emit answered")
            assert_no_leaks(*all_services(client))

    run(scenario())


@pytest.mark.parametrize(("gen", "verbosity", "expected"), [
    ("A", 0, []), ("A", 1, ["error"]), ("A", 4, ["debug", "info", "warning", "error"]),
    ("B", 3, ["error"]), ("B", 0, ["debug", "info", "warning", "error"]),
])
def test_verbosity_per_generation(gen: str, verbosity: int, expected: list[str]) -> None:
    async def scenario() -> None:
        async with Cloud(gen, verbosity=verbosity) as cloud, make_client(cloud) as client:
            log = client.logger("x")
            for name in ("debug", "info", "warning", "error"):
                getattr(log, name)(name)
            await log.flush()
            await log.call("verbosity")  # a round trip on the same connection: every emit before it is in
            assert [e[2].decode() for e in cloud.logging.emits] == expected
            assert len(emit_frames(cloud.logging, gen)) == len(expected)

    run(scenario())


def test_attributes_and_percent_args(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            log = client.logger("app/web")
            log.info("user %s did %d things", "bob", 3, uid=7, ok=True, ratio=0.5, who="me", obj=[1])
            log.info("x" * 40, long="y" * 200)  # raw16, never str8
            log.info("100% literal")  # no args: no formatting
            log.error("bad %d", "x")  # a broken format never raises
            await log.flush()
            first, long, second, third = await cloud.logging.wait_emits(4)
            assert long[2].startswith(b"x" * 40)
            if gen == "B":
                assert first == [
                    1,
                    b"app/web",
                    b"user bob did 3 things",
                    [[b"uid", 7], [b"ok", True], [b"ratio", 0.5], [b"who", b"me"], [b"obj", b"[1]"]],
                ]
                assert second == [1, b"app/web", b"100% literal"]  # no attributes: 3 arguments
            else:
                assert first == [
                    3,
                    b"app/web",
                    b"user bob did 3 things uid=7 ok=True ratio=0.5 who=me obj=[1]",
                ]
                assert second == [3, b"app/web", b"100% literal"]
            assert b"formatting failed" in third[2]
            assert_old_spec(bytes(cloud.logging.raw))  # no str8/bin/ext anywhere, attributes included

    run(scenario())


def test_b_emit_is_pipelined_on_increasing_channels_and_never_read() -> None:
    async def scenario() -> None:
        async with Cloud("B", verbosity=0) as cloud, make_client(cloud) as client:
            log = client.logger("p")
            for i in range(200):
                log.debug("m%d", i)
            await log.flush()
            await cloud.logging.wait_emits(200)
            channels = [f[0] for f in cloud.logging.frames]
            assert channels == list(range(1, 202))  # 1 = verbosity, then one channel per emit
            assert log.pending == 0 and not cloud.logging.violations

    run(scenario())


def test_queue_is_bounded_and_emit_never_blocks(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            log = client.logger("q", queue_size=10)
            for i in range(100):  # no await in between: the sender cannot run
                log.info("m%d", i)
            assert log.dropped == 90
            await log.flush()
            assert len(await cloud.logging.wait_emits(10)) == 10

    run(scenario())


def test_emit_from_other_threads() -> None:
    async def scenario() -> None:
        async with Cloud("B") as cloud, make_client(cloud) as client:
            log = client.logger("t")
            log.info("from the loop")
            loop = asyncio.get_running_loop()

            def work(n: int) -> None:
                for i in range(50):
                    log.info("thread %d message %d", n, i)

            await asyncio.gather(*(loop.run_in_executor(None, work, n) for n in range(4)))
            await log.flush()
            emits = await cloud.logging.wait_emits(201)
            assert len(emits) == 201 and log.dropped == 0

    run(scenario())


def test_falls_back_to_stderr_and_says_so_once(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            port = cloud.logging.port
            await cloud.logging.stop()
            err = io.StringIO()
            client = make_client(cloud)
            log = client.logger("web", stderr=err)
            log.info("one %d", 1, k="v")
            log.error("two")
            await log.flush()
            log.warning("three")
            await log.flush()
            out = err.getvalue()
            assert out.count("logging service unreachable") == 1
            assert "INFO web: one 1 k=v" in out and "ERROR web: two" in out and "WARNING web: three" in out
            assert log.to_stderr == 3
            # the service comes back: messages go there again (after the retry delay)
            await cloud.logging.start(port)
            loop = asyncio.get_running_loop()
            await until(lambda: loop.time() >= log._retry_at, what="the retry delay over")
            log.info("four")
            await log.flush()
            emits = await cloud.logging.wait_emits(1)
            assert emits[0][2] == b"four"
            assert err.getvalue().count("logging service unreachable") == 1
            await client.close()
            log.info("after close")  # closed: straight to stderr, no task, no error
            assert "after close" in err.getvalue()

    run(scenario())


def test_unknown_logging_service_falls_back_too(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            del cloud.locator.registry["logging"]
            err = io.StringIO()
            async with make_client(cloud) as client:
                log = client.logger("web", stderr=err)
                log.info("hello")
                await log.flush()
            assert "not available" in err.getvalue() and "INFO web: hello" in err.getvalue()

    run(scenario())


def test_default_source_is_the_app_name(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud:
            client = Client(argv=["--app", "shop", "--locator", cloud.locator_endpoint,
                                  *(["--protocol", "1"] if gen == "B" else []), "--uuid", "u"], backoff=FAST)
            assert client.generation is (Generation.A if gen == "A" else Generation.B)
            async with client:
                log = client.logger()
                log.info("hi")
                await log.flush()
                (emit,) = await cloud.logging.wait_emits(1)
                assert emit[1] == (b"app/shop" if gen == "A" else b"shop")

    run(scenario())


# -- stdlib logging ------------------------------------------------------------------------------


def test_logging_handler_integration(gen: str) -> None:
    async def scenario() -> None:
        async with Cloud(gen) as cloud, make_client(cloud) as client:
            log = client.logger("std")
            handler = CocaineLogHandler(log)
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            pylog = logging.getLogger("tests.services.handler." + gen)
            pylog.propagate = False
            pylog.setLevel(logging.DEBUG)
            pylog.addHandler(handler)
            try:
                pylog.info("hello %s", "world")
                await log.flush()  # verbosity now known
                pylog.debug("filtered")
                pylog.warning("careful", extra={"cocaine": {"request": 42}})
                try:
                    raise ValueError("boom")
                except ValueError:
                    pylog.exception("failed")
                # cocaine_http's own service loggers are not fed back into the service
                logging.getLogger("cocaine_http.services.test").addHandler(handler)
                logging.getLogger("cocaine_http.services.test").error("internal")
                await log.flush()
                emits = await cloud.logging.wait_emits(3)
            finally:
                pylog.removeHandler(handler)
                logging.getLogger("cocaine_http.services.test").removeHandler(handler)
            lv = levels(gen)
            assert [e[0] for e in emits] == [lv["info"], lv["warning"], lv["error"]]
            name = pylog.name.encode()
            assert emits[0][2].startswith(name + b": hello world")
            assert b"Traceback" in emits[2][2] and b"ValueError: boom" in emits[2][2]
            if gen == "B":
                assert emits[0][3] == [[b"logger", name]]
                assert emits[1][3] == [[b"logger", name], [b"request", 42]]
            else:
                assert emits[1][2].endswith(b"logger=" + name + b" request=42")
            assert len(emit_frames(cloud.logging, gen)) == 3

    run(scenario())


def test_handler_swallows_reentrant_records() -> None:
    class Loud(Logger):
        def emit(self, level, message, *args, **attrs):  # type: ignore[override]
            logging.getLogger("tests.services.loud").error("again")  # would recurse forever
            super().emit(level, message, *args, **attrs)

    lg = Loud("p", generation="0.12", stderr=io.StringIO())
    handler = CocaineLogHandler(lg)
    pylog = logging.getLogger("tests.services.loud")
    pylog.propagate = False
    pylog.addHandler(handler)
    try:
        pylog.error("once")
    finally:
        pylog.removeHandler(handler)
    # no loop anywhere: the one record went to stderr; the nested one was dropped by the guard
    assert lg.to_stderr == 1 and not lg._queue
