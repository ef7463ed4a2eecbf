"""BurstPipeReader on a real pipe: bursts, the pause between them, stop, end and timeout."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest

from agent.sources.burst_pipe import BurstPipeReader


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    try:
        yield read_fd, write_fd
    finally:
        for fd in (read_fd, write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _reader(
    fd: int, *, interval_s: float = 0.0, timeout_s: float = 5.0, pipe_bytes: int = 65536
) -> BurstPipeReader:
    return BurstPipeReader(
        fd,
        pipe_bytes=pipe_bytes,
        interval_s=lambda: interval_s,
        timeout_s=timeout_s,
        stop=threading.Event(),
    )


def test_one_burst_takes_everything_the_pipe_holds_and_hands_it_out_in_pieces(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    for piece in (b"abc", b"defg", b"hij"):
        os.write(write_fd, piece)
    reader = _reader(read_fd)
    assert reader.read(4) == b"abcd"
    assert reader.read(100) == b"efghij"
    assert reader.bursts == 1
    os.write(write_fd, b"k")
    assert reader.read(-1) == b"k"
    assert reader.bursts == 2


def test_the_end_of_the_pipe_reads_as_the_end_of_the_file(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"last")
    os.close(write_fd)
    reader = _reader(read_fd)
    assert reader.read(10) == b"last"
    assert reader.read(10) == b""
    assert not reader.timed_out


def test_silence_longer_than_the_timeout_ends_the_stream_and_says_so(
    pipe: tuple[int, int],
) -> None:
    reader = _reader(pipe[0], timeout_s=0.3)
    assert reader.read(10) == b""
    assert reader.timed_out
    assert reader.idle_s >= 0.3


def test_stop_ends_a_long_pause_between_bursts(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"x")
    reader = _reader(read_fd, interval_s=3600)
    reader.eager = False
    assert reader.read(1) == b"x"
    os.write(write_fd, b"y")
    handed_over: list[str] = []
    reader.before_wait = lambda: handed_over.append("flushed")
    threading.Timer(0.2, reader._stop.set).start()
    assert reader.read(1) == b""  # would wait an hour without the stop
    assert handed_over == ["flushed"]
    assert not reader.timed_out


def test_a_burst_that_filled_half_the_pipe_is_followed_at_once(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    reader = _reader(read_fd, interval_s=3600, pipe_bytes=8)
    reader.eager = False
    os.write(write_fd, b"12345678")
    assert reader.read(8) == b"12345678"  # the first burst is never delayed
    os.write(write_fd, b"9")
    assert reader.read(8) == b"9"  # not an hour later: the last burst was large
    assert reader.bursts == 2


def test_the_burst_callbacks_run_in_order(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    reader = _reader(read_fd)
    calls: list[str] = []
    reader.before_wait = lambda: calls.append("before")
    reader.on_burst = lambda: calls.append("burst")
    os.write(write_fd, b"ab")
    assert reader.read(1) == b"a"
    assert reader.read(1) == b"b"
    assert calls == ["before", "burst"]


def test_bad_sizes_are_refused(pipe: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        _reader(pipe[0], pipe_bytes=0)
    with pytest.raises(ValueError, match="positive"):
        _reader(pipe[0], timeout_s=0)


def test_a_large_read_gets_the_whole_burst_uncopied(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(write_fd, b"0123456789")
    reader = _reader(read_fd)
    whole = reader.read(1 << 20)
    assert whole == b"0123456789"
    assert whole is reader._buffer  # handed over, not sliced into a copy
    os.write(write_fd, b"ab")
    assert reader.read(1) == b"a"  # a small read still gets a piece
    assert reader.read(1 << 20) == b"b"
