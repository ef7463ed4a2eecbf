"""Worker threads of a source: crash reporting and stopping."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest

from agent.sources.base import SourceUnavailable
from agent.sources.handoff import ThreadHandoff
from agent.sources.workers import SourceWorkers, crash_reporter


def ignore(reason: str) -> None:
    """An `on_crash` for workers that do not crash."""


async def test_a_crashing_worker_fails_the_pending_open_and_the_stream() -> None:
    loop = asyncio.get_running_loop()
    handoff = ThreadHandoff[int](loop, capacity=2)
    workers = SourceWorkers(loop, name="test")
    opening: asyncio.Future[dict[str, int]] = loop.create_future()

    def broken() -> None:
        raise KeyError("a bug")

    workers.start("encoder", broken, crash_reporter(loop, opening, handoff.finish, "cam 1"))
    with pytest.raises(SourceUnavailable, match=r"^cam 1: encoder worker failed: KeyError$"):
        await opening
    with pytest.raises(SourceUnavailable, match="encoder worker failed"):
        await handoff.get()
    assert await workers.stop(timeout_s=1.0)


async def test_stop_sets_the_flag_and_waits_for_every_thread() -> None:
    loop = asyncio.get_running_loop()
    workers = SourceWorkers(loop, name="test")
    finished: list[str] = []

    def worker(role: str) -> None:
        workers.stop_requested.wait()
        finished.append(role)

    for role in ("hq", "lq"):
        workers.start(role, functools.partial(worker, role), on_crash=ignore)
    assert not workers.stopping
    assert await workers.stop(timeout_s=2.0)
    assert sorted(finished) == ["hq", "lq"]


async def test_stop_gives_up_on_a_stuck_thread_after_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    workers = SourceWorkers(loop, name="test")
    release = threading.Event()
    workers.start("stuck", functools.partial(release.wait, 5), on_crash=ignore)
    assert not await workers.stop(timeout_s=0.1)
    release.set()
    assert await workers.stop(timeout_s=2.0)
