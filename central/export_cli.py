"""`siteline export`: have the central export a device's recording of a range and download
it: the media to FILE, its evidence to FILE.evidence, where `siteline verify FILE` looks.

The central makes the export whole before answering (a day of recording at most); then both
files are downloaded, resuming after a broken connection, and the media is checked against
the SHA-256 the central reported before the command says it succeeded. Connection options
and exit codes are those of every client command (see `client_cli`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from urllib.parse import quote

from central.central_client import CentralUnreachable
from central.client_cli import (
    CONNECTION_HELP,
    EXIT_OK,
    ClientSession,
    add_central_options,
    described,
    run_client_command,
    usage_failure,
)
from shared.sizes import format_size

PARTIAL_SUFFIX = ".partial"
EVIDENCE_SUFFIX = ".evidence"  # as central.export.evidence names it (not imported: PyAV)
CONTAINERS = ("mp4", "mkv")
EXPORT_TIMEOUT_S = 3600.0  # the central answers when the export is made
_HASH_BLOCK_BYTES = 1 << 20


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `siteline export` to `parser`."""
    parser.description = described(
        "Have the central export a device's recording of a time range (at most a day) and "
        "download it: the media to FILE and its evidence to FILE.evidence, which "
        "`siteline verify FILE` checks."
    )
    parser.epilog = CONNECTION_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_argument_group("the export")
    what.add_argument("--device", required=True, metavar="ID", help="the central's device id")
    what.add_argument("--start", required=True, metavar="ISO8601", help="e.g. 2024-05-01T12:00:00Z")
    what.add_argument("--end", required=True, metavar="ISO8601", help="after --start")
    what.add_argument("--out", required=True, type=Path, metavar="FILE", help="the media file")
    what.add_argument(
        "--container",
        choices=CONTAINERS,
        help="default: from FILE's extension (.mp4, .mkv), else mp4",
    )
    add_central_options(parser)
    parser.set_defaults(handler=_export)


def container_for(out: Path, container: str | None) -> str:
    """The container asked for, else the one FILE's extension names, else mp4."""
    if container is not None:
        return container
    extension = out.suffix.lower().lstrip(".")
    return extension if extension in CONTAINERS else "mp4"


def _export(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.is_dir():
        return usage_failure(f"--out {out}: is a folder; name the file to write")
    if not out.parent.is_dir():
        return usage_failure(f"--out {out}: the folder {out.parent} does not exist")

    async def command(session: ClientSession) -> int:
        return await _run(session, args)

    return run_client_command(args, command)


async def _run(session: ClientSession, args: argparse.Namespace) -> int:
    out: Path = args.out
    container = container_for(out, args.container)
    print(
        f"exporting {args.device} from {args.start} to {args.end} ({container})...",
        file=session.err,
    )
    export = await session.client.call(
        "POST",
        "/exports",
        body={
            "device": args.device,
            "start": args.start,
            "end": args.end,
            "container": container,
            "file_name": out.name,
        },
        read_timeout_s=EXPORT_TIMEOUT_S,
    )
    evidence = out.with_name(out.name + EVIDENCE_SUFFIX)
    media_partial = out.with_name(out.name + PARTIAL_SUFFIX)
    evidence_partial = evidence.with_name(evidence.name + PARTIAL_SUFFIX)
    try:
        await session.client.download(
            _path(export["media_path"]), media_partial, expected_bytes=int(export["media_bytes"])
        )
        await session.client.download(
            _path(export["evidence_path"]),
            evidence_partial,
            expected_bytes=int(export["evidence_bytes"]),
        )
        if _sha256(media_partial) != export["media_sha256"]:
            raise CentralUnreachable(
                f"{out}: the download differs from the export the central made (SHA-256); "
                "run the command again"
            )
        # Both files whole: put them in place, the evidence first (a media file beside no
        # evidence would look finished).
        os.replace(evidence_partial, evidence)
        os.replace(media_partial, out)
    finally:
        media_partial.unlink(missing_ok=True)
        evidence_partial.unlink(missing_ok=True)
    print(
        f"exported {export['device_id']} from {export['start']} to {export['end']}: "
        f"{export['duration_s']:.1f} s, {format_size(int(export['media_bytes']))} "
        f"({export['container']})\n"
        f"  media:    {out}\n"
        f"  evidence: {evidence}\n"
        f"check it with: siteline verify {out}",
        file=session.out,
    )
    return EXIT_OK


def _path(api_path: str) -> str:
    """The path below /api/v1 of a path the API returned whole."""
    prefix = "/api/v1"
    if not api_path.startswith(prefix + "/"):
        raise CentralUnreachable(f"the central returned an unexpected path {api_path!r}")
    return quote(api_path[len(prefix) :], safe="/")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
