"""An `ffmpeg` child process that relays one camera URL, remuxed (never transcoded), as NUT
on its standard output.

Why a child: demuxing RTSP in this process costs Python work for every packet, run between
two reads inside FFmpeg with cold caches; an `ffmpeg -c copy` child does that part in C and
the agent reads what it wrote in bursts (`BurstPipeReader`), a few times a second
(docs/benchmarks.md, "Agent CPU per recorded stream").

The URL never appears on the child's command line, where any local user could read it
(`/proc/PID/cmdline`, `ps`) with the camera's password. The child reads a one-entry
concat script on its standard input instead, which names the URL and its demuxer options;
the agent writes it and closes the pipe.

Supervision: the child runs in its own session (a Ctrl-C in the agent's terminal reaches
only the agent, which stops its children in order). If the agent dies, even by SIGKILL, the
read end of the child's output pipe closes and the child ends at its next write (EPIPE).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

FFMPEG_PROGRAM = "ffmpeg"
PIPE_BYTES = 1 << 20
"""The output pipe's capacity (Linux's default ceiling for unprivileged processes): about
two seconds of a 4 Mbit/s camera, so the child never waits for a reader that wakes twice a
second."""
_F_SETPIPE_SZ = 1031  # Linux fcntl
_STDERR_TAIL_BYTES = 4096
_INPUT_PROTOCOLS = "pipe,rtsp,rtsps,tcp,tls,udp,rtp"
"""Protocols the child may open: `pipe` for the script; the rest for the camera. FFmpeg
refuses any other, including one a server names in a redirect."""


def ffmpeg_available(program: str = FFMPEG_PROGRAM) -> bool:
    """True if the `ffmpeg` program is on the PATH."""
    return shutil.which(program) is not None


def concat_script(url: str, options: Mapping[str, str]) -> bytes:
    """The concat script that makes FFmpeg open `url` with demuxer `options`.

    Every character but letters and digits is escaped with a backslash, so no URL can end
    the directive early or add another one."""
    lines = ["ffconcat version 1.0", f"file {_escaped(url)}"]
    lines += [f"option {_escaped(key)} {_escaped(value)}" for key, value in options.items()]
    return ("\n".join(lines) + "\n").encode()


def _escaped(text: str) -> str:
    if any(ch in "\r\n\0" for ch in text):
        raise ValueError("a line break or NUL cannot be passed to FFmpeg's concat script")
    return "".join(ch if ch.isascii() and ch.isalnum() else "\\" + ch for ch in text)


def relay_command(
    *, video_only: bool, analyze_duration_us: int, program: str = FFMPEG_PROGRAM
) -> list[str]:
    """The child's command line: concat script on stdin, NUT on stdout, no URL anywhere.

    The first video stream, and the first audio stream if any and wanted; packets are
    written as they come (`-flush_packets 1`: a live viewer waits for no buffer), and a
    stalled stream holds the other back at most 0.5 s while FFmpeg interleaves them."""
    maps = ["-map", "0:v:0"] if video_only else ["-map", "0:v:0", "-map", "0:a:0?"]
    return [
        program, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-protocol_whitelist", _INPUT_PROTOCOLS, "-analyzeduration", str(analyze_duration_us),
        "-f", "concat", "-safe", "0", "-i", "pipe:0",
        *maps, "-c", "copy", "-flush_packets", "1", "-max_interleave_delta", "500000",
        "-f", "nut", "pipe:1",
    ]  # fmt: skip


class RelayStartError(Exception):
    """The child could not be started (no `ffmpeg` program, no process slot)."""


class FFmpegRelay:
    """One running child: its output pipe, its last words on stderr, and how to stop it."""

    def __init__(self, command: Sequence[str], script: bytes) -> None:
        """Start the child and hand it `script`; raises `RelayStartError`."""
        try:
            self._process = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise RelayStartError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        with contextlib.suppress(OSError):  # a smaller pipe still works, with more wake-ups
            fcntl.fcntl(process.stdout.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        self.pipe_bytes = fcntl.fcntl(process.stdout.fileno(), _F_SETPIPE_SZ + 1)  # F_GETPIPE_SZ
        os.set_blocking(process.stderr.fileno(), False)
        self._stderr_tail = b""
        try:
            process.stdin.write(script)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the child already ended: its stderr says why
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def stdout_fd(self) -> int:
        """The read end of the child's NUT output."""
        stdout = self._process.stdout
        assert stdout is not None
        return stdout.fileno()

    def drain_stderr(self) -> None:
        """Keep the last few KiB the child wrote to stderr (never blocks); call now and then
        so a chatty child never fills its stderr pipe."""
        stderr = self._process.stderr
        if stderr is None or stderr.closed:
            return
        while True:
            try:
                piece = os.read(stderr.fileno(), 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if not piece:
                return
            self._stderr_tail = (self._stderr_tail + piece)[-_STDERR_TAIL_BYTES:]

    def last_error(self) -> str:
        """The child's last line on stderr, without FFmpeg's "pipe:0: " prefix ("" if none).

        Not scrubbed: the caller removes the camera's password from it."""
        self.drain_stderr()
        lines = [line.strip() for line in self._stderr_tail.decode(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            return ""
        last = lines[-1]
        return last.removeprefix("pipe:0: ")

    def exit_status(self) -> int | None:
        """The child's exit status, or None while it runs."""
        return self._process.poll()

    def stop(self, timeout_s: float = 2.0) -> None:
        """End the child (SIGTERM, then SIGKILL after `timeout_s`) and close its pipes;
        idempotent."""
        process = self._process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self.drain_stderr()
        for stream in (process.stdout, process.stderr):
            if stream is not None and not stream.closed:
                stream.close()
