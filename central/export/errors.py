"""The errors of exporting and of reading evidence; each message names what was wrong."""

from __future__ import annotations


class ExportError(Exception):
    """An export cannot be made as asked: nothing recorded, a chunk unreadable or not
    authentic, a codec the containers cannot take, or the muxer failed."""


class EvidenceFormatError(ValueError):
    """An evidence file that is not one, or whose manifest or members are malformed."""
