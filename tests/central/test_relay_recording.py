"""The central records a site's live stream with the site's own signatures, over a real link.

The site is the real agent on loopback (synthetic camera encoding H.264, LMDB store, HTTPS
API and link); the central dials it with `connect_to_site`, records `cam-1/lq` (stored at the
site, continuous) or `cam-1/hq` (relay-only at the site) into its own store, which is opened
without a home site as the central's is, and the result is compared with the site's store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from agent.config import load_agent_config
from central.ingest_writer import IngestWriter
from central.relay_recorder import DEFAULT_MAX_PACKET_AGE_NS, ChunkMissed
from central.relay_recording import GatedItem, RelayRecording, rule_gate
from shared.chunk import ChunkHeader, SignedChunk
from shared.clock import NS_PER_S, SystemClock
from shared.link import events as ev
from shared.link import messages as m
from shared.link_io.client import LinkClient
from shared.link_io.dialing import connect_to_site
from shared.recording_gate import RecordingGate
from shared.store.chunk_store import ChunkStore
from shared.transfer_acceptance import TransferExpectation
from tests.agent.site_config import small_camera, write_site_config
from tests.link_io.link_site import LinkSite, running_site_of

PASSWORD = "admin-pw"  # the account tests/agent/site_config.py writes
QUOTA_BYTES = 64 * 1024 * 1024
ALL_TIME = (0, 1 << 62)
WAIT_S = 30.0
LiveItem = ev.LiveReceived | ev.LiveSealedReceived


@dataclass(frozen=True)
class Rule:
    """A central recording rule, as central/central_rule.py stores one."""

    mode: str
    pre_buffer_s: float = 0.0
    post_buffer_s: float = 0.0
    schedule: tuple[str, ...] = ()


@contextlib.asynccontextmanager
async def running_site(directory: Path) -> AsyncIterator[LinkSite]:
    """One camera: lq stored continuously, hq relay-only, a moving box for 1.5 s every 8 s
    (the detector ends a motion after 3 s of quiet)."""
    camera = small_camera("cam-1", hq_mode="relay_only", motion_period_s=8.0, motion_duration_s=1.5)
    config = load_agent_config(write_site_config(directory / "site", camera))
    async with running_site_of(config, read_timeout_s=5.0, seed=5) as site:
        yield site


@contextlib.asynccontextmanager
async def central_link(site: LinkSite) -> AsyncIterator[LinkClient]:
    async with (
        aiohttp.ClientSession() as http,
        connect_to_site(
            http,
            f"https://127.0.0.1:{site.port}",
            username="admin",
            password=PASSWORD,
            fingerprint=site.identity.fingerprint,
            clock=site.clock,
            software="test-central",
            read_timeout_s=5.0,
        ) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def central_store(directory: Path, clock: SystemClock) -> AsyncIterator[ChunkStore]:
    store = await asyncio.to_thread(
        ChunkStore.open,
        directory / "central",
        quota_bytes=QUOTA_BYTES,
        hold_budget_bytes=0,
        clock=clock,
    )
    try:
        yield store
    finally:
        store.close()


@dataclass
class Tap:
    """Watches the live stream on its way to the recording, and may damage it in transit."""

    alter: Callable[[LiveItem, Tap], LiveItem | None] = lambda item, _: item
    seals: list[ChunkHeader] = field(default_factory=list)  # every seal that came, decoded

    async def wrap(self, items: AsyncIterator[LiveItem]) -> AsyncIterator[LiveItem]:
        async for item in items:
            if isinstance(item, ev.LiveSealedReceived):
                self.seals.append(ChunkHeader.decode(item.header))
            altered = self.alter(item, self)
            if altered is not None:
                yield altered


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT_S / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


@contextlib.asynccontextmanager
async def recording_running(
    recording: RelayRecording, client: LinkClient, tap: Tap
) -> AsyncIterator[None]:
    stream = recording.expectation.stream
    async with client.live_with_seals("cam-1", stream) as items:
        task = asyncio.create_task(recording.record(tap.wrap(items)))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await recording.close()


def new_recording(
    site: LinkSite,
    store: ChunkStore,
    stream: str,
    gate: RecordingGate[GatedItem],
    *,
    max_packet_age_ns: int = DEFAULT_MAX_PACKET_AGE_NS,
    trigger_inputs: frozenset[str] | None = None,
    on_missed: Callable[[ChunkMissed], None] | None = None,
) -> RelayRecording:
    return RelayRecording(
        expectation=TransferExpectation(site.site_id, "cam-1", stream, site.signer.public_key),
        store=store,
        sink=IngestWriter(store, None),
        gate=gate,
        clock=site.clock,
        max_packet_age_ns=max_packet_age_ns,
        trigger_inputs=trigger_inputs,
        on_missed=on_missed,
    )


async def stored_chunks(store: ChunkStore, site: LinkSite, stream: str) -> list[SignedChunk]:
    return await asyncio.to_thread(
        store.read_chunks, "cam-1", stream, *ALL_TIME, site_id=site.site_id
    )


async def assert_identical_to_the_sites(site: LinkSite, chunks: list[SignedChunk]) -> None:
    for chunk in chunks:
        original = await asyncio.to_thread(site.store.read_chunk, "cam-1", "lq", chunk.header.seq)
        assert original is not None, f"the site has no lq chunk {chunk.header.seq}"
        assert chunk.header_bytes == original.header_bytes
        assert chunk.signature == original.signature
        assert chunk.payload == original.payload


def joined_mid_chunk(recording: RelayRecording) -> set[int]:
    """Seqs missed only because the stream was joined in the middle of them (at most the
    first chunk: the site's cached GOP may begin after the chunk its next seal names)."""
    missed = set()
    for problem in recording.status.recent_problems:
        if "joined mid-chunk" in problem:
            missed.add(int(problem.split("seq ")[1].split(":")[0]))
    assert len(missed) <= 1, recording.status.recent_problems
    return missed


def overlapping(seals: list[ChunkHeader], windows: list[tuple[int, int]]) -> set[int]:
    return {
        h.seq
        for h in seals
        for lo_ns, hi_ns in windows
        if max(h.end_ns, h.start_ns + 1) > lo_ns and h.start_ns < hi_ns
    }


# -- the tests ----------------------------------------------------------------------------------


async def test_always_stores_every_chunk_byte_for_byte_as_the_site_did(tmp_path: Path) -> None:
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        assert client.connection.live_sealed_agreed
        viewed: list[int] = []
        recording = RelayRecording(
            expectation=TransferExpectation(site.site_id, "cam-1", "lq", site.signer.public_key),
            store=store,
            sink=IngestWriter(store, None),
            gate=rule_gate(Rule("always"), time_zone="UTC"),
            clock=site.clock,
            on_live=lambda item: viewed.append(len(item.packets)),
        )
        task = asyncio.create_task(recording.run(client))
        try:
            await until(lambda: recording.status.chunks_stored >= 4, "four chunks stored")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        chunks = await stored_chunks(store, site, "lq")
        await assert_identical_to_the_sites(site, chunks)
        seqs = [c.header.seq for c in chunks]
        assert len(seqs) >= 4
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none skipped
        status = recording.status
        assert status.chunks_stored == len(seqs)
        assert status.chunks_refused == 0
        assert status.chunks_missed == len(joined_mid_chunk(recording))
        assert status.notice is None
        assert sum(viewed) > 0  # the packets went to the viewers' fan-out too


async def test_a_packet_lost_in_transit_misses_its_chunk_and_forged_seals_are_refused(
    tmp_path: Path,
) -> None:
    dropped: list[int] = []

    def damage(item: LiveItem, tap: Tap) -> LiveItem | None:
        sealed = len(tap.seals)
        if isinstance(item, ev.LiveReceived):
            # The first packets after the second seal belong to the third sealed chunk.
            lose = [p for p in item.packets if not p.keyframe]
            if sealed == 2 and not dropped and lose:
                dropped.append(lose[0].pts)
                return replace(item, packets=tuple(p for p in item.packets if p is not lose[0]))
            return item
        if sealed == 5:  # the fifth seal: a signature that is not the site's
            return replace(item, signature=bytes(64))
        if sealed == 6:  # the sixth: one byte of the header changed
            return replace(item, header=item.header[:-1] + bytes([item.header[-1] ^ 1]))
        return item

    tap = Tap(damage)
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        recording = new_recording(site, store, "lq", rule_gate(Rule("always"), time_zone="UTC"))
        async with recording_running(recording, client, tap):
            await until(lambda: recording.status.chunks_stored >= 5, "chunks after the damage")
            await until(lambda: len(tap.seals) >= 8, "eight seals")
        lost, forged, altered = tap.seals[2].seq, tap.seals[4].seq, tap.seals[5].seq
        status = recording.status
        problems = "\n".join(status.recent_problems)
        assert f"missed chunk seq {lost}: packet" in problems
        assert f"(pts {dropped[0]}) did not arrive" in problems
        for seq in (forged, altered):
            reason = f"chunk cam-1/lq #{seq}: the signature does not verify"
            assert f"refused chunk seq {seq}: {reason}" in problems
        assert status.chunks_refused == 2
        chunks = await stored_chunks(store, site, "lq")
        await assert_identical_to_the_sites(site, chunks)
        seqs = {c.header.seq for c in chunks}
        assert not seqs & {lost, forged, altered}
        # Everything else the site sealed while the recording ran was stored, after the
        # damage too.
        wanted = {h.seq for h in tap.seals[:8]} - {lost, forged, altered}
        assert wanted - joined_mid_chunk(recording) <= seqs
        assert tap.seals[7].seq in seqs


async def test_a_stream_the_site_does_not_store_is_relayed_but_never_recorded(
    tmp_path: Path,
) -> None:
    tap = Tap()
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        recording = new_recording(
            site,
            store,
            "hq",
            rule_gate(Rule("always"), time_zone="UTC"),
            max_packet_age_ns=NS_PER_S,
        )
        async with recording_running(recording, client, tap):
            await until(lambda: recording.status.unsealed_packets_dropped >= 20, "unsealed packets")
        status = recording.status
        assert tap.seals == []  # the site sealed nothing of its relay-only stream
        assert await stored_chunks(store, site, "hq") == []
        assert status.chunks_stored == status.chunks_missed == 0
        assert status.notice is not None
        assert "the site does not store this stream" in status.notice
        assert "cannot record it with the site's signatures" in status.notice
        site_hq = await asyncio.to_thread(site.store.stream_head, "cam-1", "hq")
        assert site_hq is None


async def test_manual_stores_only_between_start_and_stop(tmp_path: Path) -> None:
    tap = Tap()
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        recording = new_recording(site, store, "lq", rule_gate(Rule("manual"), time_zone="UTC"))
        async with recording_running(recording, client, tap):
            await until(lambda: len(tap.seals) >= 2, "two seals before the start")
            assert recording.status.chunks_stored == 0
            start_ns = recording.stream_now_ns()
            await recording.manual_start(start_ns)
            await until(lambda: len(tap.seals) >= 5, "seals while recording")
            stop_ns = recording.stream_now_ns()
            recording.manual_stop(stop_ns)
            await until(lambda: len(tap.seals) >= 8, "seals after the stop")
        chunks = await stored_chunks(store, site, "lq")
        await assert_identical_to_the_sites(site, chunks)
        seqs = {c.header.seq for c in chunks}
        expected = overlapping(tap.seals, [(start_ns, stop_ns)]) - joined_mid_chunk(recording)
        assert seqs == expected
        assert 2 <= len(seqs) < len(tap.seals)
        status = recording.status
        # The chunks before the start were left out; those after the stop wait in the
        # pre-buffer (for a trigger that would come late) until they are too old. Every seal
        # went through the gate: a chunk joined in the middle of as the span of a missed one.
        assert status.chunks_not_wanted >= 2
        assert status.chunks_not_wanted + status.chunks_pre_buffered + len(seqs) == len(tap.seals)


async def test_under_a_triggered_rule_a_missed_chunk_is_a_hole_where_the_rule_wants_it(
    tmp_path: Path,
) -> None:
    # Rule `manual` with a pre-buffer longer than the test: a chunk missed before the start
    # waits in the pre-buffer like a chunk, and the start releases it as a hole to fill; a
    # chunk missed after the stop is not wanted (yet), so it is only counted.
    lost_after: list[int] = []  # how many seals had come when each packet was lost
    holes: list[ChunkMissed] = []

    def lose_a_packet(item: LiveItem, tap: Tap) -> LiveItem | None:
        sealed = len(tap.seals)
        if isinstance(item, ev.LiveReceived) and sealed in (2, 7) and sealed not in lost_after:
            lose = [p for p in item.packets if not p.keyframe]
            if lose:
                lost_after.append(sealed)
                return replace(item, packets=tuple(p for p in item.packets if p is not lose[0]))
        return item

    tap = Tap(lose_a_packet)
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        rule = Rule("manual", pre_buffer_s=600.0)
        recording = new_recording(
            site, store, "lq", rule_gate(rule, time_zone="UTC"), on_missed=holes.append
        )
        async with recording_running(recording, client, tap):
            await until(lambda: len(tap.seals) >= 4, "the first lost packet's seal")
            first_lost = tap.seals[2].seq
            assert f"missed chunk seq {first_lost}" in "\n".join(recording.status.recent_problems)
            assert holes == []  # not wanted yet: the rule has not started
            await recording.manual_start()
            assert [hole.seq for hole in holes] == [first_lost]
            await until(lambda: len(tap.seals) >= 6, "seals while recording")
            recording.manual_stop()
            await until(lambda: len(tap.seals) >= 9, "the second lost packet's seal")
            second_lost = tap.seals[7].seq
            assert f"missed chunk seq {second_lost}" in "\n".join(recording.status.recent_problems)
        assert [hole.seq for hole in holes] == [first_lost]
        assert (holes[0].start_ns, holes[0].end_ns) == (
            tap.seals[2].start_ns,
            tap.seals[2].end_ns,
        )
        stored = {c.header.seq for c in await stored_chunks(store, site, "lq")}
        assert first_lost not in stored
        assert {tap.seals[1].seq, tap.seals[3].seq} <= stored  # around the hole: released


async def test_motion_with_a_pre_buffer_stores_the_chunks_before_the_motion(
    tmp_path: Path,
) -> None:
    tap = Tap()
    motion: list[tuple[m.EventItem, int]] = []  # each event, and when it reached the central
    pre_ns = 2 * NS_PER_S
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        recording = new_recording(
            site, store, "lq", rule_gate(Rule("motion", pre_buffer_s=2), time_zone="UTC")
        )

        async def follow_site_events() -> None:
            async with client.events(("motion_started", "motion_ended")) as events:
                async for event in events:
                    motion.append((event, site.clock.now_ns()))
                    await recording.on_site_event(event)

        following = asyncio.create_task(follow_site_events())
        try:
            async with recording_running(recording, client, tap):

                def motion_came_and_went() -> bool:
                    # One that started once chunks were waiting in the pre-buffer.
                    if len(tap.seals) < 3:
                        return False
                    buffered_ns = tap.seals[2].end_ns
                    return any(
                        e.kind == "motion_started" and e.at_ns > buffered_ns for e, _ in motion
                    ) and (motion[-1][0].kind == "motion_ended")

                await until(motion_came_and_went, "a motion that started and ended")
                seen = len(tap.seals)
                await until(lambda: len(tap.seals) >= seen + 2, "seals after the motion")
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        # Each motion as the site dated it, and until its end reached the central: while a
        # motion is on, every chunk sealed is stored (the site dates the end back to the
        # last movement, 3 s before it says so).
        windows: list[tuple[int, int]] = []
        open_until: list[tuple[int, int]] = []
        opened: int | None = None
        for event, arrived_ns in motion:
            if event.kind == "motion_started":
                opened = event.at_ns if opened is None else opened
            elif opened is not None:
                windows.append((opened - pre_ns, event.at_ns))
                open_until.append((opened - pre_ns, arrived_ns))
                opened = None
        chunks = await stored_chunks(store, site, "lq")
        await assert_identical_to_the_sites(site, chunks)
        seqs = {c.header.seq for c in chunks}
        assert overlapping(tap.seals, windows) - joined_mid_chunk(recording) <= seqs
        assert seqs <= overlapping(tap.seals, open_until)
        assert tap.seals[-1].seq not in seqs  # sealed after the motion was over
        last_motion_ns = windows[-1][0] + pre_ns
        before = [c for c in chunks if last_motion_ns - pre_ns < c.header.end_ns <= last_motion_ns]
        assert before, "the pre-buffer stored nothing from before the motion"
        assert recording.status.chunks_not_wanted >= 1


async def test_an_input_event_with_a_pre_buffer_stores_the_chunks_before_it(
    tmp_path: Path,
) -> None:
    tap = Tap()
    async with (
        running_site(tmp_path) as site,
        central_store(tmp_path, site.clock) as store,
        central_link(site) as client,
    ):
        rule = Rule("event", pre_buffer_s=2, post_buffer_s=1)
        recording = new_recording(
            site,
            store,
            "lq",
            rule_gate(rule, time_zone="UTC"),
            trigger_inputs=frozenset({"door"}),
        )
        async with recording_running(recording, client, tap):
            await until(lambda: len(tap.seals) >= 4, "four seals before the event")
            now_ns = recording.stream_now_ns()
            window = m.EventItem(0, "input_active", "window", now_ns, {})  # not listened to
            await recording.on_site_event(window)
            assert recording.status.chunks_stored == 0
            opened_ns = recording.stream_now_ns()
            await recording.on_site_event(m.EventItem(0, "input_active", "door", opened_ns, {}))
            assert recording.status.chunks_stored >= 1  # the pre-buffer, at once
            await until(lambda: len(tap.seals) >= 6, "seals during the event")
            closed_ns = recording.stream_now_ns()
            await recording.on_site_event(m.EventItem(0, "input_inactive", "door", closed_ns, {}))
            await until(lambda: len(tap.seals) >= 10, "seals after the event")
        chunks = await stored_chunks(store, site, "lq")
        await assert_identical_to_the_sites(site, chunks)
        window_ns = (opened_ns - 2 * NS_PER_S, closed_ns + NS_PER_S)
        seqs = {c.header.seq for c in chunks}
        assert seqs == overlapping(tap.seals, [window_ns]) - joined_mid_chunk(recording)
        assert any(c.header.end_ns <= opened_ns for c in chunks)  # from the pre-buffer
        assert any(h.seq not in seqs for h in tap.seals[-2:])  # the post-buffer ended


def test_a_rule_becomes_the_gate_of_its_mode() -> None:
    assert rule_gate(Rule("always"), time_zone="UTC").mode.value == "continuous"
    assert rule_gate(Rule("manual"), time_zone="UTC").mode.value == "manual"
    daily = rule_gate(Rule("schedule", schedule=("daily 08:00-18:00",)), time_zone="Europe/Paris")
    assert daily.mode.value == "schedule"
    with pytest.raises(ValueError, match="central rule mode 'sometimes' is not one of always"):
        rule_gate(Rule("sometimes"), time_zone="UTC")
