"""Every way the catalog refuses or fails, as one small hierarchy under `CatalogError`.

The messages name the field or key that was wrong, so the API can pass them on unchanged.
"""

from __future__ import annotations


class CatalogError(Exception):
    """Base of all catalog errors; the message says what happened and to what."""


class NotFound(CatalogError):
    """No row with this key: `what` is the kind of thing ("site", "device", ...)."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key!r} does not exist")
        self.what = what
        self.key = key


class Conflict(CatalogError):
    """The change contradicts what is stored: a taken unique value, a token already used."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidRecord(CatalogError):
    """A value that is not allowed in its field; `field` names it, `problem` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class SecretUnreadable(CatalogError):
    """A stored secret that the key at hand cannot decrypt (another key, or damaged bytes)."""


class SecretKeyError(CatalogError):
    """The secret key file is unusable: wrong length, or readable by other users."""


class SchemaError(CatalogError):
    """The database file is not a catalog this code can use (a newer schema, not SQLite)."""
