"""A chunk the central's live recording misses while the link stays up is fetched from the
site by a `reconnect` retrieval job, end to end: a real site on loopback, a real central
recording the site's `lq` stream (`recording` both, rule `always`), one packet lost on its
way into the recording (the live stream is tapped in transit, as in `test_relay_recording`),
and the chunk then in the central's store, byte for byte as the site stored it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from central.relay_recording import LiveItem, RelayRecording
from shared.chunk import ChunkHeader
from shared.link import events as ev
from tests.central.central_fixture import running_central
from tests.central.link_sites import add_link_site, reconnect_jobs_once_ended
from tests.link_io.link_site import running_link_site

WAIT_S = 60.0
LINKS = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"
SEALS_BEFORE_THE_LOSS = 3
"""Enough for the central to have stored a chunk first: a miss before the recording began is
not a hole in it."""

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@dataclass
class LosingTap:
    """Lets the live stream through on its way into the central's recording, but loses one
    packet (not a keyframe) of the first chunk after `SEALS_BEFORE_THE_LOSS` seals."""

    seals: list[ChunkHeader] = field(default_factory=list)
    lost_after_seals: int | None = None  # how many seals had come when the packet was lost

    async def wrap(self, items: AsyncIterator[LiveItem]) -> AsyncIterator[LiveItem]:
        async for item in items:
            if isinstance(item, ev.LiveSealedReceived):
                self.seals.append(ChunkHeader.decode(item.header))
                yield item
            else:
                yield self._maybe_lose(item)

    def _maybe_lose(self, item: ev.LiveReceived) -> ev.LiveReceived:
        if self.lost_after_seals is not None or len(self.seals) < SEALS_BEFORE_THE_LOSS:
            return item
        lose = [p for p in item.packets if not p.keyframe]
        if not lose:
            return item
        self.lost_after_seals = len(self.seals)
        return replace(item, packets=tuple(p for p in item.packets if p is not lose[0]))

    @property
    def missed(self) -> ChunkHeader | None:
        """The header of the chunk whose packet was lost, once its seal came."""
        if self.lost_after_seals is None or len(self.seals) <= self.lost_after_seals:
            return None
        return self.seals[self.lost_after_seals]


async def test_a_chunk_missed_while_the_link_stays_up_is_retrieved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = LosingTap()
    record = RelayRecording.record

    async def record_through_the_tap(self: RelayRecording, items: AsyncIterator[LiveItem]) -> None:
        await record(self, tap.wrap(items))

    monkeypatch.setattr(RelayRecording, "record", record_through_the_tap)
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        cam_a = ids["cam-a"]
        status, _ = await central.call("PATCH", f"/devices/{cam_a}", json={"recording": "both"})
        assert status == 200
        live = central.node.live
        assert live is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                missed = tap.missed
                if missed is not None:
                    break
                await asyncio.sleep(0.1)
        recording = live.recording_status(cam_a)
        assert recording is not None
        problems = "\n".join(recording.recent_problems)
        assert f"missed chunk seq {missed.seq}: packet" in problems
        remote = site.config.site.id
        store = central.node.store
        jobs = await reconnect_jobs_once_ended(central, timeout_s=WAIT_S)
        (job,) = jobs  # the chunk the stream was joined in the middle of is not a hole
        assert job["state"] == "completed", job
        assert (job["quality"], job["device_ids"]) == ("lq", [cam_a])
        central_chunk = await asyncio.to_thread(
            store.read_chunk, "cam-a", "lq", missed.seq, site_id=remote
        )
        site_chunk = await asyncio.to_thread(site.store.read_chunk, "cam-a", "lq", missed.seq)
        assert central_chunk is not None, f"chunk seq {missed.seq} never reached the central"
        assert site_chunk is not None
        assert central_chunk.header_bytes == site_chunk.header_bytes
        assert central_chunk.signature == site_chunk.signature
        assert central_chunk.payload == site_chunk.payload
        # The central's recording now runs without a hole around the missed chunk.
        metas = await asyncio.to_thread(
            store.chunk_metas, "cam-a", "lq", 0, 1 << 62, site_id=remote
        )
        seqs = [meta.seq for meta in metas]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert seqs[0] < missed.seq < seqs[-1]
