"""Retrieval on a site's events: an event a rule names makes a job around the event's instant.

`EventRetrieval` is one of the works the site registry runs over every open link. While
the link is up it follows the site's events of the kinds its enabled event rules name (the
union of them; no subscription at all while the site has none). When the rules of the site
change (`rules_changed`, from the API) it reads them again and subscribes anew.

For each event it reads the site's rules again (a rule disabled a moment ago no longer
fires), maps the event's device (the site's own id) to the central's device, and for every
enabled rule naming the event's kind whose `sources` include that device (or are empty:
any device, and the site itself, for storage events), makes a job with origin `rule` of the
rule's devices for [at - before_s, at + after_s) in the rule's quality. Instants are the
site's: `at_ns` comes from the site's clock, as do the recordings' timestamps.

Bursts: a motion detector may report many events a second apart. Per rule the work keeps,
*in memory*, the end of the last span it queued; an event whose span overlaps it queues
only what lies after it, and nothing when nothing is new. After a central restart that
memory is empty, so the first event may queue again a part already queued before; the
central's store keeps every chunk once, so that costs transfer, never a duplicate.

A job the catalog refuses (a device of the rule removed, or without the rule's quality) is
logged and skipped: an event never ends the work or the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError
from central.catalog.records import SiteRecord
from central.retrieval.job_records import JobOrigin
from central.retrieval.retrieval_service import RetrievalRefused, RetrievalService
from central.retrieval.rule_records import RetrievalRule
from shared.clock import NS_PER_S
from shared.link.messages import EventItem
from shared.link_io.client import LinkClient

_log = logging.getLogger(__name__)


class EventRetrieval:
    """A `LinkWork`: follows a site's events and queues the jobs its event rules ask for."""

    def __init__(self, catalog: Catalog, retrievals: RetrievalService) -> None:
        self._catalog = catalog
        self._retrievals = retrievals
        self._changed: dict[str, asyncio.Event] = {}
        self._queued_until_ns: dict[str, int] = {}

    def rules_changed(self, site_id: str) -> None:
        """The site's rules were added, changed or removed: follow the kinds they name now."""
        changed = self._changed.get(site_id)
        if changed is not None:
            changed.set()

    def queued_until_ns(self, rule_id: str) -> int | None:
        """The end of the last span queued for the rule since the central started."""
        return self._queued_until_ns.get(rule_id)

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        """Until cancelled or the link ends."""
        changed = asyncio.Event()
        self._changed[site.site_id] = changed
        try:
            while True:
                changed.clear()
                rules = await asyncio.to_thread(self._catalog.retrieval_rules, site.site_id)
                kinds = _kinds_of(rules)
                if not kinds:
                    await changed.wait()
                    continue
                if not await self._follow_until_changed(site, link, kinds, changed):
                    return  # the site ended the events stream: the link is ending
        finally:
            if self._changed.get(site.site_id) is changed:
                del self._changed[site.site_id]

    async def _follow_until_changed(
        self, site: SiteRecord, link: LinkClient, kinds: tuple[str, ...], changed: asyncio.Event
    ) -> bool:
        """Follow events of `kinds` until the rules change (True) or the stream ends (False)."""
        following = asyncio.create_task(self._follow(site, link, kinds))
        waiting = asyncio.create_task(changed.wait())
        try:
            await asyncio.wait((following, waiting), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (following, waiting):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if following.done() and not following.cancelled():
            following.result()  # an error of the link propagates
            return False
        return True

    async def _follow(self, site: SiteRecord, link: LinkClient, kinds: tuple[str, ...]) -> None:
        async with link.events(kinds) as events:
            async for event in events:
                await self.on_event(site, event)

    async def on_event(self, site: SiteRecord, event: EventItem) -> None:
        """Queue the jobs the site's enabled event rules ask for on `event`."""
        rules, source = await asyncio.to_thread(self._matching, site, event)
        for rule in rules:
            await self._queue(rule, event, source)

    def _matching(
        self, site: SiteRecord, event: EventItem
    ) -> tuple[list[RetrievalRule], str | None]:
        """(rules that `event` triggers, the central's id of its device) (blocking)."""
        device = self._catalog.device_by_remote(site.site_id, event.device_id)
        source = None if device is None else device.device_id
        rules = self._catalog.retrieval_rules(site.site_id)
        return [rule for rule in rules if rule.matches(event.kind, source)], source

    async def _queue(self, rule: RetrievalRule, event: EventItem, source: str | None) -> None:
        start_ns = max(0, event.at_ns - rule.before_s * NS_PER_S)
        end_ns = event.at_ns + rule.after_s * NS_PER_S
        queued_until_ns = self._queued_until_ns.get(rule.rule_id)
        if queued_until_ns is not None:
            start_ns = max(start_ns, queued_until_ns)
        if end_ns <= start_ns:
            return  # a burst: this event's span was queued already
        try:
            job = await self._retrievals.create(
                rule.device_ids,
                start_ns,
                end_ns,
                quality=rule.quality,
                origin=JobOrigin.RULE,
                rule_id=rule.rule_id,
            )
        except (CatalogError, RetrievalRefused) as exc:
            _log.warning(
                "rule %s (%s): no retrieval for %s of %s: %s",
                rule.rule_id,
                rule.name,
                event.kind,
                source or event.device_id,
                exc,
            )
            return
        self._queued_until_ns[rule.rule_id] = end_ns
        _log.info(
            "rule %s (%s): %s of %s; retrieval %s of %.0f s",
            rule.rule_id,
            rule.name,
            event.kind,
            source or event.device_id,
            job.job_id,
            (end_ns - start_ns) / NS_PER_S,
        )


def _kinds_of(rules: Sequence[RetrievalRule]) -> tuple[str, ...]:
    """The event kinds the enabled event rules name, each once, sorted."""
    return tuple(
        sorted(
            {
                kind
                for rule in rules
                if rule.enabled and rule.kind == "event"
                for kind in rule.events
            }
        )
    )
