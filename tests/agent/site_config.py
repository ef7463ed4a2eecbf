"""Small agent configurations for tests: real files, read by the real loader."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared.passwords import hash_password

_ADMIN_HASH = hash_password("admin-pw")


def write_site_config(
    directory: Path, devices_toml: str, *, quota: str = "64 MiB", extra_toml: str = ""
) -> Path:
    """`directory/agent.toml` with the given [[cameras]]/[[inputs]] tables; `extra_toml`
    (an [api] table, more [[users]]) goes between the admin account and the devices."""
    text = f"""
[site]
id = "{uuid.uuid4()}"
name = "Test site"

[storage]
path = "store"
quota = "{quota}"

[[users]]
username = "admin"
password_hash = "{_ADMIN_HASH}"

{extra_toml}

{devices_toml}
"""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(text)
    return path


SMALL_SYNTHETIC_CAMERA = """
[[cameras]]
id = "{id}"
source = "synthetic"
[cameras.synthetic]
hq = {{ width = 320, height = 180, fps = 10, bitrate_kbps = 300 }}
lq = {{ width = 160, height = 90, fps = 5, bitrate_kbps = 80 }}
audio = {audio}
motion = true
motion_period_s = {motion_period_s}
motion_duration_s = {motion_duration_s}
[cameras.recording]
hq = {{ mode = "{hq_mode}" }}
lq = {{ mode = "continuous" }}
pre_buffer_s = 1
post_buffer_s = 1
[cameras.motion]
analysis_fps = 5
"""


def small_camera(
    camera_id: str,
    *,
    audio: bool = False,
    hq_mode: str = "continuous",
    motion_period_s: float = 6.0,
    motion_duration_s: float = 2.5,
) -> str:
    return SMALL_SYNTHETIC_CAMERA.format(
        id=camera_id,
        audio=str(audio).lower(),
        hq_mode=hq_mode,
        motion_period_s=motion_period_s,
        motion_duration_s=motion_duration_s,
    )
