"""Chunks the site sent more than once during a job, and the cut each re-send followed.

From the site's own record of every chunk it handed to its link (bench/sent_log.py), those
of the job's span (its devices, its seqs, sent while it ran): a chunk's first send is the
one the job needed; each later send is a re-send, counted against the last cut that began
before it (one made before any cut is counted apart: nothing should cause it). The goal is
at most one chunk re-sent per stream (device) per cut.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass

from sent_log import SiteSends


@dataclass(frozen=True)
class ResendReading:
    cuts: int
    sends: int  # chunks of the span handed to the link, re-sends included
    distinct: int  # different chunks among them
    resent: int  # sends beyond each chunk's first
    resent_payload_bytes: int
    most_per_stream_per_cut: int
    before_any_cut: int  # re-sends with no cut before them
    sessions_opened: int  # links the central opened while the job ran (after cuts)

    def meets(self, most: int = 1) -> bool:
        return self.most_per_stream_per_cut <= most and self.before_any_cut == 0


def count_resends(
    sent: SiteSends,
    *,
    devices: set[str],
    first_seq: int,
    chunks: int,
    job_start_ns: int,
    job_end_ns: int,
    cut_starts_ns: list[int],
) -> ResendReading:
    """The re-sends of the span (`devices` x seqs [first_seq, first_seq + chunks)) sent
    between `job_start_ns` and `job_end_ns`; `cut_starts_ns`: when each cut began (all
    instants monotonic)."""
    ordered = sorted(cut_starts_ns)
    seen: set[tuple[str, int]] = set()
    per_stream_cut: Counter[tuple[str, int]] = Counter()
    sends = resent = resent_bytes = before_any = 0
    for send in sorted(sent.chunks, key=lambda c: c.at_ns):
        if not (
            send.device_id in devices
            and first_seq <= send.seq < first_seq + chunks
            and job_start_ns <= send.at_ns <= job_end_ns
        ):
            continue
        sends += 1
        key = (send.device_id, send.seq)
        if key not in seen:
            seen.add(key)
            continue
        resent += 1
        resent_bytes += send.payload_bytes
        cut = bisect.bisect_right(ordered, send.at_ns) - 1
        if cut < 0:
            before_any += 1
        else:
            per_stream_cut[(send.device_id, cut)] += 1
    return ResendReading(
        cuts=len(ordered),
        sends=sends,
        distinct=len(seen),
        resent=resent,
        resent_payload_bytes=resent_bytes,
        most_per_stream_per_cut=max(per_stream_cut.values(), default=0),
        before_any_cut=before_any,
        sessions_opened=len(sent.sessions_opened_between(job_start_ns, job_end_ns)),
    )
