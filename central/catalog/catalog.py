"""The catalog interface: everything the central keeps besides media.

Implementations: `SqliteCatalog` (embedded, one file); a PostgreSQL one can follow for a
central that outgrows one machine. Callers depend on this protocol only.

Conventions, for every implementation:

- Calls are synchronous, short transactions, safe from any thread; async callers run them
  in a worker thread. Each write is durable when the call returns.
- A lookup by an id the catalog issued (`site`, `device`) raises `NotFound`; a lookup by a
  key that arrives from outside (`site_by_remote_id`, `device_by_remote`, `user`, `token`,
  `enrolment_token`) returns None, because there "unknown" is an ordinary answer.
- Bad values raise `InvalidRecord` naming the field; a taken unique value or a used token
  raises `Conflict` saying which; nothing is half-written on any error.
- Tokens are stored by digest only (the caller hashes the bearer token).
- Instants are UTC nanoseconds. The catalog stamps `created_ns`/`updated_ns` from its
  clock; instants that describe an event (`at_ns`, `issued_ns`) come from the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from central.catalog.records import (
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
from central.retrieval.job_records import JobState, JobStream, NewRetrievalJob, RetrievalJob
from central.retrieval.rule_records import NewRetrievalRule, RetrievalRule

DEFAULT_NOTIFICATION_LIMIT = 100
MAX_NOTIFICATION_LIMIT = 10_000
DEFAULT_RETRIEVAL_JOB_LIMIT = 100
MAX_RETRIEVAL_JOB_LIMIT = 1000


class Catalog(Protocol):
    """Sites, devices, users, tokens, enrolment, notifications, settings, retrieval jobs and
    rules."""

    # --- sites ---------------------------------------------------------------------------

    def add_site(
        self,
        site: NewSite,
        password: str | None,
        devices: Sequence[NewDevice] = (),
        *,
        enrolment_digest: bytes | None = None,
    ) -> tuple[SiteRecord, list[DeviceRecord]]:
        """Add a site with its devices in one transaction; with `enrolment_digest`, also
        use that enrolment token for it (Conflict when used or expired, and then nothing is
        added). `Conflict` when its remote id or its address and port are taken."""
        ...

    def site(self, site_id: str) -> SiteRecord:
        """The site; `NotFound` if there is none."""
        ...

    def sites(self) -> list[SiteRecord]:
        """Every site, in the order they were added."""
        ...

    def sites_page(self, *, after: str | None, limit: int) -> SitePage:
        """At most `limit` sites in the order of `sites`, from the one after the site
        `after` (from the first when None), with the id of the site after them;
        `NotFound` when `after` is no site. The cost follows `limit`, not the number of
        sites."""
        ...

    def sites_by_id(self, site_ids: Sequence[str]) -> dict[str, SiteRecord]:
        """The sites among `site_ids` that exist, by id."""
        ...

    def present_device_counts(self, site_ids: Sequence[str] | None = None) -> dict[str, int]:
        """How many present devices each site has (of `site_ids`, or of every site); a site
        without any is absent from the answer."""
        ...

    def site_by_remote_id(self, remote_site_id: str) -> SiteRecord | None:
        """The site with this identity of its own, or None."""
        ...

    def update_site(self, site_id: str, /, **changes: object) -> SiteRecord:
        """Change fields named in `SITE_FIELDS_CHANGEABLE`; the site as it is afterwards.
        `InvalidRecord` names an unknown field or a bad value; `Conflict` a taken one."""
        ...

    def site_password(self, site_id: str) -> str | None:
        """The site's password in clear (decrypted), None when it has none."""
        ...

    def set_site_password(self, site_id: str, password: str | None) -> None:
        """Replace (None: remove) the site's password, stored encrypted."""
        ...

    def remove_site(self, site_id: str) -> list[DeviceRecord]:
        """Remove the site and its devices' rows; returns those devices, so the caller can
        deal with their media (the catalog does not touch the media store)."""
        ...

    def mark_seen(self, site_id: str, at_ns: int) -> None:
        """The site was in contact at `at_ns`; `last_seen_ns` never moves backwards."""
        ...

    # --- devices -------------------------------------------------------------------------

    def devices(
        self, site_id: str | None = None, *, present_only: bool = False
    ) -> list[DeviceRecord]:
        """Devices of one site (or of all sites, site by site), each site's in the order
        they were first seen. `NotFound` for an unknown `site_id`."""
        ...

    def devices_page(
        self,
        *,
        site_id: str | None = None,
        present_only: bool = False,
        after: str | None,
        limit: int,
    ) -> DevicePage:
        """At most `limit` devices in the order of `devices`, from the one after the device
        `after` (from the first when None), with the id of the device after them.
        `NotFound` for an unknown `site_id`, or when `after` is no device of that list. The
        cost follows `limit`, not the number of devices."""
        ...

    def device(self, device_id: str) -> DeviceRecord:
        """The device; `NotFound` if there is none."""
        ...

    def device_by_remote(self, site_id: str, remote_device_id: str) -> DeviceRecord | None:
        """The device the site calls `remote_device_id`, or None."""
        ...

    def update_device(
        self,
        device_id: str,
        *,
        name: str | None = None,
        recording: Recording | None = None,
        live_feed: LiveFeed | None = None,
        central_rule: Mapping[str, object] | None = None,
    ) -> DeviceRecord:
        """Change the central's settings of a device (None: unchanged); the new record."""
        ...

    def apply_hardware(self, site_id: str, discovered: Sequence[NewDevice]) -> HardwareDiff:
        """Reconcile the site's devices with the list it reports now, in one transaction
        (see `central/catalog/hardware.py` for the rules)."""
        ...

    # --- users and tokens ----------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: Role) -> UserRecord:
        """A new enabled user; `Conflict` when the name (ignoring case) is taken."""
        ...

    def user(self, username: str) -> UserRecord | None: ...

    def users(self) -> list[UserRecord]:
        """Every user, by name."""
        ...

    def set_password(self, username: str, password_hash: str) -> None:
        """Replace the user's hash. Sessions stay; see `revoke_user_tokens`."""
        ...

    def set_role(self, username: str, role: Role) -> None: ...

    def disable_user(self, username: str) -> None:
        """Disable the user and revoke all their tokens at once."""
        ...

    def enable_user(self, username: str) -> None: ...

    def store_token(
        self, digest: bytes, username: str, issued_ns: int, expires_ns: int
    ) -> TokenRecord:
        """Keep a new session's token digest; `Conflict` for a disabled user or a digest
        already stored, `NotFound` for an unknown user."""
        ...

    def token(self, digest: bytes) -> TokenRecord | None:
        """The session, or None when unknown, expired (by the catalog's clock), or its user
        is disabled."""
        ...

    def revoke_token(self, digest: bytes) -> bool:
        """End a session; False when there was none."""
        ...

    def revoke_user_tokens(self, username: str) -> int:
        """End all sessions of a user (after a password change); how many there were."""
        ...

    def purge_expired_tokens(self, now_ns: int) -> int:
        """Delete tokens that expired at or before `now_ns`; how many."""
        ...

    # --- enrolment -----------------------------------------------------------------------

    def add_enrolment_token(self, digest: bytes, label: str, expires_ns: int) -> EnrolmentToken: ...

    def enrolment_token(self, digest: bytes) -> EnrolmentToken | None: ...

    def enrolment_tokens(self) -> list[EnrolmentToken]:
        """Every enrolment token, newest first."""
        ...

    def use_enrolment_token(self, digest: bytes, site_id: str, now_ns: int) -> EnrolmentToken:
        """Mark the token used by the site. `NotFound` for an unknown token or site;
        `Conflict` when it was used already (single use) or has expired."""
        ...

    # --- notifications -------------------------------------------------------------------

    def raise_notification(
        self, kind: str, site_id: str | None, device_id: str | None, message: str, at_ns: int
    ) -> Notification:
        """Open a notification; if one of this kind is open for this site and device, that
        one is returned unchanged (raising is idempotent). `site_id` None: the central's."""
        ...

    def clear_notification(
        self, kind: str, site_id: str | None, device_id: str | None, at_ns: int
    ) -> bool:
        """Close the open notification of this kind for this site and device; False when
        none was open."""
        ...

    def notifications(
        self, *, open_only: bool = True, limit: int = DEFAULT_NOTIFICATION_LIMIT
    ) -> list[Notification]:
        """The newest notifications first, at most `limit`."""
        ...

    def purge_cleared_notifications(self, before_ns: int) -> int:
        """Delete notifications cleared before `before_ns`; how many."""
        ...

    # --- settings ------------------------------------------------------------------------

    def setting(self, key: str) -> object | None:
        """The JSON value stored under `key`, or None."""
        ...

    def set_setting(self, key: str, value: object) -> None:
        """Store a JSON value under `key` (None removes it)."""
        ...

    def close(self) -> None:
        """Release the database; later calls raise `CatalogError`. Idempotent."""
        ...

    # --- retrieval jobs ------------------------------------------------------------------
    # Jobs are history: none is ever removed, except with its site (or all its devices).
    # State changes follow `central/retrieval/job_state.py`; a change the rules refuse
    # raises its `JobTransitionError`, which is a `Conflict`.

    def add_retrieval_job(self, new: NewRetrievalJob) -> RetrievalJob:
        """Store a pending job with an empty stream per device, in one transaction.
        `NotFound` for an unknown site; `InvalidRecord` naming a device that does not
        exist, is of another site, or has no stream of the job's quality."""
        ...

    def retrieval_job(self, job_id: str) -> RetrievalJob:
        """The job with its streams; `NotFound` if there is none."""
        ...

    def retrieval_jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        site_id: str | None = None,
        after: str | None = None,
        limit: int = DEFAULT_RETRIEVAL_JOB_LIMIT,
    ) -> list[RetrievalJob]:
        """At most `limit` jobs in `states` (None: any) of `site_id` (None: any site),
        newest first, from the one after the job `after` (from the newest when None; it may
        be a job outside the filter). `NotFound` for an unknown site or `after`. The cost
        follows `limit`, not the number of jobs."""
        ...

    def unfinished_retrieval_jobs(
        self, *, site_id: str | None = None, device_id: str | None = None
    ) -> list[RetrievalJob]:
        """The pending and running jobs, oldest first: every one (what to resume at
        start-up); with `site_id`, the site's; with `device_id`, those with a stream of the
        device (both: the device's if it is of that site, else none). `NotFound` for an
        unknown site or device. A site's or a device's costs what its site has unfinished,
        not what every site has."""
        ...

    def set_retrieval_job_state(
        self,
        job_id: str,
        state: JobState,
        *,
        reason: str | None = None,
        at_risk: bool | None = None,
    ) -> RetrievalJob:
        """Move the job to `state` with `reason` (None: none) and `at_risk` (None:
        unchanged); the job afterwards. Entering running stamps `started_ns` (the first
        time), a final state `finished_ns`, from the catalog's clock. A job stopped or
        failed stops its unfinished streams; `Conflict` for completing a job whose streams
        have not all finished."""
        ...

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
        """After the central committed chunks of the stream up to `cursor_seq` (whose hash
        is `cursor_hash`), move the cursor there and add to the counters; durable when it
        returns. The exact repeat of the latest advance changes nothing. `InvalidRecord` for
        a cursor that would go backwards, another hash at the same seq, or more chunks than
        seqs passed; `Conflict` when the stream completed or failed."""
        ...

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
        """Move one stream to `state` (`failure` given exactly for failed) and set
        `rejected_once` (None: unchanged); the stream afterwards."""
        ...

    def set_retrieval_job_holds(self, job_id: str, hold_ids: Sequence[int]) -> RetrievalJob:
        """Record the holds placed at the site for the job (empty: all released)."""
        ...

    # --- retrieval rules -----------------------------------------------------------------
    # A rule's devices (and sources) are devices of its site; removing the site removes its
    # rules. Jobs a rule made stay when the rule goes (they are history).

    def add_retrieval_rule(self, new: NewRetrievalRule) -> RetrievalRule:
        """Store a new rule. `NotFound` for an unknown site; `InvalidRecord` naming a device
        (of `device_ids` or `sources`) that does not exist or is of another site, or one of
        `device_ids` without a stream of the rule's quality."""
        ...

    def retrieval_rule(self, rule_id: str) -> RetrievalRule:
        """The rule; `NotFound` if there is none."""
        ...

    def retrieval_rules(self, site_id: str | None = None) -> list[RetrievalRule]:
        """The rules of `site_id` (None: of every site, site by site), each site's in the
        order they were made. `NotFound` for an unknown site."""
        ...

    def update_retrieval_rule(self, rule_id: str, /, **changes: object) -> RetrievalRule:
        """Change fields named in `RULE_FIELDS_CHANGEABLE` (name, enabled, device_ids,
        events, sources, before_s, after_s, daily, quality); the rule afterwards, its
        devices checked as in `add_retrieval_rule`. `InvalidRecord` names an unknown field
        or a bad value."""
        ...

    def remove_retrieval_rule(self, rule_id: str) -> RetrievalRule:
        """Remove the rule; the rule as it was. `NotFound` if there is none."""
        ...

    def set_rule_last_queued(self, rule_id: str, end_ns: int) -> RetrievalRule:
        """The schedule rule queued its intervals up to `end_ns`; it never moves backwards
        (`InvalidRecord`), and the same value again changes nothing."""
        ...
