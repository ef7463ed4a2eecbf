"""A recording site behind a real network path, and a real central retrieving from it.

`namespace_run` starts `siteline agent run` inside a network namespace (tests/faults/netns.py)
with its uplink shaped by `tc tbf`, serving HTTPS on the namespace's address with a short
link read timeout; its cameras are synthetic and encode HQ at a constant bitrate high
enough that a retrieval of a few seconds of recording lasts long enough to be cut. A real
central runs in this process (tests/central/central_fixture.py, with the short link
timeouts of `LINKS_TOML`) in the test's own namespace and adds the site at its address.
Every HQ chunk of the site that the central hands to its store goes into the run's
`DeliveryHistory` (`DeliveryRecorder`).

The site's store is the agent's, in another process: the test reads it through a read-only
`ChunkStore` (LMDB readers in other processes are allowed while the agent writes), which is
what `recorded_span` and the verdict read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import AgentConfig, load_agent_config
from agent.site_tls import site_identity
from shared.clock import SystemClock
from shared.link_io.client import LinkClient
from shared.store.chunk_store import ChunkStore
from tests.agent.site_config import write_site_config
from tests.agent.site_run import open_read_only
from tests.agent_process import AgentProcess, running_agent
from tests.central.central_fixture import RunningCentral, pinned, running_central
from tests.central.retrieval_faults.fault_run import (
    LINKS_TOML,
    AddedSite,
    CentralSide,
    DeliveryRecorder,
    add_site,
    site_until,
    verdict,
)
from tests.faults.netns import NamespacePair, namespace_or_skip
from tests.retrieval_checker import DeliveryHistory, RetrievalCheck

SITE_PORT = 8443
SITE_READ_TIMEOUT_S = 3  # the agent's minimum
SHAPED_RATE = "20mbit"
"""The site's line: well above the retrieval cap the tests set, so the cap is what paces."""
CAMERAS = ("cam-a", "cam-b", "cam-c")
HQ_KBPS = 2000
"""Each camera's HQ (constant bitrate, with filler): a 1 s chunk is about 250 kB."""
SITE_QUOTA = "256 MiB"

CAMERA_TOML = """
[[cameras]]
id = "{id}"
source = "synthetic"
[cameras.synthetic]
hq = {{ width = 320, height = 180, fps = 10, bitrate_kbps = {hq_kbps} }}
lq = {{ width = 160, height = 90, fps = 5, bitrate_kbps = 80 }}
motion = false
[cameras.motion]
enabled = false
"""


def site_config(directory: Path, ns: NamespacePair) -> AgentConfig:
    """The site's configuration file (written; blocking): the cameras of `CAMERAS`, its API
    on the namespace's address, not advertised, and a link read timeout of 3 s."""
    extra = (
        f'[api]\nbind = "{ns.site_address}"\nport = {SITE_PORT}\nadvertise = false\n\n'
        f"[link]\nread_timeout_s = {SITE_READ_TIMEOUT_S}\n"
    )
    cameras = "".join(CAMERA_TOML.format(id=camera, hq_kbps=HQ_KBPS) for camera in CAMERAS)
    path = write_site_config(directory, cameras, quota=SITE_QUOTA, extra_toml=extra)
    return load_agent_config(path)


@dataclass
class NamespaceRun:
    ns: NamespacePair
    agent: AgentProcess
    config: AgentConfig
    site_store: ChunkStore  # read-only: the agent writes it
    central: RunningCentral
    added: AddedSite
    history: DeliveryHistory
    recorder: DeliveryRecorder

    @property
    def remote_site_id(self) -> str:
        return self.config.site.id

    def link(self) -> LinkClient | None:
        """The central's open link to the site now, or None."""
        registry = self.central.node.registry
        assert registry is not None
        return registry.link(self.added.site_id)

    async def verdict(self, job: dict[str, Any]) -> RetrievalCheck:
        """The run checker's verdict on the ended job of every camera (see fault_run)."""
        node = self.central.node
        job_holds = await asyncio.to_thread(lambda: node.catalog.retrieval_job(job["id"]).holds)
        return await verdict(
            job,
            site_store=self.site_store,
            site_id=self.remote_site_id,
            devices={camera: self.added.devices[camera] for camera in CAMERAS},
            central=CentralSide(node.store, node.receipts, job_holds),
            history=self.history,
        )


@contextlib.asynccontextmanager
async def namespace_run(tmp_path: Path) -> AsyncIterator[NamespaceRun]:
    """The site in its namespace, the central here with the site added and its link up
    (skips where no namespace can be made). The agent is stopped at the end and must exit 0."""
    with namespace_or_skip() as ns:
        ns.shape_site_uplink(SHAPED_RATE)
        config = await asyncio.to_thread(site_config, tmp_path / "site", ns)
        identity = await asyncio.to_thread(site_identity, config, SystemClock())
        connector = aiohttp.TCPConnector(ssl=pinned(identity.fingerprint))
        async with (
            running_agent(config.file, wrap=ns.run_inside) as agent,
            aiohttp.ClientSession(connector=connector) as http,
        ):
            await agent.until_serving(http, f"https://{ns.site_address}:{SITE_PORT}/api/v1/site")
            site_store = await asyncio.to_thread(open_read_only, config)
            try:
                async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
                    added = await add_site(
                        central,
                        address=ns.site_address,
                        port=SITE_PORT,
                        fingerprint=identity.fingerprint,
                    )
                    await site_until(central, added.site_id, online=True)
                    history = DeliveryHistory()
                    recorder = DeliveryRecorder(config.site.id, history)
                    assert central.node.ingest is not None
                    recorder.attach(central.node.ingest)
                    yield NamespaceRun(
                        ns, agent, config, site_store, central, added, history, recorder
                    )
            finally:
                site_store.close()
            assert await agent.stop() == 0, agent.output
