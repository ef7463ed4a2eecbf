"""Retrieval rules in the SQLite catalog: the queries, run inside `SqliteCatalog`'s transactions.

Each function takes the open connection (and the catalog clock's `now_ns` when it writes);
`SqliteCatalog` takes its lock, opens the transaction and delegates here. One table,
`retrieval_rules` (migration 3): one row per rule, its device lists as JSON arrays; see
`schema.py` and docs/design/catalog.md.

Rules kept here: a rule's devices and sources are devices of its site, and its devices have
a stream of its quality (checked when the rule is added or its devices, sources or quality
change); a schedule rule's `last_queued_end_ns` never moves backwards. Jobs a rule made are
history and stay when the rule is removed.
"""

# SQL text here is assembled only from this module's fixed table and column names; every
# value goes through a placeholder.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence

from central.catalog import validation as check
from central.catalog.errors import CatalogError, InvalidRecord, NotFound
from central.catalog.ids import new_id
from central.catalog.sqlite_rows import insert_sql, select_list, streams_from_json, update_sql
from central.retrieval.rule_records import (
    RULE_FIELDS_CHANGEABLE,
    RULE_ID_PREFIX,
    NewRetrievalRule,
    RetrievalRule,
)

RULE_COLUMNS = (
    "rule_id",
    "site_id",
    "name",
    "kind",
    "device_ids",
    "quality",
    "enabled",
    "events",
    "sources",
    "before_s",
    "after_s",
    "daily",
    "last_queued_end_ns",
    "created_ns",
    "updated_ns",
)
_RULES = select_list(RULE_COLUMNS)
_RULE_INSERT = insert_sql("retrieval_rules", RULE_COLUMNS)
_RULE_UPDATE = update_sql(
    "retrieval_rules",
    tuple(c for c in RULE_COLUMNS if c not in ("rule_id", "site_id", "kind", "created_ns")),
    "rule_id",
)
_ORDER = "ORDER BY site_id, created_ns, rule_id"
_ID_ATTEMPTS = 8
_CHECKED_ON_CHANGE = ("device_ids", "sources", "quality")

Params = dict[str, object]


def insert_rule(db: sqlite3.Connection, new: NewRetrievalRule, *, now_ns: int) -> RetrievalRule:
    """Store `new` with a fresh id; the rule as stored. `NotFound` for an unknown site;
    `InvalidRecord` naming a device that is unknown, of another site, or without a stream
    of the rule's quality."""
    if not isinstance(new, NewRetrievalRule):
        raise InvalidRecord("rule", f"must be a NewRetrievalRule, not {type(new).__name__}")
    if db.execute("SELECT 1 FROM sites WHERE site_id = ?", (new.site_id,)).fetchone() is None:
        raise NotFound("site", new.site_id)
    rule = RetrievalRule(
        rule_id=_unused_rule_id(db),
        **{f.name: getattr(new, f.name) for f in dataclasses.fields(NewRetrievalRule)},
        created_ns=now_ns,
        updated_ns=now_ns,
    )
    _check_devices(db, rule)
    db.execute(_RULE_INSERT, _rule_params(rule))
    return rule


def update_rule(
    db: sqlite3.Connection, rule_id: str, changes: dict[str, object], *, now_ns: int
) -> RetrievalRule:
    """Change the fields named in `RULE_FIELDS_CHANGEABLE`; the rule afterwards."""
    for name in sorted(changes):
        if name not in RULE_FIELDS_CHANGEABLE:
            raise InvalidRecord(
                name,
                "is not a rule field that can be changed "
                f"(those are: {', '.join(sorted(RULE_FIELDS_CHANGEABLE))})",
            )
    before = rule_in(db, rule_id)
    after = dataclasses.replace(before, **changes)  # type: ignore[arg-type]
    if after == before:
        return before
    after = dataclasses.replace(after, updated_ns=now_ns)
    if any(getattr(after, name) != getattr(before, name) for name in _CHECKED_ON_CHANGE):
        _check_devices(db, after)
    params = _rule_params(after)
    for column in ("site_id", "kind", "created_ns"):
        del params[column]
    db.execute(_RULE_UPDATE, params)
    return after


def delete_rule(db: sqlite3.Connection, rule_id: str) -> RetrievalRule:
    """Remove the rule; the rule as it was. The jobs it made stay."""
    rule = rule_in(db, rule_id)
    db.execute("DELETE FROM retrieval_rules WHERE rule_id = ?", (rule_id,))
    return rule


def set_last_queued(
    db: sqlite3.Connection, rule_id: str, end_ns: int, *, now_ns: int
) -> RetrievalRule:
    """Record that the schedule rule queued its intervals up to `end_ns`. Setting it again
    changes nothing; `InvalidRecord` for an event rule or for a move backwards."""
    check.instant("last_queued_end_ns", end_ns)
    before = rule_in(db, rule_id)
    if before.kind != "schedule":
        raise InvalidRecord("last_queued_end_ns", f"rule {rule_id} is an event rule")
    if before.last_queued_end_ns is not None:
        if end_ns < before.last_queued_end_ns:
            raise InvalidRecord(
                "last_queued_end_ns",
                f"rule {rule_id}: never moves backwards "
                f"(from {before.last_queued_end_ns} to {end_ns})",
            )
        if end_ns == before.last_queued_end_ns:
            return before
    after = dataclasses.replace(before, last_queued_end_ns=end_ns, updated_ns=now_ns)
    db.execute(
        "UPDATE retrieval_rules SET last_queued_end_ns = ?, updated_ns = ? WHERE rule_id = ?",
        (end_ns, now_ns, rule_id),
    )
    return after


def rule_in(db: sqlite3.Connection, rule_id: str) -> RetrievalRule:
    row = db.execute(
        f"SELECT {_RULES} FROM retrieval_rules WHERE rule_id = ?", (rule_id,)
    ).fetchone()
    if row is None:
        raise NotFound("retrieval rule", rule_id)
    return _rule_from_row(row)


def rules_in(db: sqlite3.Connection, site_id: str | None) -> list[RetrievalRule]:
    """The rules of `site_id` (None: of every site, site by site), in the order they were
    made. `NotFound` for an unknown site."""
    if site_id is None:
        rows = db.execute(f"SELECT {_RULES} FROM retrieval_rules {_ORDER}").fetchall()
    else:
        if db.execute("SELECT 1 FROM sites WHERE site_id = ?", (site_id,)).fetchone() is None:
            raise NotFound("site", site_id)
        rows = db.execute(
            f"SELECT {_RULES} FROM retrieval_rules WHERE site_id = ? {_ORDER}", (site_id,)
        ).fetchall()
    return [_rule_from_row(row) for row in rows]


def _check_devices(db: sqlite3.Connection, rule: RetrievalRule) -> None:
    wanted = list(dict.fromkeys((*rule.device_ids, *rule.sources)))
    marks = ",".join("?" * len(wanted))
    rows = db.execute(
        f"SELECT device_id, site_id, streams FROM devices WHERE device_id IN ({marks})", wanted
    ).fetchall()
    found = {row["device_id"]: row for row in rows}
    for field, ids in (("device_ids", rule.device_ids), ("sources", rule.sources)):
        for device_id in ids:
            row = found.get(device_id)
            if row is None:
                raise InvalidRecord(field, f"device {device_id} does not exist")
            if row["site_id"] != rule.site_id:
                raise InvalidRecord(
                    field,
                    f"device {device_id} is a device of site {row['site_id']}, "
                    f"not of {rule.site_id}",
                )
    for device_id in rule.device_ids:
        names = [info.name for info in streams_from_json(found[device_id]["streams"])]
        if rule.quality not in names:
            raise InvalidRecord(
                "device_ids",
                f"device {device_id} has no {rule.quality} stream "
                f"(it has: {', '.join(names) or 'none'})",
            )


def _unused_rule_id(db: sqlite3.Connection) -> str:
    for _ in range(_ID_ATTEMPTS):
        candidate = new_id(RULE_ID_PREFIX)
        taken = db.execute("SELECT 1 FROM retrieval_rules WHERE rule_id = ?", (candidate,))
        if taken.fetchone() is None:
            return candidate
    raise CatalogError(f"no unused retrieval rule id after {_ID_ATTEMPTS} random draws")


def _json_list(values: Sequence[str]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def _rule_params(rule: RetrievalRule) -> Params:
    return {
        "rule_id": rule.rule_id,
        "site_id": rule.site_id,
        "name": rule.name,
        "kind": rule.kind,
        "device_ids": _json_list(rule.device_ids),
        "quality": rule.quality,
        "enabled": int(rule.enabled),
        "events": _json_list(rule.events),
        "sources": _json_list(rule.sources),
        "before_s": rule.before_s,
        "after_s": rule.after_s,
        "daily": rule.daily,
        "last_queued_end_ns": rule.last_queued_end_ns,
        "created_ns": rule.created_ns,
        "updated_ns": rule.updated_ns,
    }


def _rule_from_row(row: sqlite3.Row) -> RetrievalRule:
    return RetrievalRule(
        rule_id=row["rule_id"],
        name=row["name"],
        site_id=row["site_id"],
        kind=row["kind"],
        device_ids=tuple(json.loads(row["device_ids"])),
        quality=row["quality"],
        enabled=bool(row["enabled"]),
        events=tuple(json.loads(row["events"])),
        sources=tuple(json.loads(row["sources"])),
        before_s=row["before_s"],
        after_s=row["after_s"],
        daily=row["daily"],
        created_ns=row["created_ns"],
        updated_ns=row["updated_ns"],
        last_queued_end_ns=row["last_queued_end_ns"],
    )
