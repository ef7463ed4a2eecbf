"""The RTSP camera's ffmpeg reader: the child process it runs, what the child's command line
and environment show, and what happens to the child when the camera closes or the agent
dies. Real ffmpeg, a real RTSP server (GStreamer) on loopback."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from agent.sources.base import SourceConfigError
from agent.sources.ffmpeg_relay import concat_script
from agent.sources.rtsp import RtspCamera, resolve_reader
from shared.clock import NS_PER_S, SystemClock
from tests.rtsp_server import RtspServerProcess

REPO = Path(__file__).resolve().parents[2]
SECRET = "Sup3rSecret"


def _children(pid: int) -> list[int]:
    """The running child processes of `pid` (any of its threads' children)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def _what_children_show(pid: int) -> dict[int, tuple[bytes, bytes]]:
    """Each running child's command line and environment, as any local user may read them."""
    return {
        child: (
            Path(f"/proc/{child}/cmdline").read_bytes(),
            Path(f"/proc/{child}/environ").read_bytes(),
        )
        for child in _children(pid)
    }


def _gone(pid: int) -> bool:
    """True once `pid` has exited (absent, or a zombie waiting for a parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _with_password(url: str) -> str:
    return url.replace("rtsp://", f"rtsp://viewer:{SECRET}@", 1)


def test_the_concat_script_carries_any_url_character_through_ffmpeg(tmp_path: Path) -> None:
    odd = tmp_path / "cam 'one' #1;\\x,y=z.nut"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=64x48:rate=5", "-t", "1", "-c:v", "mpeg4", "-f", "nut", str(odd)],
        check=True,
    )  # fmt: skip
    # "file:" as an RTSP URL has "rtsp:": a URL without one is taken relative to the script's
    script = concat_script(f"file:{odd}", {"analyzeduration": "1000000"})
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "pipe,file",
         "-f", "concat", "-safe", "0", "-i", "pipe:0", "-c", "copy", "-f", "nut", "pipe:1"],
        input=script,
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    with av.open(io.BytesIO(done.stdout), format="nut") as copied:
        assert sum(1 for p in copied.demux() if p.size) == 5


def test_the_concat_script_refuses_a_line_break() -> None:
    with pytest.raises(ValueError, match="line break"):
        concat_script("rtsp://cam/x\nfile /etc/passwd", {})


def test_asking_for_the_ffmpeg_reader_without_the_program_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SourceConfigError, match=r"^reader: 'ffmpeg' needs the ffmpeg program"):
        RtspCamera("rtsp://cam/x", clock=SystemClock(), reader="ffmpeg")
    assert resolve_reader("auto") == "in_process"
    with pytest.raises(SourceConfigError, match=r"^reader: must be one of"):
        resolve_reader("gstreamer")


@pytest.mark.rtsp
async def test_the_password_stays_off_the_childs_command_line_and_the_child_ends_with_the_camera(
    rtsp_server: RtspServerProcess,
) -> None:
    camera = RtspCamera(
        _with_password(rtsp_server.url("/hq")),
        _with_password(rtsp_server.url("/lq")),
        clock=SystemClock(),
        reader="ffmpeg",
    )
    assert "ffmpeg reader" in camera.describe()
    assert SECRET not in camera.describe()
    configs = await camera.open()
    try:
        assert set(configs) == {"hq", "lq", "audio"}
        packets = [await camera.read() for _ in range(10)]
        assert {p.stream for p in packets} & {"hq", "lq"}
        shown = _what_children_show(os.getpid())
        relays = [pid for pid, (line, _env) in shown.items() if line.startswith(b"ffmpeg\0")]
        assert len(relays) == 2, shown  # one per profile
        for pid in relays:
            command_line, environment = shown[pid]
            assert SECRET.encode() not in command_line
            assert b"127.0.0.1" not in command_line  # no URL at all
            assert SECRET.encode() not in environment
    finally:
        await camera.close()
    assert all(_gone(pid) for pid in relays)


_HOLDER = """
import asyncio, os, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from agent.sources.rtsp import RtspCamera
from shared.clock import SystemClock

async def main():
    camera = RtspCamera({url!r}, clock=SystemClock(), reader="ffmpeg")
    await camera.open()
    await camera.read()
    pids = []
    for task in os.listdir("/proc/self/task"):
        pids += Path(f"/proc/self/task/{{task}}/children").read_text().split()
    print(" ".join(pids), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.rtsp
def test_the_child_ends_when_the_agent_is_killed(rtsp_server: RtspServerProcess) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(repo=str(REPO), url=rtsp_server.url("/hq"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        relays = [int(pid) for pid in line.split()]
        assert len(relays) == 1, line
        assert not _gone(relays[0])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 10
    while not _gone(relays[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(relays[0]), "the ffmpeg child outlived the agent"


@pytest.mark.rtsp
async def test_a_stalled_reader_catches_up_without_moving_the_frames_in_time(
    rtsp_server: RtspServerProcess,
) -> None:
    """The reader's child is stopped for 1.5 s while the camera goes on sending: the frames
    wait in the socket and then arrive in a rush. They keep the times they were captured at
    (the camera's own spacing from the first frame), so nothing steps back over what was
    already recorded."""
    camera = RtspCamera(rtsp_server.url("/hq"), clock=SystemClock(), audio=False, reader="ffmpeg")
    configs = await camera.open()
    time_base = Fraction(configs["hq"].time_base_num, configs["hq"].time_base_den)
    packets = []

    async def read_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            packets.extend(p for p in await camera.read_batch() if p.stream == "hq")

    try:
        await read_for(2.0)
        shown = _what_children_show(os.getpid())
        (child,) = [pid for pid, (line, _env) in shown.items() if line.startswith(b"ffmpeg\0")]
        os.kill(child, signal.SIGSTOP)
        await asyncio.sleep(1.5)
        os.kill(child, signal.SIGCONT)
        await read_for(3.0)
    finally:
        await camera.close()
    assert len(packets) > 60  # the test camera sends 15 frames a second, through the stall
    first = packets[0]
    for packet in packets:
        media_ns = (packet.pts - first.pts) * time_base * NS_PER_S
        assert abs(packet.wall_ns - first.wall_ns - media_ns) <= 1, packet
