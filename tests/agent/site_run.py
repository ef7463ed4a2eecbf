"""Running a real agent site in a test: real sources, a real store, the system clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from agent.config import AgentConfig
from agent.gpio_lines import GpiodLoader, load_gpiod
from agent.run_command import retention_policy
from agent.site_runtime import AgentSite
from agent.source_factory import build_source
from agent.store_writer import StoreWriter
from shared.chunk import SignedChunk
from shared.clock import SystemClock
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from shared.store.retention import RetentionPolicy


async def record_site(
    config: AgentConfig,
    seconds: float,
    *,
    quota_bytes: int | None = None,
    gpiod_loader: GpiodLoader = load_gpiod,
) -> AgentSite:
    """Record `config` for `seconds`, stop cleanly; `quota_bytes` overrides the config's,
    `gpiod_loader` gives the GPIO library (a fake board's module)."""
    clock = SystemClock()
    quota = quota_bytes or config.storage.quota_bytes
    policy = retention_policy(config)
    store = ChunkStore.open(
        config.storage.path,
        quota_bytes=quota,
        hold_budget_bytes=min(config.storage.hold_budget_bytes, quota // 4),
        clock=clock,
        retention=RetentionPolicy(
            max_bytes=quota,
            default_max_age_ns=policy.default_max_age_ns,
            max_age_ns=policy.max_age_ns,
        ),
        home_site_id=config.site.id,
    )
    writer = StoreWriter(store)
    site = AgentSite(
        config,
        writer=writer,
        signer=SiteSigner.load_or_create(config.storage.key_path),
        clock=clock,
        source_factory=lambda camera: build_source(camera, clock=clock),
        rng=random.Random(7),
        retention_interval_s=0.5,
        gpiod_loader=gpiod_loader,
    )
    task = asyncio.create_task(site.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(writer.close)
    store.close()
    return site


def open_read_only(config: AgentConfig) -> ChunkStore:
    """The agent's store, opened read-only (the agent may be writing it meanwhile)."""
    return ChunkStore.open(
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=0,
        clock=SystemClock(),
        readonly=True,
        home_site_id=config.site.id,
    )


def read_stream(config: AgentConfig, device_id: str, stream: str) -> list[SignedChunk]:
    """Every stored chunk of one stream, oldest first."""
    with open_read_only(config) as store:
        return store.read_chunks(device_id, stream, 0, 2**63 - 1)
