"""A retrieval job across restarts: the central killed with SIGKILL mid-job and started
again on the same folder resumes from its cursors; the site stopped mid-job and started
again completes it; the site and the central killed with SIGKILL at the same moment, both
real processes, and started again, complete it too. Each way nothing is lost or stored
twice.

The killed central is `siteline central run` in a child process (bench/central_process.py),
so its deliveries cannot be watched from here: that run is judged on the stores, the
progress, the receipts and the holds (its history holds only the kill). The central is
opened in this process once the child has stopped, to read them.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from shared.store.chunk_store import ChunkStore
from tests.agent.site_run import open_read_only
from tests.agent_process import AgentProcess, running_agent
from tests.central.api.agent_sites import agent_fingerprint, free_port, write_agent_config
from tests.central.central_fixture import pinned, running_central
from tests.central.retrieval_faults.central_child import central_child, make_central_folder
from tests.central.retrieval_faults.fault_run import (
    CentralSide,
    add_site,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    set_cap,
    verdict,
)
from tests.central.retrieval_faults.proxied_run import proxied_run
from tests.link_io.link_site import running_link_site
from tests.retrieval_checker import DeliveryHistory

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b"]
CAP_BPS = 1_000_000
SPAN_CHUNKS = 8


async def test_a_job_resumes_after_the_site_restarts(tmp_path: Path) -> None:
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, DEVICES, SPAN_CHUNKS)
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
        await job_until(run.central, job_id, lambda job: chunks_so_far(job) >= 2, every_s=0.02)
        await run.restart_site()
        at_restart = run.recorder.deliveries
        job = await job_until(run.central, job_id, ended)
        assert run.recorder.deliveries > at_restart
        check = await run.verdict(job, DEVICES)
        assert check.cuts == 1


async def test_a_job_resumes_from_its_cursors_after_the_central_is_killed(
    tmp_path: Path,
) -> None:
    history = DeliveryHistory()
    config_path = await asyncio.to_thread(make_central_folder, tmp_path / "central")
    async with running_link_site(tmp_path / "site") as site:
        async with central_child(config_path) as (child, api):
            added = await add_site(
                api, address="127.0.0.1", port=site.port, fingerprint=site.identity.fingerprint
            )
            span = await recorded_span(site.store, DEVICES, SPAN_CHUNKS)
            await set_cap(api, added.site_id, CAP_BPS)
            job_id = await create_job(api, [added.devices[d] for d in DEVICES], span)
            before = await job_until(api, job_id, lambda job: chunks_so_far(job) >= 2, every_s=0.02)
            assert before["state"] != "completed", before
            child.kill()
            history.cut("the central was killed (SIGKILL)")
            assert await child.process.wait() == -signal.SIGKILL

        async with central_child(config_path) as (_, api):
            job = await job_until(api, job_id, ended)

        async with running_central(config_path.parent) as central:
            node = central.node
            await verdict(
                job,
                site_store=site.store,
                site_id=site.config.site.id,
                devices={device: added.devices[device] for device in DEVICES},
                central=CentralSide(
                    node.store, node.receipts, node.catalog.retrieval_job(job_id).holds
                ),
                history=history,
            )
        assert chunks_so_far(job) > chunks_so_far(before)


async def test_a_job_completes_after_the_site_and_the_central_are_killed_together(
    tmp_path: Path,
) -> None:
    history = DeliveryHistory()
    port = free_port()
    config = await asyncio.to_thread(
        write_agent_config, tmp_path / "site", port, cameras=tuple(DEVICES)
    )
    fingerprint = await agent_fingerprint(config)
    central_config = await asyncio.to_thread(make_central_folder, tmp_path / "central")
    site_store: ChunkStore | None = None
    try:
        async with running_agent(config.file) as agent:
            await _serving(agent, port, fingerprint)
            site_store = await asyncio.to_thread(open_read_only, config)  # the agent writes it
            async with central_child(central_config) as (child, api):
                added = await add_site(api, address="127.0.0.1", port=port, fingerprint=fingerprint)
                span = await recorded_span(site_store, DEVICES, SPAN_CHUNKS)
                await set_cap(api, added.site_id, CAP_BPS)
                job_id = await create_job(api, [added.devices[d] for d in DEVICES], span)
                before = await job_until(
                    api, job_id, lambda job: chunks_so_far(job) >= 2, every_s=0.02
                )
                assert before["state"] != "completed", before
                agent.process.send_signal(signal.SIGKILL)
                child.kill()
                history.cut("the site and the central were killed (SIGKILL) together")
                assert await agent.process.wait() == -signal.SIGKILL
                assert await child.process.wait() == -signal.SIGKILL

        async with running_agent(config.file) as agent:
            await _serving(agent, port, fingerprint)
            async with central_child(central_config) as (_, api):
                job = await job_until(api, job_id, ended)
            assert await agent.stop() == 0

        async with running_central(central_config.parent) as central:
            node = central.node
            await verdict(
                job,
                site_store=site_store,
                site_id=config.site.id,
                devices={device: added.devices[device] for device in DEVICES},
                central=CentralSide(
                    node.store, node.receipts, node.catalog.retrieval_job(job_id).holds
                ),
                history=history,
            )
        assert chunks_so_far(job) > chunks_so_far(before)
    finally:
        if site_store is not None:
            site_store.close()


async def _serving(agent: AgentProcess, port: int, fingerprint: str) -> None:
    connector = aiohttp.TCPConnector(ssl=pinned(fingerprint))
    async with aiohttp.ClientSession(connector=connector) as http:
        await agent.until_serving(http, f"https://127.0.0.1:{port}/api/v1/site")
