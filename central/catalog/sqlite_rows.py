"""Mapping between the catalog's records and SQLite rows (see `schema.py`).

Each `*_params` function gives the named parameters of a record's row; each `*_from_row`
builds the record back, which re-validates every field on the way out.
"""

# SQL text here is assembled only from this package's fixed table and column names; every
# value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3

from central.catalog.records import (
    DeviceRecord,
    EnrolmentToken,
    Notification,
    RetrievalSettings,
    SiteRecord,
    StreamInfo,
    TokenRecord,
    UserRecord,
)
from shared.media import MediaKind

SITE_COLUMNS = (
    "site_id",
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
    "max_bandwidth_bps",
    "window_start",
    "window_end",
    "parallel_devices",
    "enabled",
    "created_ns",
    "updated_ns",
    "last_seen_ns",
)
DEVICE_COLUMNS = (
    "device_id",
    "site_id",
    "remote_device_id",
    "kind",
    "name",
    "original_name",
    "streams",
    "present",
    "recording",
    "live_feed",
    "central_rule",
    "created_ns",
    "updated_ns",
)
USER_COLUMNS = ("username", "password_hash", "role", "disabled", "created_ns")
TOKEN_COLUMNS = ("digest", "username", "issued_ns", "expires_ns")
ENROLMENT_COLUMNS = ("digest", "label", "created_ns", "expires_ns", "used_by_site_id", "used_ns")
NOTIFICATION_COLUMNS = (
    "notification_id",
    "kind",
    "site_id",
    "device_id",
    "message",
    "raised_ns",
    "cleared_ns",
)

Params = dict[str, object]


def select_list(columns: tuple[str, ...], prefix: str = "") -> str:
    """`a, b, c` (or `t.a, t.b, t.c` with prefix `t.`) for a SELECT."""
    return ", ".join(prefix + column for column in columns)


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    values = ", ".join(":" + column for column in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"


def update_sql(table: str, columns: tuple[str, ...], key: str) -> str:
    assignments = ", ".join(f"{column} = :{column}" for column in columns if column != key)
    return f"UPDATE {table} SET {assignments} WHERE {key} = :{key}"


# --- sites -------------------------------------------------------------------------------


def site_params(site: SiteRecord) -> Params:
    return {
        "site_id": site.site_id,
        "name": site.name,
        "dial": site.dial,
        "address": site.address,
        "port": site.port,
        "scheme": site.scheme,
        "username": site.username,
        "fingerprint": site.fingerprint,
        "remote_site_id": site.remote_site_id,
        "product": site.product,
        "version": site.version,
        "public_key": site.public_key,
        "time_zone": site.time_zone,
        "max_bandwidth_bps": site.retrieval.max_bandwidth_bps,
        "window_start": site.retrieval.window_start,
        "window_end": site.retrieval.window_end,
        "parallel_devices": site.retrieval.parallel_devices,
        "enabled": int(site.enabled),
        "created_ns": site.created_ns,
        "updated_ns": site.updated_ns,
        "last_seen_ns": site.last_seen_ns,
    }


def site_from_row(row: sqlite3.Row) -> SiteRecord:
    return SiteRecord(
        site_id=row["site_id"],
        name=row["name"],
        dial=row["dial"],
        address=row["address"],
        port=row["port"],
        scheme=row["scheme"],
        username=row["username"],
        fingerprint=row["fingerprint"],
        remote_site_id=row["remote_site_id"],
        product=row["product"],
        version=row["version"],
        public_key=row["public_key"],
        time_zone=row["time_zone"],
        retrieval=RetrievalSettings(
            max_bandwidth_bps=row["max_bandwidth_bps"],
            window_start=row["window_start"],
            window_end=row["window_end"],
            parallel_devices=row["parallel_devices"],
        ),
        enabled=bool(row["enabled"]),
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
        last_seen_ns=row["last_seen_ns"],
    )


# --- devices -----------------------------------------------------------------------------


def device_params(device: DeviceRecord) -> Params:
    return {
        "device_id": device.device_id,
        "site_id": device.site_id,
        "remote_device_id": device.remote_device_id,
        "kind": device.kind,
        "name": device.name,
        "original_name": device.original_name,
        "streams": streams_json(device.streams),
        "present": int(device.present),
        "recording": device.recording,
        "live_feed": device.live_feed,
        "central_rule": json.dumps(device.central_rule, separators=(",", ":"), sort_keys=True),
        "created_ns": device.created_ns,
        "updated_ns": device.updated_ns,
    }


def device_from_row(row: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(
        device_id=row["device_id"],
        site_id=row["site_id"],
        remote_device_id=row["remote_device_id"],
        kind=row["kind"],
        name=row["name"],
        original_name=row["original_name"],
        streams=streams_from_json(row["streams"]),
        present=bool(row["present"]),
        recording=row["recording"],
        live_feed=row["live_feed"],
        central_rule=json.loads(row["central_rule"]),
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
    )


def streams_json(streams: tuple[StreamInfo, ...]) -> str:
    return json.dumps(
        [
            {
                "name": s.name,
                "media_kind": s.media_kind.value,
                "codec": s.codec,
                "width": s.width,
                "height": s.height,
                "frame_rate": s.frame_rate,
            }
            for s in streams
        ],
        separators=(",", ":"),
    )


def streams_from_json(text: str) -> tuple[StreamInfo, ...]:
    return tuple(
        StreamInfo(
            name=item["name"],
            media_kind=MediaKind(item["media_kind"]),
            codec=item["codec"],
            width=item["width"],
            height=item["height"],
            # Absent from rows written before frame rates were kept: unknown.
            frame_rate=item.get("frame_rate"),
        )
        for item in json.loads(text)
    )


# --- users, tokens, enrolment, notifications ---------------------------------------------


def user_params(user: UserRecord) -> Params:
    return {
        "username": user.username,
        "password_hash": user.password_hash,
        "role": user.role,
        "disabled": int(user.disabled),
        "created_ns": user.created_ns,
    }


def user_from_row(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        username=row["username"],
        password_hash=row["password_hash"],
        role=row["role"],
        disabled=bool(row["disabled"]),
        created_ns=row["created_ns"],
    )


def token_params(token: TokenRecord) -> Params:
    return {
        "digest": token.digest,
        "username": token.username,
        "issued_ns": token.issued_ns,
        "expires_ns": token.expires_ns,
    }


def token_from_row(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        digest=row["digest"],
        username=row["username"],
        issued_ns=row["issued_ns"],
        expires_ns=row["expires_ns"],
    )


def enrolment_params(token: EnrolmentToken) -> Params:
    return {
        "digest": token.digest,
        "label": token.label,
        "created_ns": token.created_ns,
        "expires_ns": token.expires_ns,
        "used_by_site_id": token.used_by_site_id,
        "used_ns": token.used_ns,
    }


def enrolment_from_row(row: sqlite3.Row) -> EnrolmentToken:
    return EnrolmentToken(
        digest=row["digest"],
        label=row["label"],
        created_ns=row["created_ns"],
        expires_ns=row["expires_ns"],
        used_by_site_id=row["used_by_site_id"],
        used_ns=row["used_ns"],
    )


def notification_from_row(row: sqlite3.Row) -> Notification:
    return Notification(
        notification_id=row["notification_id"],
        kind=row["kind"],
        site_id=row["site_id"],
        device_id=row["device_id"],
        message=row["message"],
        raised_ns=row["raised_ns"],
        cleared_ns=row["cleared_ns"],
    )
