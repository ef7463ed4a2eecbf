"""Users (hashes only, roles, disabling) and bearer tokens (digests only, expiry, purge)."""

from __future__ import annotations

import pytest

from central.catalog import Conflict, InvalidRecord, NotFound, SqliteCatalog
from shared.clock import NS_PER_S, ManualClock
from tests.central.catalog.catalog_parts import digest_of

HOUR_NS = 3600 * NS_PER_S


def test_users_are_stored_with_their_hash_and_role(
    catalog: SqliteCatalog, clock: ManualClock, password_hash: str
) -> None:
    alice = catalog.add_user("alice", password_hash, "admin")
    bob = catalog.add_user("bob", password_hash, "viewer")

    assert (alice.username, alice.role, alice.disabled, alice.created_ns) == (
        "alice",
        "admin",
        False,
        clock.now_ns(),
    )
    assert catalog.user("alice") == alice
    assert catalog.user("carol") is None
    assert catalog.users() == [alice, bob]
    assert password_hash not in repr(alice)  # the hash stays out of logs

    catalog.set_role("bob", "operator")
    catalog.set_password("bob", password_hash.replace("scrypt$16384", "scrypt$32768"))
    changed = catalog.user("bob")
    assert changed is not None
    assert (changed.role, changed.password_hash.split("$")[1]) == ("operator", "32768")


def test_user_names_are_unique_ignoring_case(catalog: SqliteCatalog, password_hash: str) -> None:
    catalog.add_user("Alice", password_hash, "admin")
    with pytest.raises(Conflict, match="username 'alice' is taken \\(by 'Alice'\\)"):
        catalog.add_user("alice", password_hash, "viewer")
    assert [u.username for u in catalog.users()] == ["Alice"]


def test_bad_user_values_are_refused_naming_the_field(
    catalog: SqliteCatalog, password_hash: str
) -> None:
    with pytest.raises(InvalidRecord, match=r"^password_hash: a password hash must look like"):
        catalog.add_user("alice", "hunter2", "admin")  # a password, not a hash
    with pytest.raises(InvalidRecord, match=r"^role: must be one of admin, operator, viewer"):
        catalog.add_user("alice", password_hash, "root")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match=r"^username: may contain only"):
        catalog.add_user("al ice", password_hash, "admin")
    assert catalog.users() == []
    with pytest.raises(NotFound, match="user 'nobody'"):
        catalog.set_role("nobody", "viewer")
    with pytest.raises(NotFound, match="user 'nobody'"):
        catalog.set_password("nobody", password_hash)


def test_tokens_are_found_by_digest_until_they_expire(
    catalog: SqliteCatalog, clock: ManualClock, password_hash: str
) -> None:
    catalog.add_user("alice", password_hash, "operator")
    now = clock.now_ns()
    stored = catalog.store_token(digest_of("token-1"), "alice", now, now + HOUR_NS)

    assert catalog.token(digest_of("token-1")) == stored
    assert catalog.token(digest_of("token-2")) is None
    clock.advance(3599)
    assert catalog.token(digest_of("token-1")) == stored
    clock.advance(1)
    assert catalog.token(digest_of("token-1")) is None  # expired at expires_ns, exclusive


def test_purge_deletes_expired_tokens_only(
    catalog: SqliteCatalog, clock: ManualClock, password_hash: str
) -> None:
    catalog.add_user("alice", password_hash, "operator")
    now = clock.now_ns()
    for hours in (1, 2, 3):
        catalog.store_token(digest_of(f"t{hours}"), "alice", now, now + hours * HOUR_NS)

    assert catalog.purge_expired_tokens(now + 2 * HOUR_NS) == 2
    assert catalog.purge_expired_tokens(now + 2 * HOUR_NS) == 0
    assert catalog.token(digest_of("t3")) is not None
    assert catalog.revoke_token(digest_of("t3")) is True
    assert catalog.revoke_token(digest_of("t3")) is False
    assert catalog.token(digest_of("t3")) is None


def test_disabling_a_user_revokes_their_tokens_and_refuses_new_ones(
    catalog: SqliteCatalog, clock: ManualClock, password_hash: str
) -> None:
    catalog.add_user("alice", password_hash, "operator")
    catalog.add_user("bob", password_hash, "operator")
    now = clock.now_ns()
    catalog.store_token(digest_of("alice-1"), "alice", now, now + HOUR_NS)
    catalog.store_token(digest_of("bob-1"), "bob", now, now + HOUR_NS)

    catalog.disable_user("alice")

    assert catalog.token(digest_of("alice-1")) is None
    assert catalog.token(digest_of("bob-1")) is not None
    with pytest.raises(Conflict, match="user 'alice' is disabled"):
        catalog.store_token(digest_of("alice-2"), "alice", now, now + HOUR_NS)
    catalog.enable_user("alice")
    catalog.store_token(digest_of("alice-2"), "alice", now, now + HOUR_NS)
    assert catalog.token(digest_of("alice-2")) is not None
    assert catalog.revoke_user_tokens("alice") == 1
    assert catalog.token(digest_of("alice-2")) is None


def test_store_token_refuses_unknown_users_reused_digests_and_bad_values(
    catalog: SqliteCatalog, clock: ManualClock, password_hash: str
) -> None:
    now = clock.now_ns()
    with pytest.raises(NotFound, match="user 'ghost'"):
        catalog.store_token(digest_of("t"), "ghost", now, now + HOUR_NS)
    catalog.add_user("alice", password_hash, "viewer")
    catalog.store_token(digest_of("t"), "alice", now, now + HOUR_NS)
    with pytest.raises(Conflict, match="already stored"):
        catalog.store_token(digest_of("t"), "alice", now, now + HOUR_NS)
    with pytest.raises(InvalidRecord, match=r"^digest: must be 16 to 64 bytes"):
        catalog.store_token(b"raw-token", "alice", now, now + HOUR_NS)
    with pytest.raises(InvalidRecord, match=r"^expires_ns: a token must expire after"):
        catalog.store_token(digest_of("u"), "alice", now, now)
