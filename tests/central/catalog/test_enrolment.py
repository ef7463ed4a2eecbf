"""Enrolment tokens: stored by digest, single use, expiring, used for one site only."""

from __future__ import annotations

import pytest

from central.catalog import Conflict, InvalidRecord, NotFound, SqliteCatalog
from shared.clock import NS_PER_S, ManualClock
from tests.central.catalog.catalog_parts import dial_in_site, digest_of

DAY_NS = 86_400 * NS_PER_S


def test_an_enrolment_token_works_once(catalog: SqliteCatalog, clock: ManualClock) -> None:
    digest = digest_of("enrol-1")
    created = catalog.add_enrolment_token(digest, "train 4", clock.now_ns() + DAY_NS)
    assert created.usable_at(clock.now_ns())
    assert catalog.enrolment_token(digest) == created
    first, _ = catalog.add_site(dial_in_site("Train 4", remote_site_id="t4"), None)
    second, _ = catalog.add_site(dial_in_site("Train 5", remote_site_id="t5"), None)
    clock.advance(10)

    used = catalog.use_enrolment_token(digest, first.site_id, clock.now_ns())

    assert (used.used_by_site_id, used.used_ns) == (first.site_id, clock.now_ns())
    assert catalog.enrolment_token(digest) == used
    assert not used.usable_at(clock.now_ns())
    with pytest.raises(Conflict, match=f"'train 4' was already used \\(by site {first.site_id}\\)"):
        catalog.use_enrolment_token(digest, second.site_id, clock.now_ns())
    assert catalog.enrolment_token(digest) == used


def test_a_used_token_stays_used_after_its_site_is_removed(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    digest = digest_of("enrol-1")
    catalog.add_enrolment_token(digest, "bus", clock.now_ns() + DAY_NS)
    site, _ = catalog.add_site(dial_in_site(), None, enrolment_digest=digest)
    catalog.remove_site(site.site_id)
    with pytest.raises(Conflict, match="already used"):
        catalog.add_site(dial_in_site(), None, enrolment_digest=digest)
    assert catalog.sites() == []


def test_an_expired_or_unknown_token_is_refused(catalog: SqliteCatalog, clock: ManualClock) -> None:
    digest = digest_of("enrol-1")
    catalog.add_enrolment_token(digest, "shop", clock.now_ns() + 60 * NS_PER_S)
    site, _ = catalog.add_site(dial_in_site(), None)
    clock.advance(60)
    with pytest.raises(Conflict, match="enrolment token 'shop' has expired"):
        catalog.use_enrolment_token(digest, site.site_id, clock.now_ns())
    with pytest.raises(NotFound, match="enrolment token"):
        catalog.use_enrolment_token(digest_of("other"), site.site_id, clock.now_ns())
    with pytest.raises(NotFound, match="site 's-nothere000'"):
        catalog.use_enrolment_token(digest, "s-nothere000", clock.now_ns())
    assert catalog.enrolment_token(digest_of("other")) is None


def test_enrolment_tokens_are_listed_newest_first_and_must_expire_later(
    catalog: SqliteCatalog, clock: ManualClock
) -> None:
    first = catalog.add_enrolment_token(digest_of("a"), "first", clock.now_ns() + DAY_NS)
    clock.advance(1)
    second = catalog.add_enrolment_token(digest_of("b"), "second", clock.now_ns() + DAY_NS)
    assert catalog.enrolment_tokens() == [second, first]
    with pytest.raises(Conflict, match="already stored"):
        catalog.add_enrolment_token(digest_of("a"), "again", clock.now_ns() + DAY_NS)
    with pytest.raises(InvalidRecord, match=r"^expires_ns: an enrolment token must expire"):
        catalog.add_enrolment_token(digest_of("c"), "past", clock.now_ns())
    with pytest.raises(InvalidRecord, match=r"^label: must not be empty"):
        catalog.add_enrolment_token(digest_of("d"), "", clock.now_ns() + DAY_NS)
