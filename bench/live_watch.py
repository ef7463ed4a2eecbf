"""One viewer of a device's live video at the central, kept open across a benchmark's phases,
and the latency of the packets stamped within a span of wall-clock time.

The viewer is the central's live WebSocket (fragmented MP4, bench/live_viewers.py); every
packet carries the site's wall clock at the moment it entered the site's live relay
(bench/wall_stamp.py), so arrival minus stamp is the whole way: the site's link server, the
line, the central's link client, relay and MP4 writer, and the second TLS hop. Site and
viewer share the machine's wall clock. As bench/central_relay.py measures it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from central_process import CentralClient
from live_viewers import ViewerGroup

FIRST_PACKET_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LatencyFigures:
    packets: int
    median_ms: float
    p95_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies_ms: list[float]) -> LatencyFigures:
        if not latencies_ms:
            raise ValueError("no live packet arrived in the span")
        ordered = sorted(latencies_ms)
        p95 = ordered[round(0.95 * (len(ordered) - 1))]
        return cls(len(ordered), statistics.median(ordered), p95, ordered[-1])


class LiveWatch:
    """A viewer of one device at the central."""

    def __init__(self, client: CentralClient, device_id: str) -> None:
        self._client = client
        self._device_id = device_id
        self._group = ViewerGroup(client.session)

    async def open(self) -> None:
        """Open it; return once its first packet arrived."""
        url = self._client.ws_url(f"/devices/{self._device_id}/live")
        await self._group.add([url], self._client.headers, timeout_s=FIRST_PACKET_TIMEOUT_S)

    def arrivals(self) -> list[tuple[int, int]]:
        """(stamp, arrival), wall-clock ns, of every packet that arrived so far."""
        [viewer] = self._group.viewers
        return list(viewer.counts.arrivals)

    async def close(self) -> None:
        await self._group.close()


def latencies_between(
    arrivals: list[tuple[int, int]], start_wall_ns: int, end_wall_ns: int
) -> list[float]:
    """Latency in ms of every packet stamped in [start_wall_ns, end_wall_ns] that arrived."""
    return [
        (arrival - stamp) / 1e6
        for stamp, arrival in arrivals
        if start_wall_ns <= stamp <= end_wall_ns
    ]
