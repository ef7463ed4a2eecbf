"""A full quota or a full disk: retention frees space and recording goes on, verifiably."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.config import load_agent_config
from agent.store_audit import audit_store
from shared.clock import NS_PER_S, SystemClock
from shared.store.chunk_store import ChunkStore
from tests.agent.site_config import write_site_config
from tests.agent.site_run import read_stream, record_site
from tests.conftest import TmpfsFactory

# Constant bitrate with filler: 2 Mbit/s whatever the picture, so the sizes are predictable.
BUSY_CAMERA = """
[[cameras]]
id = "cam-a"
source = "synthetic"
[cameras.synthetic]
hq = { width = 320, height = 180, fps = 10, bitrate_kbps = 2000 }
lq = { width = 160, height = 90, fps = 5, bitrate_kbps = 80 }
motion = false
[cameras.motion]
enabled = false
"""
RUN_S = 10.0


def _assert_recorded_to_the_end(config_path: Path, stopped_at_ns: int) -> None:
    config = load_agent_config(config_path)
    hq = read_stream(config, "cam-a", "hq")
    assert read_stream(config, "cam-a", "lq")
    # The newest chunk ends as recording stopped, and about one chunk a second was sealed
    # all along: recording never stopped for lack of space.
    assert hq[-1].header.end_ns > stopped_at_ns - 3 * NS_PER_S
    assert hq[-1].header.seq + 1 >= RUN_S - 4
    audit = audit_store(config)
    assert audit.ok, [(s.summary.stream, s.verification.problems) for s in audit.streams]
    # The oldest went, and the store kept the proof: the chain verifies from the retention
    # horizon (the newest deleted chunk's hash), so the deletion is expiry, not removal.
    assert hq[0].header.seq > 0
    hq_audit = next(s for s in audit.streams if s.summary.stream == "hq")
    assert hq_audit.summary.horizon is not None
    assert hq[0].header.prev_chunk_hash == hq_audit.summary.horizon.chunk_hash


async def test_quota_far_smaller_than_the_recording(tmp_path: Path) -> None:
    config_path = write_site_config(tmp_path, BUSY_CAMERA)
    config = load_agent_config(config_path)
    quota = 1024 * 1024  # about 4 s of this camera
    await record_site(config, RUN_S, quota_bytes=quota)
    stopped_at_ns = SystemClock().now_ns()
    with ChunkStore.open(
        config.storage.path,
        quota_bytes=quota,
        hold_budget_bytes=0,
        clock=SystemClock(),
        readonly=True,
    ) as store:
        assert store.usage().live_bytes <= quota
    _assert_recorded_to_the_end(config_path, stopped_at_ns)


async def test_disk_smaller_than_the_quota(tmp_path: Path, tmpfs: TmpfsFactory) -> None:
    disk = tmpfs("2m")  # about 8 s of this camera
    config_path = write_site_config(disk / "site", BUSY_CAMERA, quota="64 MiB")
    config = load_agent_config(config_path)
    site = await record_site(config, RUN_S)
    stopped_at_ns = SystemClock().now_ns()
    assert shutil.disk_usage(disk).total < config.storage.quota_bytes
    kinds = {event.kind for event in site.events.recent()}
    assert "storage_low" in kinds  # the disk cannot hold the quota: said, not hidden
    _assert_recorded_to_the_end(config_path, stopped_at_ns)
