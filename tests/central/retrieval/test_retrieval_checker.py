"""The run checker itself: a clean run passes, and each kind of defect, planted by hand in a
history of real signed chunks, is caught and named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.signing import SiteSigner
from shared.store import ChunkStore
from tests.retrieval_checker import (
    ChunkFact,
    Cut,
    Delivery,
    DeliveryHistory,
    RetrievalJob,
    check_retrieval,
    chunks_in_store,
)
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
CHUNK_NS = 2 * NS_PER_S
JOB = RetrievalJob(
    SITE_ID,
    frozenset({("cam-1", "hq"), ("cam-2", "hq")}),
    T0_NS + 2 * CHUNK_NS,  # the job starts at cam-1's #2 ...
    T0_NS + 8 * CHUNK_NS,  # ... and ends after #7
)


@pytest.fixture(scope="module")
def signer() -> SiteSigner:
    return SiteSigner.generate()


@pytest.fixture
def factory(signer: SiteSigner) -> ChunkFactory:
    return ChunkFactory(signer)


def _site(factory: ChunkFactory) -> dict[str, list[SignedChunk]]:
    """Ten chunks of each camera's HQ (#0-#9); the job covers #2-#7 of each."""
    return {
        device: factory.run(10, device_id=device, stream="hq", duration_ns=CHUNK_NS)
        for device in ("cam-1", "cam-2")
    }


def _in_job(chunks: list[SignedChunk]) -> list[SignedChunk]:
    return chunks[2:8]


def _clean_history(site: dict[str, list[SignedChunk]]) -> DeliveryHistory:
    """Both cameras interleaved (#2-#4 each), a cut, then cam-1's #4 once more and the rest
    of both (13 deliveries)."""
    history = DeliveryHistory()
    cam1, cam2 = _in_job(site["cam-1"]), _in_job(site["cam-2"])
    for index in range(3):
        history.delivered(cam1[index])
        history.delivered(cam2[index])
    history.cut("link down")
    for chunk in (cam1[2], cam2[3], cam1[3], cam2[4], cam1[4], cam2[5], cam1[5]):
        history.delivered(chunk)
    return history


def _central(site: dict[str, list[SignedChunk]]) -> list[SignedChunk]:
    return _in_job(site["cam-1"]) + _in_job(site["cam-2"])


def test_a_clean_run_passes_with_its_resends_counted(factory: ChunkFactory) -> None:
    site = _site(factory)
    all_site = site["cam-1"] + site["cam-2"]
    report = check_retrieval(
        JOB, site=all_site, central=_central(site), history=_clean_history(site)
    )
    report.assert_clean()
    assert report.problems() == []
    assert report.expected == 12
    assert report.deliveries == 13
    assert report.cuts == 1
    assert report.resends == 1  # cam-1's #4 came again after the cut


def test_a_chunk_missing_at_the_central_is_lost(factory: ChunkFactory) -> None:
    site = _site(factory)
    history = _clean_history(site)
    never_sent = _in_job(site["cam-2"])[4]  # cam-2 #6
    history.entries = [
        e for e in history.entries if not (isinstance(e, Delivery) and e.chunk.seq == 6)
    ]
    central = [c for c in _central(site) if c is not never_sent]
    dropped = _in_job(site["cam-1"])[1]  # cam-1 #3: delivered, then not stored
    central.remove(dropped)
    report = check_retrieval(
        JOB, site=site["cam-1"] + site["cam-2"], central=central, history=history
    )
    assert [str(f) for f in report.lost] == [
        f"{SITE_ID}/cam-1/hq #3: delivered, but not in the central's store",
        f"{SITE_ID}/cam-2/hq #6: at the site, never delivered, not at the central",
    ]
    assert (report.duplicated, report.unexpected, report.chain_breaks) == ((), (), ())
    with pytest.raises(AssertionError, match="2 lost, 0 duplicated"):
        report.assert_clean()


def test_a_chunk_stored_twice_or_delivered_twice_between_cuts_is_duplicated(
    factory: ChunkFactory,
) -> None:
    site = _site(factory)
    twice = _in_job(site["cam-2"])[0]
    central = [*_central(site), twice]
    history = _clean_history(site)
    history.entries.insert(1, Delivery(ChunkFact.of(site["cam-1"][2])))  # no cut between
    report = check_retrieval(
        JOB, site=site["cam-1"] + site["cam-2"], central=central, history=history
    )
    assert report.problems() == [
        f"duplicated: {SITE_ID}/cam-2/hq #2: stored twice at the central",
        f"duplicated: {SITE_ID}/cam-1/hq #2: delivered again with no cut",
    ]


def test_more_than_one_resend_per_stream_and_cut_is_duplicated(factory: ChunkFactory) -> None:
    site = _site(factory)
    cam1 = _in_job(site["cam-1"])
    history = DeliveryHistory()
    for chunk in cam1[:4]:
        history.delivered(chunk)
    history.cut("central killed")
    for chunk in cam1[2:]:  # #4 and #5 again: one re-send too many
        history.delivered(chunk)
    job = RetrievalJob(SITE_ID, frozenset({("cam-1", "hq")}), JOB.start_ns, JOB.end_ns)
    report = check_retrieval(job, site=site["cam-1"], central=cam1, history=history)
    assert [str(f) for f in report.duplicated] == [
        f"{SITE_ID}/cam-1/hq #5: re-sent after cut 1 (central killed): re-send 2 of the "
        "stream, at most 1 allowed per cut"
    ]
    assert report.resends == 1
    # With two re-sends allowed per cut, the same history is clean.
    check_retrieval(
        job, site=site["cam-1"], central=cam1, history=history, resends_per_cut=2
    ).assert_clean()


def test_chunks_the_site_does_not_hold_or_the_job_did_not_ask_for_are_unexpected(
    factory: ChunkFactory,
) -> None:
    site = _site(factory)
    forged = factory.make(  # under cam-1's #5, but not the site's chunk
        start_ns=T0_NS + 5 * CHUNK_NS, device_id="cam-1", stream="hq", seq=5,
        prev_hash=site["cam-1"][4].chunk_hash, duration_ns=CHUNK_NS,
    )  # fmt: skip
    extra = factory.make(  # a seq the site never had
        start_ns=T0_NS + 7 * CHUNK_NS + NS_PER_S, device_id="cam-2", stream="hq", seq=40,
        duration_ns=CHUNK_NS,
    )  # fmt: skip
    before_range = site["cam-1"][0]
    other_stream = factory.make(start_ns=T0_NS + 3 * CHUNK_NS, device_id="cam-1", stream="lq")
    central = [c for c in _central(site) if c is not site["cam-1"][5]]
    central += [forged, before_range, other_stream]
    history = _clean_history(site)
    history.delivered(extra)  # delivered, then refused by the store, say
    report = check_retrieval(
        JOB, site=site["cam-1"] + site["cam-2"], central=central, history=history
    )
    label = f"{SITE_ID}/cam-1/hq"
    assert [str(f) for f in report.unexpected] == [
        f"{label} #5: stored at the central, but differs from the site's chunk under that seq",
        f"{label} #0: stored at the central, outside the job (another site or stream, or out "
        "of the range)",
        f"{SITE_ID}/cam-1/lq #0: stored at the central, outside the job (another site or "
        "stream, or out of the range)",
        f"{SITE_ID}/cam-2/hq #40: delivered, but the site holds no such chunk",
    ]
    # The site's own #5 never reached the store: that one is lost.
    assert [f.chunk for f in report.lost] == [f"{label} #5"]


def test_a_broken_chain_at_the_central_and_a_backwards_delivery_are_chain_breaks(
    factory: ChunkFactory,
) -> None:
    site = _site(factory)
    # The site's cam-2 #5 names a chunk that is not its #4 (a chain the site got wrong).
    cam2 = site["cam-2"]
    cam2[5] = factory.make(
        start_ns=cam2[5].header.start_ns, device_id="cam-2", stream="hq", seq=5,
        prev_hash=bytes(32), duration_ns=CHUNK_NS,
    )  # fmt: skip
    history = DeliveryHistory()
    cam1 = _in_job(site["cam-1"])
    for chunk in (cam1[0], cam1[2], cam1[1], *cam1[3:], *_in_job(cam2)):
        history.delivered(chunk)
    report = check_retrieval(
        JOB, site=site["cam-1"] + cam2, central=_central(site), history=history
    )
    assert report.problems() == [
        f"chain break: {SITE_ID}/cam-2/hq #5: does not name the stored #4 of cam-2/hq as its "
        "predecessor",
        # The site's #6 names the #5 that was replaced: broken on both sides of #5.
        f"chain break: {SITE_ID}/cam-2/hq #6: does not name the stored #5 of cam-2/hq as its "
        "predecessor",
        f"chain break: {SITE_ID}/cam-1/hq #3: delivered after #4 with no cut between",
    ]


def test_a_cut_lets_a_stream_start_again_from_an_earlier_chunk(factory: ChunkFactory) -> None:
    """Going back after a cut is a re-send, not a chain break; with no cut it is both."""
    site = _site(factory)
    cam1 = _in_job(site["cam-1"])
    entries: list[Delivery | Cut] = [
        *(Delivery(ChunkFact.of(chunk)) for chunk in cam1[:3]),  # #2, #3, #4
        Cut("site restarted"),
        *(Delivery(ChunkFact.of(chunk)) for chunk in cam1[1:]),  # #3 and #4 again, then on
    ]
    job = RetrievalJob(SITE_ID, frozenset({("cam-1", "hq")}), JOB.start_ns, JOB.end_ns)
    report = check_retrieval(
        job, site=site["cam-1"], central=cam1, history=entries, resends_per_cut=2
    )
    report.assert_clean()
    assert report.resends == 2
    without_cut = [e for e in entries if isinstance(e, Delivery)]
    report = check_retrieval(
        job, site=site["cam-1"], central=cam1, history=without_cut, resends_per_cut=2
    )
    assert report.problems() == [
        f"duplicated: {SITE_ID}/cam-1/hq #3: delivered again with no cut",
        f"duplicated: {SITE_ID}/cam-1/hq #4: delivered again with no cut",
        f"chain break: {SITE_ID}/cam-1/hq #3: delivered after #4 with no cut between",
    ]


async def test_listings_read_from_real_stores(factory: ChunkFactory, tmp_path: Path) -> None:
    site = _site(factory)
    clock = ManualClock(T0_NS)

    def fill_and_list() -> tuple[list[ChunkFact], list[ChunkFact]]:
        with (
            ChunkStore.open(
                tmp_path / "site", quota_bytes=64 * MIB, hold_budget_bytes=16 * MIB,
                clock=clock, home_site_id=SITE_ID,
            ) as at_site,
            ChunkStore.open(
                tmp_path / "central", quota_bytes=64 * MIB, hold_budget_bytes=16 * MIB,
                clock=clock,
            ) as at_central,
        ):  # fmt: skip
            for chunk in site["cam-1"] + site["cam-2"]:
                at_site.put(chunk)
            for chunk in _central(site):
                if chunk is not site["cam-2"][7]:
                    at_central.put(chunk)
            return (
                chunks_in_store(at_site, JOB),
                chunks_in_store(at_central, JOB, site_id=SITE_ID),
            )

    site_listing, central_listing = await asyncio.to_thread(fill_and_list)
    # Half-open ranges: #1 ends where the job starts, so each camera gives exactly #2-#7.
    assert len(site_listing) == 12
    report = check_retrieval(
        JOB, site=site_listing, central=central_listing, history=_clean_history(site)
    )
    assert [str(f) for f in report.lost] == [
        f"{SITE_ID}/cam-2/hq #7: delivered, but not in the central's store"
    ]
