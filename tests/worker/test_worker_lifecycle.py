"""Lifecycle of a real worker process: terminate, signals, disown, a vanished runtime."""

from __future__ import annotations

import asyncio
import signal
import time

from worker_helpers import make_engine, run, until

ABORTED = {"A": 2, "B": (42, 212)}
REFUSED = {"A": 2, "B": (12, 32)}  # B: EPIPE "app stopped", which the proxies retry


def events(slave) -> list[str]:
    return [line for line in slave.lines("stdout") if line.startswith("EVENT")]


def test_terminate_lets_in_flight_sessions_finish_then_replies_and_exits_0(
    gen: str, runtime_dir: str
) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            slow = [await engine.open(e) for e in ("slow", "slow_sync", "slow")]
            for inv in slow:  # sent whole before the terminate, on the same connection
                await inv.write(b"0.4")
                await inv.close()
            t0 = time.monotonic()
            code = await engine.terminate(slave, 1, "slave is idle")
            assert code == 0
            assert all(inv.finished.done() for inv in slow)  # it waited for the sessions in flight
            assert time.monotonic() - t0 < 3.0  # and no longer: the grace period is 4 s
            for reply in [await inv.reply(1) for inv in slow]:
                assert reply.data == b"done after 0.4" and reply.error is None and reply.closed
            assert slave.terminate_reply == (1, "slave is idle")  # the runtime's words echoed
            assert events(slave) == [
                "EVENT startup",
                "EVENT connect",
                "EVENT terminate 1 slave is idle",
                "EVENT shutdown",
            ]
            assert not any("Traceback" in line for line in slave.lines())

    run(body())


def test_terminate_without_sessions_is_prompt(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            t0 = time.monotonic()
            assert await engine.terminate(slave, 11, "overseer is shutdowning") == 0
            assert time.monotonic() - t0 < 1.5
            assert slave.terminate_reply == (11, "overseer is shutdowning")

    run(body())


def test_sessions_past_the_grace_period_are_aborted(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, env={"CH_TEST_GRACE": "0.3"}) as engine:
            [slave] = await engine.start(1)
            inv = await engine.open("hang")
            await inv.close()
            assert await inv.read() == b"started"
            t0 = time.monotonic()
            assert await engine.terminate(slave) == 0
            assert time.monotonic() - t0 < 2.0
            reply = await inv.reply(1)
            assert reply.error == (ABORTED[gen], "the worker is shutting down")
            assert slave.terminate_reply == (1, "the engine is shutting down")

    run(body())


def test_sigterm_drains_replies_terminate_and_refuses_new_work(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            slow = await engine.open("slow")
            await slow.write(b"0.5")
            await slow.close()
            # a round trip on the same connection: the worker has the slow session
            assert (await engine.invoke("echo", [b"x"])).data == b"x"
            slave.send_signal(signal.SIGTERM)
            await until(
                lambda: "EVENT terminate 1 worker shut down" in events(slave), what="the terminate event"
            )
            # the runtime does not know yet: it still sends work, which is refused
            refused = await engine.invoke("echo", [b"late"])
            assert refused.error == (REFUSED[gen], "the worker is shutting down")
            assert (await slow.reply(5)).data == b"done after 0.5"
            assert await slave.wait(5) == 0
            assert slave.terminate_reply == (1, "worker shut down")
            assert "EVENT terminate 1 worker shut down" in events(slave)

    run(body())


def test_sigint_is_the_same_graceful_path(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            slave.send_signal(signal.SIGINT)
            assert await slave.wait(5) == 0
            assert slave.terminate_reply == (1, "worker shut down")
            assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in slave.lines())

    run(body())


def test_a_runtime_that_stops_answering_heartbeats_is_left(gen: str, runtime_dir: str) -> None:
    env = {"CH_TEST_HEARTBEAT": "0.1", "CH_TEST_DISOWN": "0.6"}

    async def body() -> None:
        async with make_engine(gen, runtime_dir, env=env) as engine:
            [slave] = await engine.start(1)
            # a few heartbeats answered: the disown timer is armed
            await until(lambda: slave.heartbeats >= 2, what="two heartbeats")
            slave.answer_heartbeats = False
            t0 = time.monotonic()
            assert await slave.wait(5) == 3
            assert time.monotonic() - t0 > 0.4  # not before the disown timeout (0.6 s from the last answer)
            assert "EVENT disown" in events(slave)
            assert not any("Traceback" in line for line in slave.lines())

    run(body())


def test_heartbeats_flow_at_the_configured_interval(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        env = {"CH_TEST_HEARTBEAT": "0.1"}
        async with make_engine(gen, runtime_dir, env=env, heartbeat_timeout=0.5) as engine:
            [slave] = await engine.start(1)
            start = slave.heartbeats
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await until(lambda: slave.heartbeats - start >= 10, what="ten heartbeats")
            assert loop.time() - t0 >= 0.8  # not faster than every 0.1 s (less the first one's phase)
            # longer than the engine's heartbeat timeout: a worker that fell silent would be dead by now
            assert slave.state.value == "active"

    run(body())


def test_engine_kills_a_worker_that_stops_beating(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(
            gen, runtime_dir, env={"CH_TEST_HEARTBEAT": "60"}, heartbeat_timeout=0.3
        ) as engine:
            [slave] = await engine.start(1)
            inv = await engine.open("hang")
            await slave.wait(3)
            assert slave.death_reason == "slave has timed out"
            assert (await inv.reply(1)).error is not None

    run(body())


def test_runtime_socket_closed_abruptly(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            inv = await engine.open("hang")
            assert await inv.read() == b"started"
            slave.drop()
            assert await slave.wait(5) == 1  # sessions were in flight, no terminate came
            err = slave.lines("stderr")
            assert not any("Traceback" in line for line in err), err
            assert len([line for line in err if "connection" in line]) == 1, err
            assert "EVENT shutdown" in events(slave)  # on_shutdown hooks still run

    run(body())


def test_runtime_socket_closed_while_idle_also_exits_1(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            slave.drop()
            assert await slave.wait(5) == 1
            assert not any("Traceback" in line for line in slave.lines())

    run(body())


def test_crash_restart(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, restart=True) as engine:
            [slave] = await engine.start(1)
            slave.send_signal(signal.SIGKILL)
            await slave.wait(5)
            [replacement] = await engine.wait_active(1, timeout=5)
            assert replacement is not slave
            assert engine.crashlogs and engine.crashlogs[0][0] == slave.uuid
            assert (await engine.invoke("echo", [b"again"])).data == b"again"

    run(body())


def test_socket_closed_right_after_a_terminate(gen: str, runtime_dir: str) -> None:
    """EOF after a terminate is a normal end (0) unless sessions were still running (1)."""

    async def body() -> None:
        async with make_engine(gen, runtime_dir, pool_limit=2) as engine:
            idle, busy = await engine.start(2)
            inv = await engine.open("hang", slave=busy)
            assert await inv.read() == b"started"
            for slave in (idle, busy):
                assert slave.channel is not None and slave.side is not None
                slave.channel.send(0, slave.side.terminate(1, "the engine is shutting down"))
                slave.channel.close_gracefully()  # the terminate goes out, then EOF
            assert await idle.wait(5) == 0
            assert await busy.wait(5) == 1
            for slave in (idle, busy):
                assert not any("Traceback" in line for line in slave.lines())

    run(body())


def test_frame_header_declaring_4_gib_closes_the_worker_at_once(gen: str, runtime_dir: str) -> None:
    """Issue #16: the header alone is refused (FrameTooLargeError, logged); the
    worker closes and exits at once, not at its 30 s disown timeout. (Its ids
    are not ints, so the frame cannot be skipped as one session's: rule 5c and
    test_worker_oversize.py.)"""
    head = {"A": b"\x93\x04\xc0\x91\xdb\xff\xff\xff\xff", "B": b"\x94\x02\xc0\x91\xdb\xff\xff\xff\xff"}[gen]

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            [slave] = await engine.start(1)
            assert (await engine.invoke("echo", [b"x"])).data == b"x"
            t0 = time.monotonic()
            slave.channel.send(0, head + b"z" * 100)
            code = await asyncio.wait_for(asyncio.shield(slave.exited), 10.0)
            took = time.monotonic() - t0
            assert code == 1  # the connection was lost without a terminate
            assert took < 5.0, took  # the disown timeout is 30 s
            log = "\n".join(slave.lines("stderr"))
            assert "FrameTooLargeError" in log or "max_frame_size" in log, log

    run(body())
