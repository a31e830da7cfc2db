"""The Engine's bookkeeping and supervision: freed slots, backoff, giving up, idle, bounded history."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from worker_helpers import make_engine, run

from cocaine_http.runtime import Engine, RestartPolicy, SlaveState

EXIT_AT_ONCE = [sys.executable, "-c", "print('exiting at once', flush=True); raise SystemExit(3)"]
NEVER_HANDSHAKES = [sys.executable, "-c", "import time; time.sleep(60)"]


def refusal(gen: str, message: str) -> tuple[Any, str]:
    return (2, message) if gen == "A" else ((0x52FF, 2), message)


def dead_kept(engine: Engine) -> int:
    return sum(1 for s in engine.slaves.values() if s.state is SlaveState.DEAD)


# -- the runtime's error ends a B channel for both sides ------------------------------------
def test_b_runtime_error_frees_the_slot(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir, concurrency=1) as engine:
            [slave] = await engine.start(1)
            first = await engine.open("echo")
            await first.write(b"a")
            assert await first.read() == b"a"
            queued = await engine.open("echo")  # concurrency 1: waits for the first one's slot
            await first.write(b"b")  # a round trip: a dispatch scheduled on the loop would have run
            assert await first.read() == b"b"
            assert queued.slave is None and len(engine.queue) == 1
            await first.send_error((0x51FF, 3), "request timed out")
            # the worker sends nothing more on that channel, so the engine does not wait for it
            assert first.finished.done() and first.error == ((0x51FF, 3), "request timed out")
            assert await first.read() is None
            assert queued.slave is slave and not engine.queue
            await queued.write(b"next")
            await queued.close()
            assert (await queued.reply(5)).data == b"next"
            assert slave.load == 0 and slave.side is not None and not slave.side.sessions
            assert (await engine.invoke("echo", [b"still serving"], timeout=5)).data == b"still serving"

    run(body())


def test_b_error_on_a_queued_event_withdraws_it(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir) as engine:  # no worker: events wait
            inv = await engine.open("echo")
            await inv.write(b"never sent")
            await inv.send_error((1, 103), "client disconnected")
            assert inv.finished.done() and inv.error == ((1, 103), "client disconnected")
            assert not engine.queue

    run(body())


def test_a_runtime_error_waits_for_the_workers_choke(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("A", runtime_dir) as engine:
            [slave] = await engine.start(1)
            inv = await engine.open("echo")
            await inv.send_error(3, "request timed out")
            reply = await inv.reply(5)  # A: the session ends with the worker's choke (§2.4.4)
            assert reply.closed and slave.load == 0

    run(body())


# -- bounded restarts -----------------------------------------------------------------------
def test_restart_policy_backoff() -> None:
    policy = RestartPolicy(backoff_base=0.5, backoff_max=3.0, crash_window=10.0, max_start_failures=3)
    assert policy.backoff(0.0) == 0.0
    policy.crashed(0.0)
    assert policy.backoff(0.0) == 0.0  # the first replacement is immediate
    policy.crashed(1.0)
    assert policy.backoff(1.0) == 0.5
    policy.crashed(2.0)
    policy.crashed(3.0)
    assert policy.backoff(3.0) == 2.0
    policy.crashed(4.0)
    assert policy.backoff(4.0) == 3.0  # capped
    assert policy.backoff(14.5) == 0.0  # the crashes are out of the window
    assert policy.restarts == 5
    for _ in range(3):
        policy.failed_start()
    assert policy.gave_up and policy.backoff(100.0) == 2.0
    policy.activated()
    assert not policy.gave_up and policy.backoff(100.0) == 0.0


def test_crashed_workers_are_restarted_with_backoff(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with make_engine(gen, runtime_dir, restart=True, backoff_base=0.4, history=2) as engine:
            [slave] = await engine.start(1)
            gaps = []
            for _ in range(3):
                slave.send_signal(signal.SIGKILL)
                await slave.wait(5)
                died = loop.time()
                [replacement] = await engine.wait_active(1, timeout=10)
                gaps.append(replacement.spawned_at - died)
                slave = replacement
            assert gaps[0] < 0.3, gaps  # the first replacement is immediate
            # then it waits out the policy's backoff (its values: test_restart_policy_backoff)
            assert gaps[1] >= 0.3, gaps  # backoff_base
            assert gaps[2] >= 0.65, gaps  # twice that
            assert engine.policy.restarts == 3 and engine.spawns == 4
            # only the last `history` dead workers and crash logs are kept
            assert len(engine.crashlogs) == 2 and dead_kept(engine) == 2
            assert (await engine.invoke("echo", [b"again"])).data == b"again"

    run(body())


def test_worker_that_exits_at_once_is_given_up_on(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        engine = Engine(
            "bad", EXIT_AT_ONCE, generation=gen, runtime_dir=runtime_dir, backoff_base=0.1, history=2
        )
        async with engine:
            t0 = loop.time()
            events = [await engine.open("echo") for _ in range(2)]
            replies = [await inv.reply(10) for inv in events]
            elapsed = loop.time() - t0
            expected = refusal(gen, "the app failed to start: exit code 3 (exiting at once)")
            assert [r.error for r in replies] == [expected, expected]
            # three starts, one at a time, backing off 0 + 0.1 + 0.2 s; then the events fail
            assert engine.spawns == 3 and engine.policy.start_failures == 3
            assert elapsed >= 0.29
            assert len(engine.crashlogs) == 2 and dead_kept(engine) == 2 and not engine.queue
            await asyncio.sleep(0.5)  # past the next backoff (0.4 s): a respawn timer would have fired
            assert engine.spawns == 3  # nothing waits, nothing is spawned: no tight loop
            # a new event costs one more (backed-off) start, and fails with it
            assert (await engine.invoke("echo", [b"x"], timeout=10)).error == expected
            assert engine.spawns == 4 and dead_kept(engine) == 2

    run(body())


def test_worker_that_never_handshakes_is_killed_and_given_up_on(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        engine = Engine(
            "mute",
            NEVER_HANDSHAKES,
            generation=gen,
            runtime_dir=runtime_dir,
            startup_timeout=0.3,
            backoff_base=0.05,
            max_start_failures=2,
        )
        async with engine:
            inv = await engine.open("echo")
            seen: set[int] = set()

            async def count_live() -> None:
                while True:
                    seen.add(sum(1 for s in engine.slaves.values() if s.alive))
                    await asyncio.sleep(0.01)

            counter = asyncio.ensure_future(count_live())
            reply = await inv.reply(10)
            counter.cancel()
            assert reply.error == refusal(gen, "the app failed to start: failed to activate")
            assert engine.spawns == 2 and max(seen) == 1  # one start at a time
            assert all(s.returncode == -signal.SIGKILL for s in engine.slaves.values())

    run(body())


def test_command_that_cannot_be_executed_is_a_failed_start(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        engine = Engine(
            "gone", ["/nonexistent/worker"], generation=gen, runtime_dir=runtime_dir, backoff_base=0.02
        )
        async with engine:
            reply = await (await engine.open("echo")).reply(10)
            assert reply.error is not None and "the app failed to start: cannot start" in reply.error[1]
            assert engine.spawns == 0 and engine.policy.start_failures == 3

    run(body())


# -- idle terminate -------------------------------------------------------------------------
def test_idle_workers_get_the_runtimes_terminate(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir, idle_timeout=0.3, restart=True) as engine:
            [slave] = await engine.start(1)
            # busy for longer than idle_timeout: not idle
            assert (await engine.invoke("slow", [b"0.6"], timeout=5)).data == b"done after 0.6"
            assert slave.state is SlaveState.ACTIVE
            assert await slave.wait(5) == 0
            assert slave.terminate_sent == (1 if gen == "A" else 13, "slave is idle")
            assert engine.live_count() == 0  # a retired worker is not restarted, nor on its way
            assert engine.policy.restarts == 0 and not engine.crashlogs

    run(body())


def test_idle_timeout_zero_never_terminates(runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine("B", runtime_dir, idle_timeout=0.0) as engine:
            [slave] = await engine.start(1)
            await asyncio.sleep(0.3)  # nothing to wait for: no terminate may come (a 0 s timer would fire)
            assert slave.state is SlaveState.ACTIVE and slave.terminate_sent is None

    run(body())


def test_dead_namesake_is_replaced(gen: str, runtime_dir: str) -> None:
    """A worker spawned again under a tag it had before takes the name over."""

    async def body() -> None:
        async with make_engine(gen, runtime_dir, pool_limit=2) as engine:
            first = await engine.spawn("sticky")
            await first.wait_active(10)
            first.send_signal(signal.SIGKILL)
            await first.wait(5)
            second = await engine.spawn("sticky")
            await second.wait_active(10)
            assert engine.slaves["sticky"] is second and list(engine.slaves) == ["sticky"]

    run(body())
