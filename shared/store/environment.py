"""Opening the LMDB environment of a store: path checks, map size, tables, format version.

One environment per store directory (`data.mdb` and `lock.mdb`), with one named table per
concept; `docs/design/storage.md` describes each table's keys and values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import lmdb

from shared.store.errors import StoreFormatError, StoreOpenError
from shared.store.keys import (
    META_CHUNK_COUNT,
    META_CREATED_NS,
    META_EMERGENCY_DELETES,
    META_FORMAT_VERSION,
    META_LIVE_BYTES,
    META_NEXT_HOLD_ID,
    META_NEXT_STREAM_ID,
    decode_u64,
    encode_u64,
)

FORMAT_VERSION = 2
"""On-disk format of the store; bump on any incompatible change to a table's encoding.

Version 2 added the site id to every stream's identity (names, stream records, holds).
Older stores are refused, not migrated: the product had no release before version 2.
"""

DATA_FILE = "data.mdb"
MIB = 1 << 20
DEFAULT_MAP_HEADROOM_BYTES = 64 * MIB
MAP_QUOTA_FACTOR = 1.25
MAX_DBS = 12  # eight tables today; spare slots let a later version add tables in place
MAX_READERS = 126

Database = lmdb._Database


def map_size_for_quota(quota_bytes: int, headroom_bytes: int = DEFAULT_MAP_HEADROOM_BYTES) -> int:
    """The LMDB map size for a quota: quota x 1.25 + headroom, rounded up to a MiB.

    Live data stays under the quota (retention deletes from 95 %); the extra quarter absorbs
    page rounding of large values, B-tree pages and pages freed but not yet reusable (LMDB
    reuses a freed page only two commits later, and never while an older reader pins it),
    and the fixed headroom leaves room for retention's own delete transactions before the
    map is full.
    """
    if quota_bytes <= 0:
        raise ValueError(f"quota must be positive, not {quota_bytes} bytes")
    if headroom_bytes < 0:
        raise ValueError(f"map headroom must not be negative, not {headroom_bytes} bytes")
    raw = int(quota_bytes * MAP_QUOTA_FACTOR) + headroom_bytes
    return -(-raw // MIB) * MIB


@dataclass(frozen=True, slots=True)
class Tables:
    """Handles of the store's named tables in one open environment."""

    meta: Database
    streams: Database
    stream_names: Database
    headers: Database
    payloads: Database
    seqs: Database
    tombstones: Database
    holds: Database


TABLE_NAMES = (
    b"meta",
    b"streams",
    b"stream_names",
    b"headers",
    b"payloads",
    b"seqs",
    b"tombstones",
    b"holds",
)


def open_environment(
    path: Path, *, map_size_bytes: int, readonly: bool, now_ns: int
) -> tuple[lmdb.Environment, Tables]:
    """Open (or, when writable and absent or empty, create) the store at `path`.

    Raises `StoreOpenError` when `path` is not a directory that holds a store (or an empty
    one that may become a store), and `StoreFormatError` for an unknown format version.
    """
    _check_path(path, readonly=readonly)
    try:
        env = lmdb.open(
            str(path),
            map_size=map_size_bytes,
            subdir=True,
            readonly=readonly,
            max_dbs=MAX_DBS,
            max_readers=MAX_READERS,
            # Payloads are read a chunk at a time; kernel readahead on a store larger than
            # RAM would evict useful pages for neighbours nobody asked for.
            readahead=False,
            create=not readonly,
        )
    except lmdb.Error as exc:
        raise StoreOpenError(f"{path}: cannot open as a chunk store ({exc})") from exc
    try:
        # A process killed while reading leaves its reader slot behind; a stale slot pins
        # old pages and stops their reuse until it is cleared.
        env.reader_check()
        tables = _open_tables(env, path, readonly=readonly, now_ns=now_ns)
    except BaseException:
        env.close()
        raise
    return env, tables


def _check_path(path: Path, *, readonly: bool) -> None:
    """Raise for paths that cannot be a store; create the directory of a new writable one."""
    if path.exists() and not path.is_dir():
        raise StoreOpenError(f"{path}: not a directory, so not a chunk store")
    data_file = path / DATA_FILE
    if data_file.is_file():
        return
    if readonly:
        raise StoreOpenError(f"{path}: no chunk store here (no {DATA_FILE})")
    if path.exists() and any(path.iterdir()):
        raise StoreOpenError(
            f"{path}: directory is not empty and holds no {DATA_FILE}; refusing to create a "
            "chunk store among other files"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreOpenError(f"{path}: cannot create the store directory ({exc})") from exc


def _open_tables(env: lmdb.Environment, path: Path, *, readonly: bool, now_ns: int) -> Tables:
    named = set(env.dbs())
    if not named:
        # A brand-new environment, or one whose creating transaction never committed.
        if readonly:
            raise StoreOpenError(f"{path}: empty LMDB environment, not a chunk store")
        with env.begin(write=True) as txn:
            return _create_tables(env, txn, now_ns)
    if b"meta" not in named:
        raise StoreOpenError(f"{path}: an LMDB environment, but not a chunk store")
    # Handles are opened outside any explicit transaction: a handle first opened inside a
    # read-only transaction is not valid after that transaction ends.
    meta = env.open_db(b"meta", create=False)
    with env.begin() as txn:
        raw_version = txn.get(META_FORMAT_VERSION, db=meta)
    if raw_version is None:
        raise StoreFormatError(f"{path}: chunk store has no format version")
    try:
        version = decode_u64(raw_version)
    except struct.error as exc:
        raise StoreFormatError(f"{path}: unreadable format version") from exc
    if version != FORMAT_VERSION:
        raise StoreFormatError(_version_problem(path, version))
    missing = [name.decode() for name in TABLE_NAMES if name not in named]
    if missing:
        raise StoreFormatError(f"{path}: chunk store lacks tables {', '.join(missing)}")
    return Tables(*(env.open_db(name, create=False) for name in TABLE_NAMES))


def _version_problem(path: Path, version: int) -> str:
    """Why a store of another format version cannot be opened, and what to do about it."""
    found = (
        f"{path}: chunk store format version {version}; this program reads version {FORMAT_VERSION}"
    )
    if version < FORMAT_VERSION:
        return (
            f"{found}. The store was made by an older Siteline version, and its recordings "
            "cannot be read by this one; move the directory aside (or delete it) and start "
            "again, and a new, empty store is created in its place"
        )
    return f"{found}. The store was made by a newer Siteline version; upgrade this program"


def _create_tables(env: lmdb.Environment, txn: lmdb.Transaction[bytes], now_ns: int) -> Tables:
    handles = [env.open_db(name, txn=txn, create=True) for name in TABLE_NAMES]
    tables = Tables(*handles)
    for key, value in (
        (META_FORMAT_VERSION, FORMAT_VERSION),
        (META_LIVE_BYTES, 0),
        (META_CHUNK_COUNT, 0),
        (META_NEXT_STREAM_ID, 1),
        (META_NEXT_HOLD_ID, 1),
        (META_CREATED_NS, now_ns),
        (META_EMERGENCY_DELETES, 0),
    ):
        txn.put(key, encode_u64(value), db=tables.meta)
    return tables
