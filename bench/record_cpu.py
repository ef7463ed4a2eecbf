"""Agent CPU per recorded stream, against `ffmpeg -c copy -f segment` on the same input.

Both record the same H.264 file (1080p25, ~4 Mbit/s, 1 s GOP). ffmpeg remuxes it into
1-second MP4 segments; the agent's recording path (bench/record_source.py: the file camera,
the chunker, the gate, SHA-256 and Ed25519 sealing, one fsync'ed LMDB commit per chunk) cuts
it into 1-second chunks. CPU is the user + system time of each child process, measured in
the same run, counting from the start of recording for the agent (its imports are excluded)
and, for ffmpeg, the whole process less its start-up cost (a one-frame remux, measured in
the same run), so neither side's fixed cost is counted.

Three modes:
- live camera (the goal's measure, what a site does): a real RTSP camera (the GStreamer test
  server, 1080p25 noise encoded at 4 Mbit/s, 1 s GOP) recorded by each in turn for the same
  time, best of two runs each; CPU per minute of video each actually stored;
- real time from a file: packets released at their own pace; ffmpeg reads with -re;
- fast: both go through the file as fast as they can. This favours batch work and shows
  the cost of handing each packet from the reader thread to the event loop.

Steady state (the goal's measure since 2026-11-25): the whole-run figures above count what
a process spends from its start, and the two sides' start-up costs differ (ffmpeg probing an
RTSP camera costs more than the one-frame file remux subtracted for it, and the agent's
reader child probes too). A site records for months, so the goal is read on the steady
state: ffmpeg and the agent record the live camera in turn, and each one's process tree's
CPU (children included, read from /proc) is measured over a window that starts 10 s after
its start; a live camera gives a minute of video per minute. Three rounds, the median.

Beside them, in the live mode, the floor (bench/record_floor.py): a minimal recorder that does
only what every recording must (an ffmpeg child remuxing into a pipe, read in bursts twice a
second, each GOP hashed, signed and committed with one synced LMDB commit), so the agent's
figure can be read against what a recorder written in Python can reach on the same stream.

The agent runs with each RTSP reader: the default, an ffmpeg child per stream read in bursts
(its CPU counted with the agent's), and the in-process PyAV reader. The goal applies to the
default.

Goal: live-camera ratio (steady state) at most 1.2.

    .venv/bin/python bench/record_cpu.py [--seconds 60] [--fast-seconds 300]
        [--steady-seconds 60] [--steady-rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from process_cpu import process_tree_cpu_s

GOAL_RATIO = 1.2
REPO = Path(__file__).resolve().parent.parent


def make_input(directory: Path, name: str, seconds: int) -> Path:
    """A 1080p25 H.264 file: 20 s encoded once, then looped by stream copy."""
    clip = directory / "clip.mp4"
    if not clip.exists():
        subprocess.run(
            [
                "ffmpeg",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1920x1080:rate=25",
                "-t",
                "20",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-b:v",
                "4M",
                "-maxrate",
                "4M",
                "-bufsize",
                "8M",
                "-g",
                "25",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                str(clip),
            ],
            check=True,
        )
    media = directory / name
    loops = -(-seconds // 20) - 1  # whole clips to cover `seconds`, then cut to it
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            str(loops),
            "-i",
            str(clip),
            "-t",
            str(seconds),
            "-c",
            "copy",
            str(media),
        ],
        check=True,
    )
    return media


def ffmpeg_segment_command(input_args: list[str], segments: Path) -> list[str]:
    """The baseline: remux the input's video into 1-second MP4 segments in `segments`."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", *input_args, "-map", "0:v",
        "-c", "copy", "-f", "segment", "-segment_time", "1", "-segment_format", "mp4",
        "-reset_timestamps", "1", str(segments / "seg%05d.mp4"),
    ]  # fmt: skip


def ffmpeg_startup_cpu_s(media: Path, rounds: int = 3) -> float:
    """ffmpeg's fixed cost (process start, probing, muxer set-up): a one-frame remux.

    Subtracted from ffmpeg's figures, since the agent's exclude its own start (imports)."""
    costs = []
    for _ in range(rounds):
        cpu_s, _ = _cpu_of(
            subprocess.Popen(
                [
                    "ffmpeg",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-i",
                    str(media),
                    "-frames:v",
                    "1",
                    "-c",
                    "copy",
                    "-f",
                    "null",
                    "-",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        costs.append(cpu_s)
    return min(costs)


def _cpu_of(process: subprocess.Popen[str]) -> tuple[float, str]:
    """Wait for `process`; its CPU seconds (user + system) and its output."""
    _pid, _status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read() if process.stdout else ""
    return usage.ru_utime + usage.ru_stime, output


def run_pair(
    media: Path, work: Path, *, realtime: bool, startup_s: float
) -> tuple[float, float, dict[str, float]]:
    """ffmpeg and the agent on `media`, side by side; (ffmpeg CPU s, agent loop CPU s, result)."""
    segments = work / ("segments-rt" if realtime else "segments")
    segments.mkdir()
    ffmpeg = subprocess.Popen(
        ffmpeg_segment_command([*(["-re"] if realtime else []), "-i", str(media)], segments),
        stdout=subprocess.PIPE,
        text=True,
    )
    if not realtime:
        ffmpeg_cpu_s, _ = _cpu_of(ffmpeg)  # one at a time, so neither waits for a core
    agent = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "record_source.py"),
            str(media),
            str(work / ("store-rt" if realtime else "store")),
            *(["--realtime"] if realtime else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if realtime:
        ffmpeg_cpu_s, _ = _cpu_of(ffmpeg)
    _agent_total_s, out = _cpu_of(agent)
    result = json.loads(out.strip().splitlines()[-1])
    return max(ffmpeg_cpu_s - startup_s, 1e-6), float(result["cpu_s"]), result


def run_floor(url: str, store: Path, seconds: int) -> float:
    """The minimal recorder (bench/record_floor.py) on `url`: its CPU-s per minute stored,
    its ffmpeg child's included."""
    _total, out = _cpu_of(
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "record_floor.py"),
                url,
                str(store),
                "--seconds",
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    )
    result = json.loads(out.strip().splitlines()[-1])
    return (float(result["cpu_s"]) + float(result["ffmpeg_cpu_s"])) / (int(result["chunks"]) / 60)


def _record_live(url: str, store: Path, seconds: int, reader: str) -> dict[str, Any]:
    """The agent's recording path (bench/record_source.py) on `url` with the RTSP `reader`."""
    _total, out = _cpu_of(
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "record_source.py"),
                url,
                str(store),
                "--seconds",
                str(seconds),
                "--reader",
                reader,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def live_camera() -> Iterator[str]:
    """A real RTSP camera (the GStreamer test server) on loopback, 1080p25 noise at
    4 Mbit/s; its main profile's URL."""
    sys.path.insert(0, str(REPO))
    from tests.rtsp_server import RtspServerProcess, system_python_has_gi  # noqa: PLC0415

    if not system_python_has_gi():
        raise RuntimeError("the GStreamer RTSP server is needed (scripts/test.sh installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Noise fills the 4 Mbit/s as a busy scene does; the default moving ball on black would
    # come out near 0.2 Mbit/s and weigh only the per-packet costs (figures before 2026-11-24
    # evening were measured so).
    server = RtspServerProcess(port, hq_profile="1920x1080@25:4000", pattern="snow")
    server.start()
    try:
        yield server.url("/hq")
    finally:
        server.stop()


def run_live(
    work: Path, seconds: int, *, startup_s: float, rounds: int = 2
) -> tuple[float, dict[str, float], float, dict[str, dict[str, float]]]:
    """ffmpeg, the agent (with each RTSP reader) and the minimal recorder each record a live
    RTSP camera, one after the other, `rounds` times; the best CPU-s per minute of stored
    video of each (ffmpeg, agent by reader, floor), and the agent's best run per thread."""
    ffmpeg_best = floor_best = float("inf")
    agent_best: dict[str, float] = {}
    agent_threads: dict[str, dict[str, float]] = {}
    with live_camera() as url:
        for round_index in range(rounds):
            segments = work / f"segments-live-{round_index}"
            segments.mkdir()
            ffmpeg_cpu_s, _ = _cpu_of(
                subprocess.Popen(
                    ffmpeg_segment_command(
                        ["-rtsp_transport", "tcp", "-i", url, "-t", str(seconds)], segments
                    ),
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            stored_min = len(list(segments.iterdir())) / 60
            ffmpeg_best = min(ffmpeg_best, max(ffmpeg_cpu_s - startup_s, 1e-6) / stored_min)
            for reader in ("ffmpeg", "in_process"):
                result = _record_live(
                    url, work / f"store-live-{reader}-{round_index}", seconds, reader
                )
                stored_min = result["chunks"] / 60
                if float(result["cpu_s"]) / stored_min < agent_best.get(reader, float("inf")):
                    agent_best[reader] = float(result["cpu_s"]) / stored_min
                    agent_threads[reader] = {
                        name: cpu_s / stored_min for name, cpu_s in result["threads"].items()
                    }
            floor_best = min(
                floor_best, run_floor(url, work / f"store-floor-{round_index}", seconds)
            )
    return ffmpeg_best, agent_best, floor_best, agent_threads


def _steady_cpu_per_min(command: list[str], warm_s: float, span_s: float) -> float:
    """CPU-s per minute of `command` (and its children) recording the live camera, over
    `span_s` seconds that start `warm_s` after it was started: start-up and probing are
    behind it, and a live camera gives a minute of video per minute."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        time.sleep(warm_s)
        before_s, started = process_tree_cpu_s(process.pid), time.monotonic()
        time.sleep(span_s)
        after_s, ended = process_tree_cpu_s(process.pid), time.monotonic()
    finally:
        process.terminate()
        process.wait()
    return 60 * (after_s - before_s) / (ended - started)


def run_steady(
    work: Path, span_s: float, rounds: int, warm_s: float = 10.0
) -> tuple[list[float], list[float]]:
    """ffmpeg -c copy -f segment and the agent (default reader) on the live camera, one
    after the other, `rounds` times: each one's steady CPU-s per minute, by round."""
    ffmpeg_runs: list[float] = []
    agent_runs: list[float] = []
    with live_camera() as url:
        run_s = warm_s + span_s + 10  # outlasts the window; stopped once it is measured
        for round_index in range(rounds):
            segments = work / f"segments-steady-{round_index}"
            segments.mkdir()
            ffmpeg_runs.append(
                _steady_cpu_per_min(
                    ffmpeg_segment_command(["-rtsp_transport", "tcp", "-i", url], segments),
                    warm_s,
                    span_s,
                )
            )
            agent_runs.append(
                _steady_cpu_per_min(
                    [
                        sys.executable,
                        str(REPO / "bench" / "record_source.py"),
                        url,
                        str(work / f"store-steady-{round_index}"),
                        "--seconds",
                        str(run_s),
                        "--reader",
                        "ffmpeg",
                    ],
                    warm_s,
                    span_s,
                )
            )
    return ffmpeg_runs, agent_runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="real-time run length")
    parser.add_argument("--fast-seconds", type=int, default=300, help="fast run input length")
    parser.add_argument(
        "--steady-seconds", type=int, default=60, help="steady-state window on the live camera"
    )
    parser.add_argument(
        "--steady-rounds", type=int, default=3, help="steady-state rounds (median taken)"
    )
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is needed (scripts/test.sh installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="siteline-bench-") as tmp:
        work = Path(tmp)
        fast_media = make_input(work, "fast.mp4", args.fast_seconds)
        rt_media = make_input(work, "realtime.mp4", args.seconds)
        startup_s = ffmpeg_startup_cpu_s(rt_media)
        fast = run_pair(fast_media, work, realtime=False, startup_s=startup_s)
        realtime = run_pair(rt_media, work, realtime=True, startup_s=startup_s)
        live = run_live(work, args.seconds, startup_s=startup_s)
        steady_ffmpeg, steady_agent = run_steady(work, args.steady_seconds, args.steady_rounds)
    print("input: 1080p25 H.264 at ~4 Mbit/s, 1 s GOP; CPU-s per minute of video")
    print(
        f"(ffmpeg's start-up, {startup_s:.3f} CPU-s, is subtracted from its figures; the "
        "agent's exclude its imports)"
    )
    ffmpeg_per_min, agent_by_reader, floor_per_min, threads_by_reader = live
    agent_per_min = agent_by_reader["ffmpeg"]
    ratio_live = agent_per_min / ffmpeg_per_min
    readers = (("ffmpeg", "ffmpeg reader (default)"), ("in_process", "in-process reader"))
    for reader, label in readers:
        per_min = agent_by_reader[reader]
        print(
            f"{'live RTSP camera':>16}: ffmpeg -c copy -f segment {ffmpeg_per_min:.3f}, "
            f"agent with the {label} {per_min:.3f}, ratio {per_min / ffmpeg_per_min:.2f} "
            "(best of 2 runs each, one at a time; child processes included)"
        )
        by_thread = ", ".join(
            f"{name} {cpu:.3f}" for name, cpu in sorted(threads_by_reader[reader].items())
        )
        print(f"{'':>16}  its threads: {by_thread}")
    print(
        f"{'':>16}  floor (bench/record_floor.py: an ffmpeg child into a pipe, read in bursts, "
        f"each GOP hashed, signed, one synced commit; nothing else) {floor_per_min:.3f}, "
        f"ratio {floor_per_min / ffmpeg_per_min:.2f}; the agent is "
        f"{agent_per_min / floor_per_min:.2f}x the floor"
    )
    for label, seconds, (ffmpeg_s, agent_s, result) in (
        (f"real time, {args.seconds} s", args.seconds, realtime),
        (f"fast, {args.fast_seconds} s", args.fast_seconds, fast),
    ):
        minutes = seconds / 60
        ratio = agent_s / ffmpeg_s
        print(
            f"{label:>16}: ffmpeg -c copy -f segment {ffmpeg_s / minutes:.3f}, "
            f"agent {agent_s / minutes:.3f} (of which system {result['sys_s'] / minutes:.3f}), "
            f"ratio {ratio:.2f}; agent stored {result['chunks']} chunks"
        )
    ffmpeg_steady = statistics.median(steady_ffmpeg)
    agent_steady = statistics.median(steady_agent)
    ratio_steady = agent_steady / ffmpeg_steady
    pairs = ", ".join(f"{a / f:.2f}" for f, a in zip(steady_ffmpeg, steady_agent, strict=True))
    print(
        f"{'steady state':>16}: ffmpeg -c copy -f segment {ffmpeg_steady:.3f} "
        f"({_spread(steady_ffmpeg)}), agent with the ffmpeg reader {agent_steady:.3f} "
        f"({_spread(steady_agent)}); ratio of the medians {ratio_steady:.2f}, by round {pairs}"
    )
    print(
        f"{'':>16}  ({args.steady_seconds} s windows from 10 s after each start, "
        f"{args.steady_rounds} rounds, each process tree's CPU read from /proc)"
    )
    share = 100 * agent_steady / 60
    print(f"one live 1080p camera costs the agent {share:.2f}% of a core (steady state)")
    print(f"live-camera ratio (whole runs, best of 2) {ratio_live:.2f}")
    print(
        f"live-camera ratio (steady state, median of {args.steady_rounds}) {ratio_steady:.2f}, "
        f"goal <= {GOAL_RATIO}: " + ("PASS" if ratio_steady <= GOAL_RATIO else "FAIL")
    )
    return 0


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


if __name__ == "__main__":
    sys.exit(main())
