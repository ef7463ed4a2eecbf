"""The catalog's SQLite schema, as migrations applied in order.

Rule: `MIGRATIONS[i]` takes a database from version `i` to `i + 1` (`PRAGMA user_version`).
A migration that has been released is never edited; a change is a new migration appended
at the end. Each migration runs in one transaction together with its version bump, so a
crash leaves the database at the old version or the new one, never between.

Tables are STRICT (SQLite checks column types). JSON columns hold compact JSON text.
Instants are INTEGER nanoseconds (UTC), booleans INTEGER 0/1. See docs/design/catalog.md.
"""

from __future__ import annotations

Migration = tuple[str, ...]

_V1: Migration = (
    """
    CREATE TABLE sites (
        site_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        dial TEXT NOT NULL CHECK (dial IN ('central', 'site')),
        address TEXT,
        port INTEGER,
        scheme TEXT NOT NULL CHECK (scheme IN ('https', 'http')),
        username TEXT,
        password_sealed BLOB,
        fingerprint TEXT,
        remote_site_id TEXT,
        product TEXT,
        version TEXT,
        public_key BLOB,
        time_zone TEXT NOT NULL,
        max_bandwidth_bps INTEGER,
        window_start TEXT,
        window_end TEXT,
        parallel_devices INTEGER NOT NULL,
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        last_seen_ns INTEGER,
        CHECK (dial = 'site' OR (address IS NOT NULL AND port IS NOT NULL))
    ) STRICT
    """,
    "CREATE UNIQUE INDEX sites_by_remote_id ON sites (remote_site_id)",
    # Two dial-out sites at one endpoint would be one site added twice.
    "CREATE UNIQUE INDEX sites_dial_out_endpoint ON sites (address, port) WHERE dial = 'central'",
    """
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
        remote_device_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        original_name TEXT NOT NULL,
        streams TEXT NOT NULL,
        present INTEGER NOT NULL CHECK (present IN (0, 1)),
        recording TEXT NOT NULL,
        live_feed TEXT NOT NULL,
        central_rule TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE UNIQUE INDEX devices_by_remote_id ON devices (site_id, remote_device_id)",
    # Lists a site's devices (or all, site by site) in the order they were first seen
    # (rowid order) without a sort, and serves the foreign key's cascade.
    "CREATE INDEX devices_by_site ON devices (site_id)",
    """
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        disabled INTEGER NOT NULL CHECK (disabled IN (0, 1)),
        created_ns INTEGER NOT NULL
    ) STRICT
    """,
    # "Admin" beside "admin" would be two accounts that look like one.
    "CREATE UNIQUE INDEX users_by_folded_name ON users (lower(username))",
    """
    CREATE TABLE tokens (
        digest BLOB PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        issued_ns INTEGER NOT NULL,
        expires_ns INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE INDEX tokens_by_expiry ON tokens (expires_ns)",
    "CREATE INDEX tokens_by_user ON tokens (username)",
    # No foreign key to sites: a used token stays used after its site is removed.
    """
    CREATE TABLE enrolment_tokens (
        digest BLOB PRIMARY KEY,
        label TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        expires_ns INTEGER NOT NULL,
        used_by_site_id TEXT,
        used_ns INTEGER
    ) STRICT
    """,
    # AUTOINCREMENT: an id is never reused, even after the newest rows are deleted.
    """
    CREATE TABLE notifications (
        notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        site_id TEXT REFERENCES sites (site_id) ON DELETE CASCADE,
        device_id TEXT REFERENCES devices (device_id) ON DELETE CASCADE,
        message TEXT NOT NULL,
        raised_ns INTEGER NOT NULL,
        cleared_ns INTEGER
    ) STRICT
    """,
    # At most one open notification per (kind, site, device); NULLs folded so they count.
    """
    CREATE UNIQUE INDEX notifications_open ON notifications
        (kind, coalesce(site_id, ''), coalesce(device_id, '')) WHERE cleared_ns IS NULL
    """,
    "CREATE INDEX notifications_by_raised ON notifications (raised_ns)",
    # The open ones, newest first, without walking the cleared history.
    """
    CREATE INDEX notifications_open_by_raised ON notifications (raised_ns)
        WHERE cleared_ns IS NULL
    """,
    "CREATE INDEX notifications_by_device ON notifications (device_id)",
    "CREATE INDEX notifications_by_site ON notifications (site_id)",
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
)

# Retrieval jobs (issue 5): a job per request, a row per device stream with its cursor.
_V2: Migration = (
    # `ordinal`: the job's number in creation order (the largest so far + 1), for listing
    # and paging; a column of its own because VACUUM may renumber rowids.
    """
    CREATE TABLE retrieval_jobs (
        job_id TEXT PRIMARY KEY,
        ordinal INTEGER NOT NULL,
        site_id TEXT NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        quality TEXT NOT NULL CHECK (quality IN ('hq', 'lq')),
        origin TEXT NOT NULL CHECK (origin IN ('user', 'rule', 'reconnect')),
        created_by TEXT,
        rule_id TEXT,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'running', 'stopped', 'completed', 'failed')),
        reason TEXT,
        at_risk INTEGER NOT NULL CHECK (at_risk IN (0, 1)),
        holds TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        started_ns INTEGER,
        finished_ns INTEGER,
        CHECK (end_ns > start_ns),
        CHECK ((origin = 'rule') = (rule_id IS NOT NULL))
    ) STRICT
    """,
    # Every list reads one of these in order, newest first, without a sort: all jobs; the
    # jobs in one state (the engine's start-up asks pending and running); a site's jobs in
    # one state (the site's jobs: one range per state, merged). The last also serves the
    # cascade from sites.
    "CREATE UNIQUE INDEX retrieval_jobs_by_ordinal ON retrieval_jobs (ordinal)",
    "CREATE INDEX retrieval_jobs_by_state ON retrieval_jobs (state, ordinal)",
    "CREATE INDEX retrieval_jobs_by_site_state ON retrieval_jobs (site_id, state, ordinal)",
    """
    CREATE TABLE retrieval_streams (
        job_id TEXT NOT NULL REFERENCES retrieval_jobs (job_id) ON DELETE CASCADE,
        device_id TEXT NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
        stream TEXT NOT NULL,
        position INTEGER NOT NULL,
        cursor_seq INTEGER CHECK (cursor_seq >= 0),
        cursor_hash BLOB CHECK (length(cursor_hash) = 32),
        chunks INTEGER NOT NULL CHECK (chunks >= 0),
        payload_bytes INTEGER NOT NULL CHECK (payload_bytes >= 0),
        covered_until_ns INTEGER,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'running', 'stopped', 'completed', 'failed')),
        failure TEXT,
        rejected_once INTEGER NOT NULL CHECK (rejected_once IN (0, 1)),
        PRIMARY KEY (job_id, device_id, stream),
        CHECK ((cursor_seq IS NULL) = (cursor_hash IS NULL))
    ) STRICT, WITHOUT ROWID
    """,
    # A job's streams in device order; one stream per position.
    "CREATE UNIQUE INDEX retrieval_streams_by_job ON retrieval_streams (job_id, position)",
    # The cascade from devices.
    "CREATE INDEX retrieval_streams_by_device ON retrieval_streams (device_id)",
    # A job whose last stream went (its devices were removed) goes too: no job without
    # streams. When the job itself is deleted first, this finds nothing left to delete.
    """
    CREATE TRIGGER retrieval_jobs_keep_streams AFTER DELETE ON retrieval_streams
    WHEN NOT EXISTS (SELECT 1 FROM retrieval_streams WHERE job_id = old.job_id)
    BEGIN
        DELETE FROM retrieval_jobs WHERE job_id = old.job_id;
    END
    """,
)

# Retrieval rules (issue 5): retrieve around a site's events, or a daily interval.
_V3: Migration = (
    # `device_ids`, `events`, `sources`: JSON arrays of text. `daily` is set exactly for a
    # schedule rule; `last_queued_end_ns` is the end of the last interval it queued.
    """
    CREATE TABLE retrieval_rules (
        rule_id TEXT PRIMARY KEY,
        site_id TEXT NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'schedule')),
        device_ids TEXT NOT NULL,
        quality TEXT NOT NULL CHECK (quality IN ('hq', 'lq')),
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        events TEXT NOT NULL,
        sources TEXT NOT NULL,
        before_s INTEGER NOT NULL CHECK (before_s BETWEEN 0 AND 3600),
        after_s INTEGER NOT NULL CHECK (after_s BETWEEN 0 AND 3600),
        daily TEXT,
        last_queued_end_ns INTEGER,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL,
        CHECK ((kind = 'schedule') = (daily IS NOT NULL)),
        CHECK (kind = 'schedule' OR last_queued_end_ns IS NULL)
    ) STRICT
    """,
    # A site's rules (and all rules, site by site) in the order they were made; serves the
    # cascade from sites.
    "CREATE INDEX retrieval_rules_by_site ON retrieval_rules (site_id, created_ns, rule_id)",
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes and understands."""
