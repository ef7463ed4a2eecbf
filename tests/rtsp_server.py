"""A real RTSP camera for tests: two H.264 profiles (/hq and /lq) from GStreamer's test source.

Runs under the system Python (`/usr/bin/python3`), which has the GObject bindings for
GStreamer's RTSP server (Debian: gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-ugly/good/base). It imports nothing from this project.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 [--audio]

Prints one line `READY rtsp://127.0.0.1:<port>` on stdout once it accepts connections,
then serves until SIGTERM or SIGINT. /hq is 320x240 at 15 fps (plus G.711 A-law audio with
--audio), /lq 160x120 at 5 fps; both have a keyframe every second.

The test suite imports this module (under the project's Python) for `RtspServerProcess`,
which runs the script as a child process and can stop and restart it on the same port,
as a camera that loses power and comes back.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
GI_CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import GstRtspServer"
)


def profile_launch(
    width: int, height: int, fps: int, bitrate_kbps: int, *, audio: bool, pattern: str = "ball"
) -> str:
    """The gst-launch description of one mount: a test pattern, 1 s GOP.

    "ball" (a ball moving on black) compresses far below `bitrate_kbps`; "snow" (noise)
    fills it, as a busy scene fills a real camera's bit rate."""
    video = (
        f"videotestsrc is-live=true pattern={pattern} ! "
        f"video/x-raw,width={width},height={height},framerate={fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        f"bitrate={bitrate_kbps} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if not audio:
        return f"( {video} )"
    sound = (
        "audiotestsrc is-live=true wave=sine freq=440 ! "
        "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8"
    )
    return f"( {video} {sound} )"


def serve() -> int:
    """The server itself (system Python only: it needs the GObject bindings)."""
    import gi  # type: ignore[import-not-found]  # noqa: PLC0415 - imported without gi too

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--audio", action="store_true", help="add a G.711 A-law track to /hq")
    parser.add_argument(
        "--hq", default="320x240@15:400", help="main profile as WIDTHxHEIGHT@FPS:KBPS"
    )
    parser.add_argument(
        "--pattern", default="ball", help="the main profile's test pattern (ball, snow)"
    )
    args = parser.parse_args()
    size, _, rest = args.hq.partition("@")
    hq_fps, _, hq_kbps = rest.partition(":")
    hq_width, _, hq_height = size.partition("x")
    hq_profile = (int(hq_width), int(hq_height), int(hq_fps), int(hq_kbps))

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for path, (width, height, fps, kbps), audio, pattern in (
        ("/hq", hq_profile, args.audio, args.pattern),
        ("/lq", (160, 120, 5, 100), False, "ball"),
    ):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(profile_launch(width, height, fps, kbps, audio=audio, pattern=pattern))
        # One pipeline per mount shared by all clients, as a camera's encoder is.
        factory.set_shared(True)
        mounts.add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    main_loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, main_loop.quit)
    print(f"READY rtsp://127.0.0.1:{args.port}", flush=True)
    main_loop.run()
    return 0


def system_python_has_gi(python: str = SYSTEM_PYTHON) -> bool:
    """True when `python` can import GStreamer's RTSP server bindings."""
    try:
        result = subprocess.run(
            [python, "-c", GI_CHECK], check=False, capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class RtspServerProcess:
    """This script run as a child process on a fixed port; can be stopped and restarted."""

    def __init__(
        self,
        port: int,
        *,
        audio: bool = False,
        hq_profile: str = "320x240@15:400",
        pattern: str = "ball",
        python: str = SYSTEM_PYTHON,
    ) -> None:
        self.port = port
        self._pattern = pattern
        self._audio = audio
        self._hq_profile = hq_profile
        self._python = python
        self._process: subprocess.Popen[str] | None = None

    def url(self, mount: str) -> str:
        """The RTSP URL of a mount ("/hq" or "/lq")."""
        return f"rtsp://127.0.0.1:{self.port}{mount}"

    def start(self, ready_timeout_s: float = 20.0) -> None:
        """Start the server and wait for its READY line."""
        if self._process is not None:
            raise RuntimeError("the RTSP test server is already running")
        command = [
            self._python,
            str(Path(__file__).resolve()),
            "--port",
            str(self.port),
            "--hq",
            self._hq_profile,
            "--pattern",
            self._pattern,
        ]
        if self._audio:
            command.append("--audio")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._process = process
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(ready_timeout_s)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the RTSP test server did not start: {line!r}")

    def stop(self) -> None:
        """Terminate the server (as a camera losing power would); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    sys.exit(serve())
