"""Records one camera: its hq and lq video, its microphone, and its motion metadata.

The camera supervisor delivers packets of every stream; each goes to its stream recorder,
and lq packets also go to the motion worker. Motion opens and closes recording windows on
the camera's gates (for streams in motion mode) and its records become the metadata device's
stream. Input events (doors, buttons) reach the gates through `on_input`.

The relayed streams (hq, lq, audio) go to the live relay packet by packet before any
recording decision, and the seal of each chunk stored from them follows its packets there.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

from agent.camera_supervisor import CameraSupervisor
from agent.config import CameraConfig, StreamRecording
from agent.device_recorders import RecorderContext
from agent.motion import (
    MOTION_RECORDS_CODEC,
    MotionDetector,
    MotionEvent,
    MotionOutput,
    MotionRecord,
    MotionWorker,
)
from agent.recording_policy import RecordingMode, TriggerKind
from agent.sources.base import STREAM_AUDIO, STREAM_HQ, STREAM_LQ, CameraSource
from agent.stream_recorder import StreamRecorder
from agent.system_events import SystemEvent, SystemEventKind
from shared.media import CodecConfig, MediaPacket

_log = logging.getLogger(__name__)

MOTION_STREAM = "motion"
# A motion sensitivity of 0..1 maps onto the detector's per-cell threshold: 0.5 is its default.
_THRESHOLD_AT_ZERO = 40
_THRESHOLD_AT_ONE = 5


class CameraRecorder:
    """One camera's recording; see the module docstring."""

    def __init__(
        self,
        camera: CameraConfig,
        source: CameraSource,
        context: RecorderContext,
        *,
        rng: random.Random,
    ) -> None:
        self.camera = camera
        self.source = source
        self._context = context
        recording = camera.recording

        def recorder(device_id: str, stream: str, settings: StreamRecording) -> StreamRecorder:
            return context.stream_recorder(
                device_id,
                stream,
                mode=RecordingMode(settings.mode),
                schedule=recording.schedule,
                pre_buffer_s=recording.pre_buffer_s,
                post_buffer_s=recording.post_buffer_s,
            )

        self.recorders: dict[str, StreamRecorder] = {
            STREAM_HQ: recorder(camera.id, STREAM_HQ, recording.hq),
            STREAM_LQ: recorder(camera.id, STREAM_LQ, recording.lq),
        }
        if camera.has_microphone:
            self.recorders[STREAM_AUDIO] = recorder(
                camera.microphone_id, STREAM_AUDIO, recording.audio
            )
        if context.live is not None:
            # The streams it relays: their stored chunks' seals follow their packets.
            for relayed in self.recorders.values():
                relayed.on_committed = context.live.publish_sealed
        self.metadata: StreamRecorder | None = None
        if camera.motion.enabled:
            self.metadata = context.stream_recorder(
                camera.metadata_id, MOTION_STREAM, mode=RecordingMode.CONTINUOUS
            )
        self._motion: MotionWorker | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._motion_codec: CodecConfig | None = None
        self.supervisor = CameraSupervisor(
            source,
            device_id=camera.id,
            on_packet=self._on_packet,
            on_event=self._on_camera_event,
            clock=context.clock,
            rng=rng,
            on_open=self._on_open,
        )

    def all_recorders(self) -> list[StreamRecorder]:
        extra = [self.metadata] if self.metadata is not None else []
        return [*self.recorders.values(), *extra]

    async def run(self) -> None:
        """Record until cancelled; on cancellation the open chunks are stored first."""
        if self.metadata is not None:
            await self.metadata.set_codec(MOTION_RECORDS_CODEC)
        try:
            await self.supervisor.run()
        finally:
            await asyncio.shield(self._stop())

    async def poll(self) -> None:
        """Close chunks of sparse streams that have waited long enough."""
        for recorder in self.all_recorders():
            if recorder.stream not in (STREAM_HQ, STREAM_LQ):
                await recorder.poll()

    async def on_input(self, active: bool, at_ns: int, source: str) -> None:
        """An input changed: streams in event mode record around it, if this camera listens
        to that input (`trigger_inputs`; every input when not configured)."""
        listened = self.camera.recording.trigger_inputs
        if listened is not None and source not in listened:
            return
        for recorder in self.recorders.values():
            if active:
                await recorder.trigger(TriggerKind.EVENT, at_ns, source=source)
            else:
                recorder.end_trigger(TriggerKind.EVENT, at_ns, source=source)

    async def _stop(self) -> None:
        if self._motion is not None:
            await self._motion.stop()  # delivers the final "motion ended"
            self._motion = None
        for recorder in self.all_recorders():
            await recorder.flush()

    async def _on_open(self, configs: Mapping[str, CodecConfig]) -> None:
        live = self._context.live
        for stream, codec in configs.items():
            recorder = self.recorders.get(stream)
            if recorder is not None:
                await recorder.set_codec(codec)
                if live is not None:
                    live.set_codec(recorder.device_id, stream, codec)
        lq = configs.get(STREAM_LQ)
        if self.camera.motion.enabled and lq is not None and lq != self._motion_codec:
            if self._motion is not None:
                await self._motion.stop()
            sensitivity = self.camera.motion.sensitivity
            threshold = round(
                _THRESHOLD_AT_ZERO + (_THRESHOLD_AT_ONE - _THRESHOLD_AT_ZERO) * sensitivity
            )
            detector = MotionDetector(
                lq,
                device_id=self.camera.id,
                analysis_fps=self.camera.motion.analysis_fps,
                cell_threshold=threshold,
            )
            self._motion = MotionWorker(detector, self._on_motion, name=f"motion-{self.camera.id}")
            self._motion.start()
            self._motion_codec = lq

    async def _on_packet(self, packet: MediaPacket) -> None:
        recorder = self.recorders.get(packet.stream)
        if recorder is None:
            return  # a stream this camera does not record (audio without a microphone)
        if recorder.codec is None:
            return  # the source gave a stream it did not announce; ignore it
        if self._context.live is not None:
            self._context.live.publish(recorder.device_id, packet)
        await recorder.push(packet)
        if packet.stream == STREAM_LQ and self._motion is not None:
            self._motion.submit(packet)

    def _on_camera_event(self, event: SystemEvent) -> None:
        self._context.events.publish(event)
        if event.kind is SystemEventKind.CAMERA_LOST:
            # The source is gone: close the chunks being cut so nothing waits in memory.
            task = asyncio.get_running_loop().create_task(self._flush_all())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _flush_all(self) -> None:
        for recorder in self.recorders.values():
            await recorder.flush()

    async def _on_motion(self, output: MotionOutput) -> None:
        if isinstance(output, MotionRecord):
            if self.metadata is not None:
                await self.metadata.push(output.to_packet(MOTION_STREAM))
            return
        assert isinstance(output, MotionEvent)
        kind = SystemEventKind.MOTION_STARTED if output.started else SystemEventKind.MOTION_ENDED
        self._context.events.publish(SystemEvent(kind, self.camera.id, output.at_ns))
        for recorder in self.recorders.values():
            if output.started:
                await recorder.trigger(TriggerKind.MOTION, output.at_ns, source=self.camera.id)
            else:
                recorder.end_trigger(TriggerKind.MOTION, output.at_ns, source=self.camera.id)
