"""Encryption at rest for secrets the central must read back (the sites' passwords).

A user's password is hashed, but the central must present a site's password to the site,
so it is encrypted instead: AES-256-GCM with a random 96-bit nonce per secret, and the
secret's context (e.g. "site s-abc password") as associated data, so a ciphertext moved to
another row does not decrypt. The key lives in its own file (mode 0600), made on first
use, apart from the database: a copied database file alone gives away no password.

Sealed form: one format byte (1), the 12-byte nonce, then the ciphertext with its tag.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from central.catalog.errors import SecretKeyError, SecretUnreadable
from shared.atomic_file import write_atomically

KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT_V1 = b"\x01"
_TAG_BYTES = 16


class SecretBox:
    """Seals and opens small secrets with one key. Thread-safe (it keeps no state)."""

    def __init__(self, key: bytes, *, origin: str) -> None:
        """`origin` says where the key came from, for error messages (a path)."""
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"secret key from {origin}: {len(key)} bytes, not {KEY_BYTES}")
        self._aead = AESGCM(key)
        self._origin = origin

    @classmethod
    def load_or_create(cls, path: Path) -> SecretBox:
        """The key in `path`, or a new random key written there (mode 0600) when absent.

        Refuses a key file that group or others may read, as ssh does with private keys.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            key = secrets.token_bytes(KEY_BYTES)
            write_atomically(path, key, mode=0o600)
            return cls(key, origin=str(path))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SecretKeyError(f"secret key file {path} is not a regular file")
            if mode & 0o077:
                raise SecretKeyError(
                    f"secret key file {path} may be read by other users "
                    f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
                )
            key = handle.read(KEY_BYTES + 1)
        return cls(key, origin=str(path))

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """`plaintext` encrypted and bound to `context` (which is not secret)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, *, context: str) -> bytes:
        """The plaintext of `sealed`; `SecretUnreadable` naming `context` when this key (or
        this context) does not match, or the bytes are damaged."""
        if len(sealed) < 1 + NONCE_BYTES + _TAG_BYTES or sealed[:1] != _FORMAT_V1:
            raise SecretUnreadable(f"{context}: the stored secret is not in a known format")
        nonce = sealed[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES :], context.encode())
        except InvalidTag:
            raise SecretUnreadable(
                f"{context}: cannot be decrypted with the key from {self._origin} "
                "(another key was used, or the stored bytes are damaged)"
            ) from None
