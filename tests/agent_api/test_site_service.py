"""`SiteService` called directly, as the link calls it: the same permissions as the API."""

from __future__ import annotations

import pytest

from agent.accounts import Principal
from agent.site_service import DeviceNotFound, InvalidInput
from tests.agent_api.api_site import ApiSite
from tests.store.store_chunks import ChunkFactory

CLERK = Principal("clerk", frozenset({"cam-a", "door"}))


async def test_chunks_after_a_cursor_for_granted_devices_only(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    chunks = factory.run(6, device_id="cam-a", stream="lq", payload_size=1000)
    await api.put(chunks)
    await api.put(factory.run(2, device_id="cam-b", stream="lq"))
    batch = await api.service.chunks_after(CLERK, "cam-a", "lq", 1, limit=3, max_bytes=1 << 20)
    assert [c.header.seq for c in batch] == [2, 3, 4]
    assert [c.chunk_hash for c in batch] == [c.chunk_hash for c in chunks[2:5]]
    rest = await api.service.chunks_after(CLERK, "cam-a", "lq", 4, limit=8, max_bytes=1 << 20)
    assert [c.header.seq for c in rest] == [5]
    for device_id in ("cam-b", "cam-z"):
        with pytest.raises(DeviceNotFound, match=f"no device '{device_id}'"):
            await api.service.chunks_after(CLERK, device_id, "lq", -1, limit=1, max_bytes=1)
    with pytest.raises(InvalidInput, match="stream: 'state' is not a stream of device 'cam-a'"):
        await api.service.chunks_after(CLERK, "cam-a", "state", -1, limit=1, max_bytes=1)


async def test_a_principal_with_every_device_sees_every_device(api: ApiSite) -> None:
    everyone = Principal("admin", frozenset({"*"}))
    assert [d.id for d in api.service.devices(everyone)] == api.config.device_ids()
    assert [d.id for d in api.service.devices(CLERK)] == ["cam-a", "door"]
    assert api.service.device(CLERK, "door").stream_names() == ("state",)
