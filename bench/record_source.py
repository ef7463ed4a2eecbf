"""Records one camera's main stream through the agent's recording path.

    python bench/record_source.py MEDIA_FILE STORE_DIR [--realtime]
    python bench/record_source.py rtsp://... STORE_DIR --seconds N [--reader ffmpeg|in_process]

A file is read as fast as it can be (or at its own pace with --realtime, as a camera delivers
it); an RTSP camera is recorded for N seconds. Used by `record_cpu.py` as a child process:
the source (demux, no transcoding) -> chunker ->
recording gate -> sealing (SHA-256, Ed25519) -> one synced LMDB commit per chunk. Prints one
JSON line with the CPU seconds spent recording (after imports and setup), child processes
included (the RTSP camera's ffmpeg reader), the same per thread ("threads": the reader, the
event loop, the store writer, and "ffmpeg child"; Linux only), and what was stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
from pathlib import Path

from agent.chain_sealer import ChainSealer
from agent.event_hub import EventHub
from agent.recording_policy import RecordingMode, StreamRecordingGate
from agent.sources.base import CameraSource, SourceUnavailable
from agent.sources.file import FileCamera
from agent.sources.rtsp import RtspCamera
from agent.store_writer import StoreWriter
from agent.stream_recorder import StreamRecorder
from shared.clock import SystemClock
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _running_children_cpu_s() -> float:
    """CPU seconds so far of this process's running children (Linux; 0 elsewhere)."""
    total = 0.0
    task_dir = Path("/proc/self/task")
    if not task_dir.is_dir():
        return 0.0
    for task in os.listdir(task_dir):
        try:
            pids = (task_dir / task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:  # utime and stime, in clock ticks, after the command name
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children_cpu_s() -> float:
    """CPU seconds of this process's children: those waited for, and those still running."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + _running_children_cpu_s()


def _sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each thread of this process, by native thread id (empty off Linux)."""
    task_dir = Path("/proc/self/task")
    if not task_dir.is_dir():
        return {}
    times: dict[int, float] = {}
    for task in os.listdir(task_dir):
        try:  # schedstat: nanoseconds on the CPU, then waiting, then time slices
            times[int(task)] = int((task_dir / task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return times


async def record(
    media: str, store_dir: Path, *, realtime: bool, seconds: float | None, reader: str
) -> dict[str, object]:
    clock = SystemClock()
    store = ChunkStore.open(
        store_dir,
        quota_bytes=8 * 1024**3,
        hold_budget_bytes=0,
        clock=clock,
        home_site_id="bench-site",
    )
    writer = StoreWriter(store)
    recorder = StreamRecorder(
        device_id="cam",
        stream="hq",
        gate=StreamRecordingGate(RecordingMode.CONTINUOUS),
        sealer=ChainSealer(
            site_id="bench-site",
            device_id="cam",
            stream="hq",
            signer=SiteSigner.generate(),
            head=None,
        ),
        writer=writer,
        events=EventHub(),
        clock=clock,
    )
    camera: CameraSource
    if media.startswith("rtsp://"):
        camera = RtspCamera(media, clock=clock, audio=False, reader=reader)
    else:
        camera = FileCamera(Path(media), clock=clock, realtime=realtime, loop=False, audio=False)
    configs = await camera.open()
    start_cpu, start_sys, start_threads = _cpu_s(), _sys_s(), _thread_cpu_s()
    start_children = _children_cpu_s()
    await recorder.set_codec(configs["hq"])

    async def consume() -> None:
        while True:
            for packet in await camera.read_batch():  # as the camera supervisor reads
                if packet.stream == "hq":
                    await recorder.push(packet)

    try:
        async with asyncio.timeout(seconds):
            await consume()
    except (SourceUnavailable, TimeoutError):
        pass  # the end of the file, or of the recording time
    await recorder.flush()
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    threads = {
        names.get(tid, str(tid)): round(cpu_s - start_threads.get(tid, 0.0), 3)
        for tid, cpu_s in _thread_cpu_s().items()
    }
    await camera.close()
    children_s = _children_cpu_s() - start_children
    if children_s > 0:
        threads["ffmpeg child"] = round(children_s, 3)
    cpu_s, sys_s = _cpu_s() - start_cpu + children_s, _sys_s() - start_sys
    await asyncio.to_thread(writer.close)
    store.close()
    return {
        "cpu_s": cpu_s,
        "sys_s": sys_s,
        "threads": threads,
        "reader": getattr(camera, "reader", "file"),
        "packets": recorder.counters.packets,
        "chunks": recorder.counters.chunks_stored,
        "bytes": recorder.counters.bytes_stored,
    }


if __name__ == "__main__":
    options = sys.argv[3:]
    duration = float(options[options.index("--seconds") + 1]) if "--seconds" in options else None
    chosen = options[options.index("--reader") + 1] if "--reader" in options else "auto"
    result = asyncio.run(
        record(
            sys.argv[1],
            Path(sys.argv[2]),
            realtime="--realtime" in options,
            seconds=duration,
            reader=chosen,
        )
    )
    print(json.dumps(result))
