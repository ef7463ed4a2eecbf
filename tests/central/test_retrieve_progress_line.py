"""The progress line of `siteline retrieve --wait` (central/retrieve_cli.py): a bar of the
recording time covered, the bytes, the rate of all the job's streams together (Mbit/s, or
kbit/s below 1 Mbit/s), the time the slowest stream still needs, and the state."""

from __future__ import annotations

from typing import Any

from central.retrieve_cli import progress_line


def _job(
    *progress: dict[str, Any], state: str = "running", reason: str | None = None
) -> dict[str, Any]:
    return {"state": state, "reason": reason, "progress": list(progress)}


def _device(
    fraction: float, size: int, rate_bps: int | None, eta_s: float | None
) -> dict[str, Any]:
    return {"fraction": fraction, "bytes": size, "rate_bps": rate_bps, "eta_s": eta_s}


def test_rates_add_up_and_the_slowest_stream_says_the_time_left() -> None:
    line = progress_line(
        _job(_device(0.5, 3 << 20, 1_200_000, 75.0), _device(0.25, 1 << 20, 600_000, 3725.0))
    )
    assert line == "[#########...............]  37.5%  4.0 MiB  1.80 Mbit/s  1h02m left  running"


def test_a_low_cap_reads_in_kbit_per_second() -> None:
    line = progress_line(_job(_device(0.1, 50_000, 64_000, 59.9)))
    assert "  64 kbit/s  59s left  " in line
    assert "800 kbit/s  2m05s left" in progress_line(_job(_device(0.1, 50_000, 800_000, 125)))


def test_nothing_measured_yet_shows_no_rate_and_no_time_left() -> None:
    line = progress_line(
        _job(_device(0.0, 0, None, None), state="pending", reason="waiting for the site's link")
    )
    assert line == "[........................]   0.0%  0 B  pending (waiting for the site's link)"


def test_a_completed_job_shows_a_full_bar() -> None:
    line = progress_line(_job(_device(1.0, 5 << 20, None, None), state="completed"))
    assert line == "[########################] 100.0%  5.0 MiB  completed"
