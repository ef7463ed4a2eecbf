"""`siteline central init`: a central's folder with a working `central.toml` and its first
administrator.

Writes `DIR/central.toml` (a fresh central id, the API port) and creates the catalog with
the user ``admin`` (password given, or a random one returned to be shown once). Running it
again on a folder that has a central is refused without `overwrite`, so an existing
central's identity and users are never replaced by accident; with `overwrite` the file is
rewritten and the admin's password reset, while sites, devices and recordings stay.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

from central.catalog.errors import Conflict
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.config import load_central_config
from shared.atomic_file import write_atomically
from shared.clock import Clock
from shared.passwords import hash_password

ADMIN_USERNAME = "admin"
CONFIG_NAME = "central.toml"

CENTRAL_TEMPLATE = """\
# Siteline central configuration, written by `siteline central init`.
# Every key is described in the README, "Central configuration". An unknown or misspelled
# key is an error at start, naming the key. Relative paths are relative to this file.

[central]
id = "{central_id}"   # names this central in its signed ingest receipts; keep it
name = "{name}"
signing_key = "central-key.pem"  # made at first start; keep it secret and backed up

[api]
bind = "{bind}"
port = {port}
scheme = "{scheme}"
token_ttl_s = 43200        # a login lasts 12 hours

[storage]
media_path = "media"       # the chunk store shared by all sites
quota = "{quota}"
max_age_days = 30
catalog_path = "catalog.sqlite"
secret_key = "secret.key"  # encrypts the sites' passwords in the catalog

[links]
read_timeout_s = 30        # a silent site link is dead after this long
offline_notice_after_s = 30
retry_max_s = 60
"""


class InitError(Exception):
    """The folder cannot be set up as asked; the message says why."""


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    admin_password: str
    password_was_generated: bool


def init_central(
    directory: Path,
    *,
    clock: Clock,
    admin_password: str | None = None,
    port: int = 8600,
    bind: str = "127.0.0.1",
    scheme: str = "https",
    name: str = "Siteline central",
    quota: str = "20 GiB",
    overwrite: bool = False,
) -> InitResult:
    if not 1 <= port <= 65535:
        raise InitError(f"port must be 1-65535, not {port}")
    if admin_password is not None and not 8 <= len(admin_password) <= 1024:
        raise InitError("the admin password must be 8 to 1024 characters")
    if '"' in name or "\\" in name or "\n" in name:
        raise InitError("the name may not contain quotes, backslashes or line breaks")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_NAME
    if path.exists() and not overwrite:
        raise InitError(f"{path} exists already (use --force to rewrite it and reset admin)")
    central_id = str(uuid.uuid4())
    if path.exists():
        central_id = load_central_config(path).central.id  # keep the identity
    text = CENTRAL_TEMPLATE.format(
        central_id=central_id, name=name, bind=bind, port=port, scheme=scheme, quota=quota
    )
    write_atomically(path, text.encode("utf-8"), mode=0o600)
    config = load_central_config(path)  # the written file must always be valid
    password = admin_password or secrets.token_urlsafe(12)
    catalog = SqliteCatalog.open(
        config.storage.catalog_path,
        clock=clock,
        secret_box=SecretBox.load_or_create(config.storage.secret_key),
    )
    try:
        password_hash = hash_password(password)
        try:
            catalog.add_user(ADMIN_USERNAME, password_hash, "admin")
        except Conflict:
            catalog.set_password(ADMIN_USERNAME, password_hash)
            catalog.set_role(ADMIN_USERNAME, "admin")
            catalog.enable_user(ADMIN_USERNAME)
            catalog.revoke_user_tokens(ADMIN_USERNAME)
    finally:
        catalog.close()
    return InitResult(path, password, admin_password is None)
