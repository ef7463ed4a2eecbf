"""Live through the central and the central's recording, with a real site on loopback:
fragmented MP4 over a WebSocket that ffprobe can read, each live-feed rule, the site vanishing
and coming back, and the reference stream recorded at the central byte for byte as the site
signed it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.api_input import format_instant
from tests.agent_api.api_site import PASSWORDS
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.playback_client import play
from tests.link_io.link_site import LinkSite, running_link_site

WAIT_S = 30.0


async def _add(central: RunningCentral, site: LinkSite) -> dict[str, str]:
    status, body = await central.call(
        "POST",
        "/sites",
        json={
            "address": "127.0.0.1",
            "port": site.port,
            "username": "admin",
            "password": PASSWORDS["admin"],
            "fingerprint": site.identity.fingerprint,
        },
    )
    assert status == 201, body
    _, devices = await central.call("GET", f"/devices?site={body['id']}")
    ids = {d["remote_device_id"]: d["id"] for d in devices["devices"]}
    async with asyncio.timeout(WAIT_S):
        while True:
            _, site_body = await central.call("GET", f"/sites/{body['id']}")
            if site_body["status"]["state"] == "online":
                return ids
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _live(
    central: RunningCentral, device_id: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with central.client.ws_connect(
        central.url(f"/devices/{device_id}/live"),
        headers={"Authorization": f"Bearer {central.token}"},
    ) as socket:
        yield socket


async def _collect(
    socket: aiohttp.ClientWebSocketResponse, *, fragments: int
) -> tuple[list[dict[str, Any]], bytes, int]:
    """Text messages seen, the init segment and media bytes, and the media segment count."""
    texts: list[dict[str, Any]] = []
    media = b""
    count = 0
    expecting_init = False
    async with asyncio.timeout(WAIT_S):
        while count < fragments:
            message = await socket.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                texts.append(json.loads(message.data))
                expecting_init = texts[-1]["type"] == "init"
            elif message.type == aiohttp.WSMsgType.BINARY:
                media += message.data
                if expecting_init:
                    expecting_init = False
                else:
                    count += 1
            else:
                raise AssertionError(f"socket ended: {message}")
    return texts, media, count


def _iso(instant_ns: int) -> str:
    return format_instant(instant_ns)


def _ffprobe_frames(path: Path) -> int:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(result.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    return int(stream["nb_read_frames"])


async def test_live_through_the_central_is_playable_fragmented_mp4(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)
        async with _live(central, ids["cam-a"]) as socket:
            texts, media, count = await _collect(socket, fragments=6)
        assert texts[0]["type"] == "status"
        assert any(t["type"] == "init" and "avc1" in t["mime"] for t in texts)
        out = tmp_path / "live.mp4"
        out.write_bytes(media)
        frames = await asyncio.to_thread(_ffprobe_frames, out)
        assert frames >= count


async def test_the_live_feed_rules(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)
        device = ids["cam-b"]
        live = central.node.live
        assert live is not None
        # on_demand (the default): nothing is pulled until someone watches
        await asyncio.sleep(0.5)
        state = live.feed_state(device)
        assert state is None or not state.streaming
        status, body = await central.call(
            "PATCH", f"/devices/{device}", json={"live_feed": "never"}
        )
        assert status == 200, body
        async with central.client.get(
            central.url(f"/devices/{device}/live"),
            headers={
                "Authorization": f"Bearer {central.token}",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as reply:
            assert reply.status == 409
            assert (await reply.json())["error"]["code"] == "live_off"
        # always: pulled with nobody watching
        status, _ = await central.call("PATCH", f"/devices/{device}", json={"live_feed": "always"})
        assert status == 200
        async with asyncio.timeout(WAIT_S):
            while (state := live.feed_state(device)) is None or not state.streaming:  # noqa: ASYNC110
                await asyncio.sleep(0.1)


async def test_a_site_that_vanishes_shows_an_interruption_and_live_resumes(tmp_path: Path) -> None:
    links = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"
    async with (
        running_central(tmp_path / "central", links_toml=links) as central,
        contextlib.AsyncExitStack() as stack,
    ):
        first_run = running_link_site(tmp_path / "site")
        site = await first_run.__aenter__()
        try:
            ids = await _add(central, site)
            port = site.port
            socket = await stack.enter_async_context(_live(central, ids["cam-a"]))
            await _collect(socket, fragments=2)
        finally:
            await first_run.__aexit__(None, None, None)  # the site vanishes
        texts: list[dict[str, Any]] = []
        async with asyncio.timeout(WAIT_S):
            while not any(t.get("state") == "interrupted" for t in texts):
                message = await socket.receive()
                if message.type == aiohttp.WSMsgType.TEXT:
                    texts.append(json.loads(message.data))
        async with running_link_site(tmp_path / "site", port=port):
            texts, _, count = await _collect(socket, fragments=2)
        assert any(t.get("state") == "streaming" for t in texts)
        assert any(t["type"] == "init" for t in texts)
        assert count == 2


async def test_the_reference_stream_is_recorded_at_the_central_as_the_site_signed_it(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)
        status, body = await central.call(
            "PATCH", f"/devices/{ids['cam-a']}", json={"recording": "both"}
        )
        assert status == 200, body
        remote_site = site.config.site.id
        store = central.node.store
        async with asyncio.timeout(WAIT_S):
            while True:
                metas = await asyncio.to_thread(
                    store.chunk_metas, "cam-a", "lq", 0, 1 << 62, site_id=remote_site
                )
                if len(metas) >= 3:
                    break
                await asyncio.sleep(0.2)
        for meta in metas:
            at_central = await asyncio.to_thread(
                store.read_chunk, "cam-a", "lq", meta.seq, site_id=remote_site
            )
            at_site = await asyncio.to_thread(site.store.read_chunk, "cam-a", "lq", meta.seq)
            assert at_central is not None
            assert at_site is not None
            assert at_central == at_site
        # Each stored chunk has the central's signed ingest receipt.
        receipts = await asyncio.to_thread(
            central.node.receipts.receipts, [meta.chunk_hash for meta in metas]
        )
        assert len(receipts) == len(metas)
        for receipt in receipts:
            assert receipt.site_id == remote_site
            assert receipt.verify(central.node.signer.public_key)
        timeline = await central.call(
            "GET",
            f"/devices/{ids['cam-a']}/timeline?start={_iso(metas[0].header.start_ns)}"
            f"&end={_iso(metas[-1].header.end_ns)}",
        )
        assert any(p["kind"] == "central_lq" for p in timeline[1]["periods"])


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_playback_switches_from_lq_to_hq_and_back_without_a_gap(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)
        await central.call("PATCH", f"/devices/{ids['cam-a']}", json={"recording": "both"})
        remote_site = site.config.site.id
        store = central.node.store
        async with asyncio.timeout(WAIT_S):
            while True:
                lq = await asyncio.to_thread(
                    store.chunk_metas, "cam-a", "lq", 0, 1 << 62, site_id=remote_site
                )
                if len(lq) >= 6:
                    break
                await asyncio.sleep(0.2)
        # "Retrieve" the HQ of the middle of that range: copy the site's chunks as the
        # retrieval will.
        middle_start, middle_end = lq[2].header.start_ns, lq[3].header.end_ns
        hq = await asyncio.to_thread(
            site.store.chunk_metas, "cam-a", "hq", middle_start, middle_end
        )
        for meta in hq:
            if middle_start <= meta.header.start_ns and meta.header.end_ns <= middle_end:
                chunk = await asyncio.to_thread(site.store.read_chunk, "cam-a", "hq", meta.seq)
                assert chunk is not None
                await asyncio.to_thread(store.put, chunk)
        texts, sequences = await play(
            central, ids["cam-a"], lq[0].header.start_ns, lq[-1].header.end_ns, wait_s=WAIT_S
        )
        assert texts[-1] == {"type": "end"}
        streams = [t["stream"] for t in texts if t["type"] == "segment"]
        assert streams[0] == "lq"
        assert "hq" in streams
        assert streams[-1] == "lq"
        assert not [t for t in texts if t["type"] == "gap"]
        segments = [t for t in texts if t["type"] == "segment"]
        for before, after in itertools.pairwise(segments):
            assert after["start_ns"] <= before["end_ns"]  # no hole between pieces
        assert len(sequences) == 3  # LQ, HQ, LQ: a new init segment at each switch
        for index, data in enumerate(sequences):
            out = tmp_path / f"playback-{index}.mp4"
            out.write_bytes(data)
            assert await asyncio.to_thread(_ffprobe_frames, out) > 0


async def test_a_site_only_device_plays_from_the_site_in_high_quality(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)  # recording site_only: the default
        await site.wait_for_chunks("cam-a", "hq", 4)
        metas = await asyncio.to_thread(site.store.chunk_metas, "cam-a", "hq", 0, 1 << 62)
        texts, runs = await play(
            central, ids["cam-a"], metas[0].header.start_ns, metas[3].header.end_ns, wait_s=WAIT_S
        )
        media = b"".join(runs)
        assert texts[-1] == {"type": "end"}, texts[-3:]
        streams = {t["stream"] for t in texts if t["type"] == "segment"}
        assert streams == {"hq"}
        assert len([t for t in texts if t["type"] == "segment"]) >= 4
        out = tmp_path / "from-site.mp4"
        out.write_bytes(media)
        assert await asyncio.to_thread(_ffprobe_frames, out) > 0
        # nothing is stored at the central: it was a gateway
        held = await asyncio.to_thread(
            central.node.store.chunk_metas,
            "cam-a",
            "hq",
            0,
            1 << 62,
            site_id=site.config.site.id,
        )
        assert held == []


async def test_playback_of_nothing_is_a_clear_refusal(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central") as central:
        async with running_link_site(tmp_path / "site") as site:
            ids = await _add(central, site)
            status, body = await central.call(
                "GET",
                f"/devices/{ids['cam-a']}/playback"
                "?start=2020-01-01T00:00:00Z&end=2020-01-01T01:00:00Z",
            )
            assert (status, body["error"]["code"]) == (409, "nothing_recorded"), body
            status, body = await central.call(
                "GET", f"/devices/{ids['cam-a']}/playback?start=2020-01-01T00:00:00Z&end=yesterday"
            )
            assert status == 400
            assert body["error"]["field"] == "end"
        site_id = (await central.call("GET", "/sites"))[1]["sites"][0]["id"]
        async with asyncio.timeout(WAIT_S):
            while central.node.registry.link(site_id) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        status, body = await central.call(
            "GET",
            f"/devices/{ids['cam-a']}/playback?start=2020-01-01T00:00:00Z&end=2020-01-01T01:00:00Z",
        )
        assert (status, body["error"]["code"]) == (409, "site_offline"), body


async def test_manual_recording_at_the_central_starts_and_stops_on_request(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        ids = await _add(central, site)
        device = ids["cam-a"]
        status, body = await central.call(
            "PATCH",
            f"/devices/{device}",
            json={"recording": "central_only", "central_rule": {"mode": "manual"}},
        )
        assert status == 200, body
        remote_site = site.config.site.id
        store = central.node.store

        async def stored() -> int:
            metas = await asyncio.to_thread(
                store.chunk_metas, "cam-a", "lq", 0, 1 << 62, site_id=remote_site
            )
            return len(metas)

        async with asyncio.timeout(WAIT_S):
            while True:  # the feed runs, its chunks are left out by the rule
                _, state = await central.call("GET", f"/devices/{device}/recording")
                if state["status"] and state["status"]["chunks_not_wanted"] >= 2:
                    break
                await asyncio.sleep(0.2)
        assert await stored() == 0
        status, state = await central.call(
            "POST", f"/devices/{device}/recording", json={"action": "start"}
        )
        assert status == 200, state
        async with asyncio.timeout(WAIT_S):
            while await stored() < 2:  # noqa: ASYNC110 - the store fills in another task
                await asyncio.sleep(0.2)
        status, _ = await central.call(
            "POST", f"/devices/{device}/recording", json={"action": "stop"}
        )
        assert status == 200
        status, body = await central.call(
            "POST", f"/devices/{device}/recording", json={"action": "pause"}
        )
        assert (status, body["error"]["field"]) == (400, "action")
