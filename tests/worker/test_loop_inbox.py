"""LoopInbox: calls posted from many threads all run on the loop, each thread's in order."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cocaine_http.aio.threads import LoopInbox


def test_every_call_runs_on_the_loop_in_each_threads_order() -> None:
    threads, per_thread = 8, 2000

    async def main() -> dict[int, list[int]]:
        loop = asyncio.get_running_loop()
        inbox = LoopInbox(loop)
        seen: dict[int, list[int]] = {t: [] for t in range(threads)}
        loop_thread = threading.current_thread()
        done = loop.create_future()
        remaining = threads * per_thread

        def record(t: int, i: int) -> None:
            nonlocal remaining
            assert threading.current_thread() is loop_thread
            seen[t].append(i)
            remaining -= 1
            if remaining == 0:
                done.set_result(None)

        def producer(t: int) -> None:
            for i in range(per_thread):
                inbox.post(record, t, i)

        workers = [threading.Thread(target=producer, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        await asyncio.wait_for(done, 30)
        for w in workers:
            w.join()
        return seen

    seen = asyncio.run(main())
    assert all(calls == list(range(per_thread)) for calls in seen.values())


def test_batches_share_wake_ups() -> None:
    """Calls posted while a run is pending do not each wake the loop."""

    async def main() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        inbox = LoopInbox(loop)
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal wakeups
            wakeups += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        out: list[int] = []
        thread = threading.Thread(target=lambda: [inbox.post(out.append, i) for i in range(100)])
        thread.start()
        thread.join()  # the loop is not running meanwhile: one run is pending for all 100
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return wakeups, out

    wakeups, out = asyncio.run(main())
    assert out == list(range(100)) and wakeups == 1


def test_a_closed_loop_raises_and_a_failing_call_does_not_stop_the_batch() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        inbox = LoopInbox(loop)
        out: list[int] = []
        inbox.post(out.append, 1)
        inbox.post(lambda: 1 / 0)
        inbox.post(out.append, 2)
        await asyncio.sleep(0)
        return out

    assert asyncio.run(main()) == [1, 2]
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError):
        LoopInbox(loop).post(print)
