"""The site's Ed25519 identity: made at first start, kept on disk readable by its owner only."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.atomic_file import write_atomically

PUBLIC_KEY_BYTES = 32


class SigningKeyError(Exception):
    """The key file is unreadable or holds something that is not an Ed25519 private key."""


class SiteSigner:
    """Signs chunk headers with the site's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> SiteSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> SiteSigner:
        """Load the key at `path`, or make one there (mode 0600) if the file does not exist."""
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError, OSError) as exc:
                raise SigningKeyError(f"{path}: not a readable PEM private key ({exc})") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError(f"{path}: the key is not an Ed25519 key")
            return cls(key)
        signer = cls.generate()
        pem = signer._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem, mode=0o600)
        return signer

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """True when `signature` is the Ed25519 signature of `data` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_public_key(path: Path) -> bytes:
    """The public key of the private key stored at `path`; never creates a key."""
    if not path.exists():
        raise SigningKeyError(f"{path}: no signing key (it is made when the agent first runs)")
    return SiteSigner.load_or_create(path).public_key
