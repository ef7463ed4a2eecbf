"""The JSON shapes of the site's answers, shared by the REST API and the link.

Instants appear twice: as ISO 8601 text in UTC (`start`) for people and tools, and as
integer nanoseconds (`start_ns`) for exact comparisons. `agent/openapi.json` documents them.
"""

from __future__ import annotations

from typing import Any

from agent.device_catalog import DeviceInfo
from agent.site_service import SiteInfo, SiteStatus, StreamTimeline
from agent.system_events import SystemEvent
from shared.api_input import format_instant
from shared.store.holds import Hold

JsonObject = dict[str, Any]


def site_info_json(info: SiteInfo) -> JsonObject:
    return {
        "id": info.site_id,
        "name": info.name,
        "product": info.product,
        "version": info.version,
        "time_zone": info.time_zone,
        "fingerprint": info.fingerprint,
        "public_key": info.public_key.hex(),
    }


def range_json(start_ns: int, end_ns: int) -> JsonObject:
    return {
        "start": format_instant(start_ns),
        "end": format_instant(end_ns),
        "start_ns": start_ns,
        "end_ns": end_ns,
    }


def device_json(device: DeviceInfo) -> JsonObject:
    return {
        "id": device.id,
        "kind": device.kind.value,
        "name": device.name,
        "parent": device.parent,
        "streams": [
            {
                "name": s.name,
                "media": s.media.value,
                "recording": s.recording,
                "codec": s.format.codec,
                "width": s.format.width,
                "height": s.format.height,
                "frame_rate": s.format.frame_rate,
            }
            for s in device.streams
        ],
    }


def timeline_json(timeline: StreamTimeline) -> JsonObject:
    return {
        "stream": timeline.stream,
        "spans": [
            {
                **range_json(span.start_ns, span.end_ns),
                "first_seq": span.first_seq,
                "last_seq": span.last_seq,
                "chunk_count": span.chunk_count,
                "payload_bytes": span.payload_bytes,
            }
            for span in timeline.spans
        ],
        "gaps": [range_json(gap.start_ns, gap.end_ns) for gap in timeline.gaps],
    }


def hold_json(hold: Hold) -> JsonObject:
    return {
        "id": hold.hold_id,
        "device_id": hold.device_id,
        "stream": hold.stream,
        **range_json(hold.start_ns, hold.end_ns),
        "expires": format_instant(hold.expires_ns),
        "owner": hold.owner,
        "placed_at": format_instant(hold.placed_at_ns),
    }


def optional_instant(instant_ns: int | None) -> str | None:
    return None if instant_ns is None else format_instant(instant_ns)


def status_json(status: SiteStatus) -> JsonObject:
    usage = status.usage
    return {
        "now": format_instant(status.now_ns),
        "uptime_s": round(status.uptime_s, 3),
        "storage": {
            "used_bytes": usage.live_bytes,
            "quota_bytes": usage.quota_bytes,
            "free_bytes": max(0, usage.quota_bytes - usage.live_bytes),
            "disk_free_bytes": status.disk_free_bytes,
            "held_bytes": usage.held_bytes,
            "hold_budget_bytes": usage.hold_budget_bytes,
            "chunk_count": usage.chunk_count,
        },
        "cameras_up": sum(1 for camera in status.cameras if camera.up),
        "cameras": [{"id": c.device_id, "name": c.name, "up": c.up} for c in status.cameras],
        "streams": [
            {
                "device_id": s.device_id,
                "stream": s.stream,
                "chunk_count": s.chunk_count,
                "stored_bytes": s.stored_bytes,
                "oldest": optional_instant(s.oldest_ns),
                "newest": optional_instant(s.newest_ns),
            }
            for s in status.streams
        ],
    }


def event_json(event: SystemEvent) -> JsonObject:
    """One site event; `device_id` is null for events of the site itself (storage)."""
    return {
        "kind": str(event.kind),
        "device_id": event.device_id or None,
        "at": format_instant(event.at_ns),
        "at_ns": event.at_ns,
        "details": {"detail": event.detail} if event.detail else {},
    }
