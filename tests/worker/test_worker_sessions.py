"""Sessions through a real worker process, both generations: echo, errors, concurrency, threads."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from worker_helpers import make_engine, run, until

NO_HANDLER = {
    "A": (-100, "there is no handler for event nosuch"),
    "B": ((42, 200), "no handler for event nosuch"),
}
# A: a handler exception is an invocation_error (1), as the runtime reports its own (PROTOCOL.md §2.7);
# B: category 42, code 100 "uncaught exception" (§3.8).
RAISED = {"A": 1, "B": (42, 100)}


def ended_ok(gen: str, reply) -> bool:
    return reply.error is None and reply.closed


@pytest.mark.parametrize("event", ["echo", "echo_sync"])
def test_echo_of_0_1_and_many_chunks(gen: str, runtime_dir: str, event: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            for chunks in ([], [b"one"], [b"c%03d" % i for i in range(100)]):
                reply = await engine.invoke(event, chunks)
                assert reply.chunks == chunks and ended_ok(gen, reply)

    run(body())


def test_empty_chunks_from_the_wire_are_skipped(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            reply = await engine.invoke("echo", [b"", b"a", b"", b"b", b""])
            assert reply.chunks == [b"a", b"b"] and ended_ok(gen, reply)

    run(body())


def test_binary_payloads_survive(gen: str, runtime_dir: str) -> None:
    data = bytes(range(256)) * 300  # raw16 and raw32 sizes, every byte value

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            reply = await engine.invoke("echo", [data[:31], data[:32], data[:65535], data])
            assert reply.chunks == [data[:31], data[:32], data[:65535], data]

    run(body())


def test_a_thousand_concurrent_sessions(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            invs = [await engine.open("echo") for _ in range(1000)]
            assert slave.load == 1000  # all in flight at once on the one worker
            for i, inv in enumerate(invs):
                await inv.write(b"%d" % i)
            for inv in invs:
                await inv.close()
            replies = await asyncio.gather(*(inv.reply(20) for inv in invs))
            assert [r.data for r in replies] == [b"%d" % i for i in range(1000)]
            assert all(ended_ok(gen, r) for r in replies)

    run(body())


def test_handler_that_raises_gets_an_error_reply_and_the_worker_keeps_serving(
    gen: str, runtime_dir: str
) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            reply = await engine.invoke("boom", [b"x"])
            assert reply.chunks == [] and reply.error == (RAISED[gen], "it broke on purpose")
            assert reply.closed == (gen == "A")  # A: error + choke; B: the error is terminal
            reply = await engine.invoke("boom_sync", [b"x"])
            assert reply.chunks == [b"partial"] and reply.error == (RAISED[gen], "sync handler broke")
            assert (await engine.invoke("echo", [b"still here"])).data == b"still here"
            await engine.stop()
            err = slave.lines("stderr")
            # logged with its traceback once per failure
            assert sum(line.startswith("Traceback") for line in err) == 2
            assert sum("ValueError: it broke on purpose" in line for line in err) == 1

    run(body())


def test_unknown_event(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            reply = await engine.invoke("nosuch", [b"ignored"])
            assert reply.chunks == [] and reply.error == NO_HANDLER[gen]
            assert reply.closed == (gen == "A")  # A needs the choke (PROTOCOL.md §9)
            assert (await engine.invoke("echo", [b"ok"])).data == b"ok"

    run(body())


def test_explicit_error_after_data(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            reply = await engine.invoke("error_reply", [b""])
            assert reply.chunks == [b"before"]
            assert reply.error == ((7, "explicit error") if gen == "A" else ((42, 7), "explicit error"))

    run(body())


def test_async_handlers_run_on_the_loop_sync_ones_in_the_pool(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            info = json.loads((await engine.invoke("describe", [b"hello"])).data)
            assert info["thread"] == "MainThread" and info["event"] == "describe" and info["body"] == "hello"
            where = (await engine.invoke("where_sync", [])).data
            assert where.startswith(b"cocaine-handler-")

    run(body())


def test_session_ids_and_headers_as_the_runtime_sends_them(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            await engine.start(1)
            first = json.loads((await engine.invoke("describe", [])).data)
            second = json.loads((await engine.invoke("describe", [])).data)
            if gen == "A":  # engine-wide counter from 1 (PROTOCOL.md §2.3)
                assert (first["session"], second["session"]) == (1, 2)
                assert first["headers"] == []
            else:  # channels 2, 3, ... after the handshake's channel 1 (§3.3); [80,81,82] decoded
                assert (first["session"], second["session"]) == (2, 3)
                assert first["headers"] == [
                    ["trace_id", "00" * 8],
                    ["span_id", "00" * 8],
                    ["parent_id", "00" * 8],
                ]

    run(body())


@pytest.mark.parametrize("flavour", ["none", "literal"])
def test_b_header_flavours(runtime_dir: str, flavour: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir, headers=flavour) as engine:
            await engine.start(1)
            info = json.loads((await engine.invoke("describe", [b"x"])).data)
            expected = (
                [] if flavour == "none" else [[n, "00" * 8] for n in ("trace_id", "span_id", "parent_id")]
            )
            assert info["headers"] == expected and info["body"] == "x"

    run(body())


@pytest.mark.parametrize("slow_event", ["slow", "slow_sync"])
def test_a_slow_handler_never_blocks_others(gen: str, runtime_dir: str, slow_event: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, env={"CH_TEST_THREADS": "2"}) as engine:
            await engine.start(1)
            slow = await engine.open(slow_event)  # sent whole before the fast ones
            await slow.write(b"1.0")
            await slow.close()
            fast = await asyncio.gather(
                *(engine.invoke("echo", [b"f"]) for _ in range(20)), engine.invoke("echo_sync", [b"s"])
            )
            assert not slow.finished.done()  # all the fast ones were answered while the slow one ran
            assert [r.data for r in fast] == [b"f"] * 20 + [b"s"]
            assert (await slow.reply(5)).data == b"done after 1"

    run(body())


def test_sync_handlers_beyond_the_pool_wait_for_a_thread(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, env={"CH_TEST_THREADS": "2"}) as engine:
            await engine.start(1)
            t0 = time.monotonic()
            replies = await asyncio.gather(*(engine.invoke("slow_sync", [b"0.3"]) for _ in range(4)))
            elapsed = time.monotonic() - t0
            assert all(r.data == b"done after 0.3" for r in replies)
            assert elapsed > 0.55  # two rounds of two threads

    run(body())


def test_a_pool_shares_the_a_counter_and_balances_the_load(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, pool_limit=2) as engine:
            one, two = await engine.start(2)
            invs = [await engine.open("slow") for _ in range(4)]
            assert (one.load, two.load) == (2, 2)  # least-loaded dispatch
            for inv in invs:
                await inv.write(b"0.1")
                await inv.close()
            replies = await asyncio.gather(*(inv.reply(5) for inv in invs))
            assert all(r.data == b"done after 0.1" for r in replies)
            sessions = sorted(inv.session for inv in invs)
            if gen == "A":  # one engine-wide counter, shared by the workers (PROTOCOL.md §2.3)
                assert sessions == [1, 2, 3, 4]
            else:  # channels count per worker connection (§3.3)
                assert sessions == [2, 2, 3, 3]

    run(body())


def test_a_worker_that_never_activates_is_killed(gen: str, runtime_dir: str) -> None:
    import sys

    from cocaine_http.runtime import Engine

    async def body() -> None:
        command = [sys.executable, "-c", "import time; time.sleep(30)"]
        async with Engine(
            "mute", command, generation=gen, runtime_dir=runtime_dir, startup_timeout=0.3
        ) as engine:
            slave = await engine.spawn()
            await slave.wait(5)
            assert slave.death_reason == "failed to activate"

    run(body())


IDLE_ERROR = {"A": 3, "B": (42, 263)}


def test_requests_that_never_end_are_failed_and_their_slots_freed(gen: str, runtime_dir: str) -> None:
    """Issue #16: invokes that send nothing filled every slot and the worker
    refused all work after them. With a request_idle_timeout each one is
    failed (typed error to the runtime, a log line) and its slot freed."""

    async def body() -> None:
        env = {"CH_TEST_IDLE": "0.4", "CH_TEST_MAX_SESSIONS": "20"}
        async with make_engine(gen, runtime_dir, env=env) as engine:
            [slave] = await engine.start(1)
            silent = [await engine.open(e) for e in ["echo", "echo_sync"] * 10]  # no chunk, no end
            busy = await engine.invoke("echo", [b"x"])  # the 21st is refused while they hold the slots
            assert busy.error is not None and busy.data == b""
            t0 = time.monotonic()
            replies = await asyncio.gather(*(inv.reply(5) for inv in silent))
            took = time.monotonic() - t0
            for reply in replies:
                assert reply.error == (IDLE_ERROR[gen], "the request sent nothing for 0.4 s")
            assert took < 2.0, took
            # the slots are free again: full capacity, each one answered
            answers = await asyncio.gather(*(engine.invoke("echo", [b"%d" % i]) for i in range(20)))
            assert [a.data for a in answers] == [b"%d" % i for i in range(20)]
            await until(lambda: sum("sent nothing for 0.4 s; failed" in line for line in slave.lines()) == 20)
            # the runtime's close (B) / choke (A) that follows each error is taken quietly
            assert not any("dropped a message" in line for line in slave.lines()), slave.lines()

    run(body())


def test_a_request_that_keeps_sending_is_not_idle(gen: str, runtime_dir: str) -> None:
    """Chunks every 0.1 s for twice the 0.4 s limit: the session lives and ends normally."""

    async def body() -> None:
        async with make_engine(gen, runtime_dir, env={"CH_TEST_IDLE": "0.4"}) as engine:
            await engine.start(1)
            inv = await engine.open("echo")
            for i in range(8):
                await inv.write(b"%d" % i)
                assert await inv.read() == b"%d" % i
                await asyncio.sleep(0.1)
            await inv.close()
            reply = await inv.reply(5)
            assert reply.error is None and reply.closed

    run(body())
