"""The Worker served in the test's own loop against the Engine: hooks, events, limits, flow control.

These look inside the worker (its flow accounting, its handlers' view), which a
subprocess cannot show. Everything still goes over a real UNIX socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from worker_helpers import expected_worker, finish, make_engine, run, serve_in_process, until

from cocaine_http.aio.events import EventEmitter
from cocaine_http.aio.threads import HandlerThreads, LoopInbox
from cocaine_http.aio.worker import EXIT_STARTUP, Worker, WorkerState
from cocaine_http.errors import ChannelClosedError, ServiceError
from cocaine_http.runtime import Engine, Slave

KiB = 1024
MiB = 1024 * KiB


def inproc(
    gen: str,
    runtime_dir: str,
    setup: Callable[[Worker], Any],
    scenario: Callable[..., Awaitable[None]],
    **options: Any,
) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, slave, task = await serve_in_process(engine, gen, setup, **options)
            await scenario(engine, worker, slave)
            if not task.done():
                assert await finish(engine, slave, task) == 0

    run(body())


def test_startup_hooks_complete_before_the_handshake_and_events_fire(gen: str, runtime_dir: str) -> None:
    seen: list[Any] = []

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            slave_box: list[Slave] = []

            def setup(w: Worker) -> None:
                async def startup() -> None:
                    await asyncio.sleep(0.2)
                    seen.append(("startup", slave_box[0].state.value))  # no handshake yet

                async def shutdown() -> None:
                    seen.append("shutdown")

                w.on_startup.append(startup)
                w.on_shutdown.append(shutdown)
                w.events.on("connect", lambda: seen.append("connect"))
                w.events.on("terminate", lambda code, reason: seen.append(("terminate", code, reason)))

            worker, slave = expected_worker(engine, gen)
            slave_box.append(slave)
            setup(worker)
            task = asyncio.ensure_future(worker.serve())
            await slave_box[0].wait_active(5)
            assert worker.loop is asyncio.get_running_loop()
            assert await finish(engine, slave_box[0], task) == 0

    run(body())
    assert seen == [
        ("startup", "spawned"),
        "connect",
        ("terminate", 1, "the engine is shutting down"),
        "shutdown",
    ]


def test_a_failing_startup_hook_ends_the_worker_without_connecting(gen: str, runtime_dir: str) -> None:
    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, slave = expected_worker(engine, gen)

            async def broken() -> None:
                raise RuntimeError("database unreachable")

            worker.on_startup.append(broken)
            assert await worker.serve() == EXIT_STARTUP
            assert slave.channel is None

    run(body())


def test_on_default_and_decorator_forms(gen: str, runtime_dir: str) -> None:
    def setup(w: Worker) -> None:
        @w.on("named")
        async def named(request: Any, response: Any) -> None:
            await response.write(b"named")

        @w.on_default
        async def fallback(request: Any, response: Any) -> None:
            await response.write(b"default:" + request.event.encode() + b":" + await request.read_all())

        def sync_style(request: Any, response: Any) -> None:
            response.write(b"plain " + request.read_all())

        w.on("plain", sync_style)

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        assert (await engine.invoke("named", [])).data == b"named"
        assert (await engine.invoke("anything", [b"x", b"y"])).data == b"default:anything:xy"
        assert (await engine.invoke("plain", [b"p"])).data == b"plain p"
        assert set(worker.handlers) == {"named", "plain"}

    inproc(gen, runtime_dir, setup, scenario)


def test_max_sessions_refuses_with_a_retryable_error(gen: str, runtime_dir: str) -> None:
    gates: list[asyncio.Event] = []

    def setup(w: Worker) -> None:
        @w.on("wait")
        async def wait(request: Any, response: Any) -> None:
            await gates[0].wait()
            await response.write(b"ok")

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        gates.append(asyncio.Event())
        held = [await engine.open("wait") for _ in range(3)]
        await until(lambda: worker.active_sessions == 3, what="3 sessions running")
        refused = await engine.invoke("wait", [])
        busy = "the worker is busy (3 sessions)"
        assert refused.error == (
            (2, busy) if gen == "A" else ((0x52FF, 1), busy)
        )  # B: overseer "queue is full"
        gates[0].set()
        for inv in held:
            await inv.close()
            assert (await inv.reply(2)).data == b"ok"

    inproc(gen, runtime_dir, setup, scenario, max_sessions=3)


def test_inbound_buffering_pauses_reading_at_the_session_mark(gen: str, runtime_dir: str) -> None:
    gate = asyncio.Event()
    peaks: list[int] = []

    def setup(w: Worker) -> None:
        @w.on("lazy")
        async def lazy(request: Any, response: Any) -> None:
            await gate.wait()
            total = 0
            async for chunk in request:
                peaks.append(request.buffered)
                total += len(chunk)
            await response.write(str(total).encode())

        @w.on("echo")
        async def echo(request: Any, response: Any) -> None:
            async for chunk in request:
                await response.write(chunk)

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        flow = worker._connection.flow
        assert flow is not None
        inv = await engine.open("lazy")
        writer = asyncio.ensure_future(_send(inv, 4 * MiB, 32 * KiB))
        await until(lambda: flow.paused, what="reading paused")
        # the socket is full: the worker has read all it was going to read
        await until(lambda: slave.channel.write_buffer_size > 0, what="the engine held back by the socket")
        # the handler reads nothing: reading paused once the session passed its mark
        assert flow.paused and flow.pauses >= 1
        assert 256 * KiB < flow.total <= 256 * KiB + 256 * KiB + 64 * KiB  # mark + one socket read + a frame
        assert not writer.done()  # the engine is held back by the socket
        gate.set()
        await writer
        assert (await inv.reply(5)).data == str(4 * MiB).encode()
        assert not flow.paused and flow.total == 0
        assert max(peaks) <= 512 * KiB + 64 * KiB
        assert (await engine.invoke("echo", [b"still flowing"])).data == b"still flowing"

    inproc(
        gen,
        runtime_dir,
        setup,
        scenario,
        session_read_high_water=256 * KiB,
        read_high_water=64 * MiB,
        read_low_water=MiB,
    )


def test_inbound_buffering_pauses_at_the_connection_mark(gen: str, runtime_dir: str) -> None:
    gate = asyncio.Event()

    def setup(w: Worker) -> None:
        @w.on("lazy")
        async def lazy(request: Any, response: Any) -> None:
            await gate.wait()
            await response.write(str(len(await request.read_all())).encode())

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        flow = worker._connection.flow
        assert flow is not None
        invs = [await engine.open("lazy") for _ in range(20)]
        writers = [asyncio.ensure_future(_send(inv, 200 * KiB, 20 * KiB)) for inv in invs]
        await until(lambda: flow.paused, what="reading paused")
        # the socket is full: the worker has read all it was going to read
        await until(lambda: slave.channel.write_buffer_size > 0, what="the engine held back by the socket")
        assert flow.paused
        assert MiB < flow.total <= MiB + 512 * KiB  # every session under its own mark, the total over
        gate.set()
        await asyncio.gather(*writers)
        replies = await asyncio.gather(*(inv.reply(5) for inv in invs))
        assert all(r.data == str(200 * KiB).encode() for r in replies)
        assert not flow.paused and flow.total == 0

    inproc(
        gen,
        runtime_dir,
        setup,
        scenario,
        session_read_high_water=MiB,
        read_high_water=MiB,
        read_low_water=256 * KiB,
    )


@pytest.mark.parametrize("style", ["async", "sync"])
def test_writes_wait_for_a_slow_runtime(gen: str, runtime_dir: str, style: str) -> None:
    progress: list[int] = []
    block = b"w" * (64 * KiB)

    def setup(w: Worker) -> None:
        if style == "async":

            @w.on("flood")
            async def flood(request: Any, response: Any) -> None:
                for i in range(160):  # 10 MiB
                    await response.write(block)
                    progress.append(i)
        else:

            @w.on("flood")
            def flood_sync(request: Any, response: Any) -> None:
                for i in range(160):
                    response.write(block)
                    progress.append(i)

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        assert slave.channel is not None
        slave.channel.pause_reading()  # the runtime stops reading the worker
        inv = await engine.open("flood")
        await inv.close()
        channel = worker._connection.channel
        assert channel is not None
        await until(lambda: channel.write_buffer_size >= 256 * KiB, what="the producer at the mark")
        # the producer is held: socket buffers + our high-water mark + the sync budget, not 10 MiB
        assert len(progress) < 80, len(progress)
        assert channel.write_buffer_size <= 256 * KiB + 2 * 64 * KiB + 256 * KiB
        slave.channel.resume_reading()
        reply = await inv.reply(10)
        assert sum(map(len, reply.chunks)) == 160 * 64 * KiB and reply.closed
        assert len(progress) == 160

    inproc(gen, runtime_dir, setup, scenario, write_high_water=256 * KiB)


def test_a_runtime_error_on_a_session_reaches_the_reader(gen: str, runtime_dir: str) -> None:
    got: list[Any] = []

    def setup(w: Worker) -> None:
        @w.on("reader")
        async def reader(request: Any, response: Any) -> None:
            try:
                await request.read_all()
            except ServiceError as exc:
                got.append((exc.category, exc.code, exc.message))
                got.append(response.closed)
                await response.write(b"late")  # B: dropped, never sent on a failed channel
                raise

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        inv = await engine.open("reader")
        await inv.write(b"part")
        await inv.send_error((0x51FF, 3) if gen == "B" else 3, "request timed out")
        if gen == "A":  # the session ends with the worker's choke
            reply = await inv.reply(2)
            assert reply.closed and reply.chunks == [b"late"]
        else:  # the runtime's error ends the channel for both sides: the slot is free at once
            assert inv.finished.done() and inv.error == ((0x51FF, 3), "request timed out")
            assert slave.load == 0 and slave.side is not None and not slave.side.is_open(inv.session or 0)
            await until(lambda: len(got) == 2, what="the handler saw the error")
            # a round trip on the same connection: anything sent on the failed channel came before it
            assert (await engine.invoke("reader", [])).closed
            assert inv._buffered == 0  # nothing at all sent back
        assert got == (
            [(None, 3, "request timed out"), False]
            if gen == "A"
            else [(0x51FF, 3, "request timed out"), True]
        )
        assert worker.active_sessions == 0
        assert (await engine.invoke("reader", [])).closed  # still serving

    inproc(gen, runtime_dir, setup, scenario)


def test_stop_from_another_thread(gen: str, runtime_dir: str) -> None:
    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        threading.Thread(target=worker.stop, args=(1, "bye")).start()
        await asyncio.wait_for(asyncio.shield(slave.replied), 5)
        assert slave.terminate_reply == (1, "bye")

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, slave, task = await serve_in_process(engine, gen, lambda w: None)
            await scenario(engine, worker, slave)
            assert await asyncio.wait_for(task, 5) == 0

    run(body())


def test_the_state_follows_the_lifecycle_and_a_held_session_keeps_it_draining(
    gen: str, runtime_dir: str
) -> None:
    """NEW -> STARTING (hooks) -> RUNNING -> DRAINING while a session holds the
    terminate back -> DONE; ``terminating`` from DRAINING on."""
    seen: list[WorkerState] = []
    release = asyncio.Event()
    entered = asyncio.Event()

    def setup(w: Worker) -> None:
        async def startup() -> None:
            seen.append(w.state)

        async def hold(request: Any, response: Any) -> None:
            entered.set()
            await release.wait()
            await response.write(b"late")

        w.on_startup.append(startup)
        w.on("hold", hold)
        assert w.state is WorkerState.NEW and not w.terminating

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            worker, _, task = await serve_in_process(engine, gen, setup, grace_period=5.0)
            assert worker.state is WorkerState.RUNNING and not worker.terminating
            inv = await engine.open("hold")
            await asyncio.wait_for(entered.wait(), 5)
            worker.stop(1, "bye")
            assert worker.state is WorkerState.DRAINING and worker.terminating
            release.set()
            assert (await inv.reply(timeout=5)).data == b"late"
            assert await asyncio.wait_for(task, 5) == 0
            assert worker.state is WorkerState.DONE and worker.terminating

    run(body())
    assert seen == [WorkerState.STARTING]


def test_blocking_streams_fail_cleanly_when_the_session_is_aborted(gen: str, runtime_dir: str) -> None:
    outcome: list[str] = []
    entered = threading.Event()

    def setup(w: Worker) -> None:
        @w.on("stuck")
        def stuck(request: Any, response: Any) -> None:
            entered.set()
            try:
                request.read()  # the runtime never closes the request
            except ChannelClosedError as exc:
                outcome.append(str(exc))

    async def body() -> None:
        async with make_engine(gen, runtime_dir) as engine:
            _, slave, task = await serve_in_process(engine, gen, setup, grace_period=0.2)
            inv = await engine.open("stuck")
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, 5)
            assert await finish(engine, slave, task) == 0
            reply = await inv.reply(2)
            assert reply.error is not None and "shutting down" in reply.error[1]
            for _ in range(50):
                if outcome:
                    break
                await asyncio.sleep(0.01)
            assert outcome and "aborted" in outcome[0]

    run(body())


async def _send(inv: Any, total: int, chunk: int) -> None:
    data = b"r" * chunk
    left = total
    while left > 0:
        await inv.write(data[: min(chunk, left)])
        left -= chunk
    await inv.close()


def test_event_emitter_listeners_and_failures() -> None:
    events = EventEmitter()
    calls: list[Any] = []
    events.on("x", lambda *a: calls.append(a))

    @events.on("x")
    def broken(*a: Any) -> None:
        raise RuntimeError("listener bug")

    events.on("x", lambda *a: calls.append(("after", *a)))
    assert events.emit("x", 1, 2) is True
    assert calls == [(1, 2), ("after", 1, 2)]
    assert events.emit("nobody") is False
    events.off("x", broken)
    assert len(events.listeners("x")) == 2


def test_handler_threads_are_bounded_daemons() -> None:
    pool = HandlerThreads(2)
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 5) for _ in range(4)]
    names = {t.name for t in threading.enumerate() if t.name.startswith("cocaine-handler")}
    assert len(names) == 2 and all(t.daemon for t in threading.enumerate() if t.name in names)
    gate.set()
    assert all(f.result(5) for f in futures)
    pool.shutdown()


def test_handler_threads_start_a_thread_for_each_call_no_idle_thread_will_take() -> None:
    """Calls that must all run at once (each waits for the others) get threads
    enough, whether idle threads of earlier rounds are there or not."""
    pool = HandlerThreads(8)
    for width in (2, 3, 5, 8, 8):
        barrier = threading.Barrier(width, timeout=5)
        futures = [pool.submit(barrier.wait) for _ in range(width)]
        assert sorted(f.result(10) for f in futures) == list(range(width))
    assert len({t.name for t in threading.enumerate() if t.name.startswith("cocaine-handler")}) <= 8
    pool.shutdown()


def test_handler_threads_call_tells_the_end_on_the_loop() -> None:
    """``call`` runs on a pool thread and posts ``done(token, result, exc)`` to the loop."""
    ran_on: dict[str, str] = {}

    def add(a: int, b: int) -> int:
        ran_on["one"] = threading.current_thread().name
        return a + b

    def fail() -> None:
        ran_on["two"] = threading.current_thread().name
        raise ValueError("no")

    async def main() -> list[tuple[object, object, object, str]]:
        loop = asyncio.get_running_loop()
        pool = HandlerThreads(2)
        told: list[tuple[object, object, object, str]] = []
        finished = loop.create_future()

        def tell(token: object, result: object, exc: BaseException | None) -> None:
            told.append((token, result, exc, threading.current_thread().name))
            if len(told) == 2:
                finished.set_result(None)

        inbox = LoopInbox(loop)
        pool.call(inbox, tell, "one", add, 1, 2)
        pool.call(inbox, tell, "two", fail)
        await asyncio.wait_for(finished, 5)
        pool.shutdown()
        return told

    told = asyncio.run(main())
    ends = sorted(told, key=lambda t: t[2] is not None)
    assert ends[0][:3] == ("one", 3, None)
    assert ends[1][:2] == ("two", None) and isinstance(ends[1][2], ValueError)
    assert all(t[3] == threading.main_thread().name for t in told)  # told on the loop's thread
    assert all(name.startswith("cocaine-handler") for name in ran_on.values()) and len(ran_on) == 2


def test_a_plain_def_handler_returning_a_coroutine_is_an_error(gen: str, runtime_dir: str) -> None:
    async def later() -> None:
        return None

    def setup(w: Worker) -> None:
        w.on("confused", lambda request, response: later())

    async def scenario(engine: Engine, worker: Worker, slave: Slave) -> None:
        reply = await engine.invoke("confused", [])
        assert reply.error is not None and "async def" in reply.error[1]

    inproc(gen, runtime_dir, setup, scenario)
