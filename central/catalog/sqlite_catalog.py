"""The catalog in one SQLite file: the embedded central's implementation of `Catalog`.

Theory of operation
-------------------
One connection, opened with `check_same_thread=False` and guarded by one lock, serves every
thread: SQLite allows one writer at a time anyway, and the calls are short. The connection
is in autocommit mode and each write method is one explicit `BEGIN IMMEDIATE` ... `COMMIT`
(the write lock is taken at the start, so a read-then-write inside it cannot race); any
exception rolls the whole transaction back, so nothing is ever half-written.

Durability: WAL journal with `synchronous=FULL`, so a committed write survives a process
kill and a power cut; readers in other processes (a backup, the `sqlite3` shell) never block
the writer. Foreign keys are on: removing a site removes its devices and notifications.

Uniqueness is enforced twice: explicit checks inside the transaction give messages that
name the other site or user; the unique indexes remain the last word (an `IntegrityError`
that gets through is still reported as `Conflict`).

The schema is created and upgraded by the migrations in `schema.py` under
`PRAGMA user_version`; a file with a newer version than this code knows is refused.
"""

# SQL text here is assembled only from this package's fixed table and column names; every
# value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from central.catalog import sqlite_retrieval_rules as retrieval_rules
from central.catalog import sqlite_retrievals as retrievals
from central.catalog import validation as check
from central.catalog.catalog import (
    DEFAULT_NOTIFICATION_LIMIT,
    DEFAULT_RETRIEVAL_JOB_LIMIT,
    MAX_NOTIFICATION_LIMIT,
    MAX_RETRIEVAL_JOB_LIMIT,
)
from central.catalog.errors import (
    CatalogError,
    Conflict,
    InvalidRecord,
    NotFound,
    SchemaError,
)
from central.catalog.hardware import new_device_record, reconcile, records_to_update
from central.catalog.ids import DEVICE_ID_PREFIX, SITE_ID_PREFIX, new_id
from central.catalog.records import (
    ROLES,
    SITE_FIELDS_CHANGEABLE,
    DevicePage,
    DeviceRecord,
    EnrolmentToken,
    HardwareDiff,
    LiveFeed,
    NewDevice,
    NewSite,
    Notification,
    Recording,
    Role,
    SitePage,
    SiteRecord,
    TokenRecord,
    UserRecord,
)
from central.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_rows import (
    DEVICE_COLUMNS,
    ENROLMENT_COLUMNS,
    NOTIFICATION_COLUMNS,
    SITE_COLUMNS,
    TOKEN_COLUMNS,
    USER_COLUMNS,
    device_from_row,
    device_params,
    enrolment_from_row,
    enrolment_params,
    insert_sql,
    notification_from_row,
    select_list,
    site_from_row,
    site_params,
    token_from_row,
    token_params,
    update_sql,
    user_from_row,
    user_params,
)
from central.retrieval.job_records import JobState, JobStream, NewRetrievalJob, RetrievalJob
from central.retrieval.rule_records import NewRetrievalRule, RetrievalRule
from shared.clock import Clock

BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another process's transaction (a backup) before failing."""
_ID_ATTEMPTS = 8

_IDS_PER_QUERY = 500  # well below SQLite's limit on parameters in one statement
_SITES = select_list(SITE_COLUMNS)
_DEVICES = select_list(DEVICE_COLUMNS)
_USERS = select_list(USER_COLUMNS)
_TOKENS = select_list(TOKEN_COLUMNS, "t.")
_ENROLMENTS = select_list(ENROLMENT_COLUMNS)
_NOTIFICATIONS = select_list(NOTIFICATION_COLUMNS)
_SITE_INSERT = insert_sql("sites", (*SITE_COLUMNS, "password_sealed"))
_SITE_UPDATE = update_sql(
    "sites", tuple(c for c in SITE_COLUMNS if c not in ("created_ns", "last_seen_ns")), "site_id"
)
_DEVICE_INSERT = insert_sql("devices", DEVICE_COLUMNS)
_DEVICE_UPDATE = update_sql(
    "devices",
    tuple(c for c in DEVICE_COLUMNS if c not in ("site_id", "remote_device_id", "created_ns")),
    "device_id",
)
_USER_INSERT = insert_sql("users", USER_COLUMNS)
_TOKEN_INSERT = insert_sql("tokens", TOKEN_COLUMNS)
_ENROLMENT_INSERT = insert_sql("enrolment_tokens", ENROLMENT_COLUMNS)
# The open notification of (kind, site, device), NULLs folded as in its unique index.
_OPEN_NOTIFICATION = (
    "kind = ? AND coalesce(site_id, '') = ? AND coalesce(device_id, '') = ? AND cleared_ns IS NULL"
)


class SqliteCatalog:
    """`Catalog` on SQLite; see the module docstring. Construct with `SqliteCatalog.open`."""

    def __init__(
        self, connection: sqlite3.Connection, *, path: Path, clock: Clock, secret_box: SecretBox
    ) -> None:
        """Use `SqliteCatalog.open`; this only wires an already configured connection."""
        self._connection = connection
        self._path = path
        self._clock = clock
        self._secret_box = secret_box
        self._lock = threading.Lock()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, clock: Clock, secret_box: SecretBox) -> SqliteCatalog:
        """Open the catalog at `path`, creating it (and its folder) when absent and
        bringing its schema up to date. `SchemaError` for a file that is not a catalog or
        whose schema is newer than this code."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            connection.row_factory = sqlite3.Row
            _configure(connection, path)
            _migrate(connection, path)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise SchemaError(f"{path} cannot be used as a catalog: {exc}") from exc
        except BaseException:
            connection.close()
            raise
        return cls(connection, path=path, clock=clock, secret_box=secret_box)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()

    def __enter__(self) -> SqliteCatalog:
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

    # --- sites ---------------------------------------------------------------------------

    def add_site(
        self,
        site: NewSite,
        password: str | None,
        devices: Sequence[NewDevice] = (),
        *,
        enrolment_digest: bytes | None = None,
    ) -> tuple[SiteRecord, list[DeviceRecord]]:
        if len(devices) > check.MAX_DEVICES_PER_SITE:
            raise InvalidRecord("devices", f"at most {check.MAX_DEVICES_PER_SITE} devices per site")
        if password is not None:
            _check_password(password)
        now_ns = self._clock.now_ns()
        with self._writing() as db:
            site_id = _unused_id(db, "sites", "site_id", SITE_ID_PREFIX, set())
            record = SiteRecord(
                site_id=site_id,
                **{f.name: getattr(site, f.name) for f in dataclasses.fields(NewSite)},
                created_ns=now_ns,
                updated_ns=now_ns,
                last_seen_ns=None,
            )
            _refuse_taken_site_keys(db, record)
            params = site_params(record)
            params["password_sealed"] = self._seal_password(site_id, password)
            db.execute(_SITE_INSERT, params)
            stored: list[DeviceRecord] = []
            for new in devices:
                device_id = _unused_id(db, "devices", "device_id", DEVICE_ID_PREFIX, set())
                device = new_device_record(new, device_id=device_id, site_id=site_id, now_ns=now_ns)
                try:
                    db.execute(_DEVICE_INSERT, device_params(device))
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" not in str(exc):
                        raise
                    raise InvalidRecord(
                        "devices", f"remote_device_id {new.remote_device_id!r} is listed twice"
                    ) from None
                stored.append(device)
            if enrolment_digest is not None:
                _use_enrolment(db, enrolment_digest, site_id, now_ns)
        return record, stored

    def site(self, site_id: str) -> SiteRecord:
        with self._reading() as db:
            return _site_in(db, site_id)

    def sites(self) -> list[SiteRecord]:
        with self._reading() as db:
            rows = db.execute(f"SELECT {_SITES} FROM sites ORDER BY rowid").fetchall()
        return [site_from_row(row) for row in rows]

    def sites_page(self, *, after: str | None, limit: int) -> SitePage:
        check.integer("limit", limit, low=1)
        with self._reading() as db:
            if after is None:
                rows = db.execute(
                    f"SELECT {_SITES} FROM sites ORDER BY rowid LIMIT ?", (limit + 1,)
                ).fetchall()
            else:
                anchor = db.execute(
                    "SELECT rowid FROM sites WHERE site_id = ?", (after,)
                ).fetchone()
                if anchor is None:
                    raise NotFound("site", after)
                rows = db.execute(
                    f"SELECT {_SITES} FROM sites WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (anchor[0], limit + 1),
                ).fetchall()
        # The row after the page tells only that there is more: no record for it.
        next_site_id = rows[limit]["site_id"] if len(rows) > limit else None
        return SitePage(tuple(site_from_row(row) for row in rows[:limit]), next_site_id)

    def sites_by_id(self, site_ids: Sequence[str]) -> dict[str, SiteRecord]:
        rows: list[Any] = []
        with self._reading() as db:
            for part, marks in _id_parts(site_ids):
                rows += db.execute(
                    f"SELECT {_SITES} FROM sites WHERE site_id IN ({marks})", part
                ).fetchall()
        sites = (site_from_row(row) for row in rows)  # built outside the lock
        return {site.site_id: site for site in sites}

    def present_device_counts(self, site_ids: Sequence[str] | None = None) -> dict[str, int]:
        query = "SELECT site_id, count(*) FROM devices WHERE present = 1"
        with self._reading() as db:
            if site_ids is None:
                rows = db.execute(f"{query} GROUP BY site_id").fetchall()
                return {site_id: count for site_id, count in rows}
            counts: dict[str, int] = {}
            for part, marks in _id_parts(site_ids):
                rows = db.execute(
                    f"{query} AND site_id IN ({marks}) GROUP BY site_id", part
                ).fetchall()
                counts.update({site_id: count for site_id, count in rows})
            return counts

    def site_by_remote_id(self, remote_site_id: str) -> SiteRecord | None:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {_SITES} FROM sites WHERE remote_site_id = ?",
                (remote_site_id,),
            ).fetchone()
        return None if row is None else site_from_row(row)

    def update_site(self, site_id: str, /, **changes: object) -> SiteRecord:
        for name in sorted(changes):
            if name not in SITE_FIELDS_CHANGEABLE:
                raise InvalidRecord(
                    name,
                    "is not a site field that can be changed "
                    f"(those are: {', '.join(sorted(SITE_FIELDS_CHANGEABLE))})",
                )
        with self._writing() as db:
            before = _site_in(db, site_id)
            after = dataclasses.replace(before, **changes)  # type: ignore[arg-type]
            if after == before:
                return before
            after = dataclasses.replace(after, updated_ns=self._clock.now_ns())
            _refuse_taken_site_keys(db, after)
            params = site_params(after)
            del params["created_ns"], params["last_seen_ns"]
            db.execute(_SITE_UPDATE, params)
        return after

    def site_password(self, site_id: str) -> str | None:
        with self._reading() as db:
            row = db.execute(
                "SELECT password_sealed FROM sites WHERE site_id = ?", (site_id,)
            ).fetchone()
        if row is None:
            raise NotFound("site", site_id)
        sealed: bytes | None = row["password_sealed"]
        if sealed is None:
            return None
        plain = self._secret_box.open(sealed, context=_password_context(site_id))
        return plain.decode("utf-8")

    def set_site_password(self, site_id: str, password: str | None) -> None:
        if password is not None:
            _check_password(password)
        sealed = self._seal_password(site_id, password)
        with self._writing() as db:
            cursor = db.execute(
                "UPDATE sites SET password_sealed = ?, updated_ns = ? WHERE site_id = ?",
                (sealed, self._clock.now_ns(), site_id),
            )
            if cursor.rowcount == 0:
                raise NotFound("site", site_id)

    def remove_site(self, site_id: str) -> list[DeviceRecord]:
        with self._writing() as db:
            _site_in(db, site_id)
            removed = _devices_in(db, site_id, present_only=False)
            db.execute("DELETE FROM sites WHERE site_id = ?", (site_id,))
        return removed

    def mark_seen(self, site_id: str, at_ns: int) -> None:
        check.instant("at_ns", at_ns)
        with self._writing() as db:
            cursor = db.execute(
                "UPDATE sites SET last_seen_ns = max(coalesce(last_seen_ns, 0), ?) "
                "WHERE site_id = ?",
                (at_ns, site_id),
            )
            if cursor.rowcount == 0:
                raise NotFound("site", site_id)

    # --- devices -------------------------------------------------------------------------

    def devices(
        self, site_id: str | None = None, *, present_only: bool = False
    ) -> list[DeviceRecord]:
        with self._reading() as db:
            if site_id is not None:
                _site_must_exist(db, site_id)
            rows = _device_rows_in(db, site_id, present_only=present_only)
        # Built outside the lock: for a long list, the records take longer than the query.
        return [device_from_row(row) for row in rows]

    def devices_page(
        self,
        *,
        site_id: str | None = None,
        present_only: bool = False,
        after: str | None,
        limit: int,
    ) -> DevicePage:
        check.integer("limit", limit, low=1)
        conditions: list[str] = []
        params: list[object] = []
        with self._reading() as db:
            if site_id is not None:
                _site_must_exist(db, site_id)
                conditions.append("site_id = ?")
                params.append(site_id)
            if present_only:
                conditions.append("present = 1")
            if after is not None:
                anchor = db.execute(
                    "SELECT site_id, rowid FROM devices WHERE device_id = ?", (after,)
                ).fetchone()
                if anchor is None or (site_id is not None and anchor[0] != site_id):
                    raise NotFound("device", after)
                # Keyset: the list's order is (site_id, rowid), which devices_by_site holds.
                conditions.append("(site_id, rowid) > (?, ?)")
                params.extend(anchor)
            where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            rows = db.execute(
                f"SELECT {_DEVICES} FROM devices {where} ORDER BY site_id, rowid LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        # The row after the page tells only that there is more: no record for it.
        next_device_id = rows[limit]["device_id"] if len(rows) > limit else None
        return DevicePage(tuple(device_from_row(row) for row in rows[:limit]), next_device_id)

    def device(self, device_id: str) -> DeviceRecord:
        with self._reading() as db:
            return _device_in(db, device_id)

    def device_by_remote(self, site_id: str, remote_device_id: str) -> DeviceRecord | None:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {_DEVICES} FROM devices WHERE site_id = ? AND remote_device_id = ?",
                (site_id, remote_device_id),
            ).fetchone()
        return None if row is None else device_from_row(row)

    def update_device(
        self,
        device_id: str,
        *,
        name: str | None = None,
        recording: Recording | None = None,
        live_feed: LiveFeed | None = None,
        central_rule: Mapping[str, object] | None = None,
    ) -> DeviceRecord:
        with self._writing() as db:
            before = _device_in(db, device_id)
            after = dataclasses.replace(
                before,
                name=before.name if name is None else name,
                recording=before.recording if recording is None else recording,
                live_feed=before.live_feed if live_feed is None else live_feed,
                central_rule=before.central_rule if central_rule is None else dict(central_rule),
            )
            if after == before:
                return before
            after = dataclasses.replace(after, updated_ns=self._clock.now_ns())
            _update_device_row(db, after)
        return after

    def apply_hardware(self, site_id: str, discovered: Sequence[NewDevice]) -> HardwareDiff:
        now_ns = self._clock.now_ns()
        with self._writing() as db:
            _site_in(db, site_id)
            existing = _devices_in(db, site_id, present_only=False)
            drawn: set[str] = set()
            diff = reconcile(
                existing,
                discovered,
                site_id=site_id,
                now_ns=now_ns,
                new_device_id=lambda: _unused_id(
                    db, "devices", "device_id", DEVICE_ID_PREFIX, drawn
                ),
            )
            for device in diff.added:
                db.execute(_DEVICE_INSERT, device_params(device))
            for device in records_to_update(diff):
                _update_device_row(db, device)
        return diff

    # --- users and tokens ----------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: Role) -> UserRecord:
        user = UserRecord(username, password_hash, role, False, self._clock.now_ns())
        with self._writing() as db:
            row = db.execute(
                "SELECT username FROM users WHERE lower(username) = lower(?)", (username,)
            ).fetchone()
            if row is not None:
                raise Conflict(f"username {username!r} is taken (by {row['username']!r})")
            db.execute(_USER_INSERT, user_params(user))
        return user

    def user(self, username: str) -> UserRecord | None:
        with self._reading() as db:
            row = db.execute(
                f"SELECT {_USERS} FROM users WHERE username = ?",
                (username,),
            ).fetchone()
        return None if row is None else user_from_row(row)

    def users(self) -> list[UserRecord]:
        with self._reading() as db:
            rows = db.execute(f"SELECT {_USERS} FROM users ORDER BY username").fetchall()
        return [user_from_row(row) for row in rows]

    def set_password(self, username: str, password_hash: str) -> None:
        check.password_hash("password_hash", password_hash)
        self._update_user(username, "password_hash = ?", password_hash)

    def set_role(self, username: str, role: Role) -> None:
        check.one_of("role", role, ROLES)
        self._update_user(username, "role = ?", role)

    def disable_user(self, username: str) -> None:
        with self._writing() as db:
            _user_must_exist(db, username)
            db.execute("UPDATE users SET disabled = 1 WHERE username = ?", (username,))
            db.execute("DELETE FROM tokens WHERE username = ?", (username,))

    def enable_user(self, username: str) -> None:
        self._update_user(username, "disabled = ?", 0)

    def store_token(
        self, digest: bytes, username: str, issued_ns: int, expires_ns: int
    ) -> TokenRecord:
        token = TokenRecord(digest, username, issued_ns, expires_ns)
        with self._writing() as db:
            user = _user_must_exist(db, username)
            if user.disabled:
                raise Conflict(f"user {username!r} is disabled and cannot get a token")
            if db.execute("SELECT 1 FROM tokens WHERE digest = ?", (digest,)).fetchone():
                raise Conflict("a token with this digest is already stored")
            db.execute(_TOKEN_INSERT, token_params(token))
        return token

    def token(self, digest: bytes) -> TokenRecord | None:
        check.digest("digest", digest)
        with self._reading() as db:
            row = db.execute(
                f"SELECT {_TOKENS} FROM tokens t JOIN users u ON u.username = t.username "
                "WHERE t.digest = ? AND u.disabled = 0 AND t.expires_ns > ?",
                (digest, self._clock.now_ns()),
            ).fetchone()
        return None if row is None else token_from_row(row)

    def revoke_token(self, digest: bytes) -> bool:
        check.digest("digest", digest)
        with self._writing() as db:
            return db.execute("DELETE FROM tokens WHERE digest = ?", (digest,)).rowcount > 0

    def revoke_user_tokens(self, username: str) -> int:
        with self._writing() as db:
            return db.execute("DELETE FROM tokens WHERE username = ?", (username,)).rowcount

    def purge_expired_tokens(self, now_ns: int) -> int:
        check.instant("now_ns", now_ns)
        with self._writing() as db:
            return db.execute("DELETE FROM tokens WHERE expires_ns <= ?", (now_ns,)).rowcount

    # --- enrolment -----------------------------------------------------------------------

    def add_enrolment_token(self, digest: bytes, label: str, expires_ns: int) -> EnrolmentToken:
        now_ns = self._clock.now_ns()
        token = EnrolmentToken(digest, label, now_ns, expires_ns, None, None)
        if expires_ns <= now_ns:
            raise InvalidRecord("expires_ns", "an enrolment token must expire in the future")
        with self._writing() as db:
            if db.execute("SELECT 1 FROM enrolment_tokens WHERE digest = ?", (digest,)).fetchone():
                raise Conflict("an enrolment token with this digest is already stored")
            db.execute(_ENROLMENT_INSERT, enrolment_params(token))
        return token

    def enrolment_token(self, digest: bytes) -> EnrolmentToken | None:
        check.digest("digest", digest)
        with self._reading() as db:
            return _enrolment_in(db, digest)

    def enrolment_tokens(self) -> list[EnrolmentToken]:
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {_ENROLMENTS} FROM enrolment_tokens ORDER BY created_ns DESC, rowid DESC"
            ).fetchall()
        return [enrolment_from_row(row) for row in rows]

    def use_enrolment_token(self, digest: bytes, site_id: str, now_ns: int) -> EnrolmentToken:
        check.instant("now_ns", now_ns)
        with self._writing() as db:
            _site_in(db, site_id)
            return _use_enrolment(db, digest, site_id, now_ns)

    # --- notifications -------------------------------------------------------------------

    def raise_notification(
        self, kind: str, site_id: str | None, device_id: str | None, message: str, at_ns: int
    ) -> Notification:
        Notification(0, kind, site_id, device_id, message, at_ns, None)  # checks the fields
        with self._writing() as db:
            _check_notification_subject(db, site_id, device_id)
            row = db.execute(
                f"SELECT {_NOTIFICATIONS} FROM notifications WHERE {_OPEN_NOTIFICATION}",
                (kind, site_id or "", device_id or ""),
            ).fetchone()
            if row is not None:
                return notification_from_row(row)
            cursor = db.execute(
                "INSERT INTO notifications (kind, site_id, device_id, message, raised_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (kind, site_id, device_id, message, at_ns),
            )
            notification_id = cursor.lastrowid
        assert notification_id is not None  # an INSERT into a rowid table sets it
        return Notification(notification_id, kind, site_id, device_id, message, at_ns, None)

    def clear_notification(
        self, kind: str, site_id: str | None, device_id: str | None, at_ns: int
    ) -> bool:
        check.instant("at_ns", at_ns)
        with self._writing() as db:
            cursor = db.execute(
                # Never cleared before it was raised, whatever the caller's clock says.
                "UPDATE notifications SET cleared_ns = max(raised_ns, ?) "
                f"WHERE {_OPEN_NOTIFICATION}",
                (at_ns, kind, site_id or "", device_id or ""),
            )
            return cursor.rowcount > 0

    def notifications(
        self, *, open_only: bool = True, limit: int = DEFAULT_NOTIFICATION_LIMIT
    ) -> list[Notification]:
        check.integer("limit", limit, low=1, high=MAX_NOTIFICATION_LIMIT)
        where = "WHERE cleared_ns IS NULL" if open_only else ""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {_NOTIFICATIONS} FROM notifications {where} "
                "ORDER BY raised_ns DESC, notification_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [notification_from_row(row) for row in rows]

    def purge_cleared_notifications(self, before_ns: int) -> int:
        check.instant("before_ns", before_ns)
        with self._writing() as db:
            return db.execute(
                "DELETE FROM notifications WHERE cleared_ns IS NOT NULL AND cleared_ns < ?",
                (before_ns,),
            ).rowcount

    # --- settings ------------------------------------------------------------------------

    def setting(self, key: str) -> object | None:
        check.text("key", key, max_chars=check.MAX_SETTING_KEY_CHARS)
        with self._reading() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_setting(self, key: str, value: object) -> None:
        check.text("key", key, max_chars=check.MAX_SETTING_KEY_CHARS)
        encoded = (
            None
            if value is None
            else check.json_text(f"setting {key}", value, max_bytes=check.MAX_SETTING_BYTES)
        )
        with self._writing() as db:
            if encoded is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, encoded),
                )

    # --- retrieval jobs (the SQL is in sqlite_retrievals.py) ------------------------------

    def add_retrieval_job(self, new: NewRetrievalJob) -> RetrievalJob:
        with self._writing() as db:
            return retrievals.insert_job(db, new, now_ns=self._clock.now_ns())

    def retrieval_job(self, job_id: str) -> RetrievalJob:
        with self._reading() as db:
            return retrievals.job_in(db, job_id)

    def retrieval_jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        site_id: str | None = None,
        after: str | None = None,
        limit: int = DEFAULT_RETRIEVAL_JOB_LIMIT,
    ) -> list[RetrievalJob]:
        with self._reading() as db:
            return retrievals.jobs_page(
                db,
                states=states,
                site_id=site_id,
                after=after,
                limit=limit,
                max_limit=MAX_RETRIEVAL_JOB_LIMIT,
            )

    def unfinished_retrieval_jobs(
        self, *, site_id: str | None = None, device_id: str | None = None
    ) -> list[RetrievalJob]:
        with self._reading() as db:
            return retrievals.unfinished_jobs(db, site_id=site_id, device_id=device_id)

    def set_retrieval_job_state(
        self,
        job_id: str,
        state: JobState,
        *,
        reason: str | None = None,
        at_risk: bool | None = None,
    ) -> RetrievalJob:
        with self._writing() as db:
            return retrievals.change_job_state(
                db, job_id, state, reason=reason, at_risk=at_risk, now_ns=self._clock.now_ns()
            )

    def advance_retrieval_stream(
        self,
        job_id: str,
        device_id: str,
        stream: str,
        *,
        cursor_seq: int,
        cursor_hash: bytes,
        chunks_added: int,
        bytes_added: int,
        covered_until_ns: int,
    ) -> JobStream:
        with self._writing() as db:
            return retrievals.advance_stream(
                db,
                job_id,
                device_id,
                stream,
                cursor_seq=cursor_seq,
                cursor_hash=cursor_hash,
                chunks_added=chunks_added,
                bytes_added=bytes_added,
                covered_until_ns=covered_until_ns,
                now_ns=self._clock.now_ns(),
            )

    def set_retrieval_stream_state(
        self,
        job_id: str,
        device_id: str,
        stream: str,
        state: JobState,
        *,
        failure: str | None = None,
        rejected_once: bool | None = None,
    ) -> JobStream:
        with self._writing() as db:
            return retrievals.change_stream_state(
                db,
                job_id,
                device_id,
                stream,
                state,
                failure=failure,
                rejected_once=rejected_once,
                now_ns=self._clock.now_ns(),
            )

    def set_retrieval_job_holds(self, job_id: str, hold_ids: Sequence[int]) -> RetrievalJob:
        with self._writing() as db:
            return retrievals.set_job_holds(db, job_id, hold_ids, now_ns=self._clock.now_ns())

    # --- retrieval rules (the SQL is in sqlite_retrieval_rules.py) ------------------------

    def add_retrieval_rule(self, new: NewRetrievalRule) -> RetrievalRule:
        with self._writing() as db:
            return retrieval_rules.insert_rule(db, new, now_ns=self._clock.now_ns())

    def retrieval_rule(self, rule_id: str) -> RetrievalRule:
        with self._reading() as db:
            return retrieval_rules.rule_in(db, rule_id)

    def retrieval_rules(self, site_id: str | None = None) -> list[RetrievalRule]:
        with self._reading() as db:
            return retrieval_rules.rules_in(db, site_id)

    def update_retrieval_rule(self, rule_id: str, /, **changes: object) -> RetrievalRule:
        with self._writing() as db:
            return retrieval_rules.update_rule(db, rule_id, changes, now_ns=self._clock.now_ns())

    def remove_retrieval_rule(self, rule_id: str) -> RetrievalRule:
        with self._writing() as db:
            return retrieval_rules.delete_rule(db, rule_id)

    def set_rule_last_queued(self, rule_id: str, end_ns: int) -> RetrievalRule:
        with self._writing() as db:
            return retrieval_rules.set_last_queued(db, rule_id, end_ns, now_ns=self._clock.now_ns())

    # --- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._refuse_if_closed()
            try:
                yield self._connection
            except sqlite3.Error as exc:
                raise CatalogError(f"catalog {self._path}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls it back and propagates."""
        with self._lock:
            self._refuse_if_closed()
            db = self._connection
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise Conflict(f"the catalog refused the change: {exc}") from exc
                if isinstance(exc, sqlite3.Error):
                    raise CatalogError(f"catalog {self._path}: {exc}") from exc
                raise

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise CatalogError(f"catalog {self._path} is closed")

    def _seal_password(self, site_id: str, password: str | None) -> bytes | None:
        if password is None:
            return None
        return self._secret_box.seal(password.encode("utf-8"), context=_password_context(site_id))

    def _update_user(self, username: str, assignment: str, value: object) -> None:
        with self._writing() as db:
            cursor = db.execute(
                f"UPDATE users SET {assignment} WHERE username = ?",
                (value, username),
            )
            if cursor.rowcount == 0:
                raise NotFound("user", username)


# --- connection set-up -------------------------------------------------------------------


def _configure(connection: sqlite3.Connection, path: Path) -> None:
    connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SchemaError(f"{path}: the catalog needs WAL journaling, SQLite gave {mode!r}")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    # Schema objects (views, triggers) cannot call functions with side effects.
    connection.execute("PRAGMA trusted_schema = OFF")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Apply the missing migrations, each in one transaction with its version bump."""
    while True:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"{path} has catalog schema version {version}, newer than this program "
                    f"knows ({SCHEMA_VERSION}); run a newer version of the central"
                )
            if version == SCHEMA_VERSION:
                connection.execute("COMMIT")
                return
            for statement in MIGRATIONS[version]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise


# --- queries used inside transactions ----------------------------------------------------


def _unused_id(
    db: sqlite3.Connection, table: str, column: str, prefix: str, drawn: set[str]
) -> str:
    """A new random id not in `table` and not in `drawn` (ids drawn but not yet stored)."""
    for _ in range(_ID_ATTEMPTS):
        candidate = new_id(prefix)
        taken = db.execute(
            f"SELECT 1 FROM {table} WHERE {column} = ?",
            (candidate,),
        ).fetchone()
        if taken is None and candidate not in drawn:
            drawn.add(candidate)
            return candidate
    raise CatalogError(f"no unused {table} id after {_ID_ATTEMPTS} random draws")


def _id_parts(ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """The distinct `ids` in parts small enough for one statement, each with its `?` marks."""
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        part = wanted[start : start + _IDS_PER_QUERY]
        yield part, ",".join("?" * len(part))


def _site_in(db: sqlite3.Connection, site_id: str) -> SiteRecord:
    row = db.execute(
        f"SELECT {_SITES} FROM sites WHERE site_id = ?",
        (site_id,),
    ).fetchone()
    if row is None:
        raise NotFound("site", site_id)
    return site_from_row(row)


def _site_must_exist(db: sqlite3.Connection, site_id: str) -> None:
    """`NotFound` unless the site exists (without building its record)."""
    if db.execute("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)).fetchone() is None:
        raise NotFound("site", site_id)


def _device_in(db: sqlite3.Connection, device_id: str) -> DeviceRecord:
    row = db.execute(
        f"SELECT {_DEVICES} FROM devices WHERE device_id = ?",
        (device_id,),
    ).fetchone()
    if row is None:
        raise NotFound("device", device_id)
    return device_from_row(row)


def _devices_in(
    db: sqlite3.Connection, site_id: str | None, *, present_only: bool
) -> list[DeviceRecord]:
    return [device_from_row(row) for row in _device_rows_in(db, site_id, present_only=present_only)]


def _device_rows_in(
    db: sqlite3.Connection, site_id: str | None, *, present_only: bool
) -> list[Any]:
    conditions: list[str] = []
    params: list[object] = []
    if site_id is not None:
        conditions.append("site_id = ?")
        params.append(site_id)
    if present_only:
        conditions.append("present = 1")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return db.execute(
        f"SELECT {_DEVICES} FROM devices {where} ORDER BY site_id, rowid",
        params,
    ).fetchall()


def _update_device_row(db: sqlite3.Connection, device: DeviceRecord) -> None:
    params = device_params(device)
    del params["site_id"], params["remote_device_id"], params["created_ns"]
    db.execute(_DEVICE_UPDATE, params)


def _refuse_taken_site_keys(db: sqlite3.Connection, site: SiteRecord) -> None:
    """`Conflict` naming the other site when `site`'s unique keys are taken."""
    if site.remote_site_id is not None:
        row = db.execute(
            "SELECT site_id, name FROM sites WHERE remote_site_id = ? AND site_id != ?",
            (site.remote_site_id, site.site_id),
        ).fetchone()
        if row is not None:
            raise Conflict(
                f"remote_site_id {site.remote_site_id!r} is already the site "
                f"{row['site_id']} ({row['name']!r})"
            )
    if site.dial == "central":
        row = db.execute(
            "SELECT site_id, name FROM sites "
            "WHERE dial = 'central' AND address = ? AND port = ? AND site_id != ?",
            (site.address, site.port, site.site_id),
        ).fetchone()
        if row is not None:
            raise Conflict(
                f"address {site.address} port {site.port} is already the site "
                f"{row['site_id']} ({row['name']!r})"
            )


def _user_must_exist(db: sqlite3.Connection, username: str) -> UserRecord:
    row = db.execute(
        f"SELECT {_USERS} FROM users WHERE username = ?",
        (username,),
    ).fetchone()
    if row is None:
        raise NotFound("user", username)
    return user_from_row(row)


def _enrolment_in(db: sqlite3.Connection, digest: bytes) -> EnrolmentToken | None:
    row = db.execute(
        f"SELECT {_ENROLMENTS} FROM enrolment_tokens WHERE digest = ?",
        (digest,),
    ).fetchone()
    return None if row is None else enrolment_from_row(row)


def _use_enrolment(
    db: sqlite3.Connection, digest: bytes, site_id: str, now_ns: int
) -> EnrolmentToken:
    check.digest("enrolment_digest", digest)
    token = _enrolment_in(db, digest)
    if token is None:
        raise NotFound("enrolment token", digest.hex())
    if token.used_by_site_id is not None:
        raise Conflict(
            f"enrolment token {token.label!r} was already used (by site {token.used_by_site_id})"
        )
    if now_ns >= token.expires_ns:
        raise Conflict(f"enrolment token {token.label!r} has expired")
    db.execute(
        "UPDATE enrolment_tokens SET used_by_site_id = ?, used_ns = ? WHERE digest = ?",
        (site_id, now_ns, digest),
    )
    return dataclasses.replace(token, used_by_site_id=site_id, used_ns=now_ns)


def _check_notification_subject(
    db: sqlite3.Connection, site_id: str | None, device_id: str | None
) -> None:
    if site_id is not None:
        _site_in(db, site_id)
    if device_id is not None:
        if site_id is None:
            raise InvalidRecord("site_id", "a notification about a device names its site")
        device = _device_in(db, device_id)
        if device.site_id != site_id:
            raise InvalidRecord("device_id", f"device {device_id} is not a device of {site_id}")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise InvalidRecord("password", "must be a non-empty string (None: no password)")
    if len(password) > check.MAX_PASSWORD_CHARS:
        raise InvalidRecord("password", f"must be at most {check.MAX_PASSWORD_CHARS} characters")


def _password_context(site_id: str) -> str:
    return f"site {site_id} password"
