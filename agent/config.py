"""The agent's configuration: one TOML file, read strictly once at start, then passed down.

Relative paths in the file are taken relative to the file's own folder, so a site folder can
be moved as a whole. See README.md, "Configuration reference", for every key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.recording_policy import ScheduleError, WeeklySchedule
from shared.passwords import PasswordHashError, check_hash_format
from shared.sizes import parse_size
from shared.strict_toml import ConfigError, Table, load_toml
from shared.tls_pinning import normalize_fingerprint

__all__ = ["AgentConfig", "ConfigError", "load_agent_config"]

RECORDING_MODES = ("continuous", "motion", "schedule", "event", "relay_only")
SOURCE_KINDS = ("synthetic", "rtsp", "file", "picamera2")
INPUT_SOURCES = ("synthetic", "gpio")
OUTPUT_SOURCES = ("synthetic", "gpio")
GPIO_BIASES = ("as_is", "pull_up", "pull_down", "disabled")
_GPIO_CHIP_NAME = re.compile(r"^gpiochip[0-9]{1,4}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
DAY_S = 86_400


@dataclass(frozen=True)
class SiteSettings:
    id: str
    name: str
    time_zone: str


@dataclass(frozen=True)
class StorageSettings:
    path: Path
    quota_bytes: int
    hold_budget_bytes: int
    max_age_s: int
    key_path: Path


@dataclass(frozen=True)
class ApiSettings:
    bind: str
    port: int
    scheme: str  # "https" or "http"
    advertise: bool  # announce the site with zeroconf (_siteline._tcp)
    tls_certificate: Path  # self-signed, made at first start
    tls_key: Path


@dataclass(frozen=True)
class LinkSettings:
    """The link to the central (see docs/design/protocol.md)."""

    read_timeout_s: float = 30.0  # a silent link is dead after this long
    central_url: str | None = None  # dial out to this central (sites behind NAT)
    enrolment_token: str | None = None  # presented as the bearer when dialling out
    central_fingerprint: str | None = None  # pin the central's certificate (SHA-256)
    account: str | None = None  # whose device rights the central has over the outbound link


@dataclass(frozen=True)
class UserAccount:
    username: str
    password_hash: str
    devices: tuple[str, ...]  # device ids, or "*" for every device


@dataclass(frozen=True)
class VideoSpec:
    width: int
    height: int
    fps: int
    bitrate_bps: int


@dataclass(frozen=True)
class SyntheticSettings:
    hq: VideoSpec
    lq: VideoSpec
    audio: bool
    motion: bool
    motion_period_s: float
    motion_duration_s: float


@dataclass(frozen=True)
class RtspSettings:
    hq_url: str
    lq_url: str
    open_timeout_s: float
    read_timeout_s: float
    reader: str = "in_process"  # "ffmpeg" or "in_process" ("auto" is resolved at load)


@dataclass(frozen=True)
class FileSettings:
    hq_path: Path
    lq_path: Path | None


@dataclass(frozen=True)
class Picamera2Settings:
    hq: VideoSpec
    lq: VideoSpec


SourceSettings = SyntheticSettings | RtspSettings | FileSettings | Picamera2Settings


@dataclass(frozen=True)
class StreamRecording:
    mode: str  # one of RECORDING_MODES
    max_age_s: int


@dataclass(frozen=True)
class RecordingSettings:
    hq: StreamRecording
    lq: StreamRecording
    audio: StreamRecording
    pre_buffer_s: float
    post_buffer_s: float
    schedule: tuple[str, ...]  # "mon-fri 08:00-18:00", in the site's time zone
    trigger_inputs: tuple[str, ...] | None  # inputs that trigger event mode; None: all


@dataclass(frozen=True)
class MotionSettings:
    enabled: bool
    analysis_fps: float
    sensitivity: float  # 0..1, higher finds smaller changes


@dataclass(frozen=True)
class CameraConfig:
    id: str
    name: str
    source: str  # one of SOURCE_KINDS
    settings: SourceSettings
    recording: RecordingSettings
    motion: MotionSettings
    has_microphone: bool

    @property
    def microphone_id(self) -> str:
        return f"{self.id}.mic"

    @property
    def metadata_id(self) -> str:
        return f"{self.id}.motion"


@dataclass(frozen=True)
class GpioLine:
    """One line of a GPIO chip, as an input or an output (libgpiod's terms)."""

    chip: str  # the chip's device path, e.g. "/dev/gpiochip0"
    line: int  # offset on the chip
    active_low: bool  # the line is active when low (a contact wired to ground)
    bias: str  # one of GPIO_BIASES; outputs: "as_is"
    debounce_ms: int  # inputs: a change counts once stable this long; outputs: 0


@dataclass(frozen=True)
class InputConfig:
    id: str
    name: str
    source: str  # one of INPUT_SOURCES; "synthetic" toggles on a period (demos)
    period_s: float  # synthetic only
    max_age_s: int
    gpio: GpioLine | None = None  # source "gpio" only


@dataclass(frozen=True)
class OutputConfig:
    """A relay, a siren: a line the site drives (source "gpio") or only records ("synthetic")."""

    id: str
    name: str
    source: str  # one of OUTPUT_SOURCES
    initial: bool  # the state set when the agent starts
    gpio: GpioLine | None = None  # source "gpio" only


@dataclass(frozen=True)
class PlainDeviceConfig:
    """A device listed for the central without media of its own yet (a speaker)."""

    id: str
    name: str


@dataclass(frozen=True)
class AgentConfig:
    file: Path
    site: SiteSettings
    storage: StorageSettings
    api: ApiSettings
    users: tuple[UserAccount, ...]
    cameras: tuple[CameraConfig, ...]
    inputs: tuple[InputConfig, ...]
    outputs: tuple[OutputConfig, ...]
    speakers: tuple[PlainDeviceConfig, ...]
    link: LinkSettings = LinkSettings()

    def device_ids(self) -> list[str]:
        ids: list[str] = []
        for camera in self.cameras:
            ids.append(camera.id)
            if camera.has_microphone:
                ids.append(camera.microphone_id)
            if camera.motion.enabled:
                ids.append(camera.metadata_id)
        ids += [d.id for d in self.inputs]
        ids += [d.id for d in self.outputs]
        ids += [d.id for d in self.speakers]
        return ids


def load_agent_config(path: Path) -> AgentConfig:
    """Read and validate `path`; raises ConfigError naming the file and key on any problem."""
    root = load_toml(path)
    base = path.resolve().parent
    site = _site(root.table("site", required=True))
    storage = _storage(root.table("storage", required=True), base)
    api = _api(root.table("api"), base)
    users = tuple(_user(t) for t in root.tables("users"))
    cameras = tuple(_camera(t, base, storage.max_age_s) for t in root.tables("cameras"))
    inputs = tuple(_input(t, storage.max_age_s) for t in root.tables("inputs"))
    outputs = tuple(_output(t) for t in root.tables("outputs"))
    speakers = tuple(_plain(t) for t in root.tables("speakers"))
    link_table = root.table("link")
    link = _link(link_table, {u.username for u in users})
    root.finish()
    config = AgentConfig(
        path.resolve(), site, storage, api, users, cameras, inputs, outputs, speakers, link
    )
    _check_unique(root, config)
    _check_gpio_lines(root, config)
    return config


def _site(table: Table) -> SiteSettings:
    site_id = table.string("id")
    if not re.fullmatch(r"[A-Za-z0-9-]{8,64}", site_id):
        raise table.error("id", "must be 8-64 letters, digits or dashes (agent init makes one)")
    name = table.string("name")
    if not 0 < len(name) <= 128:
        raise table.error("name", "must be 1-128 characters")
    time_zone = table.string("time_zone", "UTC")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise table.error("time_zone", f"unknown time zone {time_zone!r}") from exc
    table.finish()
    return SiteSettings(site_id, name, time_zone)


def _storage(table: Table, base: Path) -> StorageSettings:
    path = base / table.string("path", "store")
    quota_bytes = table.parsed("quota", parse_size, 20 * 1024**3)
    if quota_bytes < 16 * 1024**2:
        raise table.error("quota", "must be at least 16 MiB")
    fraction = table.number("hold_budget_fraction", 0.25, minimum=0.0, maximum=0.9)
    max_age_days = table.number("max_age_days", 30, minimum=0.0001, maximum=3650)
    key_path = base / table.string("signing_key", "site-key.pem")
    table.finish()
    return StorageSettings(
        path, quota_bytes, int(quota_bytes * fraction), round(max_age_days * DAY_S), key_path
    )


def _api(table: Table, base: Path) -> ApiSettings:
    bind = table.string("bind", "0.0.0.0")  # noqa: S104 - on-site users reach the agent on the LAN
    port = table.integer("port", 8443, minimum=1, maximum=65535)
    scheme = table.choice("scheme", ("https", "http"), "https")
    advertise = table.boolean("advertise", True)
    certificate = base / table.string("tls_certificate", "tls-certificate.pem")
    key = base / table.string("tls_key", "tls-key.pem")
    if certificate == key:
        raise table.error("tls_key", "must be a different file from tls_certificate")
    table.finish()
    return ApiSettings(bind, port, scheme, advertise, certificate, key)


def _link(table: Table, usernames: set[str]) -> LinkSettings:
    read_timeout_s = table.number("read_timeout_s", 30.0, minimum=3.0, maximum=3600.0)
    url = table.optional_string("central_url")
    token = table.optional_string("enrolment_token")
    fingerprint = table.optional_string("central_fingerprint")
    account = table.optional_string("account")
    if url is None:
        for key, value in (
            ("enrolment_token", token),
            ("central_fingerprint", fingerprint),
            ("account", account),
        ):
            if value is not None:
                raise table.error(key, "only makes sense with central_url")
    else:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise table.error(
                "central_url", f"must be an http:// or https:// URL with a host, not {url!r}"
            )
        if token is None or not 16 <= len(token) <= 256:
            raise table.error("enrolment_token", "is required with central_url (16-256 characters)")
        if account is None:
            raise table.error("account", "is required with central_url: one of the [[users]]")
        if account not in usernames:
            raise table.error("account", f"{account!r} is not one of the [[users]]")
        if fingerprint is not None:
            try:
                normalize_fingerprint(fingerprint)
            except ValueError as exc:
                raise table.error("central_fingerprint", str(exc)) from exc
    table.finish()
    return LinkSettings(read_timeout_s, url, token, fingerprint, account)


def _user(table: Table) -> UserAccount:
    username = table.string("username")
    if not _USERNAME.fullmatch(username):
        raise table.error("username", "must be 1-64 letters, digits or _ . @ -")
    password_hash = table.string("password_hash")
    try:
        check_hash_format(password_hash)
    except PasswordHashError as exc:
        raise table.error("password_hash", str(exc)) from exc
    devices = tuple(table.string_list("devices", ["*"]))
    table.finish()
    return UserAccount(username, password_hash, devices)


def _device_id(table: Table) -> str:
    device_id = table.string("id")
    if not _ID.fullmatch(device_id):
        raise table.error(
            "id", f"{device_id!r} must be lowercase letters, digits, _ or -, at most 63"
        )
    return device_id


def _name(table: Table, default: str) -> str:
    name = table.string("name", default)
    if not 0 < len(name) <= 128:
        raise table.error("name", "must be 1-128 characters")
    return name


def _video_spec(table: Table, default: VideoSpec) -> VideoSpec:
    spec = VideoSpec(
        width=table.integer("width", default.width, minimum=16, maximum=7680),
        height=table.integer("height", default.height, minimum=16, maximum=4320),
        fps=table.integer("fps", default.fps, minimum=1, maximum=120),
        bitrate_bps=round(
            table.number("bitrate_kbps", default.bitrate_bps / 1000, minimum=16, maximum=100_000)
            * 1000
        ),
    )
    if spec.width % 2 or spec.height % 2:
        table.finish()
        raise table.error("width", "width and height must be even (4:2:0 video)")
    table.finish()
    return spec


DEFAULT_HQ = VideoSpec(1920, 1080, 25, 4_000_000)
DEFAULT_LQ = VideoSpec(640, 360, 8, 250_000)


def _camera(table: Table, base: Path, default_max_age_s: int) -> CameraConfig:
    camera_id = _device_id(table)
    name = _name(table, camera_id)
    source = table.choice("source", SOURCE_KINDS)
    settings: SourceSettings
    has_audio_source = False
    sub = table.table(source, required=source in ("rtsp", "file"))
    if source == "synthetic":
        settings = SyntheticSettings(
            hq=_video_spec(sub.table("hq"), DEFAULT_HQ),
            lq=_video_spec(sub.table("lq"), DEFAULT_LQ),
            audio=sub.boolean("audio", False),
            motion=sub.boolean("motion", True),
            motion_period_s=sub.number("motion_period_s", 30.0, minimum=1.0),
            motion_duration_s=sub.number("motion_duration_s", 8.0, minimum=0.1),
        )
        has_audio_source = settings.audio
        if settings.motion and settings.motion_duration_s >= settings.motion_period_s:
            raise sub.error("motion_duration_s", "must be shorter than motion_period_s")
    elif source == "rtsp":
        from agent.sources.base import SourceConfigError  # noqa: PLC0415
        from agent.sources.rtsp import READER_AUTO, READERS, resolve_reader  # noqa: PLC0415
        from agent.sources.url_policy import validate_camera_url  # noqa: PLC0415

        urls = {}
        for key in ("hq_url", "lq_url"):
            text = sub.string(key)
            try:
                urls[key] = validate_camera_url(text, field=sub.key_name(key))
            except SourceConfigError as exc:
                raise ConfigError(f"{table.file}: {exc}") from exc
        settings = RtspSettings(
            urls["hq_url"],
            urls["lq_url"],
            open_timeout_s=sub.number("open_timeout_s", 10.0, minimum=0.5, maximum=120),
            read_timeout_s=sub.number("read_timeout_s", 10.0, minimum=0.5, maximum=120),
        )
        try:
            reader = resolve_reader(sub.choice("reader", READERS, READER_AUTO))
        except SourceConfigError as exc:
            raise sub.error("reader", str(exc).removeprefix("reader: ")) from None
        settings = dataclasses.replace(settings, reader=reader)
        has_audio_source = sub.boolean("audio", False)
    elif source == "file":
        hq_path = base / sub.string("hq_path")
        lq_text = sub.optional_string("lq_path")
        settings = FileSettings(hq_path, base / lq_text if lq_text else None)
        for key, candidate in (("hq_path", hq_path), ("lq_path", settings.lq_path)):
            if candidate is not None and not candidate.is_file():
                raise sub.error(key, f"no such file {candidate}")
    else:
        settings = Picamera2Settings(
            hq=_video_spec(sub.table("hq"), VideoSpec(1920, 1080, 25, 4_000_000)),
            lq=_video_spec(sub.table("lq"), VideoSpec(640, 360, 25, 250_000)),
        )
        if settings.lq.fps != settings.hq.fps:
            # Both outputs come from one sensor stream: the low-resolution one cannot run
            # at its own frame rate.
            raise sub.error("lq", f"fps must equal hq fps ({settings.hq.fps}) on this camera")
    sub.finish()
    recording = _recording(table.table("recording"), default_max_age_s)
    motion_table = table.table("motion")
    motion = MotionSettings(
        enabled=motion_table.boolean("enabled", True),
        analysis_fps=motion_table.number("analysis_fps", 4.0, minimum=0.5, maximum=30),
        sensitivity=motion_table.number("sensitivity", 0.5, minimum=0.0, maximum=1.0),
    )
    motion_table.finish()
    if recording_uses(recording, "motion") and not motion.enabled:
        raise table.error("motion.enabled", "a stream records on motion, so motion must be enabled")
    table.finish()
    return CameraConfig(
        camera_id, name, source, settings, recording, motion, has_microphone=has_audio_source
    )


def recording_uses(recording: RecordingSettings, mode: str) -> bool:
    return mode in (recording.hq.mode, recording.lq.mode, recording.audio.mode)


def _recording(table: Table, default_max_age_s: int) -> RecordingSettings:
    streams = {}
    for stream in ("hq", "lq", "audio"):
        sub = table.table(stream)
        mode = sub.choice("mode", RECORDING_MODES, "continuous")
        days = sub.number("max_age_days", default_max_age_s / DAY_S, minimum=0.0001, maximum=3650)
        sub.finish()
        streams[stream] = StreamRecording(mode, round(days * DAY_S))
    pre_buffer_s = table.number("pre_buffer_s", 5.0, minimum=0.0, maximum=300.0)
    trigger_inputs = (
        tuple(table.string_list("trigger_inputs")) if table.has("trigger_inputs") else None
    )
    post_buffer_s = table.number("post_buffer_s", 10.0, minimum=0.0, maximum=3600.0)
    ranges = tuple(table.string_list("schedule", []))
    if ranges:
        try:
            WeeklySchedule.parse("UTC", ranges)
        except ScheduleError as exc:
            raise table.error("schedule", str(exc)) from exc
    table.finish()
    recording = RecordingSettings(
        streams["hq"],
        streams["lq"],
        streams["audio"],
        pre_buffer_s,
        post_buffer_s,
        ranges,
        trigger_inputs,
    )
    if recording_uses(recording, "schedule") and not ranges:
        raise table.error("schedule", "a stream records on a schedule, but no schedule is given")
    return recording


def _input(table: Table, default_max_age_s: int) -> InputConfig:
    device_id = _device_id(table)
    name = _name(table, device_id)
    source = table.choice("source", INPUT_SOURCES, "synthetic")
    period_s = 0.0
    gpio = None
    if source == "synthetic":
        period_s = table.number("period_s", 45.0, minimum=1.0)
    else:
        gpio = _gpio_line(table, output=False)
    days = table.number("max_age_days", default_max_age_s / DAY_S, minimum=0.0001)
    table.finish()
    return InputConfig(device_id, name, source, period_s, round(days * DAY_S), gpio)


def _output(table: Table) -> OutputConfig:
    device_id = _device_id(table)
    name = _name(table, device_id)
    source = table.choice("source", OUTPUT_SOURCES, "synthetic")
    gpio = _gpio_line(table, output=True) if source == "gpio" else None
    initial = table.boolean("initial", False)
    table.finish()
    return OutputConfig(device_id, name, source, initial, gpio)


def _gpio_line(table: Table, *, output: bool) -> GpioLine:
    chip = table.string("chip", "/dev/gpiochip0")
    if _GPIO_CHIP_NAME.fullmatch(chip):
        chip = f"/dev/{chip}"
    elif not re.fullmatch(r"/dev/[A-Za-z0-9_.\-/]+", chip) or "/.." in chip:
        raise table.error(
            "chip", f"{chip!r} must be a device path under /dev or a name like gpiochip0"
        )
    line = table.integer("line", minimum=0, maximum=65535)
    active_low = table.boolean("active_low", False)
    bias = "as_is" if output else table.choice("bias", GPIO_BIASES, "as_is")
    debounce_ms = 0 if output else table.integer("debounce_ms", 20, minimum=0, maximum=1000)
    return GpioLine(chip, line, active_low, bias, debounce_ms)


def _plain(table: Table) -> PlainDeviceConfig:
    device_id = _device_id(table)
    name = _name(table, device_id)
    table.finish()
    return PlainDeviceConfig(device_id, name)


def _check_unique(root: Table, config: AgentConfig) -> None:
    seen: set[str] = set()
    for device_id in config.device_ids():
        if device_id in seen:
            raise ConfigError(f"{root.file}: device id {device_id!r} is used twice")
        seen.add(device_id)
    names = [u.username for u in config.users]
    for username in names:
        if names.count(username) > 1:
            raise ConfigError(f"{root.file}: user {username!r} is listed twice")
    inputs = {device.id for device in config.inputs}
    for index, camera in enumerate(config.cameras):
        for input_id in camera.recording.trigger_inputs or ():
            if input_id not in inputs:
                raise ConfigError(
                    f"{root.file}: cameras[{index}].recording.trigger_inputs: "
                    f"{input_id!r} is not one of the [[inputs]]"
                )
    known = set(seen)
    for user in config.users:
        for device_id in user.devices:
            if device_id != "*" and device_id not in known:
                raise ConfigError(
                    f"{root.file}: users: {user.username!r} is granted unknown device {device_id!r}"
                )


def _check_gpio_lines(root: Table, config: AgentConfig) -> None:
    """No GPIO line is used twice: the kernel grants a line to one request only."""
    users: dict[tuple[str, int], str] = {}
    devices = [(f"inputs[{i}]", d.id, d.gpio) for i, d in enumerate(config.inputs)]
    devices += [(f"outputs[{i}]", d.id, d.gpio) for i, d in enumerate(config.outputs)]
    for key, device_id, gpio in devices:
        if gpio is None:
            continue
        user = f"{key} ({device_id!r})"
        earlier = users.setdefault((gpio.chip, gpio.line), user)
        if earlier != user:
            raise ConfigError(
                f"{root.file}: {user} and {earlier} both use line {gpio.line} of {gpio.chip}"
            )
