"""A site with GPIO devices on a simulated board, its clock driven by the test."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgpack

from agent.config import load_agent_config
from agent.gpio_lines import GpiodLoader, GpioInput
from agent.output_device import OutputDevice
from agent.site_runtime import AgentSite
from agent.store_writer import StoreWriter
from agent.system_events import SystemEvent, SystemEventKind
from shared.clock import ManualClock
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from tests.agent.site_config import write_site_config
from tests.fakes.fake_gpiod import FakeGpioBoard

START_WALL_NS = 1_700_000_000_000_000_000


class GpioBench:
    """The real site's devices (built by `AgentSite`), the store they record into, a
    `ManualClock`, and the fake board whose chips the test drives."""

    def __init__(self, site: AgentSite, board: FakeGpioBoard, clock: ManualClock) -> None:
        self.site = site
        self.board = board
        self.clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    def input(self, device_id: str) -> GpioInput:
        return next(line for line in self.site.gpio_inputs if line.device_id == device_id)

    def output(self, device_id: str) -> OutputDevice:
        return next(device for device in self.site.outputs if device.config.id == device_id)

    def start(self, *runners: GpioInput | OutputDevice) -> None:
        """Run them as the site does (backoff sleeps only advance the manual clock)."""
        for runner in runners:
            self._tasks.append(asyncio.create_task(runner.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        self._tasks.clear()

    def events(self, *kinds: SystemEventKind) -> list[SystemEvent]:
        return [e for e in self.site.events.recent() if not kinds or e.kind in kinds]

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Let the loop run (reader callbacks, tasks) until `condition` holds."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.005)

    async def records(self, device_id: str) -> list[tuple[int, bool]]:
        """The device's stored state records, (at_ns, active), oldest first."""
        recorder = next(r for r in self.site.stream_recorders() if r.device_id == device_id)
        await recorder.flush()
        store = self.site._writer.store
        states = []
        for chunk in store.read_chunks(device_id, "state", 0, 2**63 - 1):
            for entry, data in chunk.iter_packets():
                tag, version, at_ns, active = msgpack.unpackb(data)
                assert (tag, version, entry.pts) == ("input_state", 1, at_ns)
                states.append((at_ns, active))
        return states


@asynccontextmanager
async def gpio_bench(
    tmp_path: Path, devices_toml: str, *, gpiod_loader: GpiodLoader | None = None
) -> AsyncIterator[GpioBench]:
    """`gpiod_loader`: the library the site is given (default: the fake board's module)."""
    config = load_agent_config(write_site_config(tmp_path, devices_toml))
    clock = ManualClock(START_WALL_NS)
    board = FakeGpioBoard(monotonic_ns=clock.monotonic_ns)
    store = ChunkStore.open(
        config.storage.path,
        quota_bytes=64 << 20,
        hold_budget_bytes=0,
        clock=clock,
        home_site_id=config.site.id,
    )
    writer = StoreWriter(store)
    site = AgentSite(
        config,
        writer=writer,
        signer=SiteSigner.generate(),
        clock=clock,
        source_factory=_no_camera,
        rng=random.Random(3),
        gpiod_loader=gpiod_loader or board.loader(),
    )
    bench = GpioBench(site, board, clock)
    try:
        yield bench
    finally:
        await bench.stop()
        board.close()
        await asyncio.to_thread(writer.close)
        store.close()


def _no_camera(camera: object) -> None:
    raise AssertionError(f"the GPIO bench has no cameras ({camera})")
