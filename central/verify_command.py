"""`siteline verify FILE`: check an export offline; exit 0 only when it is authentic and
complete.

Exit codes: 0 authentic and complete; 1 a problem was found (tampering, a missing chunk, an
undeclared gap, a key that is not the pinned one, an unreadable evidence file); 2 the
command was used wrongly (no such file, a malformed key). Declared recording gaps are
reported but are not problems.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.signing import PUBLIC_KEY_BYTES

EXIT_VERIFIED = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `siteline verify` to `parser`."""
    parser.add_argument(
        "file", type=Path, help="the exported MP4 or MKV file, or its .evidence file beside it"
    )
    parser.add_argument(
        "--site-key",
        metavar="HEX",
        help="the site's Ed25519 public key (64 hex digits) as registered with the central; "
        "without it the key carried in the evidence is trusted",
    )
    parser.add_argument(
        "--central-key",
        metavar="HEX",
        help="the central's public key (64 hex digits), to check ingest receipts against",
    )
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    try:
        site_key = _key(args.site_key, "--site-key")
        central_key = _key(args.central_key, "--central-key")
    except ValueError as exc:
        print(f"siteline verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path: Path = args.file
    if not path.is_file():
        print(f"siteline verify: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    # Loaded here, so `siteline --help` and other commands never load PyAV.
    from central.export.verify import format_report, verify_export  # noqa: PLC0415

    result = verify_export(path, pinned_site_key=site_key, pinned_central_key=central_key)
    print(format_report(result))
    return EXIT_VERIFIED if result.ok else EXIT_PROBLEMS


def _key(text: str | None, option: str) -> bytes | None:
    if text is None:
        return None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"{option} must be {PUBLIC_KEY_BYTES * 2} hex digits (an Ed25519 key)")
    return key
