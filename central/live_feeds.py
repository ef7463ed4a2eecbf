"""The central's live feeds: one pull of a camera's reference stream from its site, shared by
every viewer and by the central's recording of it.

A feed pulls a device's ``lq`` stream over the site's link while it is wanted:

- the device's `live_feed` rule is ``always`` (pulled whenever the site is online, so a
  viewer's first picture comes at once);
- or it is ``on_demand`` and someone watches (the pull stops `linger_s` after the last
  viewer leaves, so flicking between cameras does not restart it);
- or the device is recorded at the central (`recording` ``central_only`` or ``both``): the
  pull then runs through a `RelayRecording`, which stores the site-signed chunks its rule
  wants and hands every packet on to the viewers; the link carries the stream once.

``never`` refuses viewers; recording at the central still pulls the stream. A chunk the
recording missed while the link stayed up goes, with the central's device id, to
`missed_chunk` (`central/retrieval/missed_chunks.py` queues it for retrieval). Viewers get the
packets from a `LiveRelay` (its last GOP cached, each viewer's backlog bounded). A feed
whose site goes offline reports itself interrupted, with the reason, and resumes by itself
when the site's link is back; viewers stay attached across the interruption.

This object is also a `LinkWork`: while a site's link is open it starts the wanted feeds of
that site and forwards the site's motion and input events to the recordings (their rules
trigger on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.catalog.records import DeviceRecord, SiteRecord
from central.central_rule import CentralRule
from central.ingest_writer import ChunkSink
from central.relay_recorder import ChunkMissed
from central.relay_recording import RelayRecording, RelayRecordingStatus, rule_gate
from shared.clock import Clock
from shared.link import events as ev
from shared.link_io.client import LinkClient, LinkLost, RequestFailed
from shared.live_relay import LiveRelay, LiveViewer
from shared.media import CodecConfig, MediaFormatError, MediaPacket
from shared.store.chunk_store import ChunkStore
from shared.transfer_acceptance import TransferExpectation

_log = logging.getLogger(__name__)

LIVE_STREAM = "lq"
DEFAULT_LINGER_S = 10.0
RETRY_S = 2.0
_TRIGGER_EVENTS = ("motion_started", "motion_ended", "input_active", "input_inactive")


class LiveRefused(Exception):
    """The device cannot be watched live; `code` says why in a word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FeedState:
    """What a viewer is told: streaming, or interrupted and why. Each change notifies the
    feed's viewers (`LiveViewer.notify`), so a viewer's reader waits at one place for its
    packets and for this."""

    streaming: bool = False
    reason: str = "starting"
    viewers: set[LiveViewer] = field(default_factory=set)

    def set(self, streaming: bool, reason: str) -> None:
        if (self.streaming, self.reason) != (streaming, reason):
            self.streaming, self.reason = streaming, reason
            for viewer in self.viewers:
                viewer.notify()


@dataclass
class _Feed:
    device_id: str
    site_id: str
    state: FeedState = field(default_factory=FeedState)
    viewers: int = 0
    task: asyncio.Task[None] | None = None
    linger: asyncio.Task[None] | None = None
    recording: RelayRecording | None = None
    publisher: _Publisher | None = None


@dataclass
class LiveWatch:
    """One viewer: its backlog, and the feed's state to show."""

    viewer: LiveViewer
    state: FeedState


class LiveFeeds:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        store: ChunkStore,
        ingest: ChunkSink,
        *,
        clock: Clock,
        relay: LiveRelay | None = None,
        linger_s: float = DEFAULT_LINGER_S,
        missed_chunk: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._clock = clock
        self.relay = relay or LiveRelay()
        self._linger_s = linger_s
        self._ingest = ingest
        self._missed_chunk = missed_chunk  # (device_id, start_ns, end_ns)
        self._feeds: dict[str, _Feed] = {}
        self._links: dict[str, LinkClient] = {}
        self._link_changed: dict[str, asyncio.Event] = {}
        self._closing: set[asyncio.Task[None]] = set()

    # -- viewers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, device_id: str) -> AsyncIterator[LiveWatch]:
        """Watch a device live; `NotFound` for an unknown device, `LiveRefused` when its
        rule is ``never`` or it has no video stream to relay."""
        device = await asyncio.to_thread(self._catalog.device, device_id)
        if device.live_feed == "never":
            raise LiveRefused("live_off", f"live video of {device.name!r} is switched off")
        if LIVE_STREAM not in {s.name for s in device.streams}:
            raise LiveRefused(
                "not_video", f"{device.name!r} has no {LIVE_STREAM} video stream to watch"
            )
        feed = self._feed(device)
        feed.viewers += 1
        if feed.linger is not None:
            feed.linger.cancel()
            feed.linger = None
        self._ensure_running(feed)
        try:
            with self.relay.subscribe(device_id, LIVE_STREAM) as viewer:
                feed.state.viewers.add(viewer)
                try:
                    yield LiveWatch(viewer, feed.state)
                finally:
                    feed.state.viewers.discard(viewer)
        finally:
            feed.viewers -= 1
            if feed.viewers == 0:
                feed.linger = asyncio.create_task(self._linger(feed), name=f"linger-{device_id}")

    def recording_status(self, device_id: str) -> RelayRecordingStatus | None:
        feed = self._feeds.get(device_id)
        return None if feed is None or feed.recording is None else feed.recording.status

    def feed_state(self, device_id: str) -> FeedState | None:
        feed = self._feeds.get(device_id)
        return None if feed is None else feed.state

    async def manual_recording(self, device_id: str, *, start: bool) -> None:
        """An operator's start or stop of a device whose rule is ``manual``."""
        feed = self._feeds.get(device_id)
        if feed is None or feed.recording is None:
            raise LiveRefused("not_recording", "the device is not being recorded at the central")
        if start:
            await feed.recording.manual_start()
        else:
            feed.recording.manual_stop()

    def device_changed(self, device_id: str) -> None:
        """The device's rules changed: restart its feed with them (or stop it)."""
        feed = self._feeds.get(device_id)
        if feed is not None and feed.task is not None:
            feed.task.cancel()
            feed.task = None
            self._retire(feed)
        try:
            device = self._catalog.device(device_id)
        except NotFound:
            return
        if self._wanted(device, self._feeds.get(device_id)):
            self._ensure_running(self._feed(device))

    async def stop(self) -> None:
        """Stop every feed; chunks already accepted for recording are stored first."""
        tasks = [t for f in self._feeds.values() for t in (f.task, f.linger) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for feed in self._feeds.values():
            self._retire(feed)
        # A finished task removes itself from the set: wait on a copy.
        await asyncio.gather(*list(self._closing), return_exceptions=True)
        self._feeds.clear()

    def _retire(self, feed: _Feed) -> None:
        """Let the feed's recording store what it accepted, in the background."""
        recording, feed.recording = feed.recording, None
        if recording is not None:
            task = asyncio.create_task(recording.close(), name=f"close-{feed.device_id}")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # -- LinkWork ------------------------------------------------------------------------------

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        self._links[site.site_id] = link
        self._signal_link(site.site_id)
        try:
            devices = await asyncio.to_thread(self._catalog.devices, site.site_id)
            for device in devices:
                if self._wanted(device, self._feeds.get(device.device_id)):
                    self._ensure_running(self._feed(device))
            async with link.events(_TRIGGER_EVENTS) as events:
                async for event in events:
                    await self._forward(site.site_id, event)
        finally:
            if self._links.get(site.site_id) is link:
                del self._links[site.site_id]
            self._signal_link(site.site_id)

    # -- inside --------------------------------------------------------------------------------

    def _feed(self, device: DeviceRecord) -> _Feed:
        feed = self._feeds.get(device.device_id)
        if feed is None:
            feed = _Feed(device.device_id, device.site_id)
            self._feeds[device.device_id] = feed
        return feed

    @staticmethod
    def _wanted(device: DeviceRecord, feed: _Feed | None) -> bool:
        if not device.present or LIVE_STREAM not in {s.name for s in device.streams}:
            return False
        if device.recording in ("central_only", "both") or device.live_feed == "always":
            return True
        return feed is not None and (feed.viewers > 0 or feed.linger is not None)

    def _ensure_running(self, feed: _Feed) -> None:
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._pull(feed), name=f"feed-{feed.device_id}")

    async def _linger(self, feed: _Feed) -> None:
        await self._clock.sleep(self._linger_s)
        feed.linger = None
        try:
            device = await asyncio.to_thread(self._catalog.device, feed.device_id)
        except NotFound:
            device = None
        if feed.viewers == 0 and (device is None or not self._wanted(device, feed)):
            if feed.task is not None:
                feed.task.cancel()
                feed.task = None
            self._retire(feed)

    def _signal_link(self, site_id: str) -> None:
        event = self._link_changed.setdefault(site_id, asyncio.Event())
        event.set()

    async def _pull(self, feed: _Feed) -> None:
        """Pull the device's stream whenever its site is online, until cancelled."""
        while True:
            device = await asyncio.to_thread(self._catalog.device, feed.device_id)
            site = await asyncio.to_thread(self._catalog.site, feed.site_id)
            link = self._links.get(feed.site_id)
            if link is None or not link.is_open:
                feed.state.set(False, "the site is offline")
                changed = self._link_changed.setdefault(feed.site_id, asyncio.Event())
                changed.clear()
                await changed.wait()
                continue
            try:
                await self._pull_once(feed, device, site, link)
                reason = "the site ended the stream"
            except (LinkLost, RequestFailed) as exc:
                reason = f"the stream was interrupted ({exc})"
            except MediaFormatError as exc:
                reason = f"the site sent a stream the central cannot relay ({exc})"
            feed.state.set(False, reason)
            _log.info("live %s: %s", feed.device_id, reason)
            await self._clock.sleep(RETRY_S)

    async def _pull_once(
        self, feed: _Feed, device: DeviceRecord, site: SiteRecord, link: LinkClient
    ) -> None:
        publish = feed.publisher or _Publisher(self.relay, feed)
        feed.publisher = publish
        records = device.recording in ("central_only", "both")
        if records and site.remote_site_id is not None and site.public_key is not None:
            if feed.recording is None:
                rule = CentralRule.from_json(device.central_rule)
                inputs = await asyncio.to_thread(self._site_inputs, rule, site.site_id)
                feed.recording = RelayRecording(
                    expectation=TransferExpectation(
                        site_id=site.remote_site_id,
                        device_id=device.remote_device_id,
                        stream=LIVE_STREAM,
                        public_key=site.public_key,
                    ),
                    store=self._store,
                    sink=self._ingest,
                    gate=rule_gate(rule, time_zone=site.time_zone),
                    clock=self._clock,
                    on_live=publish,
                    on_missed=self._on_missed(device.device_id),
                    trigger_inputs=inputs,
                )
            await feed.recording.run(link)
            return
        async with link.live(device.remote_device_id, LIVE_STREAM) as batches:
            async for batch in batches:
                publish(batch)

    def _site_inputs(self, rule: CentralRule, site_id: str) -> frozenset[str] | None:
        """The site's own ids of the rule's `trigger_inputs` (None: every input); ids that
        are not inputs of the site are left out: they trigger nothing (blocking)."""
        if rule.trigger_inputs is None:
            return None
        found = set()
        for device_id in rule.trigger_inputs:
            try:
                device = self._catalog.device(device_id)
            except NotFound:
                continue
            if device.site_id == site_id and device.kind == "input":
                found.add(device.remote_device_id)
        return frozenset(found)

    def _on_missed(self, device_id: str) -> Callable[[ChunkMissed], None] | None:
        missed_chunk = self._missed_chunk
        if missed_chunk is None:
            return None
        return lambda missed: missed_chunk(device_id, missed.start_ns, missed.end_ns)

    async def _forward(self, site_id: str, event: Any) -> None:
        for feed in list(self._feeds.values()):
            if feed.site_id == site_id and feed.recording is not None:
                await feed.recording.on_site_event(event)


class _Publisher:
    """Turns the link's live batches into the relay's codec and packets for one feed."""

    def __init__(self, relay: LiveRelay, feed: _Feed) -> None:
        self._relay = relay
        self._feed = feed

    def __call__(self, batch: ev.LiveReceived) -> None:
        feed = self._feed
        if batch.codec is not None:
            codec = CodecConfig.from_wire(msgpack.unpackb(batch.codec, raw=False))
            self._relay.set_codec(feed.device_id, LIVE_STREAM, codec)
        for packet in batch.packets:
            self._relay.publish(
                feed.device_id,
                MediaPacket(
                    LIVE_STREAM,
                    packet.pts,
                    packet.dts,
                    packet.duration,
                    packet.keyframe,
                    packet.data,
                    packet.wall_ns,
                ),
            )
        if batch.packets:
            feed.state.set(True, "streaming")
