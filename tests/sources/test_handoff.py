"""The bounded thread-to-event-loop packet queue."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agent.sources.base import SourceUnavailable
from agent.sources.handoff import ThreadHandoff


async def test_a_full_queue_holds_the_producer_until_the_consumer_takes() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=3)
    produced: list[int] = []

    def produce() -> None:
        for item in range(10):
            assert handoff.put(item)
            produced.append(item)

    producer = threading.Thread(target=produce)
    producer.start()
    await asyncio.sleep(0.2)
    assert produced == [0, 1, 2]  # the fourth put waits for room
    assert [await handoff.get() for _ in range(10)] == list(range(10))
    await asyncio.to_thread(producer.join)


async def test_offer_refuses_instead_of_waiting() -> None:
    handoff = ThreadHandoff[str](asyncio.get_running_loop(), capacity=2)
    results = await asyncio.to_thread(lambda: [handoff.offer(x) for x in "abc"])
    assert results == [True, True, False]
    assert await handoff.get() == "a"
    assert await asyncio.to_thread(handoff.offer, "d")


async def test_close_releases_a_blocked_producer() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=1)
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.extend([handoff.put(1), handoff.put(2)]))
    producer.start()
    await asyncio.sleep(0.1)
    handoff.close()
    await asyncio.to_thread(producer.join, 2.0)
    assert outcome == [True, False]


async def test_finish_raises_after_the_queued_items_and_keeps_raising() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=4)

    def produce() -> None:
        handoff.put(7)
        handoff.finish("camera went away")

    await asyncio.to_thread(produce)
    assert await handoff.get() == 7
    for _ in range(2):
        with pytest.raises(SourceUnavailable, match="camera went away"):
            await handoff.get()


async def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ThreadHandoff[int](asyncio.get_running_loop(), capacity=0)


async def test_rationed_wake_ups_still_deliver_every_item_in_order() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=64, min_wake_interval_s=0.1)

    def produce() -> None:
        for item in range(50):
            assert handoff.put(item)
            time.sleep(0.005)  # a 200 packets/s camera
        handoff.finish("done")

    producer = threading.Thread(target=produce)
    producer.start()
    received = [await handoff.get() for _ in range(50)]
    with pytest.raises(SourceUnavailable, match="done"):
        await handoff.get()
    await asyncio.to_thread(producer.join)
    assert received == list(range(50))


async def test_a_half_full_queue_wakes_the_consumer_inside_the_interval() -> None:
    # With a long interval and a small queue, the producer must never block on a full
    # queue that the consumer was not told about.
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=4, min_wake_interval_s=3600)
    producer = threading.Thread(target=lambda: [handoff.put(i) for i in range(20)])
    producer.start()
    async with asyncio.timeout(5):
        received = [await handoff.get() for _ in range(20)]
    await asyncio.to_thread(producer.join)
    assert received == list(range(20))


async def test_the_end_of_the_stream_wakes_the_consumer_at_once() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=64, min_wake_interval_s=3600)
    assert await asyncio.to_thread(handoff.put, 1)
    assert await handoff.get() == 1  # the first item after a quiet spell wakes it
    waiting = asyncio.create_task(handoff.get())
    await asyncio.sleep(0.05)
    await asyncio.to_thread(handoff.put, 2)  # rationed: no wake-up yet
    await asyncio.to_thread(handoff.finish, "camera gone")
    async with asyncio.timeout(1):
        assert await waiting == 2
    with pytest.raises(SourceUnavailable, match="camera gone"):
        await handoff.get()


async def test_a_batch_wakes_the_consumer_at_once_and_arrives_whole() -> None:
    # The producer of a batch rationed already: no interval applies to it.
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=64, min_wake_interval_s=3600)
    assert await asyncio.to_thread(handoff.put, 0)
    assert await handoff.get_batch() == [0]
    waiting = asyncio.create_task(handoff.get_batch())
    await asyncio.sleep(0.05)
    assert await asyncio.to_thread(handoff.put_batch, [1, 2, 3])
    async with asyncio.timeout(1):
        assert await waiting == [1, 2, 3]


async def test_get_batch_takes_everything_queued_in_order_then_reports_the_end() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=16)

    def produce() -> None:
        assert handoff.put(1)
        assert handoff.put_batch([2, 3])
        assert handoff.put(4)
        handoff.finish("camera gone")
        assert handoff.put(5)  # after the end marker: never delivered

    await asyncio.to_thread(produce)
    assert await handoff.get_batch() == [1, 2, 3, 4]
    for _ in range(2):
        with pytest.raises(SourceUnavailable, match="camera gone"):
            await handoff.get_batch()


async def test_a_batch_that_does_not_fit_waits_for_room() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=4)
    assert await asyncio.to_thread(handoff.put_batch, [1, 2, 3])
    done = threading.Event()

    def produce() -> None:
        assert handoff.put_batch([4, 5, 6])  # 3 + 3 > 4: waits
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    await asyncio.sleep(0.2)
    assert not done.is_set()
    assert await handoff.get() == 1  # one place free is not enough for three
    await asyncio.sleep(0.2)
    assert not done.is_set()
    assert await handoff.get_batch() == [2, 3]
    await asyncio.to_thread(producer.join, 2.0)
    assert done.is_set()
    assert await handoff.get_batch() == [4, 5, 6]


async def test_a_batch_larger_than_the_capacity_goes_into_an_empty_queue() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=2)
    assert await asyncio.to_thread(handoff.put_batch, [1, 2, 3])
    assert await handoff.get_batch() == [1, 2, 3]


async def test_close_releases_a_producer_waiting_with_a_batch() -> None:
    handoff = ThreadHandoff[int](asyncio.get_running_loop(), capacity=2)
    assert await asyncio.to_thread(handoff.put_batch, [1, 2])
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(handoff.put_batch([3])))
    producer.start()
    await asyncio.sleep(0.1)
    handoff.close()
    await asyncio.to_thread(producer.join, 2.0)
    assert outcome == [False]
    assert not handoff.put_batch([4])
