"""The catalog's records: frozen dataclasses that check their own fields.

`New*` records are what a caller proposes; `*Record` records are what the catalog stored,
with the ids and instants it added. Every record validates and normalises its fields in
`__post_init__` (see `central/catalog/validation.py`), so a record that exists is valid,
whether it came from an API request, from `dataclasses.replace`, or from a database row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from central.catalog import validation as check
from central.catalog.errors import InvalidRecord
from shared.media import MediaKind

Dial = Literal["central", "site"]
"""Who opens the link: `central` dials the site's address; `site` dials in (enrolment)."""
Scheme = Literal["https", "http"]
DeviceKind = Literal["camera", "microphone", "speaker", "metadata", "input", "output"]
Recording = Literal["site_only", "central_only", "both"]
"""Where a device's recordings are made: on the site, at the central, or both."""
LiveFeed = Literal["always", "on_demand", "never"]
Role = Literal["admin", "operator", "viewer"]

DIALS: tuple[str, ...] = get_args(Dial)
SCHEMES: tuple[str, ...] = get_args(Scheme)
DEVICE_KINDS: tuple[str, ...] = get_args(DeviceKind)
RECORDINGS: tuple[str, ...] = get_args(Recording)
LIVE_FEEDS: tuple[str, ...] = get_args(LiveFeed)
ROLES: tuple[str, ...] = get_args(Role)

DEFAULT_RECORDING: Recording = "site_only"
DEFAULT_LIVE_FEED: LiveFeed = "on_demand"
DEFAULT_PARALLEL_DEVICES = 8


def _normalise(record: object, name: str, value: object) -> None:
    """Store a normal form into a frozen record (only ever from its `__post_init__`)."""
    object.__setattr__(record, name, value)


# --- sites -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrievalSettings:
    """How hard the central may pull recordings from a site.

    `max_bandwidth_bps`: a cap in bits per second for all retrievals of the site (None: no
    cap). `window_start`/`window_end`: the daily "HH:MM" window, in the site's time zone,
    when background retrieval may run (both None: any time; the window may cross midnight).
    `parallel_devices`: how many devices are retrieved at once.
    """

    max_bandwidth_bps: int | None = None
    window_start: str | None = None
    window_end: str | None = None
    parallel_devices: int = DEFAULT_PARALLEL_DEVICES

    def __post_init__(self) -> None:
        check.optional_integer("retrieval.max_bandwidth_bps", self.max_bandwidth_bps, low=1)
        if (self.window_start is None) != (self.window_end is None):
            raise InvalidRecord(
                "retrieval.window_start", "window_start and window_end are set together or not"
            )
        if self.window_start is not None:
            check.clock_time("retrieval.window_start", self.window_start)
            check.clock_time("retrieval.window_end", self.window_end)
            if self.window_start == self.window_end:
                raise InvalidRecord(
                    "retrieval.window_end", "an empty window (start == end); use none for always"
                )
        check.integer(
            "retrieval.parallel_devices",
            self.parallel_devices,
            low=1,
            high=check.MAX_PARALLEL_DEVICES,
        )


def _check_site(site: NewSite | SiteRecord) -> None:
    """Shared by `NewSite` and `SiteRecord`: the same fields obey the same rules."""
    _normalise(site, "name", check.text("name", site.name).strip())
    check.one_of("dial", site.dial, DIALS)
    check.one_of("scheme", site.scheme, SCHEMES)
    if site.dial == "central":
        if site.address is None or site.port is None:
            raise InvalidRecord("address", "a site the central dials needs an address and a port")
        _normalise(site, "address", check.host("address", site.address))
        check.integer("port", site.port, low=1, high=65535)
        if site.scheme == "https" and site.fingerprint is None:
            raise InvalidRecord(
                "fingerprint", "an https site the central dials needs its certificate pinned"
            )
    elif site.address is not None or site.port is not None:
        raise InvalidRecord("address", "a site that dials in has no address or port")
    if site.fingerprint is not None:
        if site.scheme == "http":
            raise InvalidRecord("fingerprint", "an http site has no certificate to pin")
        _normalise(site, "fingerprint", check.fingerprint("fingerprint", site.fingerprint))
    check.optional_text("username", site.username, max_chars=check.MAX_USERNAME_CHARS)
    check.optional_text("remote_site_id", site.remote_site_id, max_chars=check.MAX_ID_CHARS)
    check.optional_text("product", site.product, max_chars=check.MAX_TEXT_CHARS)
    check.optional_text("version", site.version, max_chars=check.MAX_TEXT_CHARS)
    check.public_key("public_key", site.public_key)
    check.time_zone("time_zone", site.time_zone)
    if not isinstance(site.retrieval, RetrievalSettings):
        raise InvalidRecord("retrieval", "must be RetrievalSettings")
    check.flag("enabled", site.enabled)


@dataclass(frozen=True, slots=True)
class NewSite:
    """A site as the operator (or an enrolling site) describes it, before it has an id.

    A site the central dials needs `address` and `port`, and for https its certificate's
    `fingerprint`. A site that dials in has neither; it usually brings `remote_site_id` and
    `public_key` with its enrolment.
    """

    name: str
    dial: Dial
    address: str | None = None
    port: int | None = None
    scheme: Scheme = "https"
    username: str | None = None
    fingerprint: str | None = None
    remote_site_id: str | None = None
    product: str | None = None
    version: str | None = None
    public_key: bytes | None = None
    time_zone: str = "UTC"
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    enabled: bool = True

    def __post_init__(self) -> None:
        _check_site(self)


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """A site as stored. Its password is not here: see `Catalog.site_password`.

    `site_id` is the central's own id (stable, URL-safe); `remote_site_id` is the site's
    identity, None until first contact. `last_seen_ns` moves with every contact;
    `updated_ns` only with changes of the site's settings.
    """

    site_id: str
    name: str
    dial: Dial
    address: str | None
    port: int | None
    scheme: Scheme
    username: str | None
    fingerprint: str | None
    remote_site_id: str | None
    product: str | None
    version: str | None
    public_key: bytes | None
    time_zone: str
    retrieval: RetrievalSettings
    enabled: bool
    created_ns: int
    updated_ns: int
    last_seen_ns: int | None

    def __post_init__(self) -> None:
        check.text("site_id", self.site_id, max_chars=check.MAX_ID_CHARS)
        _check_site(self)
        check.instant("created_ns", self.created_ns)
        check.instant("updated_ns", self.updated_ns)
        if self.last_seen_ns is not None:
            check.instant("last_seen_ns", self.last_seen_ns)


@dataclass(frozen=True, slots=True)
class SitePage:
    """One page of the site list: `sites` in the list's order, and `next_site_id`, the id of
    the site that follows them (None: the page ends the list), read as its id alone."""

    sites: tuple[SiteRecord, ...]
    next_site_id: str | None


SITE_FIELDS_CHANGEABLE = frozenset(
    {
        "name",
        "dial",
        "address",
        "port",
        "scheme",
        "username",
        "fingerprint",
        "remote_site_id",
        "product",
        "version",
        "public_key",
        "time_zone",
        "retrieval",
        "enabled",
    }
)
"""What `Catalog.update_site` may change; ids and instants belong to the catalog."""


# --- devices -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream of a device as the site reports it. Its format (`codec`, and for video
    `width`, `height`, `frame_rate` in frames per second) is None where the site did not
    say (an older site, or a camera not reached yet)."""

    name: str
    media_kind: MediaKind
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None

    def __post_init__(self) -> None:
        check.text("streams.name", self.name, max_chars=check.MAX_STREAM_NAME_CHARS)
        kind = check.one_of("streams.media_kind", self.media_kind, [k.value for k in MediaKind])
        _normalise(self, "media_kind", MediaKind(kind))
        check.optional_text("streams.codec", self.codec, max_chars=check.MAX_STREAM_NAME_CHARS)
        check.optional_integer("streams.width", self.width, low=1, high=check.MAX_DIMENSION)
        check.optional_integer("streams.height", self.height, low=1, high=check.MAX_DIMENSION)
        rate = check.optional_rate("streams.frame_rate", self.frame_rate, high=check.MAX_FRAME_RATE)
        _normalise(self, "frame_rate", rate)


def _check_streams(streams: object) -> None:
    if not isinstance(streams, tuple) or not all(isinstance(s, StreamInfo) for s in streams):
        raise InvalidRecord("streams", "must be a tuple of StreamInfo")
    if len(streams) > check.MAX_STREAMS:
        raise InvalidRecord("streams", f"at most {check.MAX_STREAMS} streams per device")
    names = [stream.name for stream in streams]
    if len(set(names)) != len(names):
        raise InvalidRecord("streams", f"stream names must be unique, not {names}")


def _check_device_settings(device: NewDevice | DeviceRecord) -> None:
    check.one_of("recording", device.recording, RECORDINGS)
    check.one_of("live_feed", device.live_feed, LIVE_FEEDS)
    rule = check.json_object("central_rule", device.central_rule, max_bytes=check.MAX_RULE_BYTES)
    _normalise(device, "central_rule", rule)


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device as a site lists it. The central's settings (`name`, `recording`,
    `live_feed`, `central_rule`) are used only when the device is first added; a later
    `apply_hardware` never overwrites them. `name` None means the site's name."""

    remote_device_id: str
    kind: DeviceKind
    original_name: str
    streams: tuple[StreamInfo, ...] = ()
    name: str | None = None
    recording: Recording = DEFAULT_RECORDING
    live_feed: LiveFeed = DEFAULT_LIVE_FEED
    central_rule: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check.text("remote_device_id", self.remote_device_id, max_chars=check.MAX_ID_CHARS)
        check.one_of("kind", self.kind, DEVICE_KINDS)
        check.text("original_name", self.original_name)
        _check_streams(self.streams)
        check.optional_text("name", self.name)
        _check_device_settings(self)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as stored. `device_id` is the central's id, stable forever; `name` is the
    central's name, independent of the site's `original_name`. `present` is False once the
    site no longer lists the device (its record and recordings are kept). `central_rule` is
    opaque here (the central validates it); it is a copy, changing it changes nothing."""

    device_id: str
    site_id: str
    remote_device_id: str
    kind: DeviceKind
    name: str
    original_name: str
    streams: tuple[StreamInfo, ...]
    present: bool
    recording: Recording
    live_feed: LiveFeed
    central_rule: dict[str, object]
    created_ns: int
    updated_ns: int

    def __post_init__(self) -> None:
        check.text("device_id", self.device_id, max_chars=check.MAX_ID_CHARS)
        check.text("site_id", self.site_id, max_chars=check.MAX_ID_CHARS)
        check.text("remote_device_id", self.remote_device_id, max_chars=check.MAX_ID_CHARS)
        check.one_of("kind", self.kind, DEVICE_KINDS)
        check.text("name", self.name)
        check.text("original_name", self.original_name)
        _check_streams(self.streams)
        check.flag("present", self.present)
        _check_device_settings(self)
        check.instant("created_ns", self.created_ns)
        check.instant("updated_ns", self.updated_ns)


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One page of a device list: `devices` in the list's order, and `next_device_id`, the
    id of the device that follows them in the list (None: the page ends the list). Only the
    page's devices are built as records; the one after is read as its id alone."""

    devices: tuple[DeviceRecord, ...]
    next_device_id: str | None


HardwareField = Literal["kind", "original_name", "streams", "stream_format"]
"""What the site may change of a device: `streams` is the list of its streams (their names
and media kinds), `stream_format` the format of a stream it still has (codec, picture size,
frame rate; a format learnt where it was unknown is no change, see `stream_changes.py`)."""
HARDWARE_FIELDS: tuple[HardwareField, ...] = get_args(HardwareField)


@dataclass(frozen=True, slots=True)
class HardwareChange:
    """A device the site still lists, but with another kind, name, streams or stream
    format."""

    before: DeviceRecord
    after: DeviceRecord
    fields: tuple[HardwareField, ...]


@dataclass(frozen=True, slots=True)
class HardwareDiff:
    """What `apply_hardware` did. `removed` and `returned` hold the devices as they are now
    (present False, present True); a device can be both returned and changed. `refreshed`
    holds devices rewritten with nothing to report: only a stream format was learnt where it
    was unknown."""

    added: tuple[DeviceRecord, ...] = ()
    removed: tuple[DeviceRecord, ...] = ()
    returned: tuple[DeviceRecord, ...] = ()
    changed: tuple[HardwareChange, ...] = ()
    refreshed: tuple[DeviceRecord, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Nothing to report (a refresh is not reported)."""
        return not (self.added or self.removed or self.returned or self.changed)


# --- users, tokens, enrolment, notifications ---------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A central user; `password_hash` is in `shared/passwords.py`'s form, never a password."""

    username: str
    password_hash: str
    role: Role
    disabled: bool
    created_ns: int

    def __post_init__(self) -> None:
        check.username("username", self.username)
        check.password_hash("password_hash", self.password_hash)
        check.one_of("role", self.role, ROLES)
        check.flag("disabled", self.disabled)
        check.instant("created_ns", self.created_ns)

    def __repr__(self) -> str:
        # The hash stays out of logs and tracebacks.
        return (
            f"UserRecord(username={self.username!r}, role={self.role!r}, "
            f"disabled={self.disabled!r}, created_ns={self.created_ns!r})"
        )


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A bearer session. Only the token's digest is stored: a copy of the database does
    not hand out live sessions."""

    digest: bytes
    username: str
    issued_ns: int
    expires_ns: int

    def __post_init__(self) -> None:
        check.digest("digest", self.digest)
        check.username("username", self.username)
        check.instant("issued_ns", self.issued_ns)
        check.instant("expires_ns", self.expires_ns)
        if self.expires_ns <= self.issued_ns:
            raise InvalidRecord("expires_ns", "a token must expire after it is issued")


@dataclass(frozen=True, slots=True)
class EnrolmentToken:
    """A single-use token that lets a site dial in and be added; only its digest is kept.
    `used_by_site_id` stays set after that site is removed, so the token never works twice."""

    digest: bytes
    label: str
    created_ns: int
    expires_ns: int
    used_by_site_id: str | None
    used_ns: int | None

    def __post_init__(self) -> None:
        check.digest("digest", self.digest)
        check.text("label", self.label, max_chars=check.MAX_TEXT_CHARS)
        check.instant("created_ns", self.created_ns)
        check.instant("expires_ns", self.expires_ns)
        if (self.used_by_site_id is None) != (self.used_ns is None):
            raise InvalidRecord("used_ns", "used_by_site_id and used_ns are set together")

    def usable_at(self, now_ns: int) -> bool:
        return self.used_ns is None and now_ns < self.expires_ns


@dataclass(frozen=True, slots=True)
class Notification:
    """A condition an operator should see (a site offline, a disk full). At most one is open
    per (kind, site, device); `cleared_ns` is set when the condition ends."""

    notification_id: int
    kind: str
    site_id: str | None
    device_id: str | None
    message: str
    raised_ns: int
    cleared_ns: int | None

    def __post_init__(self) -> None:
        check.text("kind", self.kind, max_chars=check.MAX_NAME_CHARS)
        check.optional_text("site_id", self.site_id, max_chars=check.MAX_ID_CHARS)
        check.optional_text("device_id", self.device_id, max_chars=check.MAX_ID_CHARS)
        check.text("message", self.message, max_chars=check.MAX_MESSAGE_CHARS)
        check.instant("raised_ns", self.raised_ns)
        if self.cleared_ns is not None:
            check.instant("cleared_ns", self.cleared_ns)

    @property
    def is_open(self) -> bool:
        return self.cleared_ns is None
