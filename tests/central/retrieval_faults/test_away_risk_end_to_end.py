"""A job queued while its site is out of reach, for a span the site's retention had deleted
when the central last saw it: the job says at once that it is at risk, and the device's
notification says what is lost (central/retrieval/away_risk.py), with a real site whose
retention keeps 10 s and a real central.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from central.retrieval.at_risk_notice import NOTICE_AT_RISK
from shared.api_input import format_instant
from shared.clock import NS_PER_S
from shared.store.chunk_store import ChunkStore
from tests.agent.site_config import write_site_config
from tests.agent_api.api_site import DEVICES_TOML
from tests.central.central_fixture import running_central
from tests.central.link_sites import add_link_site
from tests.central.retrieval_faults.fault_run import LINKS_TOML, WAIT_S, site_until
from tests.link_io.link_site import running_link_site

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

MAX_AGE_DAYS = 0.00012
"""About 10 s: the site's retention deletes what is older, every few seconds."""


def _short_retention(directory: Path) -> None:
    config = write_site_config(directory, DEVICES_TOML)
    text = config.read_text()
    limit = f'quota = "64 MiB"\nmax_age_days = {MAX_AGE_DAYS}'
    config.write_text(text.replace('quota = "64 MiB"', limit))


async def _oldest_hq_start(site_store: ChunkStore, device: str) -> int | None:
    metas = await asyncio.to_thread(site_store.chunk_metas, device, "hq", 0, 1 << 62)
    return metas[0].header.start_ns if metas else None


async def test_a_job_for_a_span_gone_at_a_site_out_of_reach_is_at_risk_at_once(
    tmp_path: Path,
) -> None:
    _short_retention(tmp_path / "site")
    async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
        async with running_link_site(tmp_path / "site") as site:
            # Until the site's retention has deleted its first recordings.
            first = None
            async with asyncio.timeout(WAIT_S):
                while True:
                    oldest = await _oldest_hq_start(site.store, "cam-a")
                    if first is None:
                        first = oldest
                    elif oldest is not None and oldest > first:
                        break
                    await asyncio.sleep(0.5)
            site_id, ids = await add_link_site(central, site)
            await site_until(central, site_id, online=True)
            gone_before = await _oldest_hq_start(site.store, "cam-a")
            assert gone_before is not None
        await site_until(central, site_id, online=False)

        start_ns = gone_before - 30 * NS_PER_S
        status, job = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-a"]],
                "start": format_instant(start_ns),
                "end": format_instant(gone_before + 5 * NS_PER_S),
            },
        )
        assert status == 201, job
        assert job["state"] == "pending"
        assert job["at_risk"] is True, job
        status, body = await central.call("GET", "/notifications?open=true")
        assert status == 200, body
        (note,) = [n for n in body["notifications"] if n["kind"] == NOTICE_AT_RISK]
        assert note["device_id"] == ids["cam-a"]
        assert job["id"] in note["message"]
        assert "the site is out of reach" in note["message"]
        assert "is lost" in note["message"]

        # A span the site still held when last seen is not flagged.
        status, later = await central.call(
            "POST",
            "/retrievals",
            json={
                "device_ids": [ids["cam-a"]],
                "start": format_instant(gone_before + 1 * NS_PER_S),
                "end": format_instant(gone_before + 3 * NS_PER_S),
            },
        )
        assert status == 201, later
        assert later["at_risk"] is False, later
