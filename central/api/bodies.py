"""The JSON forms of the central's records, as the API returns them."""

from __future__ import annotations

from typing import Any

from central.catalog.records import (
    DeviceRecord,
    HardwareChange,
    HardwareDiff,
    Notification,
    SiteRecord,
    StreamInfo,
)
from central.catalog.stream_changes import format_changes
from central.connector_state import ConnectorView
from central.device_timeline import DeviceTimeline
from shared.api_input import format_instant

JsonObject = dict[str, Any]


def optional_instant(instant_ns: int | None) -> str | None:
    return None if instant_ns is None else format_instant(instant_ns)


def colon_fingerprint(fingerprint: str | None) -> str | None:
    """``AB:CD:...``, the form `siteline agent fingerprint` prints."""
    if fingerprint is None:
        return None
    pairs = [fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)]
    return ":".join(pairs).upper()


def status_json(view: ConnectorView | None) -> JsonObject:
    if view is None:
        return {"state": "stopped", "since": None, "problem": None, "retry_at": None}
    return {
        "state": view.status.value,
        "since": format_instant(view.since_ns),
        "problem": view.problem,
        "retry_at": optional_instant(view.retry_at_ns),
        "failures": view.failures,
        "offline_since": optional_instant(view.offline_since_ns),
    }


def site_json(site: SiteRecord, view: ConnectorView | None, device_count: int) -> JsonObject:
    return {
        "id": site.site_id,
        "name": site.name,
        "dial": site.dial,
        "address": site.address,
        "port": site.port,
        "scheme": site.scheme,
        "username": site.username,
        "fingerprint": colon_fingerprint(site.fingerprint),
        "remote_site_id": site.remote_site_id,
        "product": site.product,
        "version": site.version,
        "public_key": None if site.public_key is None else site.public_key.hex(),
        "time_zone": site.time_zone,
        "enabled": site.enabled,
        "retrieval": {
            "max_bandwidth_bps": site.retrieval.max_bandwidth_bps,
            "window_start": site.retrieval.window_start,
            "window_end": site.retrieval.window_end,
            "parallel_devices": site.retrieval.parallel_devices,
        },
        "status": status_json(view),
        "device_count": device_count,
        "last_seen": optional_instant(site.last_seen_ns),
        "created": format_instant(site.created_ns),
    }


def device_json(device: DeviceRecord, site: SiteRecord | None, online: bool) -> JsonObject:
    return {
        "id": device.device_id,
        "name": device.name,
        "original_name": device.original_name,
        "site_id": device.site_id,
        "site_name": None if site is None else site.name,
        "remote_device_id": device.remote_device_id,
        "kind": device.kind,
        "present": device.present,
        "online": online and device.present,
        "streams": [
            {"name": s.name, "media": s.media_kind.value, **stream_format_json(s)}
            for s in device.streams
        ],
        "recording": device.recording,
        "live_feed": device.live_feed,
        "central_rule": device.central_rule,
    }


def stream_format_json(stream: StreamInfo) -> JsonObject:
    """A stream's format; null where the site did not say."""
    return {
        "codec": stream.codec,
        "width": stream.width,
        "height": stream.height,
        "frame_rate": stream.frame_rate,
    }


def _change_json(change: HardwareChange) -> JsonObject:
    return {
        "id": change.after.device_id,
        "fields": list(change.fields),
        "stream_formats": [
            {
                "stream": c.stream,
                "fields": list(c.fields),
                "before": stream_format_json(c.before),
                "after": stream_format_json(c.after),
            }
            for c in format_changes(change.before.streams, change.after.streams)
        ],
    }


def hardware_json(diff: HardwareDiff) -> JsonObject:
    return {
        "added": [d.device_id for d in diff.added],
        "removed": [d.device_id for d in diff.removed],
        "returned": [d.device_id for d in diff.returned],
        "changed": [_change_json(c) for c in diff.changed],
    }


def notification_json(notification: Notification) -> JsonObject:
    return {
        "id": notification.notification_id,
        "kind": notification.kind,
        "site_id": notification.site_id,
        "device_id": notification.device_id,
        "message": notification.message,
        "raised": format_instant(notification.raised_ns),
        "cleared": optional_instant(notification.cleared_ns),
        "open": notification.is_open,
    }


def timeline_json(timeline: DeviceTimeline) -> JsonObject:
    return {
        "device_id": timeline.device_id,
        "start": format_instant(timeline.start_ns),
        "end": format_instant(timeline.end_ns),
        "site_answer": timeline.site_answer,
        "site_answer_at": optional_instant(timeline.site_answer_at_ns),
        "periods": [
            {
                "kind": p.kind.value,
                "start": format_instant(p.start_ns),
                "end": format_instant(p.end_ns),
                "start_ns": p.start_ns,
                "end_ns": p.end_ns,
            }
            for p in timeline.periods
        ],
    }
