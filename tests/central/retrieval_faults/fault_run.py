"""A retrieval job run under faults, and the verdict on it.

A fault test makes a real job (POST /api/v1/retrievals) of a span of HQ the site already
recorded, so the expected chunks are known (the site's `ChunkStore`), injects its faults,
waits for the job to end, and then judges the run with `verdict`: the job completed, the
run checker (tests/retrieval_checker.py) finds nothing lost, duplicated or unexpected, the
progress of each device counts exactly the chunks and bytes that arrived, every chunk at
the central has its ingest receipt, and the site holds nothing for the job any more.

Deliveries are observed where the central stores a chunk: `DeliveryRecorder` wraps the
`put_verified` of the central's `IngestWriter` instance (the engine and the writer are not
changed) and appends each HQ chunk of the site to the run's `DeliveryHistory` at the moment
it is handed to the store, before the store answers, so a chunk under way when a cut lands
counts before the cut. `ObservedProxy` is the link's TCP proxy that writes a cut into the
same history at the instant it resets the connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from central.ingest_writer import IngestWriter, PutOutcome
from central.receipt_book import ReceiptBook
from shared.api_input import format_instant, parse_instant
from shared.chunk import SignedChunk
from shared.store.chunk_store import ChunkStore
from tests.agent_api.api_site import PASSWORDS
from tests.link_io.link_site import TcpProxy
from tests.retrieval_checker import (
    ChunkFact,
    DeliveryHistory,
    RetrievalCheck,
    RetrievalJob,
    check_retrieval,
    chunks_in_store,
)

WAIT_S = 60.0
READ_TIMEOUT_S = 3.0
LINKS_TOML = f"read_timeout_s = {READ_TIMEOUT_S:g}\noffline_notice_after_s = 0\nretry_max_s = 1"
"""The central's [links]: a stall is found within 3 s, and a lost site is dialled every 1 s."""
HQ = "hq"


class CentralApi(Protocol):
    """The central's API as the tests use it: (status, JSON body) of one request."""

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]: ...


@dataclass(frozen=True)
class AddedSite:
    site_id: str  # the central's id of the site
    devices: dict[str, str]  # the site's device id -> the central's


async def add_site(api: CentralApi, *, address: str, port: int, fingerprint: str) -> AddedSite:
    status, body = await api.call(
        "POST",
        "/sites",
        json={
            "address": address,
            "port": port,
            "username": "admin",
            "password": PASSWORDS["admin"],
            "fingerprint": fingerprint,
        },
    )
    assert status == 201, body
    status, devices = await api.call("GET", f"/devices?site={body['id']}")
    assert status == 200, devices
    return AddedSite(body["id"], {d["remote_device_id"]: d["id"] for d in devices["devices"]})


async def set_cap(api: CentralApi, site_id: str, max_bandwidth_bps: int | None) -> None:
    status, body = await api.call(
        "PATCH", f"/sites/{site_id}", json={"retrieval": {"max_bandwidth_bps": max_bandwidth_bps}}
    )
    assert status == 200, body


async def site_until(api: CentralApi, site_id: str, online: bool) -> None:
    """Until the central sees the site online (or not), bounded."""
    async with asyncio.timeout(WAIT_S):
        while True:
            _, site = await api.call("GET", f"/sites/{site_id}")
            if (site["status"]["state"] == "online") == online:
                return
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Span:
    start_ns: int
    end_ns: int


async def recorded_span(store: ChunkStore, devices: Sequence[str], chunks: int) -> Span:
    """A span of `chunks` whole HQ chunks of the first device (its first chunk left out:
    it may have started before the camera settled) that every device has recorded past."""
    first, *others = devices

    async def hq_of(device: str) -> list[Any]:
        return await asyncio.to_thread(store.chunk_metas, device, HQ, 0, 1 << 62)

    async with asyncio.timeout(WAIT_S * 2):
        while True:
            if len(metas := await hq_of(first)) > chunks:
                break
            await asyncio.sleep(0.25)
        span = Span(metas[1].header.start_ns, metas[chunks].header.end_ns)
        for device in others:
            while True:
                if any(m.header.end_ns >= span.end_ns for m in await hq_of(device)):
                    break
                await asyncio.sleep(0.25)
    return span


async def create_job(api: CentralApi, device_ids: Sequence[str], span: Span) -> str:
    status, job = await api.call(
        "POST",
        "/retrievals",
        json={
            "device_ids": list(device_ids),
            "start": format_instant(span.start_ns),
            "end": format_instant(span.end_ns),
        },
    )
    assert status == 201, job
    job_id: str = job["id"]
    return job_id


async def job_until(
    api: CentralApi,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float = WAIT_S,
    every_s: float = 0.1,
) -> dict[str, Any]:
    """The job once `done` holds for it (bounded polling)."""
    async with asyncio.timeout(timeout_s):
        while True:
            status, body = await api.call("GET", f"/retrievals/{job_id}")
            assert status == 200, body
            job: dict[str, Any] = body
            if done(job):
                return job
            await asyncio.sleep(every_s)


def ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("completed", "failed", "stopped")


def chunks_so_far(job: dict[str, Any]) -> int:
    return sum(p["chunks"] for p in job["progress"])


class ObservedProxy(TcpProxy):
    """The TCP proxy, writing every cut into the run's history as it makes it."""

    def __init__(
        self,
        target_port: int,
        history: DeliveryHistory,
        *,
        latency_s: float = 0.0,
        slice_bytes: int | None = None,
    ) -> None:
        super().__init__(target_port, latency_s=latency_s, slice_bytes=slice_bytes)
        self.history = history
        self.reason = "the proxy reset the link"
        self.hold_after_cut = False
        """Set: a cut also stops forwarding (the next link cannot carry anything) and leaves
        the history's cut marker to the caller, to be written once the central has let go
        of the old link (see `ProxiedRun.reset_at_a_random_byte`)."""

    def cut(self) -> None:
        if self.hold_after_cut:
            self.flowing.clear()
        elif self._writers:
            self.history.cut(self.reason)
        super().cut()

    def cut_now(self, reason: str) -> None:
        self.reason = reason
        self.cut()


@dataclass
class DeliveryRecorder:
    """Every HQ chunk of `site_id` handed to the central's store, in order, into `history`;
    `already_held` counts those the store already had (re-sent after a cut). Each hook in
    `on_delivery` is called with the number of deliveries so far, before the store answers
    (a fault may be injected there)."""

    site_id: str
    history: DeliveryHistory
    deliveries: int = 0
    already_held: int = 0
    on_delivery: list[Callable[[int], Awaitable[None]]] = field(default_factory=list)

    def attach(self, ingest: IngestWriter) -> None:
        store_them = ingest.put_verified

        async def put_verified(chunks: Sequence[SignedChunk]) -> list[PutOutcome]:
            ours = [c for c in chunks if (c.header.site_id, c.header.stream) == (self.site_id, HQ)]
            for chunk in ours:
                self.history.delivered(chunk)
                self.deliveries += 1
            for hook in list(self.on_delivery) if ours else []:
                await hook(self.deliveries)
            outcomes = await store_them(chunks)
            self.already_held += sum(
                1
                for chunk, outcome in zip(chunks, outcomes, strict=True)
                if chunk in ours and outcome is False
            )
            return outcomes

        ingest.put_verified = put_verified  # type: ignore[method-assign]

    async def more(self, count: int) -> None:
        """Until `count` more chunks reached the central's store (bounded by WAIT_S)."""
        target = self.deliveries + count
        async with asyncio.timeout(WAIT_S):
            while True:
                if self.deliveries >= target:
                    return
                await asyncio.sleep(0.02)


@dataclass(frozen=True)
class CentralSide:
    """What the verdict reads at the central once the run is over."""

    store: ChunkStore
    receipts: ReceiptBook
    job_holds: tuple[int, ...]


async def verdict(
    job: dict[str, Any],
    *,
    site_store: ChunkStore,
    site_id: str,
    devices: dict[str, str],
    central: CentralSide,
    history: DeliveryHistory,
) -> RetrievalCheck:
    """Judge a run that ended (see the module docstring); the checker's verdict, clean.
    `devices`: the site's ids of the job's devices -> the central's."""
    assert job["state"] == "completed", job
    span = RetrievalJob(
        site_id,
        frozenset((device, HQ) for device in devices),
        _instant_ns(job["start"]),
        _instant_ns(job["end"]),
    )
    at_site = await asyncio.to_thread(chunks_in_store, site_store, span)
    at_central = await asyncio.to_thread(chunks_in_store, central.store, span, site_id=site_id)
    check = check_retrieval(span, site=at_site, central=at_central, history=history)
    check.assert_clean()
    assert check.expected == len(at_central) > 0, check

    progress = {p["device_id"]: p for p in job["progress"]}
    for device, central_id in devices.items():
        arrived = [c for c in at_central if c.device_id == device]
        sizes = await asyncio.to_thread(_payload_sizes, central.store, site_id, arrived)
        assert progress[central_id]["state"] == "completed", progress[central_id]
        assert progress[central_id]["chunks"] == len(arrived), (device, progress[central_id])
        assert progress[central_id]["bytes"] == sum(sizes), (device, progress[central_id])
    hashes = [c.chunk_hash for c in at_central]
    receipts = await asyncio.to_thread(central.receipts.receipts, hashes)
    assert {r.chunk_hash for r in receipts} == {c.chunk_hash for c in at_central}
    assert await asyncio.to_thread(site_store.list_holds) == []
    assert central.job_holds == ()
    return check


def _payload_sizes(store: ChunkStore, site_id: str, chunks: Sequence[ChunkFact]) -> list[int]:
    sizes = []
    for fact in chunks:
        chunk = store.read_chunk(fact.device_id, fact.stream, fact.seq, site_id=site_id)
        assert chunk is not None, fact.label
        sizes.append(len(chunk.payload))
    return sizes


def _instant_ns(text: str) -> int:
    return parse_instant("instant", text)
