"""The chunk store: signed chunks of many streams, of one site or many, in one LMDB environment.

Theory of operation
-------------------
A stream is named by (site_id, device_id, stream), taken from each chunk's signed header, so
the central can keep every site's recordings in one store (retention by size then spans the
whole disk, oldest first across sites) without two sites' `cam-1` colliding. A store opened
with a home site (the agent's own) refuses other sites' chunks, and its read methods default
to that site, so the agent names streams by (device_id, stream) alone.

Every chunk is three rows keyed by its stream's numeric id and its start instant or seq:
the header row (fixed prefix, signature, header bytes as signed), the payload row, and a
seq index row. Headers and payloads live in separate tables so timeline scans and range
queries walk only small header pages and never fault in video. Per-stream counters and the
head (highest seq ever stored) sit in the streams table; the global live byte total in meta.

Writes are serialised by one lock and each is one synced LMDB transaction, so a crash keeps
the last committed state exactly: a kill -9 loses at most the chunk being written. LMDB is
copy-on-write; deleting frees pages only for transactions that begin two commits later and
only once no reader still sees the old snapshot. So reads copy their values out and close
their transaction before returning, and the emergency path after a full map or disk commits
its deletions, then a small "barrier" commit, before retrying the write.

Retention deletes oldest first and never a chunk under an active hold. A deleted chunk
leaves a tombstone (its hash and span), so verification tells "expired by retention" from
"removed"; tombstones below a stream's oldest chunk are compacted to the newest one, the
retention horizon. `put` also keeps live bytes within the quota on its own, so a store whose
retention loop is late still stays inside its map.

Thread safety: write methods may be called from any thread (a lock serialises them; the
recorder's writer thread is the intended caller). Read methods may run in other threads at
the same time; each uses its own short read transaction. `close` must not race any call.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType

import lmdb

from shared.chunk import SIGNATURE_BYTES, ChunkFormatError, ChunkHeader, SignedChunk
from shared.clock import Clock
from shared.store.check import StoreCheckReport, check_tables
from shared.store.chunk_meta import ChunkMeta, stored_bytes_of
from shared.store.environment import (
    DATA_FILE,
    DEFAULT_MAP_HEADROOM_BYTES,
    MIB,
    Tables,
    map_size_for_quota,
    open_environment,
)
from shared.store.errors import (
    ChunkConflict,
    ChunkInvalid,
    HoldRefused,
    StoreError,
    StoreFormatError,
    StoreFull,
    StoreIOError,
    StoreReadOnlyError,
)
from shared.store.eviction import EvictionResult, evict_oldest
from shared.store.holds import MAX_NAME_CHARS, Hold, hold_problem
from shared.store.keys import META_CHUNK_COUNT, META_EMERGENCY_DELETES, META_LIVE_BYTES
from shared.store.retention import RetentionPolicy, RetentionReport
from shared.store.streams import StreamHead, StreamRecord, StreamSummary, stream_label
from shared.store.tables import TableTxn
from shared.store.timeline import (
    DEFAULT_JOIN_TOLERANCE_NS,
    Span,
    check_join_tolerance,
    overlaps,
)
from shared.store.timeline_scan import scan_spans
from shared.store.tombstones import DeletionReason, Tombstone
from shared.store.usage import StoreUsage

_log = logging.getLogger(__name__)

FULL_RETRIES = 8
"""How many times `put` frees space and retries after a full map or disk."""
EMERGENCY_MAX_CHUNKS = 64
EMERGENCY_MIN_FREE_BYTES = 1 * MIB
QUOTA_GUARD_MAX_CHUNKS = 64
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOTHING_EVICTED = EvictionResult(0, 0, False, False, 0)
_BATCH_USED_UP = EvictionResult(0, 0, False, True, 0)


class ChunkStore:
    """Stores, reads, and expires signed chunks; see the module docstring for the model.

    Construct with `ChunkStore.open`. Blocking: async callers run it in a worker thread.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        tables: Tables,
        *,
        path: Path,
        quota_bytes: int,
        hold_budget_bytes: int,
        clock: Clock,
        readonly: bool,
        retention: RetentionPolicy,
        home_site_id: str | None,
    ) -> None:
        """Use `ChunkStore.open`; this only wires an already opened environment."""
        self._env = env
        self._tables = tables
        self._path = path
        self._quota_bytes = quota_bytes
        self._hold_budget_bytes = hold_budget_bytes
        self._clock = clock
        self._readonly = readonly
        self._retention = retention
        self._home_site_id = home_site_id
        self._write_lock = threading.Lock()
        self._draining = False  # between the high- and low-water marks on the way down
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        quota_bytes: int,
        hold_budget_bytes: int,
        clock: Clock,
        readonly: bool = False,
        retention: RetentionPolicy | None = None,
        map_size_bytes: int | None = None,
        home_site_id: str | None = None,
    ) -> ChunkStore:
        """Open the store at `path`, creating it when absent (or an empty directory).

        The map size is `map_size_for_quota(quota_bytes)` unless `map_size_bytes` overrides
        it (tests, or a store that must fit a fixed map). `retention` defaults to a policy
        with `max_bytes = quota_bytes` and no age limit. With `home_site_id` (an agent's own
        site) the store accepts only that site's chunks and calls that name no site read
        that site; without it (the central, or a check) every call must name its site.
        Raises `StoreOpenError` for a path that is not a store, `StoreFormatError` for a
        store of another format version, `ValueError` for inconsistent sizes or a bad site.
        """
        if home_site_id is not None and not 0 < len(home_site_id) <= MAX_NAME_CHARS:
            raise ValueError(
                f"home site id must be 1 to {MAX_NAME_CHARS} characters, not {home_site_id!r}"
            )
        if quota_bytes <= 0:
            raise ValueError(f"quota must be positive, not {quota_bytes} bytes")
        if not 0 <= hold_budget_bytes <= quota_bytes:
            raise ValueError(
                f"hold budget ({hold_budget_bytes} bytes) must be between 0 and the quota "
                f"({quota_bytes} bytes)"
            )
        policy = retention if retention is not None else RetentionPolicy(max_bytes=quota_bytes)
        if policy.max_bytes > quota_bytes:
            raise ValueError(
                f"retention max_bytes ({policy.max_bytes}) exceeds the quota ({quota_bytes})"
            )
        if readonly:
            map_size = 0  # adopt the size the writer recorded, so its data is all mapped
        elif map_size_bytes is not None:
            map_size = map_size_bytes
        else:
            map_size = map_size_for_quota(quota_bytes, DEFAULT_MAP_HEADROOM_BYTES)
        env, tables = open_environment(
            path, map_size_bytes=map_size, readonly=readonly, now_ns=clock.now_ns()
        )
        return cls(
            env,
            tables,
            path=path,
            quota_bytes=quota_bytes,
            hold_budget_bytes=hold_budget_bytes,
            clock=clock,
            readonly=readonly,
            retention=policy,
            home_site_id=home_site_id,
        )

    def close(self) -> None:
        """Close the environment; no call may be running or follow (idempotent)."""
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def retention(self) -> RetentionPolicy:
        return self._retention

    @property
    def home_site_id(self) -> str | None:
        """The one site whose chunks this store takes, or None for a store of many sites."""
        return self._home_site_id

    # -- writing -------------------------------------------------------------------------

    def put(self, chunk: SignedChunk, *, payload_hash_checked: bool = False) -> bool:
        """Store `chunk` durably; True if stored, False if this exact chunk already was.

        `payload_hash_checked=True` skips hashing the payload again, for a caller that has
        just computed the header's `payload_sha256` from this very payload (the recorder
        sealing its own chunks); chunks from anywhere else are always hashed.

        The stream is the header's (site_id, device_id, stream). One synced transaction.
        Idempotent by (site_id, device_id, stream, seq) and chunk hash. Raises
        `ChunkInvalid` when the payload does not match the header or the chunk is of a site
        other than the store's home site, `ChunkConflict` when another chunk holds the seq
        or the start instant, or the time span overlaps a stored chunk, or seq order
        disagrees with time order; `StoreFull` when the map or disk is full and nothing
        unheld can be deleted; `StoreIOError` on a disk error. Chain continuity is not
        required (chunks may arrive with gaps).
        """
        self._require_writable()
        header = _validated_header(
            chunk, hash_payload=not payload_hash_checked, home_site_id=self._home_site_id
        )
        size = stored_bytes_of(chunk)
        with self._write_lock:
            for _attempt in range(FULL_RETRIES):
                try:
                    return self._put_once(chunk, header, size)
                except lmdb.Error as exc:
                    what = self._full_kind(exc, size)
                    _log.warning("%s: %s while writing a chunk; freeing space", self._path, what)
                    freed = self._free_emergency(size)
                    if freed == 0:
                        raise StoreFull(
                            f"{self._path}: {what} and no unheld chunk can be deleted "
                            f"(live {self._live_bytes()} bytes, quota {self._quota_bytes})"
                        ) from exc
            raise StoreFull(
                f"{self._path}: still full after freeing space {FULL_RETRIES} times; an old "
                "read transaction may be pinning freed pages"
            )

    def put_many(
        self, chunks: Sequence[SignedChunk], *, payload_hash_checked: bool = False
    ) -> list[bool | StoreError]:
        """Store `chunks` in order in one synced transaction (a group commit: one sync for
        many streams' chunks); for each, what `put` would return, or the `StoreError` it
        would raise. A chunk refused (`ChunkInvalid`, `ChunkConflict`) does not hold back
        the others. When the batch meets a full map or disk, or a disk error, its chunks are
        stored one by one by `put`, which frees space as it does and says which failed.
        """
        self._require_writable()
        outcomes: list[bool | StoreError | None] = [None] * len(chunks)
        admitted: list[tuple[int, SignedChunk, ChunkHeader, int]] = []
        for index, chunk in enumerate(chunks):
            try:
                header = _validated_header(
                    chunk, hash_payload=not payload_hash_checked, home_site_id=self._home_site_id
                )
            except ChunkInvalid as exc:
                outcomes[index] = exc
                continue
            admitted.append((index, chunk, header, stored_bytes_of(chunk)))
        with self._write_lock:
            try:
                with self._env.begin(write=True) as raw:
                    txn = TableTxn(raw, self._tables)
                    now_ns = self._clock.now_ns()
                    for index, chunk, header, size in admitted:
                        try:
                            outcomes[index] = self._insert(txn, chunk, header, size, now_ns)
                        except ChunkConflict as exc:  # raised before it wrote anything
                            outcomes[index] = exc
            except lmdb.Error as exc:  # nothing of the batch was committed
                _log.warning("%s: %s in a batch of %d; one by one", self._path, exc, len(chunks))
                fallback = True
            else:
                fallback = False
        if fallback:
            for index, chunk, _header, _size in admitted:
                try:
                    outcomes[index] = self.put(chunk, payload_hash_checked=True)
                except StoreError as exc:
                    outcomes[index] = exc
        done = [o for o in outcomes if o is not None]
        if len(done) != len(chunks):
            raise AssertionError("put_many left a chunk without an outcome")
        return done

    def _put_once(self, chunk: SignedChunk, header: ChunkHeader, size: int) -> bool:
        with self._env.begin(write=True) as raw:
            txn = TableTxn(raw, self._tables)
            return self._insert(txn, chunk, header, size, self._clock.now_ns())

    def _insert(
        self, txn: TableTxn, chunk: SignedChunk, header: ChunkHeader, size: int, now_ns: int
    ) -> bool:
        """Store one chunk in `txn`; False for a duplicate. `ChunkConflict` is raised before
        anything is written for the chunk, so the transaction may go on with others."""
        chunk_hash = chunk.chunk_hash
        record = txn.find_stream(header.site_id, header.device_id, header.stream)
        admission = _Admission.NEW
        if record is not None:
            admission = _admit(txn, record, header, chunk_hash, self._home_site_id)
            if admission is _Admission.DUPLICATE:
                return False
        if self._guard_quota(txn, size, now_ns) and record is not None:
            record = txn.stream_record(record.stream_id)  # its counters moved
        if record is None:
            record = txn.create_stream(header.site_id, header.device_id, header.stream)
        if admission is _Admission.RESTORE:
            # The same chunk came back (a re-sent or re-retrieved copy): store it again.
            txn.delete_tombstone(record.stream_id, header.seq)
        txn.insert_chunk(record, chunk, chunk_hash, size)
        return True

    def _guard_quota(self, txn: TableTxn, size: int, now_ns: int) -> bool:
        """Delete oldest unheld chunks so live bytes stay within the quota after this write.

        True when something was deleted.
        """
        excess = txn.meta_u64(META_LIVE_BYTES) + size - self._quota_bytes
        if excess <= 0:
            return False
        result = evict_oldest(
            txn,
            {r.stream_id: r for r in txn.stream_records()},
            reason=DeletionReason.BYTES,
            now_ns=now_ns,
            active_holds=[h for h in txn.holds() if h.is_active(now_ns)],
            max_chunks=QUOTA_GUARD_MAX_CHUNKS,
            bytes_to_free=excess,
        )
        return result.deleted > 0

    def _full_kind(self, exc: lmdb.Error, needed_bytes: int) -> str:
        """Name the kind of fullness behind `exc`, or raise `StoreIOError` if it is not one."""
        if isinstance(exc, lmdb.MapFullError):
            return "the map is full"
        code = getattr(exc, "code", 0)
        if isinstance(exc, lmdb.DiskError) or code in _DISK_FULL_ERRNOS:
            return "the disk is full"
        # LMDB reports a short write (the usual face of a full disk) as EIO; tell a full
        # disk from a failing one by the free space left.
        if code == errno.EIO and self._disk_free_bytes() < needed_bytes + EMERGENCY_MIN_FREE_BYTES:
            return "the disk is full"
        raise StoreIOError(f"{self._path}: writing a chunk failed: {exc}") from exc

    def _disk_free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self._path).free
        except OSError:
            return 0

    def _free_emergency(self, needed_bytes: int) -> int:
        """Delete oldest unheld chunks after a full map or disk; return how many went."""
        target = max(2 * needed_bytes, EMERGENCY_MIN_FREE_BYTES)
        for max_chunks in (EMERGENCY_MAX_CHUNKS, 1):
            # The delete transaction itself needs a few fresh pages; if even that fails,
            # try once more with the smallest possible transaction.
            try:
                result = self._evict_in_txn(
                    reason=DeletionReason.EMERGENCY, max_chunks=max_chunks, bytes_to_free=target
                )
            except lmdb.Error as exc:
                _log.warning("%s: emergency retention failed: %s", self._path, exc)
                continue
            if result.deleted:
                self._commit_barrier(result.deleted)
            return result.deleted
        return 0

    def _commit_barrier(self, deleted: int) -> None:
        """One more small commit, so pages freed by the previous one become reusable."""
        with contextlib.suppress(lmdb.Error), self._env.begin(write=True) as raw:
            TableTxn(raw, self._tables).add_meta_u64(META_EMERGENCY_DELETES, deleted)

    def _evict_in_txn(
        self,
        *,
        reason: DeletionReason,
        max_chunks: int,
        bytes_to_free: int | None = None,
    ) -> EvictionResult:
        now_ns = self._clock.now_ns()
        with self._env.begin(write=True) as raw:
            txn = TableTxn(raw, self._tables)
            return evict_oldest(
                txn,
                {r.stream_id: r for r in txn.stream_records()},
                reason=reason,
                now_ns=now_ns,
                active_holds=[h for h in txn.holds() if h.is_active(now_ns)],
                max_chunks=max_chunks,
                bytes_to_free=bytes_to_free,
            )

    # -- retention -----------------------------------------------------------------------

    def enforce_retention(self, *, max_chunks: int = 64) -> RetentionReport:
        """One bounded retention pass in one transaction; call again while `pending`.

        Drops expired holds, deletes chunks older than their stream's maximum age, then,
        if live bytes are over the high-water mark (or still draining towards the low-water
        mark), the globally oldest chunks. Never deletes a chunk under an active hold.
        """
        self._require_writable()
        if max_chunks <= 0:
            raise ValueError(f"max_chunks must be positive, not {max_chunks}")
        policy = self._retention
        with self._write_lock:
            now_ns = self._clock.now_ns()
            with self._env.begin(write=True) as raw:
                txn = TableTxn(raw, self._tables)
                expired = 0
                active: list[Hold] = []
                for hold in txn.holds():
                    if hold.is_active(now_ns):
                        active.append(hold)
                    else:
                        txn.delete_hold(hold.hold_id)
                        expired += 1
                records = {r.stream_id: r for r in txn.stream_records()}
                cutoffs = {}
                for stream_id, record in records.items():
                    max_age_ns = policy.max_age_for(record.site_id, record.device_id, record.stream)
                    if max_age_ns is not None:
                        cutoffs[stream_id] = now_ns - max_age_ns
                by_age = evict_oldest(
                    txn,
                    records,
                    reason=DeletionReason.AGE,
                    now_ns=now_ns,
                    active_holds=active,
                    max_chunks=max_chunks,
                    cutoffs=cutoffs,
                )
                live = txn.meta_u64(META_LIVE_BYTES)
                if live > policy.high_water_bytes:
                    self._draining = True
                by_bytes = _NOTHING_EVICTED
                remaining = max_chunks - by_age.deleted
                if self._draining and live > policy.low_water_bytes:
                    if remaining > 0:
                        by_bytes = evict_oldest(
                            txn,
                            records,
                            reason=DeletionReason.BYTES,
                            now_ns=now_ns,
                            active_holds=active,
                            max_chunks=remaining,
                            bytes_to_free=live - policy.low_water_bytes,
                        )
                        live = txn.meta_u64(META_LIVE_BYTES)
                    else:
                        by_bytes = _BATCH_USED_UP
                if live <= policy.low_water_bytes:
                    self._draining = False
        return RetentionReport(
            deleted_by_age=by_age.deleted,
            deleted_by_bytes=by_bytes.deleted,
            deleted_bytes=by_age.deleted_bytes + by_bytes.deleted_bytes,
            blocked_by_holds=by_age.blocked_by_holds or by_bytes.blocked_by_holds,
            expired_holds=expired,
            tombstones_compacted=by_age.tombstones_compacted + by_bytes.tombstones_compacted,
            live_bytes=live,
            pending=by_age.pending or by_bytes.pending,
        )

    # -- holds ---------------------------------------------------------------------------

    def place_hold(
        self,
        device_id: str,
        stream: str,
        start_ns: int,
        end_ns: int,
        *,
        expires_ns: int,
        owner: str,
        site_id: str | None = None,
    ) -> Hold:
        """Protect the stream's chunks overlapping [start_ns, end_ns) until `expires_ns`.

        The stream is `site_id`'s (default: the home site). Refused with `HoldRefused` for
        a bad range, owner, name or expiry, or when the bytes stored in the range plus the
        bytes already held (by every site's holds: the budget is the store's) would exceed
        the hold budget (the message says by how much). The budget is checked against what
        is stored now; chunks recorded later inside the range are protected too.
        """
        self._require_writable()
        site = self._site(site_id)
        label = _stream_name(site, device_id, stream, self._home_site_id)
        problem = hold_problem(start_ns, end_ns, owner)
        if problem is None and not (0 < len(site) <= MAX_NAME_CHARS):
            problem = "site_id must be 1 to 128 characters"
        if problem is None and not (0 < len(device_id) <= MAX_NAME_CHARS):
            problem = "device_id must be 1 to 128 characters"
        if problem is None and not (0 < len(stream) <= MAX_NAME_CHARS):
            problem = "stream must be 1 to 128 characters"
        with self._write_lock:
            now_ns = self._clock.now_ns()
            if problem is None and expires_ns <= now_ns:
                problem = f"expiry {expires_ns} is not after now ({now_ns})"
            if problem is not None:
                raise HoldRefused(f"hold on {label} refused: {problem}")
            with self._env.begin(write=True) as raw:
                txn = TableTxn(raw, self._tables)
                active = [h for h in txn.holds() if h.is_active(now_ns)]
                held = _held_chunks(txn, active)
                already = sum(held.values())
                record = txn.find_stream(site, device_id, stream)
                if record is not None:
                    for header in txn.headers_overlapping(record.stream_id, start_ns, end_ns):
                        held[(header.stream_id, header.start_ns)] = header.stored_bytes
                total = sum(held.values())
                if total > self._hold_budget_bytes:
                    raise HoldRefused(
                        f"hold on {label} [{start_ns}, {end_ns}) refused: held "
                        f"bytes would be {total} ({already} already held), over the hold "
                        f"budget of {self._hold_budget_bytes} by {total - self._hold_budget_bytes}"
                    )
                hold = Hold(
                    txn.next_hold_id(),
                    site,
                    device_id,
                    stream,
                    start_ns,
                    end_ns,
                    expires_ns,
                    owner,
                    now_ns,
                )
                txn.put_hold(hold)
        return hold

    def release_hold(self, hold_id: int) -> bool:
        """Remove a hold; False when no such hold exists (already released or dropped)."""
        self._require_writable()
        with self._write_lock, self._env.begin(write=True) as raw:
            return TableTxn(raw, self._tables).delete_hold(hold_id)

    def list_holds(self) -> list[Hold]:
        """The holds of every site that are active now (retention drops expired ones)."""
        now_ns = self._clock.now_ns()
        with self._reading() as txn:
            return [h for h in txn.holds() if h.is_active(now_ns)]

    # -- reading -------------------------------------------------------------------------
    #
    # Every read of one stream takes `site_id` as a keyword: None means the home site, and a
    # store without one raises `ValueError` (see `_site`).

    def stream_head(
        self, device_id: str, stream: str, *, site_id: str | None = None
    ) -> StreamHead | None:
        """The highest seq ever stored for the stream (with hash and end), or None."""
        site = self._site(site_id)
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            return None if record is None else record.head

    def streams(self) -> list[StreamSummary]:
        """A summary of every stream of every site ever stored (including ones now empty)."""
        with self._reading() as txn:
            summaries = []
            for record in txn.stream_records():
                first = txn.first_header(record.stream_id)
                last = txn.last_header(record.stream_id)
                summaries.append(
                    StreamSummary(
                        site_id=record.site_id,
                        device_id=record.device_id,
                        stream=record.stream,
                        chunk_count=record.chunk_count,
                        stored_bytes=record.stored_bytes,
                        first_start_ns=None if first is None else first.start_ns,
                        last_end_ns=None if last is None else last.end_ns,
                        head=record.head,
                        horizon=txn.horizon(record.stream_id),
                    )
                )
        return summaries

    def chunk_metas(
        self,
        device_id: str,
        stream: str,
        start_ns: int,
        end_ns: int,
        *,
        site_id: str | None = None,
    ) -> list[ChunkMeta]:
        """Headers and signatures (no payloads) of chunks overlapping [start_ns, end_ns)."""
        site = self._site(site_id)
        _check_range(start_ns, end_ns)
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            if record is None:
                return []
            headers = txn.headers_overlapping(record.stream_id, start_ns, end_ns)
        return [
            ChunkMeta(h.header_bytes, h.signature, _decode_header(h.header_bytes)) for h in headers
        ]

    def chunk_meta(
        self, device_id: str, stream: str, seq: int, *, site_id: str | None = None
    ) -> ChunkMeta | None:
        """Header and signature (no payload) of the stored chunk with this seq, or None."""
        site = self._site(site_id)
        with self._reading() as txn:
            found = _seq_location(txn, site, device_id, stream, seq)
            header = None if found is None else txn.header_at(*found)
        if header is None:
            return None
        return ChunkMeta(header.header_bytes, header.signature, _decode_header(header.header_bytes))

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str | None = None
    ) -> SignedChunk | None:
        """The stored chunk with this seq, or None."""
        site = self._site(site_id)
        with self._reading() as txn:
            found = _seq_location(txn, site, device_id, stream, seq)
            if found is None:
                return None
            parts = _chunk_parts(txn, *found)
        return _signed_chunk(*parts)

    def read_chunks(
        self,
        device_id: str,
        stream: str,
        start_ns: int,
        end_ns: int,
        *,
        max_bytes: int | None = None,
        site_id: str | None = None,
    ) -> list[SignedChunk]:
        """Chunks overlapping [start_ns, end_ns), in time order, with payloads.

        With `max_bytes`, stop before the total stored bytes would pass it (always at least
        one chunk); the caller continues from the last chunk's end.
        """
        site = self._site(site_id)
        _check_range(start_ns, end_ns)
        parts: list[tuple[bytes, bytes, bytes]] = []
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            if record is None:
                return []
            total = 0
            for header in txn.headers_overlapping(record.stream_id, start_ns, end_ns):
                if max_bytes is not None and parts and total + header.stored_bytes > max_bytes:
                    break
                parts.append(_chunk_parts(txn, record.stream_id, header.start_ns))
                total += header.stored_bytes
        return [_signed_chunk(*p) for p in parts]

    def chunks_after_seq(
        self,
        device_id: str,
        stream: str,
        after_seq: int,
        *,
        limit: int,
        max_bytes: int,
        site_id: str | None = None,
    ) -> list[SignedChunk]:
        """Stored chunks with seq > `after_seq`, in seq order: the resume cursor of a transfer.

        Returns at most `limit` chunks and stops before the total stored bytes would pass
        `max_bytes`, but always returns at least one chunk when one exists, so a chunk
        larger than `max_bytes` cannot stall the cursor. Seqs that were never stored or were
        deleted are skipped (see `tombstones`). `after_seq = -1` starts at the beginning.
        """
        site = self._site(site_id)
        if limit <= 0 or max_bytes <= 0:
            raise ValueError(f"limit ({limit}) and max_bytes ({max_bytes}) must be positive")
        parts: list[tuple[bytes, bytes, bytes]] = []
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            if record is None:
                return []
            total = 0
            for _seq, start_ns in txn.seqs_from(record.stream_id, max(after_seq + 1, 0)):
                header = txn.header_at(record.stream_id, start_ns)
                if header is None:
                    raise StoreFormatError(
                        f"{_record_name(record, self._home_site_id)}: seq index names "
                        f"{start_ns}, which has no header"
                    )
                if parts and total + header.stored_bytes > max_bytes:
                    break
                parts.append(_chunk_parts(txn, record.stream_id, start_ns))
                total += header.stored_bytes
                if len(parts) >= limit:
                    break
        return [_signed_chunk(*p) for p in parts]

    def timeline(
        self,
        device_id: str,
        stream: str,
        start_ns: int,
        end_ns: int,
        *,
        join_tolerance_ns: int = DEFAULT_JOIN_TOLERANCE_NS,
        site_id: str | None = None,
    ) -> list[Span]:
        """Chunks overlapping [start_ns, end_ns) merged into spans; gaps lie between spans.

        Spans report the chunks' own extents (not clipped to the range); see
        `timeline.gaps_between` for the gaps as values. Merged while scanning, reading only
        each chunk's fixed prefix (`timeline_scan`): memory grows with spans, not chunks.
        """
        site = self._site(site_id)
        _check_range(start_ns, end_ns)
        check_join_tolerance(join_tolerance_ns)
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
        if record is None:
            return []
        # A stream id, once given, names the same stream for the life of the store (stream
        # records are never deleted), so the scan may run in a snapshot of its own.
        with self._reading_views() as views:
            return scan_spans(
                views,
                self._tables.headers,
                record.stream_id,
                start_ns=start_ns,
                end_ns=end_ns,
                join_tolerance_ns=join_tolerance_ns,
            )

    def tombstones(
        self, device_id: str, stream: str, *, site_id: str | None = None
    ) -> list[Tombstone]:
        """The stream's tombstones in seq order; the first one below the oldest stored
        chunk, if any, is the retention horizon."""
        site = self._site(site_id)
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            return [] if record is None else txn.tombstones(record.stream_id)

    def retention_horizon(
        self, device_id: str, stream: str, *, site_id: str | None = None
    ) -> Tombstone | None:
        """The newest tombstone below the oldest stored chunk (where verification starts)."""
        site = self._site(site_id)
        with self._reading() as txn:
            record = txn.find_stream(site, device_id, stream)
            return None if record is None else txn.horizon(record.stream_id)

    def usage(self) -> StoreUsage:
        """Live, held and physical bytes, against the quota and map size."""
        now_ns = self._clock.now_ns()
        with self._reading() as txn:
            live = txn.meta_u64(META_LIVE_BYTES)
            count = txn.meta_u64(META_CHUNK_COUNT)
            streams = len(txn.stream_records())
            held = sum(_held_chunks(txn, [h for h in txn.holds() if h.is_active(now_ns)]).values())
        try:
            file_bytes = (self._path / DATA_FILE).stat().st_size
        except OSError:
            file_bytes = 0
        return StoreUsage(
            live_bytes=live,
            quota_bytes=self._quota_bytes,
            map_size_bytes=self._env.info()["map_size"],
            file_bytes=file_bytes,
            held_bytes=held,
            hold_budget_bytes=self._hold_budget_bytes,
            chunk_count=count,
            stream_count=streams,
        )

    def check(self) -> StoreCheckReport:
        """Verify every storage invariant in one read snapshot of this open store.

        Holds one read transaction for the whole scan (pinning pages while a writer runs);
        prefer `check_store` on a store that is not being written.
        """
        self._require_open()
        return check_tables(self._env, self._tables, self._path)

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[TableTxn]:
        """A short read transaction; callers copy values out before it closes."""
        self._require_open()
        with self._env.begin(write=False) as raw:
            yield TableTxn(raw, self._tables)

    @contextlib.contextmanager
    def _reading_views(self) -> Iterator[lmdb.Transaction[memoryview]]:
        """A short read transaction whose values are views into the map (copy nothing);
        a view is valid only until its cursor moves."""
        self._require_open()
        with self._env.begin(write=False, buffers=True) as raw:
            yield raw

    def _site(self, site_id: str | None) -> str:
        """The site a call names: `site_id`, else the home site; `ValueError` with neither."""
        if site_id is not None:
            return site_id
        if self._home_site_id is None:
            raise ValueError(
                f"{self._path}: a site id is needed: this store was opened without a home "
                "site, so name the stream's site with site_id="
            )
        return self._home_site_id

    def _live_bytes(self) -> int:
        with self._reading() as txn:
            return txn.meta_u64(META_LIVE_BYTES)

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._path}: the chunk store is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self._readonly:
            raise StoreReadOnlyError(f"{self._path}: the chunk store was opened read-only")


def _validated_header(
    chunk: SignedChunk, *, hash_payload: bool, home_site_id: str | None
) -> ChunkHeader:
    """The chunk's header decoded from the signed bytes, with the payload checked against it
    and, in a store with a home site, the site checked against that."""
    if len(chunk.signature) != SIGNATURE_BYTES:
        raise ChunkInvalid(
            f"chunk signature is {len(chunk.signature)} bytes, not {SIGNATURE_BYTES}"
        )
    try:
        # The signed bytes are the truth; the `header` object beside them is not trusted.
        header = ChunkHeader.decode(chunk.header_bytes)
    except ChunkFormatError as exc:
        raise ChunkInvalid(f"chunk header does not decode: {exc}") from exc
    stream = _stream_name(header.site_id, header.device_id, header.stream, home_site_id)
    name = f"{stream} seq {header.seq}"
    if home_site_id is not None and header.site_id != home_site_id:
        raise ChunkInvalid(
            f"{name}: the chunk is of site {header.site_id!r}, but this store records only "
            f"site {home_site_id!r}"
        )
    if len(chunk.payload) != header.payload_size:
        raise ChunkInvalid(
            f"{name}: payload is {len(chunk.payload)} bytes, header says {header.payload_size}"
        )
    if hash_payload and hashlib.sha256(chunk.payload).digest() != header.payload_sha256:
        raise ChunkInvalid(f"{name}: payload SHA-256 does not match the header")
    return header


class _Admission(Enum):
    """What `put` should do with a chunk that contradicts nothing stored."""

    NEW = "new"
    DUPLICATE = "duplicate"  # this exact chunk is stored: nothing to do
    RESTORE = "restore"  # this exact chunk was deleted by retention: store it again


def _admit(
    txn: TableTxn,
    record: StreamRecord,
    header: ChunkHeader,
    chunk_hash: bytes,
    home_site_id: str | None,
) -> _Admission:
    """Whether and how a chunk may join its stream; `ChunkConflict` when it contradicts
    what the stream holds (seq, start instant, time span or seq order)."""
    stream_id = record.stream_id
    name = _record_name(record, home_site_id)
    stored_start_ns = txn.start_of_seq(stream_id, header.seq)
    if stored_start_ns is not None:
        stored = txn.header_at(stream_id, stored_start_ns)
        if stored is None:
            raise StoreFormatError(f"{name}: seq {header.seq} is indexed but has no header")
        if stored.chunk_hash == chunk_hash:
            return _Admission.DUPLICATE
        raise ChunkConflict(
            f"{name}: seq {header.seq} is already stored as a different chunk "
            f"(stored hash {stored.chunk_hash.hex()[:16]}, new {chunk_hash.hex()[:16]})"
        )
    tombstone = txn.tombstone(stream_id, header.seq)
    if tombstone is not None and tombstone.chunk_hash != chunk_hash:
        raise ChunkConflict(
            f"{name}: seq {header.seq} was deleted by retention ({tombstone.reason}) and "
            "the new chunk has a different hash"
        )
    at_start = txn.header_at(stream_id, header.start_ns)
    if at_start is not None:
        raise ChunkConflict(
            f"{name}: seq {header.seq} starts at {header.start_ns}, where seq {at_start.seq} "
            "is already stored"
        )
    before = txn.header_before(stream_id, header.start_ns)
    after = txn.header_after(stream_id, header.start_ns)
    for neighbour in (before, after):
        if neighbour is None:
            continue
        if overlaps(neighbour.start_ns, neighbour.end_ns, header.start_ns, header.end_ns):
            raise ChunkConflict(
                f"{name}: seq {header.seq} [{header.start_ns}, {header.end_ns}) overlaps "
                f"stored seq {neighbour.seq} [{neighbour.start_ns}, {neighbour.end_ns})"
            )
        earlier = neighbour is before
        if (neighbour.seq < header.seq) != earlier:
            raise ChunkConflict(
                f"{name}: seq {header.seq} at {header.start_ns} is out of order with stored "
                f"seq {neighbour.seq} at {neighbour.start_ns}"
            )
    return _Admission.NEW if tombstone is None else _Admission.RESTORE


def _stream_name(site_id: str, device_id: str, stream: str, home_site_id: str | None) -> str:
    """How the store's messages name a stream: `device/stream` in a store of that one site
    (an agent's, whose users know no other), else `site/device/stream`."""
    if site_id == home_site_id:
        return f"{device_id}/{stream}"
    return stream_label(site_id, device_id, stream)


def _record_name(record: StreamRecord, home_site_id: str | None) -> str:
    return _stream_name(record.site_id, record.device_id, record.stream, home_site_id)


def _held_chunks(txn: TableTxn, active_holds: list[Hold]) -> dict[tuple[int, int], int]:
    """Stored bytes of each distinct chunk under at least one of `active_holds`."""
    held: dict[tuple[int, int], int] = {}
    for hold in active_holds:
        record = txn.find_stream(hold.site_id, hold.device_id, hold.stream)
        if record is None:
            continue
        for header in txn.headers_overlapping(record.stream_id, hold.start_ns, hold.end_ns):
            held[(header.stream_id, header.start_ns)] = header.stored_bytes
    return held


def _chunk_parts(txn: TableTxn, stream_id: int, start_ns: int) -> tuple[bytes, bytes, bytes]:
    header = txn.header_at(stream_id, start_ns)
    payload = txn.payload(stream_id, start_ns)
    if header is None or payload is None:
        raise StoreFormatError(
            f"stream {stream_id} chunk at {start_ns} lacks its header or payload"
        )
    return header.header_bytes, header.signature, payload


def _signed_chunk(header_bytes: bytes, signature: bytes, payload: bytes) -> SignedChunk:
    try:
        return SignedChunk.from_parts(header_bytes, signature, payload)
    except ChunkFormatError as exc:
        raise StoreFormatError(f"stored chunk header does not decode: {exc}") from exc


def _seq_location(
    txn: TableTxn, site_id: str, device_id: str, stream: str, seq: int
) -> tuple[int, int] | None:
    """(stream id, start) of the stored chunk with this seq, or None."""
    record = txn.find_stream(site_id, device_id, stream)
    if record is None or seq < 0:
        return None
    start_ns = txn.start_of_seq(record.stream_id, seq)
    return None if start_ns is None else (record.stream_id, start_ns)


def _decode_header(header_bytes: bytes) -> ChunkHeader:
    try:
        return ChunkHeader.decode(header_bytes)
    except ChunkFormatError as exc:
        raise StoreFormatError(f"stored chunk header does not decode: {exc}") from exc


def _check_range(start_ns: int, end_ns: int) -> None:
    if start_ns < 0 or end_ns < start_ns:
        raise ValueError(f"bad time range [{start_ns}, {end_ns})")
