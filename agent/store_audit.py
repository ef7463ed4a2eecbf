"""`siteline agent check` and `siteline agent status`: what the store holds, and whether it holds.

The check opens the store read-only, so it can run beside a recording agent. It verifies the
storage invariants (`shared.store.check`) and then every stream's chain and signatures from
its retention horizon to its head (`shared.chain_verification`), reading chunks in bounded
batches with no read transaction held between them. It opens the store without a home site,
so it sees every stream whatever its site; each is verified as this site's, so a stream of
any other site (which the recorder's store never accepts) is reported, not skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.config import AgentConfig, ConfigError, load_agent_config
from shared.chain_verification import ChainLink, FindingKind, StreamVerification, verify_stream
from shared.chunk import SignedChunk
from shared.clock import SystemClock
from shared.signing import SigningKeyError, load_public_key
from shared.sizes import format_size
from shared.store.check import StoreCheckReport
from shared.store.chunk_store import ChunkStore
from shared.store.errors import StoreError
from shared.store.streams import StreamSummary

_BATCH_CHUNKS = 256
_BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class StreamAudit:
    summary: StreamSummary
    verification: StreamVerification


@dataclass
class StoreAudit:
    """Everything the check found."""

    store: StoreCheckReport
    streams: list[StreamAudit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.store.ok and all(s.verification.ok for s in self.streams)


def open_store_readonly(config: AgentConfig) -> ChunkStore:
    """The store of `config`, read-only and without a home site: calls name each stream's site."""
    return ChunkStore.open(
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=SystemClock(),
        readonly=True,
    )


def audit_store(config: AgentConfig) -> StoreAudit:
    """Check the store of `config` (raises StoreError, SigningKeyError when it cannot)."""
    public_key = load_public_key(config.storage.key_path)
    with open_store_readonly(config) as store:
        audit = StoreAudit(store.check())
        for summary in store.streams():
            horizon = summary.horizon
            expired = {
                t.seq: t.chunk_hash
                for t in store.tombstones(
                    summary.device_id, summary.stream, site_id=summary.site_id
                )
            }
            verification = verify_stream(
                _chunks(store, summary, -1 if horizon is None else horizon.seq),
                public_key=public_key,
                site_id=config.site.id,
                device_id=summary.device_id,
                stream=summary.stream,
                anchor=None if horizon is None else ChainLink(horizon.seq, horizon.chunk_hash),
                expired=expired,
                expected_head=(
                    None
                    if summary.head is None
                    else ChainLink(summary.head.seq, summary.head.chunk_hash)
                ),
            )
            audit.streams.append(StreamAudit(summary, verification))
    return audit


def _chunks(store: ChunkStore, summary: StreamSummary, after_seq: int) -> Iterator[SignedChunk]:
    while True:
        batch = store.chunks_after_seq(
            summary.device_id,
            summary.stream,
            after_seq,
            limit=_BATCH_CHUNKS,
            max_bytes=_BATCH_BYTES,
            site_id=summary.site_id,
        )
        if not batch:
            return
        yield from batch
        after_seq = batch[-1].header.seq


def audit_command(config_path: Path, *, verbose: bool) -> int:
    """Print the check's summary; 0 only when every invariant and signature holds."""
    try:
        config = load_agent_config(config_path)
        audit = audit_store(config)
    except (ConfigError, StoreError, SigningKeyError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    store = audit.store
    print(f"store {config.storage.path}")
    print(
        f"  {len(audit.streams)} streams, {store.chunk_count} chunks, "
        f"{format_size(store.live_bytes)}, {store.gap_count} gaps in the timelines"
    )
    for violation in store.violations:
        print(f"  STORE INVARIANT VIOLATED: {violation}")
    for stream in audit.streams:
        _print_stream(stream, config.site.id, verbose=verbose)
    if audit.ok:
        print("OK: every storage invariant, signature and chain link holds")
        return 0
    problems = store.violation_count + sum(len(s.verification.problems) for s in audit.streams)
    print(f"FAILED: {problems} problems")
    return 1


def _print_stream(audit: StreamAudit, home_site_id: str, *, verbose: bool) -> None:
    summary, verification = audit.summary, audit.verification
    gaps = len(verification.of_kind(FindingKind.RECORDING_GAP))
    expired = len(verification.of_kind(FindingKind.EXPIRED))
    span = _span(summary.first_start_ns, summary.last_end_ns)
    state = "ok" if verification.ok else f"{len(verification.problems)} PROBLEMS"
    print(
        f"  {_stream_name(summary, home_site_id)}: {summary.chunk_count} chunks, "
        f"{format_size(summary.stored_bytes)}, {span}, {gaps} recording gaps, "
        f"{expired} expired ranges: {state}"
    )
    shown = verification.findings if verbose else verification.problems
    for finding in shown:
        if verbose or finding.is_problem:
            print(f"    {finding.kind}: seq {finding.seq}: {finding.message}")


def _stream_name(summary: StreamSummary, home_site_id: str) -> str:
    """`device/stream`, prefixed with the site when it is not this one."""
    name = f"{summary.device_id}/{summary.stream}"
    return name if summary.site_id == home_site_id else f"{summary.site_id}/{name}"


def _span(first_ns: int | None, last_ns: int | None) -> str:
    if first_ns is None or last_ns is None:
        return "empty"
    return f"{_when(first_ns)} to {_when(last_ns)}"


def _when(at_ns: int) -> str:
    return datetime.fromtimestamp(at_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_command(config_path: Path) -> int:
    """Print what the store holds, stream by stream."""
    try:
        config = load_agent_config(config_path)
        with open_store_readonly(config) as store:
            usage = store.usage()
            streams = store.streams()
    except (ConfigError, StoreError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    print(f"site {config.site.name!r} ({config.site.id})")
    print(
        f"store {config.storage.path}: {format_size(usage.live_bytes)} of "
        f"{format_size(usage.quota_bytes)} quota, file {format_size(usage.file_bytes)}, "
        f"{usage.chunk_count} chunks, held {format_size(usage.held_bytes)}"
    )
    for summary in streams:
        print(
            f"  {_stream_name(summary, config.site.id)}: {summary.chunk_count} chunks, "
            f"{format_size(summary.stored_bytes)}, "
            f"{_span(summary.first_start_ns, summary.last_end_ns)}"
        )
    return 0
