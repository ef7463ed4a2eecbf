"""When a job's holds at the site expire and fall due again (central/retrieval/hold_renewal.py),
and the one-at-a-time turn of a job's holds (central/retrieval/turns.py)."""

from __future__ import annotations

import asyncio

import pytest

from central.retrieval.hold_renewal import HOLD_LIFETIME_S, HoldRenewal
from central.retrieval.turns import Turns
from shared.clock import NS_PER_S

PLACED_NS = 1_800_000_000 * NS_PER_S
DAY_NS = 86_400 * NS_PER_S


def test_holds_last_seven_days_and_are_renewed_after_half_of_them() -> None:
    renewal = HoldRenewal()
    assert HOLD_LIFETIME_S == 7 * 86_400
    assert renewal.expires_ns(PLACED_NS) == PLACED_NS + 7 * DAY_NS
    due_ns = renewal.next_placement_ns(PLACED_NS, refused=False)
    assert due_ns == PLACED_NS + 7 * DAY_NS // 2  # 3.5 days left when renewed


def test_a_refused_renewal_is_tried_three_more_times_before_the_old_hold_expires() -> None:
    renewal = HoldRenewal(8.0)
    placed_ns = PLACED_NS
    expires_ns = renewal.expires_ns(placed_ns)
    assert renewal.next_placement_ns(placed_ns, refused=False) == placed_ns + 4 * NS_PER_S
    tries = []
    at_ns = renewal.next_placement_ns(placed_ns, refused=False)
    while at_ns < expires_ns:  # each one refused: the old hold is all the job has
        tries.append(at_ns)
        at_ns = renewal.next_placement_ns(at_ns, refused=True)
    assert tries == [placed_ns + s * NS_PER_S for s in (4, 5, 6, 7)]  # renewal, 3 retries


@pytest.mark.parametrize("lifetime_s", [0.0, -1.0, 91 * 86_400.0, float("nan")])
def test_a_lifetime_a_site_would_not_take_is_refused_with_its_value(lifetime_s: float) -> None:
    with pytest.raises(ValueError, match="hold's lifetime") as caught:
        HoldRenewal(lifetime_s)
    assert repr(lifetime_s) in str(caught.value)


async def test_a_jobs_turn_is_taken_one_task_at_a_time_and_forgotten_after() -> None:
    locks = Turns[str]()
    order: list[str] = []
    first_inside = asyncio.Event()
    let_first_go = asyncio.Event()

    async def first() -> None:
        async with locks.turn("j-1"):
            order.append("first in")
            first_inside.set()
            await let_first_go.wait()
            order.append("first out")

    async def second() -> None:
        async with locks.turn("j-1"):
            order.append("second in")

    async def other_job() -> None:
        async with locks.turn("j-2"):
            order.append("other job in")

    one = asyncio.create_task(first())
    await first_inside.wait()
    two = asyncio.create_task(second())
    await asyncio.wait_for(other_job(), 1.0)  # another job's turn is not held up
    await asyncio.sleep(0.01)
    assert order == ["first in", "other job in"]  # the second waits for the first
    assert locks.waiting("j-1") == 2
    let_first_go.set()
    await asyncio.wait_for(asyncio.gather(one, two), 1.0)
    assert order == ["first in", "other job in", "first out", "second in"]
    assert locks.waiting("j-1") == 0
    assert locks.waiting("j-2") == 0


async def test_a_task_cancelled_while_waiting_for_a_turn_leaves_it_free() -> None:
    locks = Turns[str]()
    async with locks.turn("j-1"):
        waiter = asyncio.create_task(_take(locks, "j-1"))
        await asyncio.sleep(0.01)
        assert locks.waiting("j-1") == 2
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert locks.waiting("j-1") == 1
    assert locks.waiting("j-1") == 0
    await asyncio.wait_for(_take(locks, "j-1"), 1.0)


async def _take(locks: Turns[str], job_id: str) -> None:
    async with locks.turn(job_id):
        pass
