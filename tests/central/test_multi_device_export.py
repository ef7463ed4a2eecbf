"""Exports of several devices over one range: one export id, one media file and evidence per
device, each checked alone by `siteline verify` and played alone by ffprobe; devices with
nothing at the central are skipped and named; a request that cannot be served leaves nothing
in the exports folder. The central and the recording site are those of
test_export_routes.py (cam-a and cam-b, both recording; copied to the central as asked)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from central.export_service import (
    RECORD_NAME,
    ExportedFile,
    ExportService,
    FinishedExport,
    SkippedDevice,
)
from shared.api_input import format_instant, parse_instant
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, SystemClock
from shared.store.chunk_meta import ChunkMeta
from shared.store.chunk_store import ChunkStore
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.cli_process import central_env, siteline
from tests.central.test_export_routes import (
    CAMERA,
    OTHER_CAMERA,
    RecordedCentral,
    probed_duration_s,
    recorded_central,
)

EXPORT_SHAPE = {"id", "start", "end", "container", "expires", "files", "skipped"}
FILE_SHAPE = {
    "device_id",
    "file_name",
    "media_bytes",
    "media_sha256",
    "evidence_bytes",
    "duration_s",
    "media_path",
    "evidence_path",
}


async def download(central: RunningCentral, api_path: str) -> bytes:
    headers = {"Authorization": f"Bearer {central.token}"}
    async with central.client.get(central.base_url + api_path, headers=headers) as reply:
        assert reply.status == 200, (api_path, reply.status, await reply.text())
        assert "attachment" in reply.headers["Content-Disposition"]
        return await reply.read()


def export_folders(central: RunningCentral) -> list[str]:
    """The folders in the central's exports folder (made or not yet)."""
    assert central.node.services is not None
    folder = central.node.services.exports.folder
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def span(recorded: RecordedCentral) -> dict[str, str]:
    """The range every copied camera recorded whole (their spans differ by a few ms)."""
    starts, ends = zip(*recorded.spans.values(), strict=True)
    return {"start": format_instant(max(starts)), "end": format_instant(min(ends))}


async def test_two_cameras_in_one_request_give_a_file_each_that_verifies_and_plays(
    tmp_path: Path,
) -> None:
    async with recorded_central(tmp_path, cameras=(CAMERA, OTHER_CAMERA)) as recorded:
        central = recorded.central
        devices = [recorded.device_id, recorded.other_device_id]
        status, export = await central.call(
            "POST", "/exports", json={"devices": devices, **span(recorded), "container": "mkv"}
        )
        assert status == 201, export
        assert set(export) == EXPORT_SHAPE  # no top-level file of an export of several
        asked = span(recorded)
        assert (export["start"], export["end"]) == (asked["start"], asked["end"])
        assert export["container"] == "mkv"
        assert export["skipped"] == []
        files = export["files"]
        assert [f["device_id"] for f in files] == devices
        range_ns = parse_instant("end", asked["end"]) - parse_instant("start", asked["start"])
        range_s = range_ns / NS_PER_S
        base = f"/api/v1/exports/{export['id']}"
        for file in files:
            assert set(file) == FILE_SHAPE
            assert file["file_name"].startswith(file["device_id"] + "-")
            assert file["file_name"].endswith(".mkv")
            assert file["media_path"] == f"{base}/files/{file['device_id']}/media"
            assert file["evidence_path"] == f"{base}/files/{file['device_id']}/evidence"
            assert 0 < file["duration_s"] < range_s + 1.0, (file, range_s)
            media = await download(central, file["media_path"])
            assert len(media) == file["media_bytes"]
            assert hashlib.sha256(media).hexdigest() == file["media_sha256"]
            evidence = await download(central, file["evidence_path"])
            assert len(evidence) == file["evidence_bytes"]
        assert files[0]["file_name"] != files[1]["file_name"]
        assert central.node.services is not None
        folder = central.node.services.exports.folder / export["id"]
        names = [f["file_name"] for f in files]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [RECORD_NAME, *names, *(n + ".evidence" for n in names)]
        )

        # The paths of an export of one device answer only for exports of one device.
        status, refused = await central.call("GET", f"/exports/{export['id']}/media")
        assert status == 404, refused
        assert "use files/{device}/media" in refused["error"]["message"]
        status, refused = await central.call("GET", f"/exports/{export['id']}/files/d-x/media")
        assert status == 404, refused
        assert "'d-x'" in refused["error"]["message"]

        # The command: --out is a folder, made if missing; each file with its evidence.
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        out = tmp_path / "incident"
        exported = await siteline(
            "export",
            *("--device", recorded.device_id, "--device", recorded.other_device_id),
            *("--start", asked["start"], "--end", asked["end"], "--out", str(out)),
            env=env,
        )
        assert exported.code == 0, exported
        assert f"exported 2 of 2 devices from {asked['start']}" in exported.out
        written = sorted(p.name for p in out.iterdir())
        assert len(written) == 4, written
        media_files = [out / n for n in written if n.endswith(".mp4")]
        assert [p.name.rsplit("-", 1)[0] for p in media_files] == sorted(devices)
        for media_file, api_file in zip(
            media_files, sorted(files, key=lambda f: f["device_id"]), strict=True
        ):
            assert f"siteline verify {media_file}" in exported.out
            assert media_file.with_name(media_file.name + ".evidence").is_file()
            verified = await siteline("verify", str(media_file), env=env)
            assert verified.code == 0, verified
            played_s = await asyncio.to_thread(probed_duration_s, media_file)
            assert abs(played_s - api_file["duration_s"]) < 1.0, (played_s, api_file)
            assert played_s > range_s / 2, (played_s, range_s)


async def test_a_device_with_nothing_recorded_is_skipped_and_named(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:  # cam-b is not at the central
        central = recorded.central
        recorded_id, empty_id = recorded.device_id, recorded.other_device_id
        status, export = await central.call(
            "POST", "/exports", json={"devices": [empty_id, recorded_id], **span(recorded)}
        )
        assert status == 201, export
        assert set(export) == EXPORT_SHAPE
        [file] = export["files"]
        assert file["device_id"] == recorded_id
        [skipped] = export["skipped"]
        assert skipped["device_id"] == empty_id
        assert empty_id in skipped["reason"]
        assert "the central holds no video of it" in skipped["reason"]
        media = await download(central, file["media_path"])
        assert hashlib.sha256(media).hexdigest() == file["media_sha256"]
        status, refused = await central.call(
            "GET", f"/exports/{export['id']}/files/{empty_id}/evidence"
        )
        assert status == 404, refused
        assert "skipped" in refused["error"]["message"]

        # The command writes what there is, names what was skipped, and exits 1.
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        out = tmp_path / "incident"
        exported = await siteline(
            "export",
            *("--device", empty_id, "--device", recorded_id, "--container", "mkv"),
            *("--start", recorded.start, "--end", recorded.end, "--out", str(out)),
            env=env,
        )
        assert exported.code == 1, exported
        assert f"siteline: skipped {empty_id}: device {empty_id}" in exported.err
        assert "the central holds no video of it" in exported.err
        assert "exported 1 of 2 devices" in exported.out
        [media_file] = sorted(out.glob("*.mkv"))
        assert media_file.name.startswith(recorded_id + "-")
        assert sorted(p.name for p in out.iterdir()) == [
            media_file.name,
            media_file.name + ".evidence",
        ]
        assert (await siteline("verify", str(media_file), env=env)).code == 0

        # When every device has nothing, there is no export, and the command writes nothing.
        hour_ns = 3600 * NS_PER_S
        before = {
            "start": format_instant(recorded.start_ns - 2 * hour_ns),
            "end": format_instant(recorded.start_ns - hour_ns),
        }
        folders = export_folders(central)
        status, refused = await central.call(
            "POST", "/exports", json={"devices": [recorded_id, empty_id], **before}
        )
        assert status == 409, refused
        assert refused["error"]["code"] == "nothing_recorded"
        message = refused["error"]["message"]
        assert "none of the 2 devices" in message
        assert recorded_id in message
        assert empty_id in message
        assert export_folders(central) == folders
        nothing = tmp_path / "nothing"
        refused_cli = await siteline(
            "export",
            *("--device", recorded_id, "--device", empty_id, "--out", str(nothing)),
            *("--start", before["start"], "--end", before["end"]),
            env=env,
        )
        assert refused_cli.code == 1, refused_cli
        assert "none of the 2 devices" in refused_cli.err
        assert not nothing.exists()

        # A list of one device is an export of one device, with its top-level members.
        status, lone = await central.call(
            "POST", "/exports", json={"devices": [recorded_id], **span(recorded)}
        )
        assert status == 201, lone
        assert lone["device_id"] == recorded_id
        assert lone["media_path"] == f"/api/v1/exports/{lone['id']}/media"
        assert lone["skipped"] == []
        [lone_file] = lone["files"]
        assert {k: lone[k] for k in FILE_SHAPE - {"media_path", "evidence_path"}} == {
            k: lone_file[k] for k in FILE_SHAPE - {"media_path", "evidence_path"}
        }
        assert await download(central, lone["media_path"]) == await download(
            central, lone_file["media_path"]
        )


async def test_requests_that_cannot_be_served_say_why_and_leave_nothing(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        a, b = recorded.device_id, recorded.other_device_id
        folders = export_folders(central)
        seventeen = [a, *(f"d-{i}" for i in range(16))]
        bad_bodies: list[tuple[dict[str, Any], str]] = [
            ({"device": a, "devices": [a, b]}, "devices"),
            ({"devices": []}, "devices"),
            ({"devices": [a, a]}, "devices"),
            ({"devices": seventeen}, "devices"),
            ({"devices": [a, 7]}, "devices"),
            ({"devices": [a, None]}, "devices"),
            ({"devices": a}, "devices"),
            ({"devices": [a, "\ud800"]}, "devices"),
            ({"devices": [a, b], "file_name": "both.mp4"}, "file_name"),
            ({}, "device"),
        ]
        for body, field in bad_bodies:
            status, refused = await central.call(
                "POST", "/exports", json={**body, **span(recorded)}
            )
            assert status == 400, (body, refused)
            assert refused["error"]["field"] == field, (body, refused)
        status, refused = await central.call(
            "POST", "/exports", json={"devices": [a, "d-nowhere", b], **span(recorded)}
        )
        assert status == 404, refused
        assert "'d-nowhere'" in refused["error"]["message"]
        assert export_folders(central) == folders

        # A device that fails (a chunk gone between listing and reading) fails the export:
        # the file already made of the device before it goes too.
        node = central.node
        assert node.services is not None
        node.services.exports = ExportService(
            node.catalog,
            ForgetfulSource(node.store, forgotten=OTHER_CAMERA),
            node.services.exports.folder,
            clock=SystemClock(),
        )
        await asyncio.to_thread(copy_first_chunk, recorded, OTHER_CAMERA)
        status, refused = await central.call(
            "POST", "/exports", json={"devices": [a, b], **span(recorded)}
        )
        assert status == 422, refused
        assert "no longer stored" in refused["error"]["message"]
        assert export_folders(central) == folders

        # The command refuses what it cannot do before asking the central.
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        a_file = tmp_path / "a-file"
        a_file.write_text("not a folder")
        for argv, problem in [
            (["--device", a, "--device", a, "--out", str(tmp_path / "x")], "more than once"),
            (["--device", a, "--device", b, "--out", str(a_file)], "name a folder"),
            (
                ["--device", a, "--device", b, "--out", str(tmp_path / "no" / "x")],
                "does not exist",
            ),
        ]:
            used = await siteline(
                "export", *argv, "--start", recorded.start, "--end", recorded.end, env=env
            )
            assert used.code == 2, used
            assert problem in used.err, used
        assert export_folders(central) == folders


class ForgetfulSource:
    """The central's store, except that the chunks of one device are listed but gone."""

    def __init__(self, store: ChunkStore, *, forgotten: str) -> None:
        self.store = store
        self.forgotten = forgotten

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str
    ) -> Sequence[ChunkMeta]:
        return self.store.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str
    ) -> SignedChunk | None:
        if device_id == self.forgotten:
            return None
        return self.store.read_chunk(device_id, stream, seq, site_id=site_id)


def copy_first_chunk(recorded: RecordedCentral, camera: str) -> None:
    """Copy the site's first LQ chunk of `camera` that overlaps cam-a's span to the central."""
    site_id = recorded.site.config.site.id
    store = recorded.site.store
    [meta, *_] = store.chunk_metas(
        camera, "lq", recorded.start_ns, recorded.end_ns, site_id=site_id
    )
    chunk = store.read_chunk(camera, "lq", meta.seq, site_id=site_id)
    assert chunk is not None
    recorded.central.node.store.put(chunk)


async def test_records_are_read_back_whole_and_malformed_ones_are_not(tmp_path: Path) -> None:
    async with running_central(tmp_path) as central:
        assert central.node.services is not None
        exports = central.node.services.exports.folder
        device_id = "a/b é"  # needs quoting in a path
        made = FinishedExport(
            export_id=secrets.token_hex(16),
            username="admin",
            start_ns=1_700_000_000 * NS_PER_S,
            end_ns=1_700_000_060 * NS_PER_S,
            container="mp4",
            files=(
                ExportedFile(
                    device_id, "a b.mp4", 5, hashlib.sha256(b"video").hexdigest(), 3, NS_PER_S
                ),
            ),
            skipped=(SkippedDevice("d-empty", "nothing recorded"),),
            created_ns=SystemClock().now_ns(),
            folder=exports / "unused",
        )

        def write(record: dict[str, Any]) -> str:
            export_id = secrets.token_hex(16)
            folder = exports / export_id
            folder.mkdir(parents=True)
            (folder / "a b.mp4").write_bytes(b"video")
            (folder / "a b.mp4.evidence").write_bytes(b"evi")
            (folder / RECORD_NAME).write_text(json.dumps({**record, "export_id": export_id}))
            return export_id

        good = json.loads(made.record_json())
        export_id = await asyncio.to_thread(write, good)
        assert FinishedExport.from_record(made.folder, made.record_json()) == made
        quoted = "a%2Fb%20%C3%A9"
        status, _ = await central.call("GET", f"/exports/{export_id}/files/{quoted}/media")
        assert status == 200
        async with central.client.get(
            central.url(f"/exports/{export_id}/files/{quoted}/evidence"),
            headers={"Authorization": f"Bearer {central.token}"},
        ) as reply:
            assert reply.status == 200
            assert await reply.read() == b"evi"
        status, _ = await central.call("GET", f"/exports/{export_id}/files/d-empty/media")
        assert status == 404

        [file] = good["files"]
        old_format = {k: v for k, v in good.items() if k not in ("format", "files", "skipped")}
        old_format.update({k: file[k] for k in file if k != "device_id"}, device_id=device_id)
        for malformed in [
            old_format,  # a single-device record of before; exports last a day
            {**good, "format": 3},
            {**good, "files": []},
            {**good, "files": [{**file, "file_name": "../a b.mp4"}]},
            {**good, "files": [{**file, "file_name": RECORD_NAME}]},
            {**good, "files": [file, {**file, "device_id": "other"}]},  # one name twice
            {**good, "files": [file, {**file, "file_name": "c.mp4"}]},  # one device twice
            {**good, "files": [{**file, "media_bytes": "5"}]},
            {**good, "files": [{**file, "media_bytes": True}]},
            {**good, "skipped": [{"device_id": device_id, "reason": "twice"}]},
            {**good, "skipped": [{"device_id": "d-empty"}]},
            {**good, "created_ns": None},
        ]:
            bad_id = await asyncio.to_thread(write, malformed)
            status, refused = await central.call("GET", f"/exports/{bad_id}/files/{quoted}/media")
            assert status == 404, (malformed, refused)
