"""A site and a central in this process, the site's link through a TCP proxy that can cut.

`proxied_run` starts a real recording site (tests/link_io/link_site.py) and a real central
(tests/central/central_fixture.py, with the short link timeouts of `LINKS_TOML`), adds the
site to the central at the proxy's port, and records every HQ delivery of the site into
the run's history (`DeliveryRecorder`). `restart_site` stops the site and starts it again
on the same folder and port (the proxy keeps dialling the same target), writing the
restart into the history as a cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central.retrieval.retrieval_work import LINK_DOWN_REASON
from tests.central.central_fixture import RunningCentral, running_central
from tests.central.retrieval_faults.fault_run import (
    LINKS_TOML,
    WAIT_S,
    AddedSite,
    CentralSide,
    DeliveryRecorder,
    ObservedProxy,
    add_site,
    ended,
    site_until,
    verdict,
)
from tests.link_io.link_site import LinkSite, running_link_site
from tests.retrieval_checker import DeliveryHistory, RetrievalCheck


@dataclass
class ProxiedRun:
    site: LinkSite
    central: RunningCentral
    proxy: ObservedProxy
    added: AddedSite
    history: DeliveryHistory
    recorder: DeliveryRecorder
    site_folder: Path
    _site_context: contextlib.AbstractAsyncContextManager[LinkSite] | None = field(
        default=None, repr=False
    )

    @property
    def remote_site_id(self) -> str:
        return self.site.config.site.id

    async def restart_site(self) -> None:
        """Stop the site (its link goes with it) and start it again on the same port."""
        assert self._site_context is not None
        port = self.site.port
        self.history.cut("the site stopped")
        await self._site_context.__aexit__(None, None, None)
        self._site_context = None
        context = running_link_site(self.site_folder, port=port)
        self.site = await context.__aenter__()
        self._site_context = context

    async def reset_at_a_random_byte(
        self, rng: random.Random, label: str, *, within_bytes: int
    ) -> None:
        """Arm the proxy to reset the link after 1,000 to `within_bytes` further bytes to
        the central, and wait until it did and the central has let go of the old link.

        The cut goes into the history only then: frames the central had already received
        when the proxy reset the link may still be stored after the reset, and they belong
        to the old link. Until then the proxy forwards nothing, so no new link can carry a
        chunk before the marker."""
        cuts = self.proxy.cuts
        self.proxy.reason = label
        self.proxy.hold_after_cut = True
        self.proxy.cut_after_bytes = self.proxy.forwarded_to_client + rng.randrange(
            1_000, within_bytes
        )
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    if self.proxy.cuts > cuts:
                        break
                    await asyncio.sleep(0.02)
            await self._until_the_old_link_is_let_go()
            self.history.cut(label)
        finally:
            self.proxy.hold_after_cut = False
            self.proxy.flowing.set()

    async def _until_the_old_link_is_let_go(self) -> None:
        """Until the central sees the site offline and every unended job of the site says
        it waits for the site's link (its streams have stopped)."""
        await site_until(self.central, self.added.site_id, online=False)
        async with asyncio.timeout(WAIT_S):
            while True:
                _, listing = await self.central.call(
                    "GET", f"/retrievals?site={self.added.site_id}&state=pending,running"
                )
                waiting = [
                    job["reason"] == LINK_DOWN_REASON
                    for job in listing["retrievals"]
                    if not ended(job)
                ]
                if all(waiting):
                    return
                await asyncio.sleep(0.02)

    async def verdict(self, job: dict[str, Any], devices: list[str]) -> RetrievalCheck:
        node = self.central.node
        return await verdict(
            job,
            site_store=self.site.store,
            site_id=self.remote_site_id,
            devices={device: self.added.devices[device] for device in devices},
            central=CentralSide(
                node.store, node.receipts, node.catalog.retrieval_job(job["id"]).holds
            ),
            history=self.history,
        )


@contextlib.asynccontextmanager
async def proxied_run(
    tmp_path: Path, *, latency_s: float = 0.0, slice_bytes: int | None = None
) -> AsyncIterator[ProxiedRun]:
    """The run; `latency_s` and `slice_bytes` go to the proxy (see `TcpProxy`)."""
    site_folder = tmp_path / "site"
    history = DeliveryHistory()
    site_context = running_link_site(site_folder)
    site = await site_context.__aenter__()
    run: ProxiedRun | None = None
    try:
        async with running_central(tmp_path / "central", links_toml=LINKS_TOML) as central:
            proxy = ObservedProxy(site.port, history, latency_s=latency_s, slice_bytes=slice_bytes)
            await proxy.start()
            try:
                added = await add_site(
                    central,
                    address="127.0.0.1",
                    port=proxy.port,
                    fingerprint=site.identity.fingerprint,
                )
                recorder = DeliveryRecorder(site.config.site.id, history)
                assert central.node.ingest is not None
                recorder.attach(central.node.ingest)
                run = ProxiedRun(
                    site, central, proxy, added, history, recorder, site_folder, site_context
                )
                yield run
            finally:
                await proxy.close()
    finally:
        context = site_context if run is None else run._site_context
        if context is not None:
            await context.__aexit__(None, None, None)
