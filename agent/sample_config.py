"""The sample configuration `siteline agent init` writes: synthetic cameras, ready to run."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared.atomic_file import write_atomically
from shared.passwords import hash_password

SAMPLE_TEMPLATE = """\
# Siteline agent configuration, written by `siteline agent init`.
# Every key is described in the README, "Configuration reference". An unknown or misspelled
# key is an error at start, naming the key.

[site]
id = "{site_id}"            # stable identity of this site; keep it when editing
name = "{name}"
time_zone = "{time_zone}"   # IANA name; schedules and time windows use it

[storage]
path = "store"              # relative to this file's folder
quota = "{quota}"            # the store never grows past this; oldest recordings go first
max_age_days = 30           # default for every stream; see [cameras.recording]
hold_budget_fraction = 0.25 # share of the quota that retrieval holds may protect
signing_key = "site-key.pem"  # made at first start; keep it secret and backed up

[api]
bind = "0.0.0.0"
port = {port}
scheme = "https"

[[users]]
username = "admin"
password_hash = "{password_hash}"
devices = ["*"]

# Synthetic cameras need no hardware: a test picture encoded with H.264 in the agent.
# For a real camera use source = "rtsp" with [cameras.rtsp] hq_url / lq_url (see README).
[[cameras]]
id = "cam-1"
name = "Entrance"
source = "synthetic"

[cameras.synthetic]
hq = {{ width = 1920, height = 1080, fps = 25, bitrate_kbps = 4000 }}
lq = {{ width = 640, height = 360, fps = 8, bitrate_kbps = 250 }}
audio = true                # adds the device cam-1.mic
motion = true               # a moving object appears now and then
motion_period_s = 30
motion_duration_s = 8

[cameras.recording]
hq = {{ mode = "continuous" }}
lq = {{ mode = "continuous" }}
audio = {{ mode = "continuous" }}
pre_buffer_s = 5
post_buffer_s = 10

[cameras.motion]
enabled = true              # motion events and the metadata device cam-1.motion
analysis_fps = 4

[[cameras]]
id = "cam-2"
name = "Till"
source = "synthetic"

[cameras.synthetic]
hq = {{ width = 1280, height = 720, fps = 25, bitrate_kbps = 2000 }}
lq = {{ width = 640, height = 360, fps = 8, bitrate_kbps = 250 }}
motion = true
motion_period_s = 45
motion_duration_s = 10

[cameras.recording]
hq = {{ mode = "motion" }}  # high quality only around motion, with the pre-buffer
lq = {{ mode = "continuous" }}
pre_buffer_s = 5
post_buffer_s = 10

[[inputs]]
id = "door-1"
name = "Back door contact"
source = "synthetic"        # opens and closes on a period
period_s = 40

[[outputs]]
id = "siren-1"
name = "Siren"

[[speakers]]
id = "speaker-1"
name = "Shop floor speaker"
"""


class InitError(Exception):
    """The sample cannot be written (the file exists, the folder is not writable)."""


def write_sample_config(
    directory: Path,
    *,
    name: str,
    admin_password: str,
    port: int,
    time_zone: str = "UTC",
    quota: str = "4 GiB",
    overwrite: bool = False,
) -> Path:
    """Write `directory/agent.toml`; refuses to replace an existing one unless told to."""
    path = directory / "agent.toml"
    if path.exists() and not overwrite:
        raise InitError(f"{path} exists already; pass --force to replace it")
    if '"' in name or "\\" in name or "\n" in name:
        raise InitError("the site name must not contain quotes, backslashes or line breaks")
    text = SAMPLE_TEMPLATE.format(
        site_id=str(uuid.uuid4()),
        name=name,
        time_zone=time_zone,
        quota=quota,
        port=port,
        password_hash=hash_password(admin_password),
    )
    write_atomically(path, text.encode("utf-8"), mode=0o600)
    return path
