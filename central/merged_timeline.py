"""One device's timeline as an operator sees it: what the central holds, what the site
still holds, what is on its way, and where there is nothing.

Pure logic over spans (start and end in UTC ns, end exclusive). The kinds:

- ``central_lq``: the low-quality reference stream recorded by the central;
- ``retrieved_hq``: high-quality recordings the central fetched from the site;
- ``remote_available``: high quality the site still holds and the central has not fetched
  (retrievable, or playable directly from the site while it is online);
- ``running``: what a retrieval is bringing now and has not brought yet (the job runs and
  this device's stream of it has started);
- ``pending``: what a retrieval was asked for and is not bringing now (not started, or
  waiting for the site's link, the window or disk space), where no retrieval runs;
- ``none``: neither the central nor the site holds anything.

Kinds overlap (a moment can be in the central's LQ and still available in HQ at the site);
`merge_timeline` returns every kind's periods, each kind's own periods disjoint and sorted,
clipped to the asked range. ``none`` is given only where the site's holdings are known: when
the site could not be asked and nothing is cached, the parts the central does not hold are
simply not described, rather than claimed empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class PeriodKind(StrEnum):
    CENTRAL_LQ = "central_lq"
    RETRIEVED_HQ = "retrieved_hq"
    REMOTE_AVAILABLE = "remote_available"
    RUNNING = "running"
    PENDING = "pending"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    start_ns: int
    end_ns: int


Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class RetrievalSpans:
    """What unfinished retrievals have yet to bring of one device: `running`, the parts
    being brought now; `pending`, the parts asked for and waiting."""

    pending: list[Interval]
    running: list[Interval]


def normalise(intervals: Iterable[Interval], start_ns: int, end_ns: int) -> list[Interval]:
    """Clip to [start_ns, end_ns), drop empty ones, merge overlapping or touching ones."""
    clipped = sorted(
        (max(s, start_ns), min(e, end_ns))
        for s, e in intervals
        if min(e, end_ns) > max(s, start_ns)
    )
    merged: list[Interval] = []
    for s, e in clipped:
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def subtract(intervals: Sequence[Interval], taken: Sequence[Interval]) -> list[Interval]:
    """The parts of normalised `intervals` not covered by normalised `taken`."""
    result: list[Interval] = []
    j = 0
    for s, e in intervals:
        cursor = s
        while j < len(taken) and taken[j][1] <= cursor:
            j += 1
        k = j
        while k < len(taken) and taken[k][0] < e:
            ts, te = taken[k]
            if ts > cursor:
                result.append((cursor, ts))
            cursor = max(cursor, te)
            k += 1
        if cursor < e:
            result.append((cursor, e))
    return result


def merge_timeline(
    start_ns: int,
    end_ns: int,
    *,
    central_lq: Iterable[Interval],
    retrieved_hq: Iterable[Interval],
    site_holds: Iterable[Interval] | None,
    pending: Iterable[Interval] = (),
    running: Iterable[Interval] = (),
) -> list[Period]:
    """Every kind's periods within [start_ns, end_ns), ordered by start, then kind.

    `site_holds` is what the site reports holding in high quality (None: not known now).
    `running` and `pending` are the spans unfinished retrievals have yet to bring; neither
    covers what the central already holds in HQ, and a moment that one job brings now and
    another waits for is `running` only.
    """
    if end_ns <= start_ns:
        raise ValueError("the range must end after it starts")
    lq = normalise(central_lq, start_ns, end_ns)
    hq = normalise(retrieved_hq, start_ns, end_ns)
    moving = subtract(normalise(running, start_ns, end_ns), hq)
    waiting = normalise(pending, start_ns, end_ns)
    layers: list[tuple[PeriodKind, list[Interval]]] = [
        (PeriodKind.CENTRAL_LQ, lq),
        (PeriodKind.RETRIEVED_HQ, hq),
        (PeriodKind.RUNNING, moving),
        (PeriodKind.PENDING, subtract(subtract(waiting, hq), moving)),
    ]
    if site_holds is not None:
        at_site = normalise(site_holds, start_ns, end_ns)
        layers.append((PeriodKind.REMOTE_AVAILABLE, subtract(at_site, hq)))
        anything = normalise([*lq, *hq, *at_site], start_ns, end_ns)
        layers.append((PeriodKind.NONE, subtract([(start_ns, end_ns)], anything)))
    order = {kind: index for index, kind in enumerate(PeriodKind)}
    periods = [Period(kind, s, e) for kind, intervals in layers for s, e in intervals]
    periods.sort(key=lambda p: (p.start_ns, order[p.kind]))
    return periods
