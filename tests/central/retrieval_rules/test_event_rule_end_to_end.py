"""Event retrieval rules end to end: a real site's input changes state, the event crosses the
real link, and the central's rule makes a job that brings the site's HQ chunks of the span.

The site (tests/link_io/link_site.py, in process, on loopback) records a synthetic camera's
HQ continuously and has two inputs, `door` and `gate`; the test switches them through the
site's own `InputDevice`s, which publish the events the link forwards. Two rules are made
through `/api/v1/retrieval-rules`:

- "Door": `input_active` of the door retrieves the camera's HQ around the event, the rule
  under test;
- "Gate": `input_inactive` of the gate retrieves the camera's LQ. It puts `input_inactive`
  among the kinds the central follows, so the door's `input_inactive` events (a kind the
  door rule does not name) and the gate's `input_active` events (a device it does not name)
  both cross the link and reach the rules, where they must make no job. Its jobs also tell
  the test two things without sleeping: that the central follows the site's events (the
  site replays nothing to a late subscriber), and that every event published before one of
  its events has been handled (the link delivers events in order, one subscription).

The events are dated a few seconds back (an input reports the instant its line changed), so
the whole span is recorded at the site when the job asks for it; an event dated now would
make the job rest `CATCH_UP_REST_S` (15 s) waiting for the recording to reach its end, which
tests/central/retrieval/ covers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_agent_config
from agent.input_device import InputDevice
from agent.system_events import SystemEvent, SystemEventKind
from central.retrieval.job_records import JobOrigin, RetrievalJob
from shared.api_input import format_instant
from shared.chain_verification import ChainLink, verify_stream
from shared.clock import NS_PER_S
from shared.store.chunk_meta import ChunkMeta
from tests.agent.site_config import small_camera, write_site_config
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.link_sites import add_link_site
from tests.link_io.link_site import LinkSite, running_site_of
from tests.retrieval_checker import RetrievalJob as CheckedSpan
from tests.retrieval_checker import check_retrieval

WAIT_S = 30.0
POLL_S = 0.1
LINKS = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"
BEFORE_S = 3
AFTER_S = 2
BURST_S = 1
"""The second door event comes this long after the first, inside the first one's span."""
DATED_BACK_S = 6
"""Events are dated this far back: the chunk holding the later span's end is stored by then."""
CAMERA = "cam-a"

DEVICES_TOML = (
    small_camera(CAMERA)
    + """
[[inputs]]
id = "door"
name = "Back door"
source = "synthetic"
period_s = 86400  # never toggles by itself during the test: the test switches it

[[inputs]]
id = "gate"
name = "Yard gate"
source = "synthetic"
period_s = 86400
"""
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait, bounded, until `condition()` holds."""
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                if await condition():
                    return
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT_S} s: {what}") from None


def _input(site: LinkSite, input_id: str) -> InputDevice:
    (device,) = [d for d in site.site.inputs if d.config.id == input_id]
    return device


def _dated_back(site: LinkSite) -> int:
    return site.clock.now_ns() - DATED_BACK_S * NS_PER_S


async def _switch(site: LinkSite, input_id: str, active: bool, at_ns: int) -> SystemEvent:
    """Switch the site's input; the event the site published for it (with its instant)."""
    await _input(site, input_id).set_state(active, at_ns=at_ns)
    kind = SystemEventKind.INPUT_ACTIVE if active else SystemEventKind.INPUT_INACTIVE
    recent = site.site.events.recent()
    published = [e for e in recent if (e.kind, e.device_id) == (kind, input_id)]
    assert published, f"the site published no {kind} of {input_id}"
    return published[-1]


async def _rule_jobs(central: RunningCentral, rule_id: str) -> list[RetrievalJob]:
    jobs = await asyncio.to_thread(central.node.catalog.retrieval_jobs, limit=1000)
    return sorted((j for j in jobs if j.rule_id == rule_id), key=lambda j: j.start_ns)


async def _job_ending(central: RunningCentral, rule_id: str, end_ns: int) -> None:
    """Wait until the rule made a job ending at `end_ns`."""

    async def made() -> bool:
        return any(j.end_ns == end_ns for j in await _rule_jobs(central, rule_id))

    await _until(made, f"a job of rule {rule_id} ending at {format_instant(end_ns)}")


async def _job_ended(central: RunningCentral, job_id: str) -> dict[str, Any]:
    """The job as the API shows it once it is completed or failed."""
    ended: dict[str, Any] = {}

    async def final() -> bool:
        status, job = await central.call("GET", f"/retrievals/{job_id}")
        assert status == 200, job
        ended.update(job)
        return job["state"] in ("completed", "failed", "stopped")

    await _until(final, f"job {job_id} ended")
    return ended


async def _recorded_for(site: LinkSite, seconds: int) -> None:
    """Wait until the site's HQ of the camera begins at least `seconds` before now."""

    async def recorded() -> bool:
        metas = await asyncio.to_thread(site.store.chunk_metas, CAMERA, "hq", 0, 1 << 62)
        return bool(metas) and metas[0].header.start_ns <= site.clock.now_ns() - seconds * NS_PER_S

    await _until(recorded, f"the site recorded {CAMERA}/hq for {seconds} s")


async def _add_rule(central: RunningCentral, **body: object) -> dict[str, Any]:
    status, rule = await central.call("POST", "/retrieval-rules", json=body)
    assert status == 201, rule
    assert isinstance(rule, dict)
    return rule


async def _followed(central: RunningCentral, site: LinkSite, gate_rule_id: str) -> int:
    """Close the gate until the gate rule made a job: the central follows the site's events.
    Each round opens the gate first (an event of a device the door rule does not name).
    The instant of the last round's events."""
    async with asyncio.timeout(WAIT_S):
        while True:
            at_ns = _dated_back(site)
            await _switch(site, "gate", True, at_ns)
            await _switch(site, "gate", False, at_ns)
            for _ in range(10):
                if await _rule_jobs(central, gate_rule_id):
                    return at_ns
                await asyncio.sleep(POLL_S)


async def _site_hq(site: LinkSite, start_ns: int, end_ns: int) -> list[ChunkMeta]:
    """The camera's HQ chunks at the site overlapping [start_ns, end_ns)."""
    return await asyncio.to_thread(site.store.chunk_metas, CAMERA, "hq", start_ns, end_ns)


async def _central_hq(
    central: RunningCentral, site: LinkSite, start_ns: int, end_ns: int
) -> list[ChunkMeta]:
    """The camera's HQ chunks at the central overlapping [start_ns, end_ns)."""
    return await asyncio.to_thread(
        central.node.store.chunk_metas, CAMERA, "hq", start_ns, end_ns, site_id=site.site_id
    )


async def test_a_site_input_event_retrieves_its_span_once_and_other_events_nothing(
    tmp_path: Path,
) -> None:
    config = load_agent_config(write_site_config(tmp_path / "site", DEVICES_TOML))
    async with (
        running_site_of(config) as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        door_rule = await _add_rule(
            central,
            name="Door",
            kind="event",
            device_ids=[ids[CAMERA]],
            events=["input_active"],
            sources=[ids["door"]],
            before_s=BEFORE_S,
            after_s=AFTER_S,
        )
        gate_rule = await _add_rule(
            central,
            name="Gate",
            kind="event",
            device_ids=[ids[CAMERA]],
            quality="lq",
            events=["input_inactive"],
            sources=[ids["gate"]],
            before_s=1,
            after_s=1,
        )
        await _recorded_for(site, DATED_BACK_S + BEFORE_S + 1)
        probed_ns = await _followed(central, site, gate_rule["id"])

        # The door opens; it closes (a kind the rule does not name) and opens again inside
        # the first span (a burst); then it bounces: closed and open at that same instant.
        first = await _switch(site, "door", True, _dated_back(site))
        await _switch(site, "door", False, first.at_ns + NS_PER_S // 2)
        second = await _switch(site, "door", True, first.at_ns + BURST_S * NS_PER_S)
        await _switch(site, "door", False, second.at_ns)
        bounce = await _switch(site, "door", True, second.at_ns)
        assert bounce.at_ns == second.at_ns
        # The gate opens (a device the rule does not name), then closes: once the gate rule
        # made that job, the central has handled every event before it.
        await _switch(site, "gate", True, second.at_ns)
        marker = await _switch(site, "gate", False, second.at_ns)
        await _job_ending(central, gate_rule["id"], marker.at_ns + NS_PER_S)
        # Nor did the door's `input_inactive` make a job of the gate rule (not its device).
        gate_jobs = await _rule_jobs(central, gate_rule["id"])
        after_probing = [j.end_ns for j in gate_jobs if j.end_ns > probed_ns + NS_PER_S]
        assert after_probing == [marker.at_ns + NS_PER_S]

        jobs = await _rule_jobs(central, door_rule["id"])
        spans = [(j.start_ns, j.end_ns) for j in jobs]
        assert spans == [
            (first.at_ns - BEFORE_S * NS_PER_S, first.at_ns + AFTER_S * NS_PER_S),
            (first.at_ns + AFTER_S * NS_PER_S, second.at_ns + AFTER_S * NS_PER_S),
        ]  # the burst queued only what lay after the first span; the bounce nothing
        for job in jobs:
            assert job.origin is JobOrigin.RULE
            assert job.device_ids == (ids[CAMERA],)
            assert job.quality == "hq"
        whole_start_ns, whole_end_ns = spans[0][0], spans[-1][1]
        at_site = await _site_hq(site, whole_start_ns, whole_end_ns)
        assert at_site[0].header.start_ns <= whole_start_ns  # the site recorded all of it
        assert at_site[-1].header.end_ns >= whole_end_ns

        for job, (start_ns, end_ns) in zip(jobs, spans, strict=True):
            shown = await _job_ended(central, job.job_id)
            assert shown["state"] == "completed", shown
            assert shown["origin"] == "rule"
            assert shown["rule_id"] == door_rule["id"]
            assert shown["start"] == format_instant(start_ns)
            assert shown["end"] == format_instant(end_ns)
            (progress,) = shown["progress"]
            assert progress["fraction"] == 1.0
            wanted = await _site_hq(site, start_ns, end_ns)
            assert progress["chunks"] == len(wanted)
            held = await _central_hq(central, site, start_ns, end_ns)
            assert [m.seq for m in held] == [m.seq for m in wanted]
            assert held[0].header.start_ns <= start_ns
            assert held[-1].header.end_ns >= end_ns

        # Every chunk of the whole span at the central once, the site's bytes, verified.
        at_central = await _central_hq(central, site, whole_start_ns, whole_end_ns)
        check_retrieval(
            CheckedSpan(site.site_id, frozenset({(CAMERA, "hq")}), whole_start_ns, whole_end_ns),
            site=at_site,
            central=at_central,
            history=(),
        ).assert_clean()
        copies = await asyncio.to_thread(
            central.node.store.read_chunks,
            CAMERA,
            "hq",
            whole_start_ns,
            whole_end_ns,
            site_id=site.site_id,
        )
        originals = await asyncio.to_thread(
            site.store.read_chunks, CAMERA, "hq", whole_start_ns, whole_end_ns
        )
        assert copies == originals
        head = copies[0].header
        verified = verify_stream(
            copies,
            public_key=site.signer.public_key,
            site_id=site.site_id,
            device_id=CAMERA,
            stream="hq",
            anchor=ChainLink(head.seq - 1, head.prev_chunk_hash) if head.seq else None,
        )
        assert verified.ok, verified.problems
        assert verified.chunks_authentic == len(copies)
        receipts = await asyncio.to_thread(
            central.node.receipts.receipts, [c.chunk_hash for c in copies]
        )
        assert len(receipts) == len(copies)
