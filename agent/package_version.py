"""The installed package's version, for site info, the zeroconf record and the banner."""

from __future__ import annotations

from importlib import metadata

UNKNOWN_VERSION = "0+unknown"
"""Reported when running from a source tree that was never installed (a valid PEP 440
local version, so version parsers on the central side accept it)."""


def package_version() -> str:
    try:
        return metadata.version("siteline")
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION
