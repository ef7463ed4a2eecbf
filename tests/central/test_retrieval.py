"""Retrieval jobs end to end, with a real site on loopback: a job made over the API brings
the site's HQ chunks of its span to the central byte for byte, verified, each with its
receipt, holds them at the site while it runs and releases them after; a job made while the
site is away waits and completes when the site returns; a stopped job keeps what it got."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.api_input import format_instant, parse_instant
from shared.store.chunk_meta import ChunkMeta
from shared.store.tombstones import Tombstone
from tests.agent.site_config import write_site_config
from tests.agent_api.api_site import DEVICES_TOML
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.cli_process import central_env, siteline
from tests.central.link_sites import add_link_site, reconnect_jobs_once_ended
from tests.link_io.link_site import LinkSite, TcpProxy, running_link_site

WAIT_S = 60.0
LINKS = "read_timeout_s = 3\noffline_notice_after_s = 0\nretry_max_s = 1"

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def _site_hq(site: LinkSite, device: str, count: int) -> list[ChunkMeta]:
    """At least `count` HQ chunks the site has stored of `device` (bounded wait)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            metas = await asyncio.to_thread(site.store.chunk_metas, device, "hq", 0, 1 << 62)
            if len(metas) >= count:
                return metas
            await asyncio.sleep(0.2)


async def _job_until(
    central: RunningCentral, job_id: str, states: tuple[str, ...]
) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        while True:
            status, job = await central.call("GET", f"/retrievals/{job_id}")
            assert status == 200, job
            if job["state"] in states:
                found: dict[str, Any] = job
                return found
            await asyncio.sleep(0.2)


async def _site_until(central: RunningCentral, site_id: str, holds: Callable[[str], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            _, site = await central.call("GET", f"/sites/{site_id}")
            if holds(site["status"]["state"]):
                return
            await asyncio.sleep(0.1)


async def _central_hq(central: RunningCentral, site: LinkSite, device: str) -> list[ChunkMeta]:
    return await asyncio.to_thread(
        central.node.store.chunk_metas, device, "hq", 0, 1 << 62, site_id=site.config.site.id
    )


async def test_a_job_brings_the_span_byte_for_byte_with_receipts_and_releases_its_holds(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        metas = await _site_hq(site, "cam-a", 5)
        span = metas[1:4]  # whole chunks inside the span, and one either side outside it
        start_ns, end_ns = span[0].header.start_ns, span[-1].header.end_ns
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-a"]],
                "start": format_instant(start_ns),
                "end": format_instant(end_ns),
            },
        )
        assert status == 201, job
        assert job["state"] in ("pending", "running")
        assert job["quality"] == "hq"

        done = await _job_until(central, job["id"], ("completed", "failed"))

        assert done["state"] == "completed", done
        (progress,) = done["progress"]
        assert progress["state"] == "completed"
        at_central = await _central_hq(central, site, "cam-a")
        wanted = {m.seq for m in metas if m.header.end_ns > start_ns and m.header.start_ns < end_ns}
        assert {m.seq for m in at_central} == wanted
        assert progress["chunks"] == len(wanted)
        assert progress["fraction"] == 1.0
        for meta in at_central:
            copy = await asyncio.to_thread(
                central.node.store.read_chunk, "cam-a", "hq", meta.seq, site_id=site.config.site.id
            )
            original = await asyncio.to_thread(site.store.read_chunk, "cam-a", "hq", meta.seq)
            assert copy == original
        receipts = await asyncio.to_thread(
            central.node.receipts.receipts, [m.chunk_hash for m in at_central]
        )
        assert len(receipts) == len(at_central)
        assert await asyncio.to_thread(site.store.list_holds) == []  # released
        assert central.node.catalog.retrieval_job(job["id"]).holds == ()
        status, listed = await central.call("GET", "/retrievals?state=completed")
        assert status == 200
        assert [j["id"] for j in listed["retrievals"]] == [job["id"]]

        # The same from the command line, followed to its end.
        b_metas = await _site_hq(site, "cam-b", 3)
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        result = await siteline(
            "retrieve",
            "--device",
            ids["cam-b"],
            "--start",
            format_instant(b_metas[0].header.start_ns),
            "--end",
            format_instant(b_metas[2].header.end_ns),
            "--wait",
            env=env,
        )
        assert result.code == 0, result
        assert "completed: 3 chunks" in result.out, result
        assert "100.0%" in result.out, result
        assert [m.seq for m in await _central_hq(central, site, "cam-b")] == [
            m.seq for m in b_metas[:3]
        ]
        refused = await siteline(
            "retrieve",
            "--device",
            "d-nothere000",
            "--start",
            "2024-01-01T00:00:00Z",
            "--end",
            "2024-01-01T01:00:00Z",
            env=env,
        )
        assert refused.code == 1, refused
        assert "d-nothere000" in refused.err, refused


async def test_a_job_made_while_the_site_is_away_runs_when_it_returns(tmp_path: Path) -> None:
    async with running_central(tmp_path / "central", links_toml=LINKS) as central:
        first = running_link_site(tmp_path / "site")
        site = await first.__aenter__()
        try:
            site_id, ids = await add_link_site(central, site)
            port = site.port
            metas = await _site_hq(site, "cam-b", 3)
        finally:
            await first.__aexit__(None, None, None)  # the site goes away
        await _site_until(central, site_id, lambda state: state != "online")
        start_ns, end_ns = metas[0].header.start_ns, metas[2].header.end_ns
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-b"]],
                "start": format_instant(start_ns),
                "end": format_instant(end_ns),
            },
        )
        assert status == 201, job
        await asyncio.sleep(1.0)
        _, waiting = await central.call("GET", f"/retrievals/{job['id']}")
        assert waiting["state"] == "pending"
        assert waiting["progress"][0]["chunks"] == 0

        async with running_link_site(tmp_path / "site", port=port) as site:
            done = await _job_until(central, job["id"], ("completed", "failed"))
            assert done["state"] == "completed", done
            at_central = await _central_hq(central, site, "cam-b")
            assert [m.seq for m in at_central] == [m.seq for m in metas[:3]]


async def test_bad_requests_and_stops(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        now = format_instant(central.node.clock.now_ns())
        later = format_instant(central.node.clock.now_ns() + 3600 * 10**9)
        cases = [
            ({"start": now, "end": later}, "device_ids"),
            ({"device_ids": [], "start": now, "end": later}, "device_ids"),
            ({"device_ids": [ids["cam-a"]] * 2, "start": now, "end": later}, "device_ids"),
            ({"device_ids": [ids["cam-a"]], "start": later, "end": now}, "end"),
            (
                {"device_ids": [ids["cam-a"]], "start": now, "end": later, "quality": "4k"},
                "quality",
            ),
            ({"device_ids": [ids["cam-a"]], "start": "yesterday", "end": later}, "start"),
        ]
        for body, field in cases:
            status, answer = await central.call("POST", "/retrievals", json=body)
            assert status == 400, (body, answer)
            assert answer["error"]["field"] == field, answer
        status, answer = await central.call(
            "POST", "/retrievals", json={"device_ids": ["d-nothere000"], "start": now, "end": later}
        )
        assert status == 404, answer
        assert "d-nothere000" in answer["error"]["message"]
        assert (await central.call("GET", "/retrievals/j-nothere000"))[0] == 404
        assert (await central.call("GET", "/retrievals?state=lost"))[0] == 400

        # A job over the next hour waits for recordings to come; stopping it keeps what it got.
        status, job = await central.call(
            "POST", "/retrievals", json={"device_ids": [ids["cam-a"]], "start": now, "end": later}
        )
        assert status == 201, job
        await _job_until(central, job["id"], ("running",))
        assert await asyncio.to_thread(site.store.list_holds)  # it holds the span at the site
        timeline = f"/devices/{ids['cam-a']}/timeline?start={now}&end={later}"
        _, periods = await central.call("GET", timeline)
        assert {"running", "pending"} & {p["kind"] for p in periods["periods"]}, periods
        # The operator finds it, looks at it and stops it from the command line.
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        listed = await siteline("retrieve", "--list", "--state", "running,pending", env=env)
        assert listed.code == 0, listed
        assert listed.out.splitlines()[0].startswith(f"{job['id']}  running"), listed
        assert ids["cam-a"] in listed.out, listed
        shown = await siteline("retrieve", "--show", job["id"], env=env)
        assert shown.code == 0, shown
        assert "%" in shown.out, shown
        assert "running" in shown.out, shown
        cli_stop = await siteline("retrieve", "--stop", job["id"], env=env)
        assert cli_stop.code == 0, cli_stop
        assert f"retrieval {job['id']} stopped:" in cli_stop.out, cli_stop
        status, stopped = await central.call("GET", f"/retrievals/{job['id']}")
        assert status == 200, stopped
        assert stopped["state"] == "stopped"
        assert stopped["reason"] == "stopped by a user"
        nothing = await siteline("retrieve", "--list", "--state", "running", env=env)
        assert nothing.out.strip() == "no retrievals", nothing
        for argv, words in (
            (["--state", "running"], "--state goes with --list"),
            (["--device", ids["cam-a"]], "needs --start, --end"),
            (["--show", "../sites"], "not a retrieval job id"),
        ):
            misuse = await siteline("retrieve", *argv, env=env)
            assert misuse.code == 2, misuse
            assert words in misuse.err, misuse
        unknown = await siteline("retrieve", "--stop", "j-nothere000", env=env)
        assert unknown.code == 1, unknown
        assert "j-nothere000" in unknown.err, unknown
        assert await asyncio.to_thread(site.store.list_holds) == []
        _, periods = await central.call("GET", timeline)
        assert not {"running", "pending"} & {p["kind"] for p in periods["periods"]}, periods
        status, again = await central.call("POST", f"/retrievals/{job['id']}/stop")
        assert status == 200
        assert again["state"] == "stopped"


class SwitchableLink:
    """The site's port behind a proxy that can be taken down (every connection reset, new
    ones refused) and brought back on the same port: a site's line going away while the
    site records on."""

    def __init__(self, target_port: int) -> None:
        self._proxy = TcpProxy(target_port)
        self.port = 0

    async def up(self) -> None:
        self._proxy = TcpProxy(self._proxy.target_port)
        await self._proxy.start(self.port)
        self.port = self._proxy.port

    async def down(self) -> None:
        await self._proxy.close()


async def test_what_the_central_missed_while_the_link_was_down_is_retrieved(
    tmp_path: Path,
) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        line = SwitchableLink(site.port)
        await line.up()
        site_id, ids = await add_link_site(central, site, port=line.port)
        cam_a = ids["cam-a"]
        await central.call("PATCH", f"/devices/{cam_a}", json={"recording": "both"})
        remote = site.config.site.id
        store = central.node.store

        async def central_lq() -> list[ChunkMeta]:
            return await asyncio.to_thread(
                store.chunk_metas, "cam-a", "lq", 0, 1 << 62, site_id=remote
            )

        async with asyncio.timeout(WAIT_S):
            while True:
                if len(await central_lq()) >= 2:
                    break
                await asyncio.sleep(0.2)
        await line.down()  # the line goes; the site records on
        await _site_until(central, site_id, lambda state: state != "online")
        await asyncio.sleep(12)  # longer than the smallest gap worth a retrieval
        await line.up()
        await _site_until(central, site_id, lambda state: state == "online")
        jobs = await reconnect_jobs_once_ended(central, timeout_s=WAIT_S)

        # One job for the outage; a chunk the new live stream joined mid-way may add a small
        # one of its own (a missed live chunk is fetched too).
        def span_ns(j: dict[str, Any]) -> int:
            return parse_instant("end", j["end"]) - parse_instant("start", j["start"])

        job = max(jobs, key=span_ns)
        assert span_ns(job) > 10 * 10**9, job
        assert len(jobs) <= 2, jobs
        for each in jobs:
            assert each["state"] == "completed", each
            assert each["quality"] == "lq"
            assert each["device_ids"] == [cam_a]
        # The central's recording now runs without a hole through the outage.
        stored = await central_lq()
        seqs = [m.seq for m in stored]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert stored[-1].header.end_ns - stored[0].header.start_ns > 12 * 10**9
        for meta in stored:
            assert await asyncio.to_thread(
                site.store.read_chunk, "cam-a", "lq", meta.seq
            ) == await asyncio.to_thread(store.read_chunk, "cam-a", "lq", meta.seq, site_id=remote)
        await line.down()


async def test_a_span_the_sites_retention_already_deleted_in_part_is_reported_lost(
    tmp_path: Path,
) -> None:
    # A site that keeps 9 s of recordings (max_age_days 0.0001): a job asked for a span
    # that began before what it still holds learns from the holds' answer that the start is
    # gone, and says so (at risk, with a notification on the device naming the instant).
    # The job's span ends now, so it stays unfinished (the site is still recording it):
    # the notification stays open until the job is stopped.
    config = write_site_config(tmp_path / "site", DEVICES_TOML)
    text = config.read_text()
    config.write_text(text.replace('quota = "64 MiB"', 'quota = "64 MiB"\nmax_age_days = 0.0001'))
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        horizon = await _first_deletion(site, "cam-a")
        start_ns = horizon.start_ns
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-a"]],
                "start": format_instant(start_ns),
                "end": format_instant(central.node.clock.now_ns()),
            },
        )
        assert status == 201, job
        await _job_at_risk(central, job["id"])
        (note,) = await _open_at_risk_notes(central)
        assert note["message"].startswith(f"retrieval {job['id']}: "), note
        assert "already deleted part of the span" in note["message"], note
        assert f"{ids['cam-a']}: before " in note["message"], note
        assert note["device_id"] == ids["cam-a"], note
        lost_until = parse_instant("until", note["message"].split("before ")[1].split(" ")[0])
        assert lost_until >= horizon.end_ns
        status, stopped = await central.call("POST", f"/retrievals/{job['id']}/stop")
        assert status == 200, stopped
        _, notes = await central.call("GET", "/notifications")
        assert not [n for n in notes["notifications"] if n["kind"] == "retrieval_at_risk"]


async def _first_deletion(site: LinkSite, device: str) -> Tombstone:
    """The site's retention horizon of the device's hq, once its retention deleted a chunk."""
    async with asyncio.timeout(WAIT_S):
        while True:
            horizon = await asyncio.to_thread(site.store.retention_horizon, device, "hq")
            if horizon is not None:
                return horizon
            await asyncio.sleep(0.5)


async def _open_at_risk_notes(central: RunningCentral) -> list[dict[str, Any]]:
    """The open at-risk notifications, once there is one (the job is flagged first)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            _, body = await central.call("GET", "/notifications")
            notes = [n for n in body["notifications"] if n["kind"] == "retrieval_at_risk"]
            if notes:
                return notes
            await asyncio.sleep(0.1)


async def _job_at_risk(central: RunningCentral, job_id: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            _, job = await central.call("GET", f"/retrievals/{job_id}")
            if job["at_risk"]:
                return
            await asyncio.sleep(0.2)


async def test_a_span_the_site_still_holds_whole_is_not_at_risk(tmp_path: Path) -> None:
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central", links_toml=LINKS) as central,
    ):
        _, ids = await add_link_site(central, site)
        metas = await _site_hq(site, "cam-a", 2)
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-a"]],
                "start": format_instant(metas[0].header.start_ns),
                "end": format_instant(metas[1].header.end_ns),
            },
        )
        assert status == 201, job
        done = await _job_until(central, job["id"], ("completed",))
        assert done["at_risk"] is False
        _, notes = await central.call("GET", "/notifications")
        assert not [n for n in notes["notifications"] if n["kind"] == "retrieval_at_risk"]
