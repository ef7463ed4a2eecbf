"""A transfer that goes silent is probed at once, not at the next idle keepalive.

Found by the retrieval benchmark's link-ending cuts: the site's end of the connection was
reset while the line was down, the reset never reached the central, and the central waited
for its idle keepalive (a third of the read timeout) before it sent anything that the site's
kernel could answer with a reset: about 13 s lost per cut instead of the cut itself.
"""

from __future__ import annotations

import asyncio

import aiohttp

from shared.clock import SystemClock
from shared.link import messages as m
from shared.link.connection import LinkConnection
from shared.link.framing import FrameReader
from shared.link.wire import decode_message
from shared.link_io.session import LinkSession
from tests.link.link_pair import Pump, central_end, site_end

PROBE_S = 0.2


class _SilentPeer:
    """The central's WebSocket to a site that has stopped answering: sends are recorded,
    nothing ever arrives (until the session gives up or is cancelled)."""

    def __init__(self) -> None:
        self.sent: list[m.Message] = []
        self._frames = FrameReader()

    async def send_bytes(self, data: bytes) -> None:
        self.sent += [decode_message(body) for body in self._frames.feed(data)]

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
        await asyncio.sleep(3600 if timeout is None else timeout)
        return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        del code, message
        return True

    def pings(self) -> int:
        return sum(isinstance(message, m.Ping) for message in self.sent)


def _ready_central() -> LinkConnection:
    central, site = central_end(), site_end()
    Pump(central, site).run()
    return central


async def _pings_within(seconds: float, *, transfer: bool) -> tuple[int, int]:
    central = _ready_central()
    if transfer:
        central.send_request(
            m.TransferRequest(
                central.new_request_id(), "cam-1", "hq", 0, 10**18, None, 1 << 20,
                m.Priority.BACKGROUND,
            )
        )  # fmt: skip
    assert central.awaiting_transfer is transfer
    peer = _SilentPeer()
    session = LinkSession(
        central, peer, clock=SystemClock(), read_timeout_s=30.0, stall_probe_s=PROBE_S
    )
    task = asyncio.create_task(session.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return peer.pings(), session.stall_probes


async def test_a_silent_transfer_is_probed_every_probe_interval() -> None:
    pings, probes = await _pings_within(5.5 * PROBE_S, transfer=True)
    assert 4 <= pings <= 6, pings
    assert probes == pings


async def test_a_silent_link_with_nothing_owed_waits_for_the_idle_keepalive() -> None:
    pings, probes = await _pings_within(5.5 * PROBE_S, transfer=False)
    assert (pings, probes) == (0, 0)
