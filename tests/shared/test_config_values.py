"""Sizes and password hashes as written in configuration files."""

from __future__ import annotations

import pytest

from shared.passwords import PasswordHashError, check_hash_format, hash_password, verify_password
from shared.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("20 GiB", 20 * 1024**3), ("500MB", 500_000_000), ("1.5 kib", 1536)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1 GiB", "10 GiBs", "1e9"])
def test_parse_size_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(3 * 1024**3) == "3.0 GiB"


def test_password_round_trip_and_salt() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second  # salted
    assert verify_password("s3cret", first)
    assert not verify_password("s3cret ", first)


@pytest.mark.parametrize(
    "stored",
    [
        "plain",
        "scrypt$16384$8$1$c2FsdA==",  # too few parts
        "scrypt$1048576$8$1$c2FsdHNhbHQ=$" + "A" * 44,  # N too large: a login must stay cheap
        "scrypt$16385$8$1$c2FsdHNhbHQ=$" + "A" * 44,  # N not a power of two
        "scrypt$16384$8$1$!!!$" + "A" * 44,
    ],
)
def test_bad_hashes_are_refused(stored: str) -> None:
    with pytest.raises(PasswordHashError):
        check_hash_format(stored)
