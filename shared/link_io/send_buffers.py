"""How many bytes a link leaves queued below its own priority queue.

The link session hands frames to the WebSocket in priority order (live before retrieval), but
only as fast as the layers below take them, and those layers keep no order of their own:
asyncio's transport buffer (up to 512 KiB under TLS in Python 3.11) and the kernel's socket
buffer, whose unsent part the kernel lets grow with the line (about 1 MB on a 20 Mbit/s
line). A live frame queued after them waits until they have crossed the line: 0.7-0.8 s on
that line while an uncapped retrieval fills it (docs/benchmarks.md). Bounding both keeps the
choice of what goes next in the link's queue, where the priority is.

The bounds are small next to what a site's uplink carries in a second, and large enough that
the kernel always has the next segments to send: the socket reports room when fewer than
`UNSENT_LOW_WATER_BYTES` wait to be sent, and the event loop refills it from a buffer of at
most `TRANSPORT_HIGH_WATER_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

_log = logging.getLogger(__name__)

UNSENT_LOW_WATER_BYTES = 32 * 1024
TRANSPORT_HIGH_WATER_BYTES = 64 * 1024
TRANSPORT_LOW_WATER_BYTES = 16 * 1024


def bound_send_buffers(transport: asyncio.BaseTransport | None) -> bool:
    """Bound the unsent bytes of `transport` and of its socket; False when it has neither
    (it is closed, or not a socket). Best effort: a link whose buffers cannot be bounded
    still works, with live waiting longer behind a transfer."""
    if transport is None or transport.is_closing():
        return False
    bounded = False
    if isinstance(transport, asyncio.WriteTransport):
        transport.set_write_buffer_limits(
            high=TRANSPORT_HIGH_WATER_BYTES, low=TRANSPORT_LOW_WATER_BYTES
        )
        bounded = True
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)  # Linux and macOS
    if sock is not None and option is not None and sock.family != socket.AF_UNIX:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_LOW_WATER_BYTES)
        except OSError as exc:
            _log.debug("cannot bound the socket's unsent bytes: %s", exc)
        else:
            bounded = True
    return bounded


def client_transport(websocket: Any) -> asyncio.BaseTransport | None:
    """The transport under an aiohttp client WebSocket (aiohttp offers no public way to it:
    its response's connection is reached through a private attribute; None if that moves)."""
    response = getattr(websocket, "_response", None)
    connection = getattr(response, "connection", None)
    transport = getattr(connection, "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None
