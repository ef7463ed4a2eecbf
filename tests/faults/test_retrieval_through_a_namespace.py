"""A retrieval job over a real network path whose cable is pulled (issue 5).

`siteline agent run` records three synthetic cameras inside a network namespace, its
uplink shaped by `tc tbf` at 20 Mbit/s; the central runs in this process and retrieves a
span of their HQ under a cap of 4 Mbit/s (tests/faults/namespace_site.py). The cable is
pulled by taking the site's end of the veth pair down (`NamespacePair.link_down`): packets
vanish in both directions, nothing is reset, so neither end learns of it but by its read
timeout (3 s at both). It stays out for
`CUT_S`, then is plugged back. Checked for every run:

- the central finds the stall by its read timeout (`EndReason.STALLED`) within
  `STALL_FOUND_WITHIN_S` of the pull;
- once the link is back, the job completes, and the run checker
  (tests/retrieval_checker.py, through fault_run's `verdict`) finds nothing lost, nothing
  stored twice, at most one chunk of a stream handed to the store again per cut, every
  chunk with its receipt and no hold left at the site;
- the cap held over the run outside the cuts: over the time the transfers ran (from the
  job made, or a new link up, to the pull or the last data to arrive) the bytes the
  central's links received average within `CAP_TOLERANCE` of the cap, and the bytes that
  came over the veth exceed it by no more than that and their TCP/IP headers. Single 1 s
  windows are judged in tests/central/retrieval_faults/test_bandwidth_cap.py, with the
  first second;
- what a cut costs on the line: the link carried no more than the payload stored, its
  framing, and per cut one chunk for each stream (the one under way).

A cut is written into the run's history once the central has stopped the job's streams
(the job reads "waiting for the site's link"): every chunk handed to the store before that
came over the old link, every one after it over the new.

The first case pulls the cable mid-transfer; the second blackholes the routes between the
two ends instead (a routing failure on the way: both links stay up, each kernel drops what
it sends); the third pulls it twice: as the central
sends its first request to hold the job's spans at the site (so the site never gets it),
then at a random moment of the transfer (the seed is in the failure messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from central.retrieval.retrieval_work import LINK_DOWN_REASON
from shared.link_io.client import LinkClient
from shared.link_io.session import EndReason
from tests.central.retrieval_faults.fault_run import (
    READ_TIMEOUT_S,
    WAIT_S,
    create_job,
    ended,
    job_until,
    recorded_span,
    set_cap,
)
from tests.faults.namespace_site import CAMERAS, HQ_KBPS, NamespaceRun, namespace_run
from tests.retrieval_checker import RetrievalCheck

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = list(CAMERAS)
SPAN_CHUNKS = 6
"""Seconds of HQ per camera: about 20 chunks of 250 kB in all, some 10 s at the cap."""
CAP_BPS = 4_000_000
CUT_S = 5.0
"""How long the cable stays out: longer than either end's read timeout, so both give the
link up and the central has to find the stall by itself."""
STALL_FOUND_WITHIN_S = READ_TIMEOUT_S + 0.5
"""The read timeout, and the time the event loop takes to notice it on a busy machine."""
CUT_AFTER_DELIVERIES = 5
CAP_TOLERANCE = 0.04
TCP_IP_HEADERS = 66 / 1448
"""What the veth counter adds to the link's bytes at most: Ethernet, IP and TCP headers of
each full segment (fewer where segments cross the pair merged: measured 1.5% to 4.7%)."""
MIN_MEASURED_S = 5.0
SAMPLE_S = 0.05
DATA_BYTES = 2_000
"""A sample this many bytes above the one before saw retrieval data arrive (the link's own
messages in `SAMPLE_S` are a few hundred bytes)."""
FRAMING = 0.01
"""The link's frames around the payload, and its own messages, as a share of the payload,
at most (about 0.5% here: 20 bytes per piece of 5 kB, each chunk's header and
signature)."""
CHUNK_BYTES_AT_MOST = HQ_KBPS * 1000 // 8 * 5 // 4
"""A chunk is one GOP, 1 s of HQ at a constant bitrate; 1.25 s of it is beyond any."""


@dataclass(frozen=True)
class Reading:
    at_s: float  # time.monotonic()
    link_bytes: int  # what the central's links to the site received (link frames)
    wire_bytes: int  # what came over the veth from the site (with TCP/IP headers)


class CapMeter:
    """The site's bytes over the time the job's transfers ran: segments from a start (the
    job made, a new link up) to an end (the cable pulled, or the last data to arrive, as
    sampled every `SAMPLE_S`)."""

    def __init__(self, run: NamespaceRun) -> None:
        self._run = run
        self.segments: list[tuple[Reading, Reading]] = []
        self._links: list[LinkClient] = []
        self._open: Reading | None = None
        self._last_data: Reading | None = None

    def reading(self) -> Reading:
        link = self._run.link()
        if link is not None and link not in self._links:
            self._links.append(link)
        return Reading(
            time.monotonic(),
            sum(known.session.bytes_received for known in self._links),
            self._run.ns.received_bytes(),
        )

    async def sample(self) -> None:
        """Note the last sample that saw data arrive, until cancelled."""
        before = self.reading()
        while True:
            await asyncio.sleep(SAMPLE_S)
            now = self.reading()
            if now.link_bytes - before.link_bytes >= DATA_BYTES:
                self._last_data = now
            before = now

    def start(self) -> None:
        self._open = self.reading()

    def end(self) -> None:
        """The open segment ends now (nothing when none is open)."""
        if self._open is not None:
            self.segments.append((self._open, self.reading()))
            self._open = None

    def end_at_last_data(self) -> None:
        assert self._open is not None
        assert self._last_data is not None
        assert self._last_data.at_s > self._open.at_s, "no data came after the last start"
        self.segments.append((self._open, self._last_data))
        self._open = None

    @property
    def seconds(self) -> float:
        return sum(end.at_s - start.at_s for start, end in self.segments)

    def of_cap(self, *, wire: bool = False) -> float:
        """The average rate over the segments, as a fraction of the cap."""
        moved = sum(
            (end.wire_bytes - start.wire_bytes) if wire else (end.link_bytes - start.link_bytes)
            for start, end in self.segments
        )
        return moved * 8 / self.seconds / CAP_BPS

    def summary(self) -> str:
        parts = [
            f"{end.at_s - start.at_s:.2f} s: {(end.link_bytes - start.link_bytes) / 1e3:.0f} kB"
            for start, end in self.segments
        ]
        return (
            f"link {self.of_cap():.3f} of the cap, wire {self.of_cap(wire=True):.3f}, over "
            f"{self.seconds:.1f} s ({'; '.join(parts)})"
        )


@contextlib.asynccontextmanager
async def cap_meter(run: NamespaceRun) -> AsyncIterator[CapMeter]:
    meter = CapMeter(run)
    sampling = asyncio.create_task(meter.sample())
    try:
        yield meter
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling


@dataclass
class Cable:
    """The site's line: pulled (from the test or from inside the central's tasks), then,
    by `outage`, kept out for `CUT_S` and plugged back."""

    run: NamespaceRun
    meter: CapMeter
    by_blackhole: bool = False
    """Cut by blackholing the routes between the two ends instead of pulling the cable."""
    stalls_found_s: list[float] = field(default_factory=list)
    _pulled: asyncio.Event = field(default_factory=asyncio.Event)
    _link: LinkClient | None = None
    _pulled_at_s: float = 0.0

    @property
    def is_out(self) -> bool:
        return self._pulled.is_set()

    def pull(self) -> None:
        self._link = self.run.link()
        assert self._link is not None, "the cable was pulled while no link was up"
        self.meter.end()
        if self.by_blackhole:
            self.run.ns.blackhole_on()
        else:
            self.run.ns.link_down()
        self._pulled_at_s = time.monotonic()
        self._pulled.set()

    async def outage(self, job_id: str, label: str) -> None:
        """After a pull: until the central's link ends (its stall noted), the job's streams
        stop (the cut goes into the history), `CUT_S` passes, the cable is plugged back
        and the next link is up (the meter's next segment starts)."""
        async with asyncio.timeout(WAIT_S):
            await self._pulled.wait()
        assert self._link is not None
        async with asyncio.timeout(WAIT_S):
            end = await self._link.wait_closed()
        self.stalls_found_s.append(time.monotonic() - self._pulled_at_s)
        assert end.reason is EndReason.STALLED, (label, end)
        await job_until(self.run.central, job_id, lambda job: job["reason"] == LINK_DOWN_REASON)
        self.run.history.cut(label)
        await asyncio.sleep(max(0.0, self._pulled_at_s + CUT_S - time.monotonic()))
        if self.by_blackhole:
            self.run.ns.blackhole_off()
        else:
            self.run.ns.link_up()
        self._pulled.clear()
        async with asyncio.timeout(WAIT_S):
            while True:
                if (link := self.run.link()) is not None and link is not self._link:
                    break
                await asyncio.sleep(0.02)
        self.meter.start()


def pull_at_first_hold(link: LinkClient, cable: Cable) -> None:
    """Pull the cable as the central asks the site over `link` for its first hold: the
    request goes out on a dead line."""
    place_hold = link.place_hold

    async def pulling(device_id: str, **kwargs: Any) -> dict[str, Any]:
        if not cable.is_out:
            cable.pull()
        return await place_hold(device_id, **kwargs)

    link.place_hold = pulling  # type: ignore[method-assign]


async def start_job(
    run: NamespaceRun, meter: CapMeter, *, measure_from_start: bool
) -> tuple[str, Reading]:
    """A job of every camera over a span they all recorded, under the cap, and the meter's
    reading as it was made; with `measure_from_start`, the meter's first segment starts
    there."""
    span = await recorded_span(run.site_store, DEVICES, SPAN_CHUNKS)
    await set_cap(run.central, run.added.site_id, CAP_BPS)
    made = meter.reading()
    if measure_from_start:
        meter.start()
    job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
    return job_id, made


async def finish(
    run: NamespaceRun,
    job_id: str,
    *,
    made: Reading,
    cable: Cable,
    meter: CapMeter,
    cuts: int,
    context: str,
) -> RetrievalCheck:
    """Wait for the job's end and judge the run (see the module docstring); `made`: the
    meter's reading as the job was made."""
    job = await job_until(run.central, job_id, ended, timeout_s=WAIT_S * 2)
    meter.end_at_last_data()
    check = await run.verdict(job)
    stored = sum(progress["bytes"] for progress in job["progress"])
    crossed = meter.reading().link_bytes - made.link_bytes
    report = (
        f"{context}; {check}; stalls found after {cable.stalls_found_s} s; {meter.summary()}; "
        f"{crossed} bytes crossed the link for {stored} bytes of payload stored"
    )
    print(report)
    assert check.cuts == cuts, report
    assert run.recorder.already_held == check.resends <= cuts * len(DEVICES), report
    assert all(found_s <= STALL_FOUND_WITHIN_S for found_s in cable.stalls_found_s), report
    assert meter.seconds >= MIN_MEASURED_S, report
    assert abs(meter.of_cap() - 1.0) <= CAP_TOLERANCE, report
    assert meter.of_cap(wire=True) <= (1 + CAP_TOLERANCE) * (1 + TCP_IP_HEADERS), report
    # What a cut costs on the line: at most the chunk each stream had under way.
    assert crossed <= stored * (1 + FRAMING) + cuts * len(DEVICES) * CHUNK_BYTES_AT_MOST, report
    return check


async def test_a_job_completes_after_the_cable_is_pulled_mid_transfer(tmp_path: Path) -> None:
    async with namespace_run(tmp_path) as run, cap_meter(run) as meter:
        cable = Cable(run, meter)
        job_id, made = await start_job(run, meter, measure_from_start=True)
        await run.recorder.more(CUT_AFTER_DELIVERIES)
        cable.pull()
        await cable.outage(job_id, "the cable was pulled mid-transfer")
        at_plug = run.recorder.deliveries
        await finish(run, job_id, made=made, cable=cable, meter=meter, cuts=1, context="one cut")
        assert run.recorder.deliveries > at_plug


async def test_a_job_completes_after_the_routes_are_blackholed_mid_transfer(
    tmp_path: Path,
) -> None:
    async with namespace_run(tmp_path) as run, cap_meter(run) as meter:
        cable = Cable(run, meter, by_blackhole=True)
        job_id, made = await start_job(run, meter, measure_from_start=True)
        await run.recorder.more(CUT_AFTER_DELIVERIES)
        cable.pull()
        await cable.outage(job_id, "the routes were blackholed mid-transfer")
        at_plug = run.recorder.deliveries
        await finish(
            run, job_id, made=made, cable=cable, meter=meter, cuts=1, context="one blackhole"
        )
        assert run.recorder.deliveries > at_plug


async def test_a_job_completes_after_cuts_while_placing_holds_and_at_a_random_moment(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    async with namespace_run(tmp_path) as run, cap_meter(run) as meter:
        cable = Cable(run, meter)
        link = run.link()
        assert link is not None
        pull_at_first_hold(link, cable)
        job_id, made = await start_job(run, meter, measure_from_start=False)
        await cable.outage(job_id, "cut 1: the cable was pulled as the holds were asked for")
        assert run.recorder.deliveries == 0
        await run.recorder.more(rng.randrange(1, 6))
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        _, job = await run.central.call("GET", f"/retrievals/{job_id}")
        assert not ended(job), f"the job ended before the second cut (seed {seed})"
        cable.pull()
        await cable.outage(job_id, f"cut 2: the cable was pulled at a random moment (seed {seed})")
        await finish(
            run,
            job_id,
            made=made,
            cable=cable,
            meter=meter,
            cuts=2,
            context=f"two cuts, seed {seed}",
        )
