"""The demo's folders: a central and N sites with synthetic cameras, made once and reused.

Each site is a real agent configuration (two synthetic cameras, a door contact), lighter
than `siteline agent init`'s sample so that a central and two sites encode comfortably on
a two-core machine. Passwords are made at random the first time and kept beside the
configuration (mode 0600), so running the demo again finds the same central, sites and
logins.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from shared.atomic_file import write_atomically
from shared.passwords import hash_password

DEMO_SITE_NAMES = ("Shop 12, High Street", "Bus 7", "Depot", "Shop 31, Market Square")

_SITE_TEMPLATE = """\
# A demo site written by `siteline demo`: synthetic cameras, no hardware needed.
[site]
id = "{site_id}"
name = "{name}"
time_zone = "UTC"

[storage]
path = "store"
quota = "512 MiB"
max_age_days = 2

[api]
bind = "127.0.0.1"
port = {port}
scheme = "https"
advertise = false

[[users]]
username = "central"
password_hash = "{password_hash}"
devices = ["*"]

[[cameras]]
id = "cam-1"
name = "Entrance"
source = "synthetic"

[cameras.synthetic]
hq = {{ width = 960, height = 540, fps = 10, bitrate_kbps = 800 }}
lq = {{ width = 320, height = 180, fps = 5, bitrate_kbps = 120 }}
motion = true
motion_period_s = 30
motion_duration_s = 8

[cameras.recording]
hq = {{ mode = "continuous" }}
lq = {{ mode = "continuous" }}

[[cameras]]
id = "cam-2"
name = "Till"
source = "synthetic"

[cameras.synthetic]
hq = {{ width = 960, height = 540, fps = 10, bitrate_kbps = 800 }}
lq = {{ width = 320, height = 180, fps = 5, bitrate_kbps = 120 }}

[cameras.recording]
hq = {{ mode = "continuous" }}
lq = {{ mode = "continuous" }}

[[inputs]]
id = "door-1"
name = "Back door contact"
source = "synthetic"
period_s = 40
"""


@dataclass(frozen=True)
class DemoSite:
    directory: Path
    name: str
    port: int
    username: str
    password: str

    @property
    def config_path(self) -> Path:
        return self.directory / "agent.toml"


def demo_site(directory: Path, *, index: int, port: int) -> DemoSite:
    """The demo site in `directory`, written the first time (its port is kept from then)."""
    directory.mkdir(parents=True, exist_ok=True)
    password = _kept_secret(directory / "demo-password")
    name = DEMO_SITE_NAMES[index % len(DEMO_SITE_NAMES)]
    config = directory / "agent.toml"
    if not config.exists():
        text = _SITE_TEMPLATE.format(
            site_id=str(uuid.uuid4()),
            name=name,
            port=port,
            password_hash=hash_password(password),
        )
        write_atomically(config, text.encode("utf-8"), mode=0o600)
    return DemoSite(directory, name, port, "central", password)


def kept_password(path: Path, given: str | None) -> str:
    """`given`, remembered in `path`; else the one remembered; else a new random one."""
    if given is not None:
        write_atomically(path, given.encode("utf-8"), mode=0o600)
        return given
    return _kept_secret(path)


def _kept_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(12)
    write_atomically(path, secret.encode("utf-8"), mode=0o600)
    return secret
