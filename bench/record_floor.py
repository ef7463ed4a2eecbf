"""The floor under the agent's CPU goal: a minimal recorder of one RTSP stream.

    python bench/record_floor.py rtsp://... STORE_DIR --seconds N

It does only the work every recording must do, in the cheapest way this machine offers, and
nothing of the agent's own: an `ffmpeg -c copy` child demuxes the camera and writes NUT into a
1 MiB pipe; this process wakes twice a second, demuxes what the pipe holds with PyAV (warm, in
one burst), and for each GOP hashes the payload (SHA-256), signs the hash (Ed25519) and stores
both with one synced LMDB commit. No chunk records, gate, wall-clock mapping, event loop or
index. Used by `record_cpu.py` as a child process, beside the agent, so that the goal's ratio
can be read against what no recorder written in Python can go below.

Prints one JSON line: the CPU seconds of this process and of its ffmpeg child, both counted
after the stream is open (like the agent's figure), and the GOPs stored.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import lmdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PIPE_BYTES = 1 << 20
BURST_INTERVAL_S = 0.5
F_SETPIPE_SZ = 1031  # Linux fcntl


class BurstReader:
    """A file-like view of a pipe that reads everything it holds every BURST_INTERVAL_S."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._offset = 0
        self._next_read = time.monotonic()

    def read(self, size: int) -> bytes:
        if self._offset >= len(self._buffer):
            wait_s = self._next_read - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            self._next_read = time.monotonic() + BURST_INTERVAL_S
            self._buffer, self._offset = os.read(self._fd, PIPE_BYTES), 0
        piece = self._buffer[self._offset : self._offset + size]
        self._offset += len(piece)
        return piece


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child_cpu_s(pid: int) -> float:
    """CPU seconds so far of a running child (utime + stime from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record(url: str, store_dir: Path, seconds: float) -> dict[str, float]:
    env = lmdb.open(str(store_dir), map_size=1 << 31)  # synced commits, as the edge store's
    key = Ed25519PrivateKey.generate()
    ffmpeg = subprocess.Popen(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
            "-i", url, "-t", str(seconds), "-map", "0:v", "-c", "copy", "-f", "nut", "pipe:1",
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert ffmpeg.stdout is not None
    fcntl.fcntl(ffmpeg.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    container = av.open(BurstReader(ffmpeg.stdout.fileno()), mode="r", format="nut")
    start_own, start_child = _own_cpu_s(), _child_cpu_s(ffmpeg.pid)
    gop: list[bytes] = []
    stored = 0
    for packet in container.demux():
        if packet.size == 0:
            continue
        if packet.is_keyframe and gop:
            payload = b"".join(gop)
            digest = hashlib.sha256(payload).digest()
            signature = key.sign(digest + stored.to_bytes(8, "big"))
            with env.begin(write=True) as txn:
                txn.put(b"c" + stored.to_bytes(8, "big"), payload)
                txn.put(b"s" + stored.to_bytes(8, "big"), digest + signature)
            stored += 1
            gop = []
        gop.append(bytes(packet))
    container.close()
    _pid, _status, usage = os.wait4(ffmpeg.pid, 0)
    own_s = _own_cpu_s() - start_own
    env.close()
    return {
        "cpu_s": own_s,
        "ffmpeg_cpu_s": usage.ru_utime + usage.ru_stime - start_child,
        "chunks": stored,
    }


if __name__ == "__main__":
    options = sys.argv[3:]
    duration = float(options[options.index("--seconds") + 1]) if "--seconds" in options else 30.0
    store = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    store.mkdir(parents=True, exist_ok=True)
    print(json.dumps(record(sys.argv[1], store, duration)))
