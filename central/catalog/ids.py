"""The central's own ids for sites and devices: a prefix and random base32 characters.

Random, never derived from time or from the site's own ids: an id says nothing about when
or where a thing was added, and stays the same when the site renames or renumbers it.
Ten characters of a 32-letter alphabet are 50 bits, so a collision among even millions of
ids is unlikely; the catalog still checks and draws again.
"""

from __future__ import annotations

import secrets

ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
ID_RANDOM_CHARS = 10
SITE_ID_PREFIX = "s-"
DEVICE_ID_PREFIX = "d-"


def new_id(prefix: str) -> str:
    """`prefix` followed by `ID_RANDOM_CHARS` random lowercase base32 characters."""
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_RANDOM_CHARS))
