"""`siteline export`: have the central export the recording of a range of one or more
devices and download it.

With one `--device`, `--out FILE` is the media file and its evidence goes to FILE.evidence,
where `siteline verify FILE` looks. With several, `--out FOLDER` is a folder (made if
missing) that receives each device's file under the name the central gave it (the device and
the start), each with its evidence beside it.

The central makes the export whole before answering (a day of recording at most); then the
files are downloaded, resuming after a broken connection, and each media file is checked
against the SHA-256 the central reported before it is put in place. Connection options and
exit codes are those of every client command (see `client_cli`), and exit 1 also means that
some devices had nothing recorded at the central (each is named, with the reason) while the
others' files were written.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from central.central_client import CentralUnreachable
from central.client_cli import (
    CONNECTION_HELP,
    EXIT_OK,
    EXIT_REFUSED,
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
MAX_DEVICES = 16  # as the central allows in one export
EXIT_SOME_SKIPPED = EXIT_REFUSED  # some devices had nothing recorded; the rest was written
EXPORT_TIMEOUT_S = 3600.0  # the central answers when the export is made
_HASH_BLOCK_BYTES = 1 << 20

SKIPPED_HELP = f"""several devices:
  with more than one --device, --out is a FOLDER (made if missing; its parent
  must exist) that receives one media file per device, named by the central
  after the device and the start, each with its .evidence beside it. A device
  with nothing recorded at the central in the range is skipped and named on
  stderr with the reason; the command then exits {EXIT_SOME_SKIPPED} although the other
  devices' files were written. When no device has anything, nothing is written.

"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `siteline export` to `parser`."""
    parser.description = described(
        "Have the central export the recording of a time range (at most a day) of one or "
        "more devices and download it: with one device, the media to FILE and its evidence "
        "to FILE.evidence, which `siteline verify FILE` checks; with several, one file per "
        "device into a FOLDER, each with its evidence beside it."
    )
    parser.epilog = SKIPPED_HELP + CONNECTION_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    what = parser.add_argument_group("the export")
    what.add_argument(
        "--device",
        required=True,
        action="append",
        dest="devices",
        metavar="ID",
        help=f"the central's device id; repeat for several devices (at most {MAX_DEVICES})",
    )
    what.add_argument("--start", required=True, metavar="ISO8601", help="e.g. 2024-05-01T12:00:00Z")
    what.add_argument("--end", required=True, metavar="ISO8601", help="after --start")
    what.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="the media FILE; with several devices, the FOLDER for their files",
    )
    what.add_argument(
        "--container",
        choices=CONTAINERS,
        help="default: from FILE's extension (.mp4, .mkv), else mp4 (mp4 for a FOLDER)",
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
    devices: list[str] = args.devices
    if len(set(devices)) != len(devices):
        return usage_failure("--device: a device is named more than once")
    if len(devices) > MAX_DEVICES:
        return usage_failure(f"--device: at most {MAX_DEVICES} devices in one export")
    if len(devices) == 1 and out.is_dir():
        return usage_failure(f"--out {out}: is a folder; name the file to write")
    if len(devices) > 1 and out.exists() and not out.is_dir():
        return usage_failure(f"--out {out}: is a file; with several devices, name a folder")
    if not out.parent.is_dir():
        return usage_failure(f"--out {out}: the folder {out.parent} does not exist")

    async def command(session: ClientSession) -> int:
        if len(devices) == 1:
            return await _run_one(session, args)
        return await _run_several(session, args)

    return run_client_command(args, command)


async def _run_one(session: ClientSession, args: argparse.Namespace) -> int:
    out: Path = args.out
    [device] = args.devices
    container = container_for(out, args.container)
    print(f"exporting {device} from {args.start} to {args.end} ({container})...", file=session.err)
    export = await session.client.call(
        "POST",
        "/exports",
        body={
            "device": device,
            "start": args.start,
            "end": args.end,
            "container": container,
            "file_name": out.name,
        },
        read_timeout_s=EXPORT_TIMEOUT_S,
    )
    evidence = await _download(session, export, out)
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


async def _run_several(session: ClientSession, args: argparse.Namespace) -> int:
    folder: Path = args.out
    devices: list[str] = args.devices
    container = args.container or "mp4"
    print(
        f"exporting {len(devices)} devices ({', '.join(devices)}) from {args.start} to "
        f"{args.end} ({container})...",
        file=session.err,
    )
    export = await session.client.call(
        "POST",
        "/exports",
        body={"devices": devices, "start": args.start, "end": args.end, "container": container},
        read_timeout_s=EXPORT_TIMEOUT_S,
    )
    files: Sequence[Mapping[str, Any]] = export["files"]
    skipped: Sequence[Mapping[str, Any]] = export["skipped"]
    outs = [folder / _file_name(file) for file in files]  # all checked before any is written
    await asyncio.to_thread(folder.mkdir, exist_ok=True)
    for file, out in zip(files, outs, strict=True):
        await _download(session, file, out)
    print(
        f"exported {len(files)} of {len(devices)} devices from {export['start']} to "
        f"{export['end']} ({export['container']}) into {folder}:",
        file=session.out,
    )
    for file, out in zip(files, outs, strict=True):
        print(
            f"  {file['device_id']}: {out} ({file['duration_s']:.1f} s, "
            f"{format_size(int(file['media_bytes']))}; evidence beside it)",
            file=session.out,
        )
    print("check each with:", file=session.out)
    for out in outs:
        print(f"  siteline verify {out}", file=session.out)
    for device in skipped:
        print(f"siteline: skipped {device['device_id']}: {device['reason']}", file=session.err)
    return EXIT_SOME_SKIPPED if skipped else EXIT_OK


async def _download(session: ClientSession, file: Mapping[str, Any], out: Path) -> Path:
    """Download one exported file (the media to `out`, its evidence beside it) through
    `.partial` files, check the media's SHA-256, and put both in place; the evidence's
    path."""
    evidence = out.with_name(out.name + EVIDENCE_SUFFIX)
    media_partial = out.with_name(out.name + PARTIAL_SUFFIX)
    evidence_partial = evidence.with_name(evidence.name + PARTIAL_SUFFIX)
    try:
        await session.client.download(
            _path(file["media_path"]), media_partial, expected_bytes=int(file["media_bytes"])
        )
        await session.client.download(
            _path(file["evidence_path"]),
            evidence_partial,
            expected_bytes=int(file["evidence_bytes"]),
        )
        if _sha256(media_partial) != file["media_sha256"]:
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
    return evidence


def _file_name(file: Mapping[str, Any]) -> str:
    """The name the central gave a device's file, if it is a plain file name."""
    name = str(file["file_name"])
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise CentralUnreachable(f"the central returned an unexpected file name {name!r}")
    return name


def _path(api_path: str) -> str:
    """The path below /api/v1 of a path the API returned whole (quoted where it needs to be,
    as a device id with a slash in it: the escapes stay as they are)."""
    prefix = "/api/v1"
    if not api_path.startswith(prefix + "/"):
        raise CentralUnreachable(f"the central returned an unexpected path {api_path!r}")
    return quote(api_path[len(prefix) :], safe="/%")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
