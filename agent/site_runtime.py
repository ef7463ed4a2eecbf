"""The running site: every camera, input and output recording into one store, plus retention.

This is the composition root: it receives the store, the signer, the clock and a source
factory, and builds the recorders from the configuration. `run` records until cancelled;
on cancellation every recorder stores the chunk it was cutting before `run` returns, so a
clean stop loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from agent.camera_recorder import CameraRecorder
from agent.config import AgentConfig, CameraConfig
from agent.device_recorders import RecorderContext
from agent.event_hub import EventHub
from agent.gpio_lines import GpiodLoader, GpioInput, load_gpiod
from agent.input_device import STATE_STREAM, InputDevice, InputListener
from agent.output_device import OutputDevice
from agent.recording_policy import RecordingMode
from agent.retention_loop import RetentionLoop
from agent.sources.base import CameraSource
from agent.store_writer import StoreWriter
from agent.stream_recorder import StreamRecorder
from shared.chunk import Signer
from shared.clock import Clock
from shared.live_relay import LiveRelay
from shared.media import CodecConfig

_log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig], CameraSource]
POLL_INTERVAL_S = 1.0


class AgentSite:
    """All recording of one site; see the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        writer: StoreWriter,
        signer: Signer,
        clock: Clock,
        source_factory: SourceFactory,
        events: EventHub | None = None,
        rng: random.Random | None = None,
        retention_interval_s: float = 5.0,
        gpiod_loader: GpiodLoader = load_gpiod,
        live: LiveRelay | None = None,
    ) -> None:
        self.config = config
        self.events = events or EventHub()
        self.live = live or LiveRelay()
        self.live.on_watched = self._on_live_watched
        self._clock = clock
        self._writer = writer
        rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        context = RecorderContext(
            site_id=config.site.id,
            time_zone=config.site.time_zone,
            signer=signer,
            writer=writer,
            events=self.events,
            clock=clock,
            live=self.live,
        )
        self.cameras = [
            CameraRecorder(camera, source_factory(camera), context, rng=rng)
            for camera in config.cameras
        ]
        listeners: list[InputListener] = [camera.on_input for camera in self.cameras]
        self.inputs = [
            InputDevice(
                input_config,
                context.stream_recorder(
                    input_config.id, STATE_STREAM, mode=RecordingMode.CONTINUOUS
                ),
                self.events,
                clock=clock,
                listeners=listeners,
            )
            for input_config in config.inputs
        ]
        # GPIO inputs are fed by their line; gpiod is imported only when one runs.
        self.gpio_inputs = [
            GpioInput(device, events=self.events, clock=clock, rng=rng, loader=gpiod_loader)
            for device in self.inputs
            if device.config.source == "gpio"
        ]
        self.outputs = [
            OutputDevice(
                output_config,
                context.stream_recorder(
                    output_config.id, STATE_STREAM, mode=RecordingMode.CONTINUOUS
                ),
                self.events,
                clock=clock,
                rng=rng,
                gpiod_loader=gpiod_loader,
            )
            for output_config in config.outputs
        ]
        self.retention = RetentionLoop(
            writer, self.events, clock=clock, interval_s=retention_interval_s
        )

    def _on_live_watched(self, device_id: str, watched: bool) -> None:
        """A camera (or its microphone) someone watches live delivers packets promptly."""
        for camera in self.cameras:
            if device_id in {r.device_id for r in camera.recorders.values()}:
                camera.source.set_live_watched(watched)

    def stream_codecs(self) -> dict[tuple[str, str], CodecConfig]:
        """The codec configuration each camera stream's source announced last, by (device
        id, stream); streams whose source has not opened yet are left out."""
        return {
            (recorder.device_id, recorder.stream): recorder.codec
            for camera in self.cameras
            for recorder in camera.recorders.values()
            if recorder.codec is not None
        }

    def stream_recorders(self) -> list[StreamRecorder]:
        recorders = [r for camera in self.cameras for r in camera.all_recorders()]
        return recorders + self._state_recorders()

    async def run(self) -> None:
        """Record until cancelled (see the module docstring)."""
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks += [
                    group.create_task(camera.run(), name=f"camera-{camera.camera.id}")
                    for camera in self.cameras
                ]
                tasks += [
                    group.create_task(device.run_synthetic(), name=f"input-{device.config.id}")
                    for device in self.inputs
                    if device.config.source == "synthetic"
                ]
                tasks += [
                    group.create_task(line.run(), name=f"input-{line.device_id}")
                    for line in self.gpio_inputs
                ]
                tasks += [
                    group.create_task(device.run(), name=f"output-{device.config.id}")
                    for device in self.outputs
                ]
                tasks.append(group.create_task(self.retention.run(), name="retention"))
                tasks.append(group.create_task(self._poll_sparse_streams(), name="poll"))
        finally:
            for task in tasks:
                task.cancel()
            # Inputs' and outputs' open chunks are stored too (cameras store theirs as
            # they stop).
            await asyncio.shield(self._flush_inputs())

    async def _flush_inputs(self) -> None:
        for recorder in self._state_recorders():
            await recorder.flush()

    def _state_recorders(self) -> list[StreamRecorder]:
        return [device.recorder for device in self.inputs] + [
            device.recorder for device in self.outputs
        ]

    async def _poll_sparse_streams(self) -> None:
        while True:
            await self._clock.sleep(POLL_INTERVAL_S)
            for camera in self.cameras:
                await camera.poll()
            for recorder in self._state_recorders():
                await recorder.poll()
