"""Password hashing with scrypt (standard library), in a self-describing string form.

Form: ``scrypt$N$r$p$salt$hash`` with base64 salt and hash. Verification takes constant time
in the hash comparison and refuses parameters outside sane bounds (a crafted config must not
make a login take minutes or gigabytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_HASH_BYTES = 32
_MAX_N = 2**17
_MAX_R = 16
_MAX_P = 4


class PasswordHashError(ValueError):
    """A stored password hash that is not in the expected form."""


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password`."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def check_hash_format(stored: str) -> None:
    """Raise PasswordHashError if `stored` is not a hash this module can verify."""
    _parse(stored)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash."""
    n, r, p, salt, expected = _parse(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise PasswordHashError("a password hash must look like scrypt$N$r$p$salt$hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise PasswordHashError("a password hash has a malformed number or base64 part") from exc
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise PasswordHashError("a password hash has scrypt parameters out of bounds")
    if len(salt) < 8 or len(digest) != _HASH_BYTES:
        raise PasswordHashError("a password hash has a short salt or a wrong hash length")
    return n, r, p, salt, digest


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES, maxmem=2**27
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
