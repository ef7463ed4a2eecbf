"""The wire form of the REST API's event stream (Server-Sent Events): which events a
subscriber gets, their ids, resuming after `Last-Event-ID`, and the text of each message.

An event's id is its instant and a digest of what happened (`<at_ns>-<8 hex digits>`), so
after a reconnection the hub's recent history can be searched for it without the hub
numbering events. Every message is one `event:` line and one `data:` line of JSON (JSON
escapes line breaks inside strings, so data never spans lines).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.accounts import Principal
from agent.api_bodies import event_json
from agent.system_events import SystemEvent, SystemEventKind
from shared.api_input import MAX_LIST_ITEMS, MAX_STRING_CHARS, BadRequest

RECONNECT_MS = 3000  # what an EventSource waits before reconnecting
STREAM_OPENING = f"retry: {RECONNECT_MS}\n: open\n\n".encode()
HEARTBEAT = b": heartbeat\n\n"
_EVENT_ID = re.compile(r"([0-9]{1,20})-[0-9a-f]{8}")
_KINDS = tuple(kind.value for kind in SystemEventKind)


@dataclass(frozen=True)
class EventFilter:
    """Which events one subscriber gets: the link's rule (events of devices the account may
    use, and the site's own), narrowed to the devices and kinds asked for, if any."""

    principal: Principal
    devices: frozenset[str]
    kinds: frozenset[str]

    def wants(self, event: SystemEvent) -> bool:
        device_id = event.device_id
        if device_id and not self.principal.may_access(device_id):
            return False
        if self.devices and device_id not in self.devices:
            return False
        return not self.kinds or event.kind in self.kinds


def event_filters(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The `device` and `kind` filters of the events route; both may repeat."""
    chosen: dict[str, list[str]] = {"device": [], "kind": []}
    for name, value in pairs:
        if name not in chosen:
            raise BadRequest(name, "unknown parameter (this route takes device and kind)")
        if len(value) > MAX_STRING_CHARS:
            raise BadRequest(name, f"longer than {MAX_STRING_CHARS} characters")
        if len(chosen[name]) == MAX_LIST_ITEMS:
            raise BadRequest(name, f"given more than {MAX_LIST_ITEMS} times")
        chosen[name].append(value)
    for kind in chosen["kind"]:
        if kind not in _KINDS:
            raise BadRequest("kind", f"not an event kind: {kind!r} (known: {', '.join(_KINDS)})")
    return chosen["device"], chosen["kind"]


def event_id(event: SystemEvent) -> str:
    """The SSE id of an event (see the module docstring)."""
    what = f"{event.kind}\0{event.device_id}\0{event.detail}".encode()
    return f"{event.at_ns}-{hashlib.blake2b(what, digest_size=4).hexdigest()}"


def parse_last_event_id(header: str) -> str | None:
    """The `Last-Event-ID` header's id, None when it is absent or empty."""
    header = header.strip()
    if not header:
        return None
    if not _EVENT_ID.fullmatch(header):
        shown = header if len(header) <= 40 else header[:40] + "..."
        raise BadRequest("Last-Event-ID", f"not an event id of this API: {shown!r}")
    return header


def events_after(recent: Sequence[SystemEvent], last_id: str | None) -> list[SystemEvent]:
    """The history after the event `last_id`; if it is no longer kept, the history after
    its instant."""
    if last_id is None:
        return []
    ids = [event_id(event) for event in recent]
    if last_id in ids:
        position = len(ids) - 1 - ids[::-1].index(last_id)
        return list(recent[position + 1 :])
    at_ns = int(last_id.partition("-")[0])
    return [event for event in recent if event.at_ns > at_ns]


def sse_event(event: SystemEvent) -> bytes:
    """The message of one site event: its id, its kind as the SSE event type, its JSON."""
    return sse_message(str(event.kind), event_json(event), event_id(event))


def sse_message(kind: str, data: object, identifier: str | None = None) -> bytes:
    """One message; without an id, a reconnecting client keeps the last id it had."""
    lines = [] if identifier is None else [f"id: {identifier}"]
    lines += [f"event: {kind}", f"data: {json.dumps(data, separators=(',', ':'))}", "", ""]
    return "\n".join(lines).encode("utf-8")
