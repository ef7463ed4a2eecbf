"""The central recording rules end to end: a real central and a real site on loopback, the
rule set through the central's API (`PATCH /devices/{id}` with `central_rule`), and the chunks
the central stores checked against what happened at the site: around the camera's motion
(synthetic motion, found by the site's own motion detection), around an input's changes
(the input toggled at the site), inside a weekly schedule that includes now, and nothing for
one that excludes it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import load_agent_config
from agent.event_hub import Subscription
from agent.system_events import SystemEvent
from shared.clock import NS_PER_S
from shared.recording_gate import DAY_NAMES
from tests.agent.site_config import small_camera, write_site_config
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.link_sites import add_link_site
from tests.link_io.link_site import LinkSite, running_site_of

WAIT_S = 60.0
PRE_S = 1.0
POST_S = 1.0
# Chunks meet end to end at the site; between two stored ones a few milliseconds of rounding.
JOIN_TOLERANCE_NS = NS_PER_S // 10
# How long after the site publishes an event the central may still store chunks it offered
# before the event reached it (the link's delay, on loopback).
ANNOUNCE_SLACK_NS = NS_PER_S // 2

# cam-a moves for 2 s every 10 s (a window of 4 s with the buffers, then 6 s of nothing);
# the inputs change only when the test says.
DEVICES = (
    small_camera("cam-a", motion_period_s=10.0, motion_duration_s=2.0)
    + small_camera("cam-b")
    + """
[[inputs]]
id = "door"
name = "Back door"
period_s = 86400

[[inputs]]
id = "gate"
name = "Yard gate"
period_s = 86400
"""
)

Span = tuple[int, int]


@contextlib.asynccontextmanager
async def _site_and_central(
    tmp_path: Path,
) -> AsyncIterator[tuple[LinkSite, RunningCentral, dict[str, str]]]:
    """The site added to the central and online; the central's device ids by the site's."""
    path = write_site_config(tmp_path / "site", DEVICES)
    async with (
        running_site_of(load_agent_config(path)) as site,
        running_central(tmp_path / "central") as central,
    ):
        site_id, ids = await add_link_site(central, site)
        async with asyncio.timeout(WAIT_S):
            while True:
                _, body = await central.call("GET", f"/sites/{site_id}")
                if body["status"]["state"] == "online":
                    break
                await asyncio.sleep(0.1)
        yield site, central, ids


class _SiteEvents:
    """Every event the site publishes from now on, as the site's clock dated it, and when
    (on the site's clock) it was published."""

    def __init__(self, site: LinkSite) -> None:
        self.seen: list[tuple[SystemEvent, int]] = []
        self._clock = site.clock
        self._subscription: Subscription = site.site.events.subscribe()
        self._reading = asyncio.create_task(self._read(), name="site-events")

    async def _read(self) -> None:
        while True:
            event = await self._subscription.queue.get()
            self.seen.append((event, self._clock.now_ns()))

    async def close(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._subscription.close()

    def windows(
        self, device_id: str, started: str, ended: str, *, as_announced: bool = False
    ) -> list[tuple[int, int | None]]:
        """(start, end) of each time `device_id` was active (end None: not over yet), the end
        as the event dates it, or `as_announced`: when it was published, if later."""
        found: list[tuple[int, int | None]] = []
        for event, published_ns in self.seen:
            if event.device_id != device_id:
                continue
            if event.kind == started and (not found or found[-1][1] is not None):
                found.append((event.at_ns, None))
            elif event.kind == ended and found and found[-1][1] is None:
                end_ns = max(event.at_ns, published_ns) if as_announced else event.at_ns
                found[-1] = (found[-1][0], end_ns)
        return found


async def _set_rule(
    central: RunningCentral, device_id: str, rule: dict[str, Any]
) -> dict[str, Any]:
    status, body = await central.call(
        "PATCH",
        f"/devices/{device_id}",
        json={"recording": "central_only", "central_rule": rule},
    )
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def _stored(central: RunningCentral, site: LinkSite, camera: str) -> list[Span]:
    """Spans of the chunks of `camera`'s reference stream stored at the central, in order."""
    metas = await asyncio.to_thread(
        central.node.store.chunk_metas, camera, "lq", 0, 1 << 62, site_id=site.site_id
    )
    return [(meta.header.start_ns, meta.header.end_ns) for meta in metas]


async def _recording_status(central: RunningCentral, device_id: str) -> dict[str, Any]:
    status, body = await central.call("GET", f"/devices/{device_id}/recording")
    assert status == 200, body
    return body["status"] or {}


def _covers(chunks: list[Span], span: Span) -> bool:
    """Whether chunks meeting end to end cover all of `span`."""
    start, end = span
    reached: int | None = None
    for chunk_start, chunk_end in chunks:
        if chunk_end <= start:
            continue
        if reached is None:
            if chunk_start > start:
                return False
            reached = chunk_end
        elif chunk_start > reached + JOIN_TOLERANCE_NS:
            return False
        else:
            reached = max(reached, chunk_end)
        if reached >= end:
            return True
    return False


def _overlaps(chunk: Span, span: Span) -> bool:
    return chunk[0] < span[1] and chunk[1] > span[0]


def _buffered(window: tuple[int, int | None]) -> Span:
    """A trigger's window with the rule's pre- and post-buffer."""
    start, end = window
    return (
        start - round(PRE_S * NS_PER_S),
        (1 << 62) if end is None else end + round(POST_S * NS_PER_S),
    )


async def _until_covered(
    central: RunningCentral, site: LinkSite, camera: str, spans: list[Span]
) -> list[Span]:
    """The stored chunks, once they cover every span (bounded polling)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            chunks = await _stored(central, site, camera)
            if all(_covers(chunks, span) for span in spans):
                return chunks
            await asyncio.sleep(0.2)


async def _until_skipped(central: RunningCentral, device_id: str, more_than: int) -> int:
    """The rule's count of chunks left out, once it is above `more_than`."""
    async with asyncio.timeout(WAIT_S):
        while True:
            skipped = int((await _recording_status(central, device_id)).get("chunks_not_wanted", 0))
            if skipped > more_than:
                return skipped
            await asyncio.sleep(0.2)


async def test_motion_rule_stores_the_motion_windows_with_their_buffers_and_nothing_else(
    tmp_path: Path,
) -> None:
    async with _site_and_central(tmp_path) as (site, central, ids):
        events = _SiteEvents(site)
        try:
            rule = {"mode": "motion", "pre_buffer_s": PRE_S, "post_buffer_s": POST_S}
            body = await _set_rule(central, ids["cam-a"], rule)
            assert body["recording"] == "central_only"
            # Motion the central saw from the start: windows that began after its recording
            # of the stream did (with a margin for the pull to start).
            recording_from = site.clock.now_ns() + 3 * NS_PER_S
            async with asyncio.timeout(WAIT_S):
                while True:
                    windows = events.windows("cam-a", "motion_started", "motion_ended")
                    complete = [
                        (start, end)
                        for start, end in windows
                        if end is not None and start - PRE_S * NS_PER_S > recording_from
                    ]
                    if len(complete) >= 2:
                        break
                    await asyncio.sleep(0.2)
            spans = [_buffered(window) for window in complete]
            chunks = await _until_covered(central, site, "cam-a", spans)
            # The gap between windows was left out, and what is stored lies in a window. The
            # site announces the end of motion once its detector saw none for its hold time
            # (dating it back to the last motion); until then the trigger is open and the
            # central stores what comes, so a window may reach to the announcement (plus the
            # time its event takes to the central), never further.
            await _until_skipped(central, ids["cam-a"], 0)
            announced = events.windows("cam-a", "motion_started", "motion_ended", as_announced=True)
            every_window = [(lo, hi + ANNOUNCE_SLACK_NS) for lo, hi in map(_buffered, announced)]
            chunks = await _stored(central, site, "cam-a")
            outside = [c for c in chunks if not any(_overlaps(c, w) for w in every_window)]
            assert outside == [], (outside, every_window)
            # Not everything the site recorded: the site holds chunks between the windows.
            at_site = await asyncio.to_thread(
                site.store.chunk_metas, "cam-a", "lq", chunks[0][0], chunks[-1][1]
            )
            assert len(at_site) > len([c for c in chunks if c[0] >= chunks[0][0]])
        finally:
            await events.close()


async def test_event_rule_stores_around_the_input_that_changed_at_the_site(
    tmp_path: Path,
) -> None:
    async with _site_and_central(tmp_path) as (site, central, ids):
        # Only the door triggers this camera (a list of the central's input ids; without
        # one, every input of the site would).
        status, body = await central.call(
            "PATCH",
            f"/devices/{ids['cam-b']}",
            json={"central_rule": {"mode": "motion", "trigger_inputs": [ids["door"]]}},
        )
        assert (status, body["error"]["field"]) == (400, "central_rule.trigger_inputs"), body
        for wrong, problem in [
            ("no-such-device", "no device"),
            (ids["cam-a"], "not an input"),
        ]:
            status, body = await central.call(
                "PATCH",
                f"/devices/{ids['cam-b']}",
                json={"central_rule": {"mode": "event", "trigger_inputs": [wrong]}},
            )
            assert (status, body["error"]["field"]) == (400, "central_rule.trigger_inputs")
            assert problem in body["error"]["message"], body
        rule = {
            "mode": "event",
            "pre_buffer_s": PRE_S,
            "post_buffer_s": POST_S,
            "trigger_inputs": [ids["door"]],
        }
        body = await _set_rule(central, ids["cam-b"], rule)
        assert body["central_rule"]["trigger_inputs"] == [ids["door"]]
        # Relayed, nothing triggered: left out; the gate opening triggers nothing either.
        await _until_skipped(central, ids["cam-b"], 2)
        gate = next(d for d in site.site.inputs if d.config.id == "gate")
        await gate.set_state(True)
        skipped = int((await _recording_status(central, ids["cam-b"]))["chunks_not_wanted"])
        await _until_skipped(central, ids["cam-b"], skipped + 3)
        await gate.set_state(False)
        assert await _stored(central, site, "cam-b") == []
        door = next(d for d in site.site.inputs if d.config.id == "door")
        opened_ns = site.clock.now_ns()
        await door.set_state(True, at_ns=opened_ns)
        async with asyncio.timeout(WAIT_S):
            while site.clock.now_ns() < opened_ns + 3 * NS_PER_S:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        closed_ns = site.clock.now_ns()
        await door.set_state(False, at_ns=closed_ns)
        window = _buffered((opened_ns, closed_ns))
        chunks = await _until_covered(central, site, "cam-b", [window])
        skipped = int((await _recording_status(central, ids["cam-b"]))["chunks_not_wanted"])
        await _until_skipped(central, ids["cam-b"], skipped + 2)  # left out again after it
        chunks = await _stored(central, site, "cam-b")
        assert [c for c in chunks if not _overlaps(c, window)] == []


async def test_schedule_rule_records_inside_the_schedule_and_nothing_outside(
    tmp_path: Path,
) -> None:
    async with _site_and_central(tmp_path) as (site, central, ids):
        site_id = (await central.call("GET", f"/devices/{ids['cam-a']}"))[1]["site_id"]
        zone = ZoneInfo(central.node.catalog.site(site_id).time_zone)
        today = datetime.datetime.now(zone).weekday()
        tomorrow = (today + 1) % 7
        far = (today + 3) % 7
        around_now = [f"{DAY_NAMES[today]},{DAY_NAMES[tomorrow]} 00:00-24:00"]
        not_now = [f"{DAY_NAMES[far]} 00:00-24:00"]
        await _set_rule(central, ids["cam-a"], {"mode": "schedule", "schedule": around_now})
        await _set_rule(central, ids["cam-b"], {"mode": "schedule", "schedule": not_now})
        async with asyncio.timeout(WAIT_S):
            while len(await _stored(central, site, "cam-a")) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        await _until_skipped(central, ids["cam-b"], 3)
        assert await _stored(central, site, "cam-b") == []
        status = await _recording_status(central, ids["cam-a"])
        assert status["chunks_not_wanted"] == 0
