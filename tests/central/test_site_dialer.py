"""The pace at which the central starts dialling its sites: a burst at once, then one per
interval, in the order asked; and a site that refuses is reported unreachable after its
turn."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import pytest

from central.catalog.records import NewSite
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.site_dialer import DialPacing, SiteDialer
from shared.clock import NS_PER_S, ManualClock, SystemClock
from shared.link_io.dialing import DialError, DialFailure
from tests.central.api.agent_sites import free_port


async def _starts(pacing: DialPacing, clock: ManualClock, count: int) -> list[float]:
    """When each of `count` attempts, asked one after the other, may start (seconds)."""
    starts = []
    for _ in range(count):
        await pacing.turn()
        starts.append(clock.monotonic_ns() / NS_PER_S)
    return starts


async def test_a_burst_starts_at_once_then_one_per_interval() -> None:
    clock = ManualClock()
    pacing = DialPacing(clock, per_s=10, burst=3)
    assert await _starts(pacing, clock, 6) == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


async def test_after_a_quiet_while_a_whole_burst_starts_at_once_again() -> None:
    clock = ManualClock()
    pacing = DialPacing(clock, per_s=10, burst=3)
    await _starts(pacing, clock, 6)
    clock.advance(10)
    assert await _starts(pacing, clock, 4) == pytest.approx([10.3, 10.3, 10.3, 10.4])


async def test_attempts_start_in_the_order_they_asked() -> None:
    pacing = DialPacing(SystemClock(), per_s=1000, burst=2)
    asked: list[int] = []
    started: list[int] = []

    async def attempt(number: int) -> None:
        asked.append(number)
        await pacing.turn()
        started.append(number)

    await asyncio.gather(*(attempt(n) for n in random.Random(3).sample(range(20), 20)))
    assert sorted(started) == list(range(20))
    assert started == asked


async def test_a_site_that_refuses_is_unreachable(tmp_path: Path) -> None:
    catalog = await asyncio.to_thread(
        SqliteCatalog.open,
        tmp_path / "catalog.sqlite",
        clock=SystemClock(),
        secret_box=SecretBox.load_or_create(tmp_path / "secret.key"),
    )
    try:
        port = free_port()  # nothing listens there
        site, _ = await asyncio.to_thread(
            catalog.add_site,
            NewSite(name="Shut", dial="central", address="127.0.0.1", port=port,
                    scheme="http", username="u"),
            "pw",
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            dialer = SiteDialer(
                http, catalog, clock=SystemClock(), software="test", read_timeout_s=5
            )
            with pytest.raises(DialError) as refused:
                async with dialer(site):
                    pass
        assert refused.value.kind is DialFailure.UNREACHABLE
        assert f"127.0.0.1:{port}" in str(refused.value)
    finally:
        catalog.close()


def test_a_pace_needs_a_rate_and_a_burst() -> None:
    with pytest.raises(ValueError, match="per_s > 0"):
        DialPacing(ManualClock(), per_s=0, burst=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        DialPacing(ManualClock(), per_s=1, burst=0)
