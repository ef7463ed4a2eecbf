"""Playback plays what the central holds from its own store and asks the site only for the
rest, with a real site on loopback, real retrieval jobs and real H.264 that ffprobe reads:

- a site-only device whose span was retrieved plays that span in HQ with its site offline;
  a range only partly held plays the held part and reports the rest as a gap; a range not
  held at all is refused (409 `site_offline`) with the reason;
- a span half held plays the held half from the central and only the other half from the
  site (one interactive transfer, for exactly that half), without a gap at the boundary;
- a device recorded at the central keeps its LQ chunks byte for byte when its HQ is
  retrieved, and plays LQ, retrieved HQ, LQ with its site offline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.api_input import format_instant
from shared.chunk import SignedChunk
from shared.link import messages as m
from shared.link_io.client import LinkClient
from shared.store.chunk_meta import ChunkMeta
from shared.transfer_acceptance import TransferExpectation
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.link_sites import add_link_site
from tests.central.playback_client import play
from tests.link_io.link_site import LinkSite, running_link_site

WAIT_S = 60.0
LINKS = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


class InteractiveTransfers:
    """Notes each interactive transfer the central asks of a site (playback's; retrievals
    are background ones) as (stream, start_ns, end_ns), and lets it run as it would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[tuple[str, int, int]] = []
        transfer = LinkClient.transfer

        async def noting(
            client: LinkClient,
            expectation: TransferExpectation,
            *args: Any,
            **options: Any,
        ) -> Any:
            if options.get("priority") is m.Priority.INTERACTIVE:
                self.asked.append((expectation.stream, args[1], args[2]))
            return await transfer(client, expectation, *args, **options)

        monkeypatch.setattr(LinkClient, "transfer", noting)


async def _site_chunks(site: LinkSite, stream: str, count: int) -> list[ChunkMeta]:
    """At least `count` chunks of cam-a's `stream` the site has stored (bounded wait)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            metas = await asyncio.to_thread(site.store.chunk_metas, "cam-a", stream, 0, 1 << 62)
            if len(metas) >= count:
                return metas
            await asyncio.sleep(0.2)


async def _central_chunks(central: RunningCentral, site: LinkSite, stream: str) -> list[ChunkMeta]:
    return await asyncio.to_thread(
        central.node.store.chunk_metas, "cam-a", stream, 0, 1 << 62, site_id=site.site_id
    )


async def _central_lq(central: RunningCentral, site: LinkSite, count: int) -> list[ChunkMeta]:
    """At least `count` LQ chunks of cam-a the central recorded (bounded wait)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            metas = await _central_chunks(central, site, "lq")
            if len(metas) >= count:
                return metas
            await asyncio.sleep(0.2)


async def _retrieve(central: RunningCentral, device_id: str, start_ns: int, end_ns: int) -> None:
    """A retrieval job of the device's HQ over the span, run to completion."""
    status, job = await central.call(
        "POST",
        "/retrievals",
        json={
            "device_ids": [device_id],
            "start": format_instant(start_ns),
            "end": format_instant(end_ns),
        },
    )
    assert status == 201, job
    async with asyncio.timeout(WAIT_S):
        while job["state"] not in ("completed", "failed"):
            await asyncio.sleep(0.2)
            status, job = await central.call("GET", f"/retrievals/{job['id']}")
            assert status == 200, job
    assert job["state"] == "completed", job


async def _offline(central: RunningCentral, site_id: str) -> None:
    registry = central.node.registry
    assert registry is not None
    async with asyncio.timeout(WAIT_S):
        while registry.link(site_id) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _play(
    central: RunningCentral, device_id: str, start_ns: int, end_ns: int
) -> tuple[list[dict[str, Any]], list[bytes]]:
    return await play(central, device_id, start_ns, end_ns, wait_s=WAIT_S)


def _segments(texts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in texts if t["type"] == "segment"]


def _assert_joined(texts: list[dict[str, Any]]) -> None:
    """Ended normally, without a gap notice or a hole between segments."""
    assert texts[-1] == {"type": "end"}, texts[-3:]
    assert [t for t in texts if t["type"] == "gap"] == []
    for before, after in itertools.pairwise(_segments(texts)):
        assert after["start_ns"] <= before["end_ns"]


async def _frames(data: bytes, path: Path) -> int:
    """The H.264 pictures ffprobe reads in `data` (written to `path`)."""
    await asyncio.to_thread(path.write_bytes, data)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", str(path),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stream = json.loads(result.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    return int(stream["nb_read_frames"])


def _pictures(metas: list[ChunkMeta]) -> int:
    return sum(len(meta.header.packets) for meta in metas)


async def test_a_retrieved_span_plays_from_the_central_with_its_site_offline(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path / "central", links_toml=LINKS) as central:
        async with running_link_site(tmp_path / "site") as site:
            site_id, ids = await add_link_site(central, site)  # recording site_only: default
            metas = await _site_chunks(site, "hq", 6)
            span = metas[1:4]
            await _retrieve(central, ids["cam-a"], span[0].header.start_ns, span[-1].header.end_ns)
            assert [c.seq for c in await _central_chunks(central, site, "hq")] == [
                c.seq for c in span
            ]
        await _offline(central, site_id)

        texts, runs = await _play(
            central, ids["cam-a"], span[0].header.start_ns, span[-1].header.end_ns
        )
        _assert_joined(texts)
        segments = _segments(texts)
        assert [s["stream"] for s in segments] == ["hq"] * len(span)
        assert [s["start_ns"] for s in segments] == [c.header.start_ns for c in span]
        assert len(runs) == 1
        assert await _frames(runs[0], tmp_path / "held.mp4") == _pictures(span)

        # Partly held: the held part plays, the part only the offline site has is a gap.
        after = metas[4]
        texts, runs = await _play(
            central, ids["cam-a"], span[0].header.start_ns, after.header.end_ns
        )
        assert texts[-1] == {"type": "end"}
        assert [s["stream"] for s in _segments(texts)] == ["hq"] * len(span)
        gaps = [t for t in texts if t["type"] == "gap"]
        assert [(g["start"], g["end"], g["declared"]) for g in gaps] == [
            (format_instant(span[-1].header.end_ns), format_instant(after.header.end_ns), False)
        ]
        assert await _frames(runs[0], tmp_path / "partly.mp4") == _pictures(span)

        # Nothing held, site offline: refused before the socket opens, saying why.
        status, body = await central.call(
            "GET",
            f"/devices/{ids['cam-a']}/playback?start={format_instant(after.header.start_ns)}"
            f"&end={format_instant(after.header.end_ns)}",
        )
        assert (status, body["error"]["code"]) == (409, "site_offline"), body
        assert "holds nothing" in body["error"]["message"]
        assert "offline" in body["error"]["message"]


async def test_a_half_held_span_takes_only_the_other_half_from_the_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transfers = InteractiveTransfers(monkeypatch)
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)  # recording site_only: the default
        metas = await _site_chunks(site, "hq", 6)
        held, missing = metas[1:3], metas[3:5]
        await _retrieve(central, ids["cam-a"], held[0].header.start_ns, held[-1].header.end_ns)
        assert [c.seq for c in await _central_chunks(central, site, "hq")] == [c.seq for c in held]
        start_ns, end_ns = held[0].header.start_ns, missing[-1].header.end_ns

        texts, runs = await _play(central, ids["cam-a"], start_ns, end_ns)

        _assert_joined(texts)
        segments = _segments(texts)
        assert [s["stream"] for s in segments] == ["hq"] * 4
        assert [s["start_ns"] for s in segments] == [c.header.start_ns for c in held + missing]
        # The site was asked for the half the central lacks, and for nothing else.
        assert transfers.asked == [("hq", held[-1].header.end_ns, end_ns)]
        assert len(runs) == 1
        assert await _frames(runs[0], tmp_path / "half.mp4") == _pictures(held + missing)
        # What came from the site was played, not stored.
        assert [c.seq for c in await _central_chunks(central, site, "hq")] == [c.seq for c in held]


async def test_the_central_lq_is_untouched_by_retrieval_and_plays_with_hq_offline(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path / "central", links_toml=LINKS) as central:
        async with running_link_site(tmp_path / "site") as site:
            site_id, ids = await add_link_site(central, site)
            status, body = await central.call(
                "PATCH", f"/devices/{ids['cam-a']}", json={"recording": "both"}
            )
            assert status == 200, body
            lq = await _central_lq(central, site, 6)
            before = await _read_all(central, site, lq)
            assert None not in before
            middle_start_ns, middle_end_ns = lq[2].header.start_ns, lq[3].header.end_ns
            await _retrieve(central, ids["cam-a"], middle_start_ns, middle_end_ns)
            assert await _central_chunks(central, site, "hq") != []
            after = await _read_all(central, site, lq)
            assert after == before  # LQ chunks are never modified or replaced
        await _offline(central, site_id)

        texts, runs = await _play(
            central, ids["cam-a"], lq[0].header.start_ns, lq[-1].header.end_ns
        )

        _assert_joined(texts)
        streams = [s["stream"] for s in _segments(texts)]
        assert (streams[0], streams[-1]) == ("lq", "lq")
        assert "hq" in streams
        assert len(runs) == 3  # LQ, HQ, LQ: a new init segment at each switch
        for index, data in enumerate(runs):
            assert await _frames(data, tmp_path / f"run-{index}.mp4") > 0


async def _read_all(
    central: RunningCentral, site: LinkSite, metas: list[ChunkMeta]
) -> list[SignedChunk | None]:
    store = central.node.store
    return [
        await asyncio.to_thread(
            store.read_chunk, "cam-a", meta.header.stream, meta.seq, site_id=site.site_id
        )
        for meta in metas
    ]
