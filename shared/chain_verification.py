"""Verification of one stream's signed hash chain: what is authentic, and what is wrong.

Theory of operation
-------------------
The verifier reads a listing of chunks of one (site, device, stream) and reports, per chunk
and per seq range, what it found. It works in four passes; each pass only narrows what the
next one has to explain, so one tampering act yields one finding instead of a cascade.

1. Each chunk alone. The header bytes are decoded as they are (never `chunk.header`, which the
   caller could have built from other bytes), the signature is checked with the site key,
   the signed identity is compared with the stream being verified, and the payload with its
   signed SHA-256. A chunk whose header is signed by the site key for this stream is
   *trusted*: its seq and prev hash may be used to build the chain even if its payload was
   changed. Everything else is *untrusted*: MALFORMED (does not decode), MODIFIED (no key
   we trust verifies the signature) or FOREIGN (provably authentic somewhere else).
2. The chain, from trusted headers only. Identical copies are folded; when two different
   chunks claim one seq, the one that links (back and forward) wins and the other is
   INSERTED. The members are cut into *segments*, maximal runs of consecutive seqs where
   each prev hash names the chunk before. Two segments that touch (seq-adjacent) without
   linking contradict each other: at most one is genuine. Choosing which to keep is a
   maximum-weight independent set on a path (a small dynamic programme): the longer
   segment wins, the earlier one on a tie; the losers are INSERTED, one finding each.
3. The gaps. Walking the kept members in seq order from the start reference (the anchor, or
   the genesis hash at seq 0), every seq that has no member is explained, in this order, by
   a tombstone (EXPIRED, and the next chunk's prev hash must equal the tombstone's hash), by
   an untrusted chunk stored where the gap is (the damaged original: its own finding
   stands), or else it is MISSING (or TRUNCATED past the last chunk, up to `expected_head`).
   A link to a start reference that does not match is UNANCHORED. Untrusted chunks that no
   gap needs were added: an unverifiable one becomes INSERTED.
4. The order. Seq order is compared with storage order by a longest increasing subsequence;
   chunks outside it are REORDERED. A listing sorted by signed start time that disagrees
   with seq only because the site clock stepped back is not an alarm (CLOCK_STEP, info).

Declared discontinuities are RECORDING_GAP (information, with the time gap); they never
excuse a seq gap, because the chain links across a declared gap.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from shared.chunk import GENESIS_HASH, HASH_BYTES, ChunkHeader, chunk_hash_of
from shared.signing import verify_signature

MAX_MESSAGE_DETAIL_CHARS = 160
"""Decoder error text quoted in a finding is cut to this length (it may echo garbage)."""

_NS_PER_S = 1_000_000_000
_NO_TOMBSTONES: Mapping[int, bytes] = MappingProxyType({})
_NO_KEYS: Mapping[bytes, str] = MappingProxyType({})


class FindingKind(StrEnum):
    """What the verifier says about a chunk or a seq range."""

    AUTHENTIC = "authentic"  # signed by the site for this stream, payload intact, chained
    MODIFIED = "modified"  # payload differs from its signed hash, or the signature fails
    MALFORMED = "malformed"  # the header bytes do not decode
    FOREIGN = "foreign"  # authentic, but for another stream or by another known key
    MISSING = "missing"  # seqs neither stored nor tombstoned: chunks were removed
    EXPIRED = "expired"  # seqs deleted by retention, with consistent tombstones
    RECORDING_GAP = "recording_gap"  # a declared discontinuity: the camera did not record
    REORDERED = "reordered"  # storage order disagrees with seq order
    INSERTED = "inserted"  # an extra chunk that does not belong in the chain
    TRUNCATED = "truncated"  # the tail ends before the expected head
    UNANCHORED = "unanchored"  # the first chunk does not link to its start reference
    CLOCK_STEP = "clock_step"  # signed start times go back while seqs go forward


INFORMATIONAL_KINDS = frozenset(
    {FindingKind.AUTHENTIC, FindingKind.EXPIRED, FindingKind.RECORDING_GAP, FindingKind.CLOCK_STEP}
)
"""Kinds that describe a legitimate state of the record; every other kind is a problem."""

# When one chunk has more than one problem, its verdict is the first of these it has.
_VERDICT_PRIORITY = (
    FindingKind.MALFORMED,
    FindingKind.FOREIGN,
    FindingKind.MODIFIED,
    FindingKind.INSERTED,
    FindingKind.REORDERED,
)


class ChunkRecord(Protocol):
    """The three stored parts of a chunk; `SignedChunk` and `RawChunk` both qualify."""

    @property
    def header_bytes(self) -> bytes: ...

    @property
    def signature(self) -> bytes: ...

    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class RawChunk:
    """A stored chunk as bytes only, for records whose header may not even decode."""

    header_bytes: bytes
    signature: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A point of a chain: a seq and the chunk hash (SHA-256 of the header bytes) at it."""

    seq: int
    chunk_hash: bytes


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the verifier found, about one chunk or a range of seqs.

    `seq`..`last_seq` is the range concerned (equal for one chunk; None when the chunk's seq
    is unknown). For an untrusted chunk the seq is the slot it fills, else the seq its header
    claims. `start_ns`/`end_ns` bound the time concerned where known. `position` is the
    chunk's index in the listing for findings about one stored chunk, None for ranges.
    """

    kind: FindingKind
    seq: int | None
    last_seq: int | None
    start_ns: int | None
    end_ns: int | None
    message: str
    position: int | None = None

    @property
    def is_problem(self) -> bool:
        return self.kind not in INFORMATIONAL_KINDS


@dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """The outcome for one listed chunk: AUTHENTIC, or the worst problem found with it."""

    position: int
    seq: int | None
    kind: FindingKind
    payload_bytes: int


@dataclass(frozen=True, slots=True)
class StreamVerification:
    """The report on one stream's listing.

    `ok` is true only when no finding is a problem (EXPIRED, RECORDING_GAP and CLOCK_STEP are
    information). `verified_bytes` counts payload bytes of AUTHENTIC chunks only. `head` is
    the last chain member kept (the anchor when none was), usable as the anchor of the next
    range once this report is ok.
    """

    findings: tuple[Finding, ...]
    verdicts: tuple[ChunkVerdict, ...]
    head: ChainLink | None

    @property
    def ok(self) -> bool:
        return not any(f.is_problem for f in self.findings)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.is_problem)

    @property
    def counts(self) -> Mapping[FindingKind, int]:
        """Number of findings of each kind (kinds absent from the report are omitted)."""
        result: dict[FindingKind, int] = {}
        for finding in self.findings:
            result[finding.kind] = result.get(finding.kind, 0) + 1
        return MappingProxyType(result)

    @property
    def chunks_seen(self) -> int:
        return len(self.verdicts)

    @property
    def chunks_authentic(self) -> int:
        return sum(1 for v in self.verdicts if v.kind is FindingKind.AUTHENTIC)

    @property
    def verified_bytes(self) -> int:
        return sum(v.payload_bytes for v in self.verdicts if v.kind is FindingKind.AUTHENTIC)

    def of_kind(self, kind: FindingKind) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.kind is kind)


def verify_stream(
    chunks: Iterable[ChunkRecord],
    *,
    public_key: bytes,
    site_id: str,
    device_id: str,
    stream: str,
    anchor: ChainLink | None = None,
    expired: Mapping[int, bytes] = _NO_TOMBSTONES,
    expected_head: ChainLink | None = None,
    other_keys: Mapping[bytes, str] = _NO_KEYS,
) -> StreamVerification:
    """Verify a listing of one stream's chunks, in storage order; never raises on bad data.

    `anchor` is the link the first chunk must follow (a retention horizon, or the head of an
    earlier verified range); without it the chain must start at seq 0 with the genesis hash.
    `expired` maps tombstoned seqs to their chunk hashes (deleted by retention: no alarm, but
    the chunk after a tombstone must name its hash). `expected_head` is the link the listing
    must end with (from a signed manifest or the store's head record): a shorter tail is
    TRUNCATED, chunks past it are INSERTED. `other_keys` maps public keys the verifier knows
    (other sites) to a label, so a chunk they signed is FOREIGN rather than MODIFIED.
    """
    run = _Verification(
        public_key=public_key,
        identity=(site_id, device_id, stream),
        anchor=anchor,
        expired=expired,
        expected_head=expected_head,
        other_keys=other_keys,
    )
    return run.verify(chunks)


# ---------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True, slots=True)
class _Entry:
    """One listed chunk after the checks it can pass alone."""

    position: int
    header: ChunkHeader | None
    chunk_hash: bytes | None
    trusted: bool  # header signed by the site key for this stream
    payload_ok: bool
    payload_bytes: int
    kind: FindingKind  # AUTHENTIC for trusted entries; else the chunk's own problem
    message: str


@dataclass(frozen=True, slots=True)
class _Member:
    """A trusted chunk that takes part in the chain."""

    entry: _Entry
    header: ChunkHeader
    chunk_hash: bytes

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def position(self) -> int:
        return self.entry.position


@dataclass(frozen=True, slots=True)
class _Reference:
    """What the next seq must link to: a kept member, the anchor, or the genesis."""

    seq: int
    chunk_hash: bytes
    member: _Member | None
    label: str


class _Verification:
    """One run of the verifier; all state lives here and dies with the call."""

    def __init__(
        self,
        *,
        public_key: bytes,
        identity: tuple[str, str, str],
        anchor: ChainLink | None,
        expired: Mapping[int, bytes],
        expected_head: ChainLink | None,
        other_keys: Mapping[bytes, str],
    ) -> None:
        self._public_key = public_key
        self._identity = identity
        self._anchor = anchor
        self._tombstones = {
            seq: digest
            for seq, digest in expired.items()
            if _is_int(seq) and seq >= 0 and isinstance(digest, bytes) and len(digest) == HASH_BYTES
        }
        self._tombstone_seqs = sorted(self._tombstones)
        self._expected_head = expected_head
        self._other_keys = other_keys
        self._findings: list[Finding] = []
        self._problems_by_position: dict[int, set[FindingKind]] = {}
        self._placed: set[int] = set()
        self._filler_positions: list[int] = []

    # -- driver ---------------------------------------------------------------------------

    def verify(self, chunks: Iterable[ChunkRecord]) -> StreamVerification:
        entries = [self._inspect(position, chunk) for position, chunk in enumerate(chunks)]
        for entry in entries:
            if entry.kind is FindingKind.FOREIGN:
                self._chunk_finding(entry, entry.kind, entry.message)
            elif entry.trusted and not entry.payload_ok:
                self._chunk_finding(entry, FindingKind.MODIFIED, entry.message)
        members = self._fold_duplicates([e for e in entries if e.trusted])
        members = self._drop_before_anchor(members)
        members = self._choose_per_seq(members)
        members = self._keep_consistent_segments(members)
        members = self._apply_expected_head(members)
        fillers = [
            e
            for e in entries
            if e.kind in (FindingKind.MALFORMED, FindingKind.MODIFIED) and not e.trusted
        ]
        self._filler_positions = [f.position for f in fillers]
        self._walk_gaps(members, fillers)
        self._report_unplaced(fillers)
        self._check_order(members)
        return self._report(entries, members)

    # -- pass 1: each chunk alone ------------------------------------------------------------

    def _inspect(self, position: int, chunk: object) -> _Entry:
        header_bytes = _as_bytes(getattr(chunk, "header_bytes", None))
        signature = _as_bytes(getattr(chunk, "signature", None))
        payload = _as_bytes(getattr(chunk, "payload", None))
        payload_bytes = len(payload) if payload is not None else 0

        def untrusted(
            kind: FindingKind, message: str, header: ChunkHeader | None, digest: bytes | None
        ) -> _Entry:
            return _Entry(position, header, digest, False, False, payload_bytes, kind, message)

        if header_bytes is None:
            return untrusted(FindingKind.MALFORMED, "the header is not a byte string", None, None)
        digest = chunk_hash_of(header_bytes)
        try:
            header = ChunkHeader.decode(header_bytes)
        except Exception as exc:  # untrusted bytes: any decoder failure is a finding, never a crash
            detail = _clip(str(exc) or type(exc).__name__)
            return untrusted(
                FindingKind.MALFORMED, f"the header does not decode ({detail})", None, digest
            )
        signed_by_site = signature is not None and _verifies(
            self._public_key, header_bytes, signature
        )
        named = (header.site_id, header.device_id, header.stream)
        if signed_by_site and named != self._identity:
            return untrusted(
                FindingKind.FOREIGN,
                f"seq {header.seq} is signed by this site for {_describe(named)}, not for "
                f"{_describe(self._identity)}: a chunk replayed from another stream",
                header,
                digest,
            )
        if not signed_by_site:
            signer = self._other_signer(header_bytes, signature)
            if signer is not None:
                return untrusted(
                    FindingKind.FOREIGN,
                    f"seq {header.seq} (naming {_describe(named)}) is signed by the key of "
                    f"{signer!r}, not by this site's key",
                    header,
                    digest,
                )
            why = (
                "the signature is missing or not 64 bytes"
                if (signature is None or len(signature) != 64)
                else "the signature does not verify with the site key"
            )
            return untrusted(
                FindingKind.MODIFIED,
                f"{why}: the header was changed after signing, or another key signed it",
                header,
                digest,
            )
        payload_ok = payload is not None and hashlib.sha256(payload).digest() == (
            header.payload_sha256
        )
        message = ""
        if not payload_ok:
            message = _payload_message(header, payload)
        kind = FindingKind.AUTHENTIC if payload_ok else FindingKind.MODIFIED
        return _Entry(position, header, digest, True, payload_ok, payload_bytes, kind, message)

    def _other_signer(self, header_bytes: bytes, signature: bytes | None) -> str | None:
        if signature is None:
            return None
        for key, label in self._other_keys.items():
            if isinstance(key, bytes) and _verifies(key, header_bytes, signature):
                return str(label)
        return None

    # -- pass 2: which trusted chunks form the chain -------------------------------------------

    def _fold_duplicates(self, trusted: list[_Entry]) -> list[_Member]:
        """Keep one copy of each header (an intact one if any); the other copies are extra."""
        by_hash: dict[bytes, list[_Entry]] = {}
        for entry in trusted:
            assert entry.chunk_hash is not None  # trusted entries always have one
            by_hash.setdefault(entry.chunk_hash, []).append(entry)
        members: list[_Member] = []
        for copies in by_hash.values():
            keeper = next((e for e in copies if e.payload_ok), copies[0])
            assert keeper.header is not None
            assert keeper.chunk_hash is not None
            members.append(_Member(keeper, keeper.header, keeper.chunk_hash))
            for extra in copies:
                if extra is keeper or not extra.payload_ok:
                    continue  # a damaged extra copy is already reported as MODIFIED
                self._chunk_finding(
                    extra,
                    FindingKind.INSERTED,
                    f"seq {keeper.header.seq} is stored twice: this is an identical copy of the "
                    f"chunk at position {keeper.position}",
                )
        return sorted(members, key=lambda m: m.position)

    def _drop_before_anchor(self, members: list[_Member]) -> list[_Member]:
        anchor = self._anchor
        if anchor is None:
            return members
        kept: list[_Member] = []
        for member in members:
            if member.seq > anchor.seq:
                kept.append(member)
            elif member.seq != anchor.seq or member.chunk_hash != anchor.chunk_hash:
                self._chunk_finding(
                    member.entry,
                    FindingKind.INSERTED,
                    f"seq {member.seq} is at or before the anchor (seq {anchor.seq}) but is not "
                    "the anchor chunk: it does not belong to this range",
                )
            # The anchor chunk itself is authentic and already verified: no finding.
        return kept

    def _choose_per_seq(self, members: list[_Member]) -> list[_Member]:
        """One member per seq: the candidate that links into the chain best wins."""
        by_seq: dict[int, list[_Member]] = {}
        for member in members:
            by_seq.setdefault(member.seq, []).append(member)
        chosen: dict[int, _Member] = {}
        for seq in sorted(by_seq):
            candidates = by_seq[seq]
            if len(candidates) == 1:
                chosen[seq] = candidates[0]
                continue
            successors = by_seq.get(seq + 1, [])
            reference = self._link_hash_before(seq, chosen)
            winner = max(candidates, key=lambda m: _rank(m, reference, successors))
            chosen[seq] = winner
            for loser in candidates:
                if loser is not winner:
                    self._chunk_finding(
                        loser.entry,
                        FindingKind.INSERTED,
                        f"seq {seq} is claimed by two different signed chunks; this one (position "
                        f"{loser.position}) does not link into the chain, the one at position "
                        f"{winner.position} does",
                    )
        return [chosen[seq] for seq in sorted(chosen)]

    def _link_hash_before(self, seq: int, chosen: Mapping[int, _Member]) -> bytes | None:
        """The hash a chunk at `seq` must name, if known from a member or a start reference."""
        previous = chosen.get(seq - 1)
        if previous is not None:
            return previous.chunk_hash
        anchor = self._anchor
        if anchor is not None and seq - 1 == anchor.seq:
            return anchor.chunk_hash
        if anchor is None and seq == 0:
            return GENESIS_HASH
        return self._tombstones.get(seq - 1)

    def _keep_consistent_segments(self, members: list[_Member]) -> list[_Member]:
        """Drop the shorter of two touching segments that do not link (see theory, pass 2)."""
        segments: list[list[_Member]] = []
        for member in members:
            if segments:
                last = segments[-1][-1]
                if member.seq == last.seq + 1 and member.header.prev_chunk_hash == last.chunk_hash:
                    segments[-1].append(member)
                    continue
            segments.append([member])
        count = len(segments)
        if count <= 1:
            return members
        touching = [False] + [
            segments[i][0].seq == segments[i - 1][-1].seq + 1 for i in range(1, count)
        ]
        keep = _choose_segments([len(s) for s in segments], touching)
        kept: list[_Member] = []
        for index, segment in enumerate(segments):
            if keep[index]:
                kept.extend(segment)
                continue
            first, last = segment[0], segment[-1]
            reasons = []
            if touching[index]:
                reasons.append(f"seq {first.seq} does not name seq {first.seq - 1} as its previous")
            if index + 1 < count and touching[index + 1]:
                reasons.append(f"seq {last.seq + 1} does not name seq {last.seq}")
            span = _seq_span(first.seq, last.seq)
            self._findings.append(
                Finding(
                    FindingKind.INSERTED,
                    first.seq,
                    last.seq,
                    first.header.start_ns,
                    last.header.end_ns,
                    f"{span}: {len(segment)} signed chunk(s) forming a separate chain that does "
                    f"not link into this one ({'; '.join(reasons)}); the longer chain is kept",
                    first.position if len(segment) == 1 else None,
                )
            )
            for member in segment:
                self._mark(member.position, FindingKind.INSERTED)
        return kept

    def _apply_expected_head(self, members: list[_Member]) -> list[_Member]:
        head = self._expected_head
        if head is None:
            return members
        beyond = [m for m in members if m.seq > head.seq]
        if beyond:
            first, last = beyond[0], beyond[-1]
            self._findings.append(
                Finding(
                    FindingKind.INSERTED,
                    first.seq,
                    last.seq,
                    first.header.start_ns,
                    last.header.end_ns,
                    f"{_seq_span(first.seq, last.seq)}: past the expected head (seq "
                    f"{head.seq}), chunks added after the range was closed",
                    first.position if len(beyond) == 1 else None,
                )
            )
            for member in beyond:
                self._mark(member.position, FindingKind.INSERTED)
        kept = [m for m in members if m.seq <= head.seq]
        at_head = next((m for m in kept if m.seq == head.seq), None)
        if at_head is not None and at_head.chunk_hash != head.chunk_hash:
            self._chunk_finding(
                at_head.entry,
                FindingKind.INSERTED,
                f"seq {head.seq} is not the chunk the expected head names (its hash differs): "
                "the stored tail was replaced",
            )
        return kept

    # -- pass 3: gaps, start reference, tail ---------------------------------------------------

    def _walk_gaps(self, members: list[_Member], fillers: list[_Entry]) -> None:
        reference = self._start_reference()
        for member in members:
            if member.seq > reference.seq + 1:
                self._explain_gap(reference, member.seq - 1, member, fillers)
            link = self._reference_hash(reference, member.seq - 1)
            if link is not None and member.header.prev_chunk_hash != link:
                self._findings.append(
                    Finding(
                        FindingKind.UNANCHORED,
                        member.seq,
                        member.seq,
                        member.header.start_ns,
                        member.header.end_ns,
                        self._unanchored_message(member, reference),
                        member.position,
                    )
                )
            previous = reference.member if reference.seq == member.seq - 1 else None
            self._note_time(member, previous)
            reference = _Reference(member.seq, member.chunk_hash, member, f"seq {member.seq}")
        head = self._expected_head
        if head is not None:
            if head.seq > reference.seq:
                self._explain_gap(reference, head.seq, None, fillers)
            return
        # No expected head: untrusted chunks stored after the last member are taken to be the
        # damaged tail of the stream rather than additions (they are reported on their own).
        last_position = reference.member.position if reference.member is not None else -1
        for filler in fillers:
            claimed = filler.header.seq if filler.header is not None else None
            if filler.position > last_position and (claimed is None or claimed > reference.seq):
                self._place(filler, claimed)

    def _start_reference(self) -> _Reference:
        anchor = self._anchor
        if anchor is not None:
            return _Reference(anchor.seq, anchor.chunk_hash, None, f"the anchor (seq {anchor.seq})")
        return _Reference(-1, GENESIS_HASH, None, "the start of the stream")

    def _reference_hash(self, reference: _Reference, seq: int) -> bytes | None:
        if seq == reference.seq:
            return reference.chunk_hash
        return self._tombstones.get(seq)

    def _unanchored_message(self, member: _Member, reference: _Reference) -> str:
        if member.seq - 1 != reference.seq:
            return (
                f"seq {member.seq} does not name the tombstone of seq {member.seq - 1} as its "
                "previous chunk: the stored chain does not continue the deleted one"
            )
        if reference.seq < 0:
            return (
                "seq 0 names a previous chunk instead of the genesis hash: it is not the start "
                "of this stream"
            )
        return (
            f"seq {member.seq} does not name {reference.label} as its previous chunk: the "
            "stored chain does not continue the verified range"
        )

    def _explain_gap(
        self, reference: _Reference, high: int, after: _Member | None, fillers: list[_Entry]
    ) -> None:
        """Account for seqs reference.seq+1..high: tombstones, damaged chunks, else missing."""
        low = reference.seq + 1
        tombstoned = self._tombstone_seqs[
            bisect.bisect_left(self._tombstone_seqs, low) : bisect.bisect_right(
                self._tombstone_seqs, high
            )
        ]
        tombstone_set = set(tombstoned)
        filled = self._fill(
            low=low,
            high=high,
            reference=reference,
            after=after,
            tombstoned=tombstone_set,
            fillers=fillers,
        )
        for first, last in _runs(tombstoned):
            self._findings.append(
                Finding(
                    FindingKind.EXPIRED,
                    first,
                    last,
                    None,
                    after.header.start_ns if after is not None and last == high else None,
                    f"{_seq_span(first, last)}: deleted by retention (tombstoned; not an alarm)",
                )
            )
        holes = sorted(tombstone_set | filled)
        before = reference.member
        for first, last in _complement(low, high, holes):
            start_ns = before.header.end_ns if before is not None and first == low else None
            end_ns = after.header.start_ns if after is not None and last == high else None
            span = _seq_span(first, last)
            if after is None:
                kind = FindingKind.TRUNCATED
                message = f"the tail is truncated: {span} up to the expected head not stored" + (
                    f" (after seq {before.seq})" if before is not None else ""
                )
            else:
                kind = FindingKind.MISSING
                message = self._missing_message(span, first, reference, after)
            if start_ns is not None and end_ns is not None:
                message += f"; {_seconds(end_ns - start_ns)} of time"
            self._findings.append(Finding(kind, first, last, start_ns, end_ns, message))

    def _missing_message(self, span: str, first: int, reference: _Reference, after: _Member) -> str:
        if reference.member is not None:
            return (
                f"{span} missing: neither stored nor tombstoned between seq {reference.seq} "
                f"and seq {after.seq}"
            )
        if reference.seq < 0 and first == 0:
            return (
                f"the start of the stream is missing: {span} neither stored nor "
                "tombstoned, and no anchor was given"
            )
        return f"{span} after {reference.label} missing: neither stored nor tombstoned"

    def _fill(
        self,
        *,
        low: int,
        high: int,
        reference: _Reference,
        after: _Member | None,
        tombstoned: set[int],
        fillers: list[_Entry],
    ) -> set[int]:
        """Let untrusted chunks stored inside the gap stand for the seqs they displaced."""
        before_position = reference.member.position if reference.member is not None else -1
        after_position = after.position if after is not None else 1 << 62
        in_order = before_position < after_position
        if in_order:
            # `fillers` is in storage order: only those stored inside the gap are candidates.
            positions = self._filler_positions
            window = fillers[
                bisect.bisect_right(positions, before_position) : bisect.bisect_left(
                    positions, after_position
                )
            ]
        else:
            window = fillers  # the bounding members are themselves out of order: go by claim
        candidates = []
        for filler in window:
            if filler.position in self._placed:
                continue
            claimed = filler.header.seq if filler.header is not None else None
            claims_gap = claimed is not None and low <= claimed <= high
            if in_order or claims_gap:
                candidates.append((filler, claimed if claims_gap else None))
        filled: set[int] = set()
        for filler, claimed in candidates:
            if claimed is not None and claimed not in tombstoned and claimed not in filled:
                filled.add(claimed)
                self._place(filler, claimed)
        next_free = low
        for filler, _ in candidates:
            if filler.position in self._placed:
                continue
            while next_free in tombstoned or next_free in filled:
                next_free += 1
            if next_free > high:
                break
            filled.add(next_free)
            self._place(filler, next_free)
        return filled

    def _place(self, filler: _Entry, seq: int | None) -> None:
        self._placed.add(filler.position)
        claimed = filler.header.seq if filler.header is not None else None
        message = filler.message
        if seq is not None and claimed != seq:
            claim = f"claims seq {claimed}" if claimed is not None else "seq unreadable"
            message += f" (stored where seq {seq} belongs; {claim})"
        elif seq is not None:
            message = f"seq {seq}: {message}"
        self._chunk_finding(filler, filler.kind, message, seq=seq)

    def _report_unplaced(self, fillers: list[_Entry]) -> None:
        for filler in fillers:
            if filler.position in self._placed:
                continue
            claimed = filler.header.seq if filler.header is not None else None
            if filler.kind is FindingKind.MODIFIED:
                self._chunk_finding(
                    filler,
                    FindingKind.INSERTED,
                    f"an extra chunk claiming seq {claimed} is not signed by the site key and "
                    f"no gap of the chain needs it: an inserted forgery ({filler.message})",
                )
            else:
                self._chunk_finding(
                    filler, filler.kind, f"{filler.message}; it fills no gap of the chain"
                )

    def _note_time(self, member: _Member, previous: _Member | None) -> None:
        header = member.header
        if header.discontinuity:
            gap_start = previous.header.end_ns if previous is not None else None
            detail = (
                f" of {_seconds(header.start_ns - gap_start)} after seq {previous.seq}"
                if previous is not None and gap_start is not None
                else ""
            )
            self._findings.append(
                Finding(
                    FindingKind.RECORDING_GAP,
                    header.seq,
                    header.seq,
                    gap_start,
                    header.start_ns,
                    f"seq {header.seq} declares a recording gap{detail} (not an alarm)",
                    member.position,
                )
            )
        # Compared start to start, so jitter between one chunk's end and the next one's start
        # is never taken for a step; the size reported is measured from the previous end.
        if previous is not None and header.start_ns < previous.header.start_ns:
            step_ns = previous.header.end_ns - header.start_ns
            self._findings.append(
                Finding(
                    FindingKind.CLOCK_STEP,
                    header.seq,
                    header.seq,
                    header.start_ns,
                    previous.header.end_ns,
                    f"the site clock stepped back {_seconds(step_ns)} between seq "
                    f"{previous.seq} and seq {header.seq} (signed times; not an alarm)",
                    member.position,
                )
            )

    # -- pass 4: storage order ----------------------------------------------------------------

    def _check_order(self, members: list[_Member]) -> None:
        stored = sorted(members, key=lambda m: m.position)
        by_seq = _out_of_order([(m.seq,) for m in stored])
        by_time = _out_of_order([(m.header.start_ns, m.seq) for m in stored])
        # A listing in signed-time order, or in seq order, is legitimate even when the two
        # disagree (the site clock stepped back); only a listing in neither order is an alarm.
        if not by_seq or not by_time:
            return
        for index in sorted(by_seq):
            member = stored[index]
            neighbours = []
            if index > 0:
                neighbours.append(f"after seq {stored[index - 1].seq}")
            if index + 1 < len(stored):
                neighbours.append(f"before seq {stored[index + 1].seq}")
            self._chunk_finding(
                member.entry,
                FindingKind.REORDERED,
                f"seq {member.seq} is stored out of chain order ({' and '.join(neighbours)}); "
                "its signature and links are intact",
            )

    # -- findings and the report ----------------------------------------------------------------

    def _chunk_finding(
        self, entry: _Entry, kind: FindingKind, message: str, *, seq: int | None = None
    ) -> None:
        header = entry.header
        if seq is None and header is not None:
            seq = header.seq
        self._findings.append(
            Finding(
                kind,
                seq,
                seq,
                header.start_ns if header is not None else None,
                header.end_ns if header is not None else None,
                message,
                entry.position,
            )
        )
        self._mark(entry.position, kind)

    def _mark(self, position: int, kind: FindingKind) -> None:
        self._problems_by_position.setdefault(position, set()).add(kind)

    def _report(self, entries: list[_Entry], members: list[_Member]) -> StreamVerification:
        verdicts = []
        for entry in entries:
            problems = self._problems_by_position.get(entry.position, set())
            kind = next((k for k in _VERDICT_PRIORITY if k in problems), FindingKind.AUTHENTIC)
            if not entry.trusted and kind is FindingKind.AUTHENTIC:
                kind = entry.kind  # never call an untrusted chunk authentic
            seq = entry.header.seq if entry.header is not None else None
            verdicts.append(ChunkVerdict(entry.position, seq, kind, entry.payload_bytes))
        if members:
            last = max(members, key=lambda m: m.seq)
            head: ChainLink | None = ChainLink(last.seq, last.chunk_hash)
        else:
            head = self._anchor
        findings = sorted(
            self._findings,
            key=lambda f: (
                f.seq is None,
                f.seq if f.seq is not None else 0,
                f.position if f.position is not None else -1,
                f.kind.value,
            ),
        )
        return StreamVerification(tuple(findings), tuple(verdicts), head)


# ---------------------------------------------------------------------------------------------
# Small pure functions


def _rank(
    member: _Member, reference: bytes | None, successors: Sequence[_Member]
) -> tuple[bool, bool, bool, int]:
    """Order of preference among chunks claiming one seq: linked both ways, forward, back."""
    back = reference is not None and member.header.prev_chunk_hash == reference
    forward = any(s.header.prev_chunk_hash == member.chunk_hash for s in successors)
    return (back and forward, forward, back, -member.position)


def _choose_segments(lengths: Sequence[int], touching: Sequence[bool]) -> list[bool]:
    """Which segments to keep: no two touching ones, most chunks kept, earlier ones on a tie.

    A maximum-weight independent set on a path. The weight of segment i is its length scaled
    above any tie-break, plus a bonus that decreases with i so that, of two choices keeping
    the same number of chunks, the one keeping earlier segments wins.
    """
    count = len(lengths)
    scale = count * count + 1
    weights = [length * scale + (count - index) for index, length in enumerate(lengths)]
    take = [0] * count
    skip = [0] * count
    for i in range(count):
        if i == 0:
            take[i], skip[i] = weights[i], 0
            continue
        best_before = max(take[i - 1], skip[i - 1])
        take[i] = weights[i] + (skip[i - 1] if touching[i] else best_before)
        skip[i] = best_before
    keep = [False] * count
    taking = take[-1] >= skip[-1]
    for i in range(count - 1, -1, -1):
        keep[i] = taking
        if i == 0:
            break
        # A kept segment forbids keeping the one touching it just before.
        taking = False if taking and touching[i] else take[i - 1] >= skip[i - 1]
    return keep


def _out_of_order(keys: Sequence[tuple[int, ...]]) -> set[int]:
    """Indexes outside one longest strictly increasing subsequence of `keys`."""
    tails: list[int] = []  # index of the smallest tail of each subsequence length
    parent = [-1] * len(keys)
    for index, key in enumerate(keys):
        low, high = 0, len(tails)
        while low < high:
            middle = (low + high) // 2
            if keys[tails[middle]] < key:
                low = middle + 1
            else:
                high = middle
        if low > 0:
            parent[index] = tails[low - 1]
        if low == len(tails):
            tails.append(index)
        else:
            tails[low] = index
    kept: set[int] = set()
    cursor = tails[-1] if tails else -1
    while cursor != -1:
        kept.add(cursor)
        cursor = parent[cursor]
    return set(range(len(keys))) - kept


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted distinct ints as inclusive runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _complement(low: int, high: int, holes: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive runs of low..high not in the sorted `holes` (which may be huge ranges apart)."""
    runs: list[tuple[int, int]] = []
    cursor = low
    for hole in holes:
        if hole < cursor:
            continue
        if hole > high:
            break
        if hole > cursor:
            runs.append((cursor, hole - 1))
        cursor = hole + 1
    if cursor <= high:
        runs.append((cursor, high))
    return runs


def _verifies(public_key: bytes, data: bytes, signature: bytes) -> bool:
    if not isinstance(public_key, bytes):
        return False
    try:
        return verify_signature(public_key, data, signature)
    except Exception:  # a hostile key or signature must not stop verification
        return False


def _payload_message(header: ChunkHeader, payload: bytes | None) -> str:
    if payload is None:
        return f"seq {header.seq}: the payload is not a byte string"
    if len(payload) != header.payload_size:
        return (
            f"seq {header.seq}: the payload is {len(payload)} bytes but the signed header lists "
            f"{header.payload_size} (packet bytes removed or added)"
        )
    return f"seq {header.seq}: the payload differs from its signed SHA-256 (same length)"


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    if len(text) <= MAX_MESSAGE_DETAIL_CHARS:
        return text
    return text[: MAX_MESSAGE_DETAIL_CHARS - 3] + "..."


def _describe(identity: tuple[str, str, str]) -> str:
    site, device, stream = identity
    return f"{_clip(repr(site))}/{_clip(repr(device))}/{_clip(repr(stream))}"


def _seq_span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seqs {first}..{last}"


def _seconds(duration_ns: int) -> str:
    return f"{duration_ns / _NS_PER_S:.3f} s"
