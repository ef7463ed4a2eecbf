"""A session always tells its listeners it ended, even when closing its WebSocket fails.

Found by the retrieval benchmark: after a long cut, cancelling a writer blocked in
aiohttp's drain also cancels aiohttp's shared drain future, and the WebSocket's close then
raises CancelledError in the session's own task, which nobody cancelled. The site's link
handler never learnt that the session ended, and its transfers were never cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from shared.clock import SystemClock
from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection
from shared.link_io.session import EndReason, LinkSession


class _ClosingBadly:
    """A WebSocket whose peer is gone and whose close raises `failure`."""

    def __init__(self, failure: BaseException) -> None:
        self._failure = failure

    async def send_bytes(self, data: bytes) -> None:
        del data

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
        del timeout
        return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        del code, message
        raise self._failure


class _Listener:
    def __init__(self) -> None:
        self.ended = 0

    def on_request(self, event: ev.RequestReceived) -> None:
        del event

    def on_credit(self, event: ev.CreditReceived) -> None:
        del event

    def on_cancel(self, event: ev.StreamCancelled) -> None:
        del event

    def on_session_end(self, *_: Any) -> None:
        self.ended += 1


@pytest.mark.parametrize("failure", [asyncio.CancelledError(), ConnectionResetError("gone")])
async def test_the_listeners_hear_the_end_when_closing_fails(failure: BaseException) -> None:
    server = _Listener()
    connection = LinkConnection(role=m.LinkRole.SITE, software="test-site")
    session = LinkSession(connection, _ClosingBadly(failure), clock=SystemClock(), server=server)
    end = await session.run()
    assert end.reason is EndReason.CUT
    assert server.ended == 1


async def test_a_real_cancellation_still_cancels() -> None:
    server = _Listener()
    connection = LinkConnection(role=m.LinkRole.SITE, software="test-site")

    class _Slow(_ClosingBadly):
        async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
            await asyncio.sleep(3600)
            raise AssertionError("never")

    # Closing raises CancelledError here too, as it would in the task being cancelled.
    session = LinkSession(
        connection, _Slow(asyncio.CancelledError()), clock=SystemClock(), server=server
    )
    task = asyncio.create_task(session.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.ended == 1
