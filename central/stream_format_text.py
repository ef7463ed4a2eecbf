"""A stream's format as an operator reads it, for messages and the command line (no other
imports, so the command-line client stays light)."""

from __future__ import annotations


def format_text(
    codec: str | None, width: int | None, height: int | None, frame_rate: float | None
) -> str:
    """E.g. ``h264 640x360 8 fps``; what is not known is left out (``?`` for one side of a
    picture size), and ``unknown format`` when nothing is."""
    parts = []
    if codec is not None:
        parts.append(codec)
    if width is not None or height is not None:
        parts.append(f"{width or '?'}x{height or '?'}")
    if frame_rate is not None:
        parts.append(f"{frame_rate:g} fps")
    return " ".join(parts) or "unknown format"
