"""The run checker of retrieval tests: lost, duplicated and unexpected chunks, chain breaks.

A retrieval run is judged on three things read after it: what the site holds for the job's
streams and range, what the central's store holds for them, and the history of deliveries
(every chunk the central committed, in order, with a marker at every link cut or restart of
either side). The rules, from the retrieval issue (every requested chunk arrives exactly
once, verified; at most one chunk is re-sent per cut):

- lost: a chunk the site holds in the range that the central's store does not hold (with
  the same header hash); the finding says when it was delivered all the same.
- duplicated: a chunk stored twice at the central; a chunk delivered twice between two
  cuts; or, after a cut, more chunks of a stream delivered again than `resends_per_cut`.
- unexpected: a chunk at the central or delivered that the site does not hold (another
  chunk under its seq, or none), or that lies outside the job (another site or stream,
  or not overlapping the range). Each chunk is reported once, where it was first seen.
- chain breaks: at the central, a chunk whose predecessor by seq is stored but is not the
  chunk it names (`prev_chunk_hash`); in the history, a stream delivered backwards
  (a lower seq after a higher one) with no cut between.

The listings are taken once the run is over, with the site's holds still in place, so the
site still holds all of the range. `chunks_in_store` reads them from a `ChunkStore`
(blocking: call it in a worker thread).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.chunk import SignedChunk
from shared.store import ChunkStore
from shared.store.chunk_meta import ChunkMeta
from shared.store.timeline import overlaps

StreamKey = tuple[str, str]  # (device_id, stream)


@dataclass(frozen=True, slots=True)
class ChunkFact:
    """What the checker needs of a chunk: where it belongs, its place in the chain."""

    site_id: str
    device_id: str
    stream: str
    seq: int
    start_ns: int
    end_ns: int
    chunk_hash: bytes
    prev_chunk_hash: bytes

    @classmethod
    def of(cls, chunk: ChunkMeta | SignedChunk | ChunkFact) -> ChunkFact:
        if isinstance(chunk, ChunkFact):
            return chunk
        h = chunk.header
        return cls(
            h.site_id,
            h.device_id,
            h.stream,
            h.seq,
            h.start_ns,
            h.end_ns,
            chunk.chunk_hash,
            h.prev_chunk_hash,
        )

    @property
    def stream_key(self) -> StreamKey:
        return (self.device_id, self.stream)

    @property
    def label(self) -> str:
        return f"{self.site_id}/{self.device_id}/{self.stream} #{self.seq}"


AnyChunk = ChunkMeta | SignedChunk | ChunkFact


@dataclass(frozen=True, slots=True)
class RetrievalJob:
    """What was asked for: streams of one site, chunks overlapping [start_ns, end_ns)."""

    site_id: str
    streams: frozenset[StreamKey]
    start_ns: int
    end_ns: int

    def covers(self, chunk: ChunkFact) -> bool:
        return (
            chunk.site_id == self.site_id
            and chunk.stream_key in self.streams
            and overlaps(chunk.start_ns, chunk.end_ns, self.start_ns, self.end_ns)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    chunk: ChunkFact


@dataclass(frozen=True, slots=True)
class Cut:
    """The link was cut, or the site or the central restarted: deliveries may repeat."""

    reason: str


@dataclass
class DeliveryHistory:
    """Appended to by the run as it goes: `delivered` from the central's commit, `cut` at
    every fault the run injects."""

    entries: list[Delivery | Cut] = field(default_factory=list)

    def delivered(self, chunk: AnyChunk) -> None:
        self.entries.append(Delivery(ChunkFact.of(chunk)))

    def cut(self, reason: str) -> None:
        self.entries.append(Cut(reason))


@dataclass(frozen=True, slots=True)
class Finding:
    chunk: str
    detail: str

    def __str__(self) -> str:
        return f"{self.chunk}: {self.detail}"


@dataclass(frozen=True)
class RetrievalCheck:
    """The checker's verdict; `assert_clean` fails a test with every problem listed."""

    lost: tuple[Finding, ...]
    duplicated: tuple[Finding, ...]
    unexpected: tuple[Finding, ...]
    chain_breaks: tuple[Finding, ...]
    expected: int  # chunks the site holds in the range
    deliveries: int
    resends: int  # deliveries again after a cut, within the allowance
    cuts: int

    def problems(self) -> list[str]:
        return [
            f"{kind}: {finding}"
            for kind, findings in (
                ("lost", self.lost),
                ("duplicated", self.duplicated),
                ("unexpected", self.unexpected),
                ("chain break", self.chain_breaks),
            )
            for finding in findings
        ]

    def assert_clean(self) -> None:
        problems = self.problems()
        if problems:
            summary = (
                f"{len(self.lost)} lost, {len(self.duplicated)} duplicated, "
                f"{len(self.unexpected)} unexpected, {len(self.chain_breaks)} chain breaks "
                f"(of {self.expected} chunks, {self.deliveries} deliveries, {self.cuts} cuts)"
            )
            raise AssertionError("\n".join([summary, *problems]))


def chunks_in_store(
    store: ChunkStore, job: RetrievalJob, *, site_id: str | None = None
) -> list[ChunkFact]:
    """The store's chunks of the job's streams overlapping its range (blocking).

    `site_id` None reads a site's own store (its home site); the central names the site.
    """
    found: list[ChunkFact] = []
    for device_id, stream in sorted(job.streams):
        metas = store.chunk_metas(device_id, stream, job.start_ns, job.end_ns, site_id=site_id)
        found.extend(ChunkFact.of(meta) for meta in metas)
    return found


def check_retrieval(
    job: RetrievalJob,
    *,
    site: Iterable[AnyChunk],
    central: Iterable[AnyChunk],
    history: DeliveryHistory | Sequence[Delivery | Cut],
    resends_per_cut: int = 1,
) -> RetrievalCheck:
    """Judge a run by the rules of the module docstring."""
    checker = _Checker(job, site)
    checker.check_central([ChunkFact.of(chunk) for chunk in central])
    entries = history.entries if isinstance(history, DeliveryHistory) else history
    checker.check_history(entries, resends_per_cut)
    return checker.report()


_Identity = tuple[str, str, str, int, bytes]  # site, device, stream, seq, chunk hash


class _Checker:
    def __init__(self, job: RetrievalJob, site: Iterable[AnyChunk]) -> None:
        self.job = job
        self.at_site: dict[StreamKey, dict[int, ChunkFact]] = {}
        for chunk in map(ChunkFact.of, site):
            if not job.covers(chunk):
                continue  # the site holds much more than the job asks for
            held = self.at_site.setdefault(chunk.stream_key, {})
            if chunk.seq in held and held[chunk.seq] != chunk:
                raise ValueError(f"the site's listing holds two chunks as {chunk.label}")
            held[chunk.seq] = chunk
        self.at_central: dict[StreamKey, dict[int, ChunkFact]] = {}
        self.lost: list[Finding] = []
        self.duplicated: list[Finding] = []
        self.unexpected: dict[_Identity, Finding] = {}
        self.chain_breaks: list[Finding] = []
        self.delivered: set[_Identity] = set()
        self.deliveries = self.resends = self.cuts = 0

    def check_central(self, central: list[ChunkFact]) -> None:
        for chunk in central:
            stored = self.at_central.setdefault(chunk.stream_key, {})
            if chunk.seq in stored:
                self.duplicated.append(Finding(chunk.label, "stored twice at the central"))
                continue
            stored[chunk.seq] = chunk
            self._check_known(chunk, "stored at the central")
        for stream_key, stored in self.at_central.items():
            ordered = sorted(stored.values(), key=lambda c: c.seq)
            for before, after in itertools.pairwise(ordered):
                if after.seq == before.seq + 1 and after.prev_chunk_hash != before.chunk_hash:
                    self.chain_breaks.append(
                        Finding(
                            after.label,
                            f"does not name the stored #{before.seq} of "
                            f"{'/'.join(stream_key)} as its predecessor",
                        )
                    )

    def check_history(self, entries: Sequence[Delivery | Cut], resends_per_cut: int) -> None:
        ever: set[_Identity] = set()
        this_cut: set[_Identity] = set()
        resent: dict[StreamKey, int] = {}
        last_seq: dict[StreamKey, int] = {}
        cut_reason = ""
        for entry in entries:
            if isinstance(entry, Cut):
                self.cuts += 1
                cut_reason = entry.reason
                this_cut.clear()
                resent.clear()
                last_seq.clear()
                continue
            self.deliveries += 1
            chunk = entry.chunk
            identity = _identity(chunk)
            self._check_known(chunk, "delivered")
            self.delivered.add(identity)
            previous = last_seq.get(chunk.stream_key)
            if previous is not None and chunk.seq < previous:
                self.chain_breaks.append(
                    Finding(chunk.label, f"delivered after #{previous} with no cut between")
                )
            last_seq[chunk.stream_key] = chunk.seq
            if identity in this_cut:
                where = f"since cut {self.cuts} ({cut_reason})" if self.cuts else "with no cut"
                self.duplicated.append(Finding(chunk.label, f"delivered again {where}"))
            elif identity in ever:
                resent[chunk.stream_key] = resent.get(chunk.stream_key, 0) + 1
                if resent[chunk.stream_key] > resends_per_cut:
                    self.duplicated.append(
                        Finding(
                            chunk.label,
                            f"re-sent after cut {self.cuts} ({cut_reason}): re-send "
                            f"{resent[chunk.stream_key]} of the stream, at most "
                            f"{resends_per_cut} allowed per cut",
                        )
                    )
                else:
                    self.resends += 1
            ever.add(identity)
            this_cut.add(identity)

    def report(self) -> RetrievalCheck:
        for stream_key, held in self.at_site.items():
            stored = self.at_central.get(stream_key, {})
            for seq, chunk in sorted(held.items()):
                if stored.get(seq) == chunk:
                    continue
                if _identity(chunk) in self.delivered:
                    detail = "delivered, but not in the central's store"
                else:
                    detail = "at the site, never delivered, not at the central"
                self.lost.append(Finding(chunk.label, detail))
        return RetrievalCheck(
            lost=tuple(self.lost),
            duplicated=tuple(self.duplicated),
            unexpected=tuple(self.unexpected.values()),
            chain_breaks=tuple(self.chain_breaks),
            expected=sum(len(held) for held in self.at_site.values()),
            deliveries=self.deliveries,
            resends=self.resends,
            cuts=self.cuts,
        )

    def _check_known(self, chunk: ChunkFact, how: str) -> None:
        """Record `chunk` as unexpected unless the site holds it in the job."""
        identity = _identity(chunk)
        if identity in self.unexpected:
            return
        if not self.job.covers(chunk):
            detail = f"{how}, outside the job (another site or stream, or out of the range)"
        else:
            held = self.at_site.get(chunk.stream_key, {}).get(chunk.seq)
            if held is None:
                detail = f"{how}, but the site holds no such chunk"
            elif held != chunk:
                detail = f"{how}, but differs from the site's chunk under that seq"
            else:
                return
        self.unexpected[identity] = Finding(chunk.label, detail)


def _identity(chunk: ChunkFact) -> _Identity:
    return (chunk.site_id, chunk.device_id, chunk.stream, chunk.seq, chunk.chunk_hash)
