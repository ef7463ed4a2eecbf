"""The central's configuration: one TOML file (`central.toml`), read strictly at start.

`siteline central init` writes it; relative paths are taken relative to the file's folder,
so a central's folder can be moved as a whole. See README.md, "Central configuration", for
every key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shared.sizes import parse_size
from shared.strict_toml import ConfigError, Table, load_toml

__all__ = ["CentralConfig", "ConfigError", "load_central_config"]

DAY_S = 86_400
_CENTRAL_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


@dataclass(frozen=True)
class CentralIdentity:
    id: str  # names this central in its signed ingest receipts
    name: str
    signing_key: Path  # Ed25519, made at init


@dataclass(frozen=True)
class CentralApiSettings:
    bind: str
    port: int
    scheme: str  # "https" or "http"
    tls_certificate: Path
    tls_key: Path
    token_ttl_s: int
    public_url: str | None  # how sites dialling in reach this central, if not the bind


@dataclass(frozen=True)
class CentralStorageSettings:
    media_path: Path  # the LMDB chunk store shared by all sites
    quota_bytes: int
    max_age_s: int
    catalog_path: Path  # SQLite
    secret_key: Path  # encrypts the sites' passwords in the catalog
    hold_budget_bytes: int  # what the holds of unfinished retrieval jobs may protect


@dataclass(frozen=True)
class CentralLinkSettings:
    read_timeout_s: float  # a silent site link is dead after this long
    offline_notice_after_s: float  # a site offline this long raises a notification
    retry_max_s: float  # the longest wait between attempts to reach an unreachable site


@dataclass(frozen=True)
class CentralConfig:
    path: Path
    central: CentralIdentity
    api: CentralApiSettings
    storage: CentralStorageSettings
    links: CentralLinkSettings


def load_central_config(path: Path) -> CentralConfig:
    """Read and validate `path`; raises ConfigError naming the file and key on any problem."""
    root = load_toml(path)
    base = path.resolve().parent
    central = _central(root.table("central", required=True), base)
    api = _api(root.table("api"), base)
    storage = _storage(root.table("storage"), base)
    links = _links(root.table("links"))
    root.finish()
    return CentralConfig(path.resolve(), central, api, storage, links)


def _central(table: Table, base: Path) -> CentralIdentity:
    central_id = table.string("id")
    if not _CENTRAL_ID.fullmatch(central_id):
        raise table.error("id", "must be 8-64 letters, digits or dashes (central init makes one)")
    name = table.string("name", "Siteline central")
    if not 0 < len(name) <= 128:
        raise table.error("name", "must be 1-128 characters")
    key = base / table.string("signing_key", "central-key.pem")
    table.finish()
    return CentralIdentity(central_id, name, key)


def _api(table: Table, base: Path) -> CentralApiSettings:
    bind = table.string("bind", "127.0.0.1")
    port = table.integer("port", 8600, minimum=1, maximum=65535)
    scheme = table.choice("scheme", ("https", "http"), "https")
    certificate = base / table.string("tls_certificate", "tls-certificate.pem")
    key = base / table.string("tls_key", "tls-key.pem")
    if certificate == key:
        raise table.error("tls_key", "must be a different file from tls_certificate")
    ttl_s = table.integer("token_ttl_s", 12 * 3600, minimum=60, maximum=30 * DAY_S)
    public_url = table.optional_string("public_url")
    if public_url is not None and not re.match(r"^https?://[^/\s]+", public_url):
        raise table.error("public_url", "must be an http:// or https:// URL")
    table.finish()
    return CentralApiSettings(bind, port, scheme, certificate, key, ttl_s, public_url)


def _storage(table: Table, base: Path) -> CentralStorageSettings:
    media = base / table.string("media_path", "media")
    quota_bytes = table.parsed("quota", parse_size, 100 * 1024**3)
    if quota_bytes < 64 * 1024**2:
        raise table.error("quota", "must be at least 64 MiB")
    max_age_days = table.number("max_age_days", 30, minimum=0.0001, maximum=3650)
    catalog = base / table.string("catalog_path", "catalog.sqlite")
    secret = base / table.string("secret_key", "secret.key")
    fraction = table.number("hold_budget_fraction", 0.5, minimum=0.001, maximum=0.9)
    table.finish()
    return CentralStorageSettings(
        media,
        quota_bytes,
        round(max_age_days * DAY_S),
        catalog,
        secret,
        int(quota_bytes * fraction),
    )


def _links(table: Table) -> CentralLinkSettings:
    read_timeout_s = table.number("read_timeout_s", 30.0, minimum=3.0, maximum=3600.0)
    notice_s = table.number("offline_notice_after_s", 30.0, minimum=0.0, maximum=DAY_S)
    retry_max_s = table.number("retry_max_s", 60.0, minimum=1.0, maximum=3600.0)
    table.finish()
    return CentralLinkSettings(read_timeout_s, notice_s, retry_max_s)
