"""What the central last saw of a site's retention (central/retrieval/retention_trends.py),
and a job queued while the site is away flagged at risk by it (away_risk.py); with a real
catalog and the real at-risk notifications."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.catalog import SqliteCatalog
from central.retrieval.at_risk_notice import NOTICE_AT_RISK, AtRiskNotice
from central.retrieval.away_risk import AwayRisk
from central.retrieval.job_records import RetrievalJob
from central.retrieval.retention_trends import (
    MIN_TREND_S,
    OldestReading,
    RetentionTrend,
    RetentionTrends,
    oldest_recordings,
)
from shared.api_input import format_instant
from shared.clock import NS_PER_S, ManualClock
from tests.central.catalog.catalog_parts import (
    SPAN_START_NS,
    camera,
    dial_out_site,
    open_catalog,
    retrieval,
)

MINUTE_NS = 60 * NS_PER_S


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(tmp_path: Path, clock: ManualClock) -> Iterator[SqliteCatalog]:
    yield from open_catalog(tmp_path, clock)


def _status(oldest_ns: int, *, device: str = "cam-a", stream: str = "hq") -> dict[str, object]:
    """A site's status as its API writes it, with one stream."""
    return {
        "now": format_instant(oldest_ns),
        "streams": [
            {"device_id": device, "stream": stream, "oldest": format_instant(oldest_ns)},
            {"device_id": device, "stream": "lq", "oldest": None},  # nothing recorded
        ],
    }


def test_the_pace_is_measured_over_a_minute_or_more_and_extrapolated() -> None:
    first = OldestReading(oldest_ns=1_000 * NS_PER_S, at_ns=5_000 * NS_PER_S)
    short = RetentionTrend(first, OldestReading(1_030 * NS_PER_S, 5_030 * NS_PER_S))
    assert MIN_TREND_S == 60.0
    assert short.pace is None  # 30 s apart: too short to say
    assert short.deleted_until(9_000 * NS_PER_S) == 1_030 * NS_PER_S  # only what is known
    steady = RetentionTrend(first, OldestReading(1_120 * NS_PER_S, 5_120 * NS_PER_S))
    assert steady.pace == pytest.approx(1.0)
    # 100 s after the last reading, 100 s more are gone.
    assert steady.deleted_until(5_220 * NS_PER_S) == 1_220 * NS_PER_S
    idle = RetentionTrend(first, OldestReading(1_000 * NS_PER_S, 5_600 * NS_PER_S))
    assert idle.pace == 0.0  # a store not full yet: nothing moves
    assert RetentionTrend.from_json(steady.to_json()) == steady
    assert RetentionTrend.from_json([1, 2, 3]) is None
    assert RetentionTrend.from_json([1, 2, 3, "4"]) is None


def test_only_well_formed_oldest_recordings_are_read() -> None:
    assert oldest_recordings(_status(7 * NS_PER_S)) == {("cam-a", "hq"): 7 * NS_PER_S}
    assert oldest_recordings({"streams": "garbage"}) == {}
    bad = {"streams": [{"device_id": "cam-a", "stream": "hq", "oldest": "yesterday"}, 3]}
    assert oldest_recordings(bad) == {}


def test_trends_start_afresh_on_each_link_and_outlive_the_central(
    catalog: SqliteCatalog, tmp_path: Path, clock: ManualClock
) -> None:
    trends = RetentionTrends(catalog)
    trends.link_started("s1")
    trends.observe("s1", _status(100 * NS_PER_S), 1_000 * NS_PER_S)
    trends.observe("s1", _status(190 * NS_PER_S), 1_090 * NS_PER_S)
    trend = trends.of_site("s1")[("cam-a", "hq")]
    assert (trend.first.oldest_ns, trend.last.oldest_ns) == (100 * NS_PER_S, 190 * NS_PER_S)
    trends.save("s1")
    # A central started again reads what the last link saw.
    assert RetentionTrends(catalog).of_site("s1") == {("cam-a", "hq"): trend}
    trends.link_started("s1")  # a new link: its first reading starts the trend
    trends.observe("s1", _status(500 * NS_PER_S), 2_000 * NS_PER_S)
    assert trends.of_site("s1")[("cam-a", "hq")].first.oldest_ns == 500 * NS_PER_S
    trends.forget("s1")
    assert RetentionTrends(catalog).of_site("s1") == {}


async def _away_job(
    catalog: SqliteCatalog, clock: ManualClock, trends: RetentionTrends, *, linked: bool
) -> tuple[AwayRisk, RetrievalJob]:
    site, (cam,) = catalog.add_site(dial_out_site(), "pw", [camera("cam-a")])
    job = catalog.add_retrieval_job(retrieval(site.site_id, [cam.device_id], minutes=10))
    away = AwayRisk(
        catalog,
        trends,
        AtRiskNotice(catalog, clock),
        clock=clock,
        linked=lambda site_id: linked,
    )
    return away, job


async def test_a_span_the_site_no_longer_held_when_last_seen_is_lost(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    trends = RetentionTrends(catalog)
    away, job = await _away_job(catalog, clock, trends, linked=False)
    # When last reached, the site's oldest HQ of cam-a was 4 minutes into the job's span.
    trends.link_started(job.site_id)
    trends.observe(job.site_id, _status(SPAN_START_NS + 4 * MINUTE_NS), clock.now_ns())
    assert await away.check(job) is True
    flagged = catalog.retrieval_job(job.job_id)
    assert flagged.at_risk
    assert flagged.state is job.state  # still pending: it retrieves what is left
    (note,) = [n for n in catalog.notifications(open_only=True) if n.kind == NOTICE_AT_RISK]
    assert note.device_id == job.streams[0].device_id
    assert "no longer held" in note.message
    assert "(240 s) is lost" in note.message
    assert await away.check(flagged) is False  # flagged once


async def test_the_forecast_flags_a_span_retention_has_probably_reached_since(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    trends = RetentionTrends(catalog)
    away, job = await _away_job(catalog, clock, trends, linked=False)
    now = clock.now_ns()
    # Over the last link retention moved the oldest recording at 1 s a second, and it was
    # 2 minutes before the span when the link ended, 10 minutes ago.
    trends.link_started(job.site_id)
    trends.observe(job.site_id, _status(SPAN_START_NS - 7 * MINUTE_NS), now - 15 * MINUTE_NS)
    trends.observe(job.site_id, _status(SPAN_START_NS - 2 * MINUTE_NS), now - 10 * MINUTE_NS)
    assert await away.check(job) is True
    note = next(n for n in catalog.notifications(open_only=True) if n.kind == NOTICE_AT_RISK)
    assert "probably deleted" in note.message
    assert "at 1.00 s a second" in note.message
    assert "(480 s)" in note.message  # 10 minutes gone since, 2 of them before the span


async def test_no_flag_while_the_site_is_linked_or_its_retention_is_behind_the_span(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    trends = RetentionTrends(catalog)
    away, job = await _away_job(catalog, clock, trends, linked=True)
    trends.link_started(job.site_id)
    trends.observe(job.site_id, _status(SPAN_START_NS + 4 * MINUTE_NS), clock.now_ns())
    assert await away.check(job) is False  # linked: its holds' answer tells
    away_now = AwayRisk(
        catalog, trends, AtRiskNotice(catalog, clock), clock=clock, linked=lambda _: False
    )
    trends.link_started(job.site_id)
    trends.observe(job.site_id, _status(SPAN_START_NS - 60 * MINUTE_NS), clock.now_ns())
    assert await away_now.check(job) is False  # an hour of margin, and no pace measured
    assert not catalog.retrieval_job(job.job_id).at_risk
    assert await away_now.check_all() == 0
    assert [n for n in catalog.notifications(open_only=True) if n.kind == NOTICE_AT_RISK] == []
