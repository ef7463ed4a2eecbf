"""One site's connector: dials (or waits for) the site, keeps its link, and says how it is.

The rules live in `connector_state.ConnectorMachine`; this module does the I/O they ask for.
One task per site runs `run()`: it feeds the machine's events from a queue (attempt results,
links opening and closing, settings changes) and from the clock (due retries and
notifications), and carries out the actions. A link, once open, is checked to belong to the
site that was added (its identity, or the first identity for a site that dialled in), then
handed to the `LinkWork` (refresh the device list, follow events, relay live streams) until it
ends. Nothing here is ever awaited by a client request: the API reads `view` and the catalog.

A thousand sites that cannot be reached keep their connectors busy on the central's event loop,
the one that answers the API, so each attempt is kept cheap: the site's settings are read
again when the registry says they changed, not at every attempt, and the wait for the next
retry is one sleeping task. The connector's catalog writes (the offline notification, the
site's identity, its last contact) run in a worker thread, `catalog_executor`: each is a
SQLite transaction that waits for its fsync, and a thousand sites that went offline together
stopped the loop for 0.25-0.35 s when they were written on it. With an executor of its own
(the registry's), these writes never queue ahead of the API's calls in the default one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from central.catalog.catalog import Catalog
from central.catalog.records import SiteRecord
from central.connector_state import (
    AttemptFailed,
    ConnectorAction,
    ConnectorEvent,
    ConnectorMachine,
    ConnectorPolicy,
    ConnectorView,
    Disabled,
    Enabled,
    FailureKind,
    LinkClosed,
    LinkOpened,
    SettingsChanged,
    Started,
    Tick,
)
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkClient, LinkLost, RequestFailed
from shared.link_io.dialing import DialError, DialFailure

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

SITE_OFFLINE = "site_offline"

Dialer = Callable[[SiteRecord], AbstractAsyncContextManager[LinkClient]]
"""Opens a link to a central-dialled site (address, scheme, account and pin from the record)."""


class LinkWork(Protocol):
    """What the central does with a site while its link is open."""

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        """Until cancelled or the link ends."""
        ...


_DIAL_FAILURES = {
    DialFailure.UNREACHABLE: FailureKind.UNREACHABLE,
    DialFailure.REFUSED: FailureKind.REFUSED,
    DialFailure.UNTRUSTED: FailureKind.UNTRUSTED,
    DialFailure.INCOMPATIBLE: FailureKind.INCOMPATIBLE,
    DialFailure.BROKEN: FailureKind.INCOMPATIBLE,
}


class _Attached:
    """A link that arrived by itself (the site dialled in)."""

    def __init__(self, link: LinkClient) -> None:
        self.link = link


class _Wake:
    """The machine's wakeup at `wakeup_ns` is due (put in the inbox by the waker)."""

    def __init__(self, wakeup_ns: int) -> None:
        self.wakeup_ns = wakeup_ns


class SiteConnector:
    """See the module docstring."""

    def __init__(
        self,
        site: SiteRecord,
        *,
        catalog: Catalog,
        dialer: Dialer,
        work: LinkWork,
        clock: Clock,
        policy: ConnectorPolicy,
        rng: random.Random,
        catalog_executor: Executor | None = None,
    ) -> None:
        """`site`: the site as the catalog holds it now; `catalog_executor`: where the catalog
        calls run (None: the default executor)."""
        self.site_id = site.site_id
        self._catalog = catalog
        self._dialer = dialer
        self._work = work
        self._clock = clock
        self._catalog_executor = catalog_executor
        self._machine = ConnectorMachine(
            dials=site.dial == "central", policy=policy, rng=rng, now_ns=clock.now_ns()
        )
        self._site = site  # its settings as last read; read again when they change
        self._inbox: asyncio.Queue[ConnectorEvent | _Attached | _Wake] = asyncio.Queue()
        self._waker: asyncio.Task[None] | None = None
        self._waker_ns: int | None = None  # the wakeup `_waker` sleeps until
        self._session: asyncio.Task[None] | None = None
        self.link: LinkClient | None = None

    @property
    def view(self) -> ConnectorView:
        return self._machine.view

    # -- what the rest of the central tells a connector ------------------------------------

    def settings_changed(self) -> None:
        """The site's settings changed in the catalog (already written): read them again."""
        self._inbox.put_nowait(SettingsChanged(self._clock.now_ns()))

    def set_enabled(self, enabled: bool) -> None:
        now = self._clock.now_ns()
        self._inbox.put_nowait(Enabled(now) if enabled else Disabled(now))

    def attach(self, link: LinkClient) -> None:
        """A link the site opened by dialling in (its enrolment already checked)."""
        self._inbox.put_nowait(_Attached(link))

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled; then the link is closed."""
        first: ConnectorEvent = Started(self._clock.now_ns())
        if not self._site.enabled:
            first = Disabled(self._clock.now_ns())
        try:
            await self._apply(self._machine.handle(first))
            while True:
                item = await self._next_item()
                if isinstance(item, _Attached):
                    self._adopt(item.link)
                    continue
                if isinstance(item, SettingsChanged | Enabled):
                    # Told after the catalog was written (see SiteManagement.update_site).
                    self._site = await self._in_catalog(self._catalog.site, self.site_id)
                await self._apply(self._machine.handle(item))
        finally:
            self._arm_waker(None)
            await self._end_session()

    async def _in_catalog(self, call: Callable[..., _T], *args: Any) -> _T:
        """`call(*args)`, a catalog call, in the catalog executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._catalog_executor, functools.partial(call, *args))

    async def _next_item(self) -> ConnectorEvent | _Attached:
        """The next event: from the inbox, or a `Tick` when the machine's wakeup is due."""
        while True:
            self._arm_waker(self._machine.next_wakeup_ns())
            item = await self._inbox.get()
            if not isinstance(item, _Wake):
                return item
            if item.wakeup_ns == self._waker_ns:
                self._waker, self._waker_ns = None, None
                return Tick(self._clock.now_ns())
            # else from a waker replaced since: its wakeup is no longer the machine's

    def _arm_waker(self, wakeup_ns: int | None) -> None:
        """One sleeping task for the machine's next wakeup, replaced only when that changes
        (cheaper, for a thousand waiting connectors, than a sleep per wait)."""
        if wakeup_ns == self._waker_ns:
            return
        if self._waker is not None:
            self._waker.cancel()
        self._waker_ns = wakeup_ns
        self._waker = None
        if wakeup_ns is not None:
            self._waker = asyncio.create_task(
                self._wake_at(wakeup_ns), name=f"site-{self.site_id}-waker"
            )

    async def _wake_at(self, wakeup_ns: int) -> None:
        await self._clock.sleep(max(0.0, (wakeup_ns - self._clock.now_ns()) / NS_PER_S))
        self._inbox.put_nowait(_Wake(wakeup_ns))

    async def _apply(self, actions: list[ConnectorAction]) -> None:
        for action in actions:
            match action:
                case ConnectorAction.DIAL:
                    self._start_session(self._dialled_session())
                case ConnectorAction.CLOSE_LINK:
                    if self.link is not None:
                        self.link.close("the site is disabled at the central")
                case ConnectorAction.RAISE_OFFLINE:
                    problem = self.view.problem or "no link"
                    await self._in_catalog(
                        self._catalog.raise_notification,
                        SITE_OFFLINE, self.site_id, None, f"site offline: {problem}",
                        self._clock.now_ns(),
                    )  # fmt: skip
                case ConnectorAction.CLEAR_OFFLINE:
                    await self._in_catalog(
                        self._catalog.clear_notification,
                        SITE_OFFLINE, self.site_id, None, self._clock.now_ns(),
                    )  # fmt: skip

    def _adopt(self, link: LinkClient) -> None:
        if self.link is not None and self.link.is_open:
            self.link.close("the site dialled in again")
        self._start_session(self._serve(link))

    def _post(self, event: ConnectorEvent) -> None:
        self._inbox.put_nowait(event)

    def _start_session(self, body: Coroutine[Any, Any, None]) -> None:
        """Run `body` as the one session, after abandoning the one under way, if any."""
        previous = self._session

        async def after_previous() -> None:
            if previous is not None:
                previous.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await previous
            await body

        self._session = asyncio.create_task(after_previous(), name=f"site-{self.site_id}")

    async def _dialled_session(self) -> None:
        try:
            async with self._dialer(self._site) as link:
                await self._serve(link)
        except DialError as exc:
            self._post(AttemptFailed(self._clock.now_ns(), _DIAL_FAILURES[exc.kind], str(exc)))

    async def _serve(self, link: LinkClient) -> None:
        """Check the link's site, then let the work use it until it ends."""
        site = self._catalog.site(self.site_id)
        try:
            info = await link.site_info()
        except (LinkLost, RequestFailed) as exc:
            self._post(AttemptFailed(self._clock.now_ns(), FailureKind.UNREACHABLE, str(exc)))
            return
        problem = _identity_problem(site, info)
        if problem is not None:
            _log.warning("site %s: %s", self.site_id, problem)
            link.close(problem)
            self._post(AttemptFailed(self._clock.now_ns(), FailureKind.UNTRUSTED, problem))
            return
        now_ns = self._clock.now_ns()
        site = self._site = await self._in_catalog(self._record_identity, info, now_ns)
        self.link = link
        self._post(LinkOpened(now_ns))
        work = asyncio.create_task(self._work.serve(site, link), name=f"site-{self.site_id}-work")
        work.add_done_callback(self._work_ended)
        try:
            end = await link.wait_closed()
        except asyncio.CancelledError:
            # Replaced by a newer link (the site dialled in again) or stopping: this link
            # is over either way, and the machine must hear so before any next one.
            self._post(LinkClosed(self._clock.now_ns(), "replaced by a newer link"))
            raise
        finally:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            if self.link is link:
                self.link = None
        self._post(LinkClosed(self._clock.now_ns(), f"{end.reason}: {end.detail}"))
        await self._in_catalog(self._catalog.mark_seen, self.site_id, self._clock.now_ns())

    def _record_identity(self, info: dict[str, Any], seen_ns: int) -> SiteRecord:
        """Store who the site said it is, and when it was seen (blocking)."""
        site = self._catalog.update_site(
            self.site_id,
            remote_site_id=info["id"],
            public_key=bytes.fromhex(info["public_key"]),
            product=info.get("product") or None,
            version=info.get("version") or None,
        )
        self._catalog.mark_seen(self.site_id, seen_ns)
        return site

    def _work_ended(self, work: asyncio.Task[None]) -> None:
        if work.cancelled():
            return
        error = work.exception()
        if isinstance(error, LinkLost):
            return  # the session reports the end of the link
        if error is not None:
            # A bug or a site answering nonsense: say so, and start afresh on a new link.
            _log.error("site %s: the link's work failed", self.site_id, exc_info=error)
            if self.link is not None:
                self.link.close(f"the central failed to use the link: {error}")

    async def _end_session(self) -> None:
        task, self._session = self._session, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _identity_problem(site: SiteRecord, info: dict[str, Any]) -> str | None:
    """Why the site at the other end is not the one that was added, if it is not."""
    remote_id = info.get("id")
    key = info.get("public_key")
    if not isinstance(remote_id, str) or not isinstance(key, str):
        return "the site did not say who it is"
    if site.remote_site_id is not None and remote_id != site.remote_site_id:
        return f"the site there is {remote_id!r}, not {site.remote_site_id!r} as when added"
    try:
        public_key = bytes.fromhex(key)
    except ValueError:
        return "the site's public key is not hex"
    if site.public_key is not None and public_key != site.public_key:
        return "the site's signing key changed since it was added; its recordings cannot be trusted"
    return None
