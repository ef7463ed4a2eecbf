"""What a site offers its users, whatever the transport: site info, devices, timelines,
status and retention holds, each checked against the caller's device permissions.

The local REST API calls it now; the link to the central will call the same methods. A
device the caller may not use is reported exactly like one that does not exist
(`DeviceNotFound`), and so is a hold on such a device (`HoldNotFound`), so ids cannot be
probed. Every store call runs in a worker thread; `wait_idle` waits for those still running
(a cancelled request leaves its thread running), so the store is closed only after them.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.accounts import Principal
from agent.config import AgentConfig
from agent.device_catalog import DeviceInfo, DeviceKind, device_catalog
from agent.stream_formats import StreamCodecs, no_stream_codecs, with_seen_formats
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, Clock
from shared.store.chunk_store import ChunkStore
from shared.store.errors import HoldRefused
from shared.store.holds import Hold
from shared.store.timeline import Gap, Span, gaps_between
from shared.store.usage import StoreUsage

__all__ = [
    "DeviceNotFound",
    "HoldNotFound",
    "HoldRefused",
    "InvalidInput",
    "SiteService",
]

PRODUCT = "Siteline agent"
DAY_NS = 86_400 * NS_PER_S
MAX_TIMELINE_NS = 31 * DAY_NS
MAX_HOLD_RANGE_NS = 366 * DAY_NS
MAX_HOLD_LIFETIME_NS = 90 * DAY_NS

CamerasUp = Callable[[], Mapping[str, bool]]
"""Which cameras are delivering pictures now, by camera id."""

T = TypeVar("T")


class DeviceNotFound(Exception):
    """No such device, or the caller may not use it: the two are never told apart."""

    def __init__(self, device_id: str) -> None:
        super().__init__(f"no device {device_id!r}")
        self.device_id = device_id


class HoldNotFound(Exception):
    """No such hold, or it is on a device the caller may not use."""

    def __init__(self, hold_id: int) -> None:
        super().__init__(f"no hold {hold_id}")
        self.hold_id = hold_id


class InvalidInput(Exception):
    """A parameter is out of bounds; `parameter` names it as the API does."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True)
class SiteInfo:
    site_id: str
    name: str
    product: str
    version: str
    time_zone: str
    fingerprint: str | None  # of the TLS certificate; None when the API is plain HTTP
    public_key: bytes  # the Ed25519 key that signs every chunk


@dataclass(frozen=True)
class StreamTimeline:
    stream: str
    spans: list[Span]
    gaps: list[Gap]


@dataclass(frozen=True)
class StreamStatus:
    device_id: str
    stream: str
    chunk_count: int
    stored_bytes: int
    oldest_ns: int | None
    newest_ns: int | None


@dataclass(frozen=True)
class CameraStatus:
    device_id: str
    name: str
    up: bool


@dataclass(frozen=True)
class SiteStatus:
    now_ns: int
    uptime_s: float
    usage: StoreUsage
    disk_free_bytes: int
    cameras: list[CameraStatus]
    streams: list[StreamStatus]


class SiteService:
    """See the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        store: ChunkStore,
        *,
        public_key: bytes,
        fingerprint: str | None,
        clock: Clock,
        cameras_up: CamerasUp,
        version: str,
        stream_codecs: StreamCodecs = no_stream_codecs,
    ) -> None:
        """`stream_codecs`: what each stream's source announced, for the formats the device
        list reports (see `stream_formats.py`)."""
        self._config = config
        self._store = store
        self._clock = clock
        self._cameras_up = cameras_up
        self._stream_codecs = stream_codecs
        self._started_mono_ns = clock.monotonic_ns()
        self._devices = {device.id: device for device in device_catalog(config)}
        self._info = SiteInfo(
            config.site.id,
            config.site.name,
            PRODUCT,
            version,
            config.site.time_zone,
            fingerprint,
            public_key,
        )
        self._store_calls: set[asyncio.Task[Any]] = set()

    def site_info(self) -> SiteInfo:
        return self._info

    def devices(self, principal: Principal) -> list[DeviceInfo]:
        """The devices the principal may use, in the configuration's order, each stream
        with its format as its source announced it (the configuration's before that)."""
        codecs = self._stream_codecs()
        return [
            with_seen_formats(d, codecs)
            for d in self._devices.values()
            if principal.may_access(d.id)
        ]

    def device(self, principal: Principal, device_id: str) -> DeviceInfo:
        """One device the principal may use; `DeviceNotFound` otherwise."""
        device = self._devices.get(device_id)
        if device is None or not principal.may_access(device_id):
            raise DeviceNotFound(device_id)
        return device

    async def timeline(
        self,
        principal: Principal,
        device_id: str,
        start_ns: int,
        end_ns: int,
        stream: str | None = None,
    ) -> list[StreamTimeline]:
        """Recorded spans and the gaps between them in [start_ns, end_ns), per stream."""
        device = self.device(principal, device_id)
        _check_range("start", start_ns, end_ns, MAX_TIMELINE_NS)
        streams = self._streams_of(device, [stream] if stream is not None else None, "stream")
        result = []
        for name in streams:
            spans = await self._in_thread(self._store.timeline, device.id, name, start_ns, end_ns)
            result.append(StreamTimeline(name, spans, gaps_between(spans)))
        return result

    async def chunks_after(
        self,
        principal: Principal,
        device_id: str,
        stream: str,
        after_seq: int,
        *,
        limit: int,
        max_bytes: int,
    ) -> list[SignedChunk]:
        """Stored chunks of one stream with seq > `after_seq`, in seq order: a transfer's
        next batch (see `ChunkStore.chunks_after_seq` for `limit` and `max_bytes`)."""
        device = self.device(principal, device_id)
        [name] = self._streams_of(device, [stream], "stream")
        read = functools.partial(
            self._store.chunks_after_seq,
            device.id,
            name,
            after_seq,
            limit=limit,
            max_bytes=max_bytes,
        )
        return await self._in_thread(read)

    async def status(self, principal: Principal) -> SiteStatus:
        """Storage, the oldest and newest recording per stream, cameras up, uptime."""
        usage = await self._in_thread(self._store.usage)
        disk_free = await self._in_thread(_disk_free_bytes, self._store)
        summaries = await self._in_thread(self._store.streams)
        up = self._cameras_up()
        cameras = [
            CameraStatus(d.id, d.name, bool(up.get(d.id, False)))
            for d in self.devices(principal)
            if d.kind is DeviceKind.CAMERA
        ]
        streams = [
            StreamStatus(
                s.device_id,
                s.stream,
                s.chunk_count,
                s.stored_bytes,
                s.first_start_ns,
                s.last_end_ns,
            )
            for s in summaries
            if principal.may_access(s.device_id)
        ]
        uptime_s = (self._clock.monotonic_ns() - self._started_mono_ns) / NS_PER_S
        return SiteStatus(self._clock.now_ns(), uptime_s, usage, disk_free, cameras, streams)

    async def place_hold(
        self,
        principal: Principal,
        device_id: str,
        *,
        streams: Sequence[str] | None,
        start_ns: int,
        end_ns: int,
        expires_ns: int,
    ) -> list[Hold]:
        """One hold per stream (every recorded stream of the device when `streams` is None).

        All or nothing: when the store refuses one (`HoldRefused`, e.g. over the hold
        budget), the ones already placed are released before the error is raised.
        """
        device = self.device(principal, device_id)
        names = self._streams_of(device, streams, "streams")
        _check_range("start", start_ns, end_ns, MAX_HOLD_RANGE_NS)
        now_ns = self._clock.now_ns()
        if expires_ns <= now_ns:
            raise InvalidInput("expires", "must be in the future")
        if expires_ns - now_ns > MAX_HOLD_LIFETIME_NS:
            raise InvalidInput(
                "expires", f"must be at most {MAX_HOLD_LIFETIME_NS // DAY_NS} days from now"
            )
        placed: list[Hold] = []
        try:
            for name in names:
                place = functools.partial(
                    self._store.place_hold,
                    device.id,
                    name,
                    start_ns,
                    end_ns,
                    expires_ns=expires_ns,
                    owner=principal.username,
                )
                placed.append(await self._in_thread(place))
        except Exception:
            for hold in placed:
                await self._in_thread(self._store.release_hold, hold.hold_id)
            raise
        return placed

    async def deleted_until(self, hold: Hold) -> int | None:
        """Where the site's retention had deleted the held stream up to, if that reaches
        into the hold's range (those recordings are gone: no hold brings them back)."""
        horizon = await self._in_thread(self._store.retention_horizon, hold.device_id, hold.stream)
        if horizon is None or horizon.end_ns <= hold.start_ns:
            return None
        return horizon.end_ns

    async def list_holds(self, principal: Principal) -> list[Hold]:
        """The active holds on devices the principal may use."""
        holds = await self._in_thread(self._store.list_holds)
        return [h for h in holds if principal.may_access(h.device_id)]

    async def release_hold(self, principal: Principal, hold_id: int) -> None:
        """Release one hold; `HoldNotFound` if none is active or it is on a forbidden device."""
        holds = await self.list_holds(principal)
        if not any(h.hold_id == hold_id for h in holds):
            raise HoldNotFound(hold_id)
        if not await self._in_thread(self._store.release_hold, hold_id):
            raise HoldNotFound(hold_id)  # released by someone else in between

    async def wait_idle(self) -> None:
        """Wait for every store call still running in a worker thread."""
        while self._store_calls:
            await asyncio.wait(set(self._store_calls))

    def _streams_of(
        self, device: DeviceInfo, wanted: Sequence[str] | None, parameter: str
    ) -> list[str]:
        available = device.stream_names()
        if not available:
            raise InvalidInput(parameter, f"device {device.id!r} has no recorded streams")
        if wanted is None:
            return list(available)
        if not wanted:
            raise InvalidInput(parameter, "name at least one stream")
        for name in wanted:
            if name not in available:
                raise InvalidInput(
                    parameter,
                    f"{name!r} is not a stream of device {device.id!r} "
                    f"(it has {', '.join(available)})",
                )
        return list(dict.fromkeys(wanted))

    async def _in_thread(self, function: Callable[..., T], *args: object) -> T:
        task: asyncio.Task[T] = asyncio.ensure_future(asyncio.to_thread(function, *args))
        self._store_calls.add(task)
        task.add_done_callback(self._store_calls.discard)
        # A cancelled caller must not cancel the task: its thread runs on regardless, and
        # `wait_idle` has to see it finish.
        return await asyncio.shield(task)


def _check_range(parameter: str, start_ns: int, end_ns: int, max_ns: int) -> None:
    if start_ns < 0:
        raise InvalidInput(parameter, "must not be before 1970")
    if end_ns <= start_ns:
        raise InvalidInput("end", "must be after start")
    if end_ns - start_ns > max_ns:
        raise InvalidInput("end", f"must be at most {max_ns // DAY_NS} days after start")


def _disk_free_bytes(store: ChunkStore) -> int:
    try:
        return shutil.disk_usage(store.path).free
    except OSError:
        return 0
