"""Exports at the central: the API's routes, `siteline export` as a child process, and the
file `siteline verify` and ffprobe read. The central holds real chunks: those a real
recording site made, copied into the central's store as retrieval would, under the site's
own ids; the site itself was added through the API, so the central knows its key. Exports of
several devices are tested in test_multi_device_export.py, with this file's site."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.export_service import (
    EXPORT_KEEP_S,
    RECORD_NAME,
    ExportService,
)
from shared.api_input import format_instant
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.passwords import hash_password
from shared.store.chunk_meta import ChunkMeta
from shared.store.chunk_store import ChunkStore
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.cli_process import central_env, siteline
from tests.central.link_sites import add_link_site
from tests.link_io.link_site import LinkSite, TcpProxy, running_link_site

ALL_TIME = (0, 1 << 62)
CAMERA = "cam-a"
OTHER_CAMERA = "cam-b"  # recorded at the site; at the central only when a test copies it
CHUNKS_PER_STREAM = 4
GATE_TIMEOUT_S = 60.0
CUT_AFTER_BYTES = 60_000


@dataclass
class RecordedCentral:
    central: RunningCentral
    site: LinkSite
    device_id: str  # the central's id of cam-a
    other_device_id: str  # the central's id of cam-b
    start_ns: int  # of cam-a's copied recording
    end_ns: int
    spans: dict[str, tuple[int, int]]  # of each copied camera's recording

    @property
    def start(self) -> str:
        return format_instant(self.start_ns)

    @property
    def end(self) -> str:
        return format_instant(self.end_ns)


def copy_recordings(
    site: LinkSite, central_store: ChunkStore, camera: str = CAMERA
) -> tuple[int, int]:
    """Copy the site's chunks of `camera` into the central's store; the LQ chunks' span."""
    site_id = site.config.site.id
    span: list[int] = []
    for stream in ("lq", "hq"):
        metas = site.store.chunk_metas(camera, stream, *ALL_TIME, site_id=site_id)
        for meta in metas:
            chunk = site.store.read_chunk(camera, stream, meta.seq, site_id=site_id)
            assert chunk is not None
            central_store.put(chunk)
        if stream == "lq":
            span = [metas[0].header.start_ns, metas[-1].header.end_ns]
    return span[0], span[1]


@contextlib.asynccontextmanager
async def recorded_central(
    tmp_path: Path, *, cameras: Sequence[str] = (CAMERA,)
) -> AsyncIterator[RecordedCentral]:
    """The central holding the recordings of `cameras` (cam-a first: the range is its)."""
    assert cameras[0] == CAMERA, cameras
    async with (
        running_link_site(tmp_path / "site") as site,
        running_central(tmp_path / "central") as central,
    ):
        _, ids = await add_link_site(central, site)
        spans = []
        for camera in cameras:
            await site.wait_for_chunks(camera, "lq", CHUNKS_PER_STREAM)
            await site.wait_for_chunks(camera, "hq", CHUNKS_PER_STREAM)
            spans.append(await asyncio.to_thread(copy_recordings, site, central.node.store, camera))
        start_ns, end_ns = spans[0]
        yield RecordedCentral(
            central,
            site,
            ids[CAMERA],
            ids[OTHER_CAMERA],
            start_ns,
            end_ns,
            dict(zip(cameras, spans, strict=True)),
        )


def probed_duration_s(path: Path) -> float:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip())


async def test_an_exported_range_downloads_verifies_and_plays(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        out = tmp_path / "out" / "loading bay.mp4"
        out.parent.mkdir()
        exported = await siteline(
            "export",
            "--device",
            recorded.device_id,
            "--start",
            recorded.start,
            "--end",
            recorded.end,
            "--out",
            str(out),
            env=env,
        )
        assert exported.code == 0, exported
        assert f"exported {recorded.device_id} from {recorded.start}" in exported.out
        assert f"check it with: siteline verify {out}" in exported.out
        evidence = out.with_name(out.name + ".evidence")
        assert evidence.is_file()
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name, evidence.name]

        verified = await siteline("verify", str(out), env=env)
        assert verified.code == 0, verified
        verified_by_evidence = await siteline("verify", str(evidence), env=env)
        assert verified_by_evidence.code == 0, verified_by_evidence  # the manifest names out

        range_s = (recorded.end_ns - recorded.start_ns) / NS_PER_S
        duration_s = await asyncio.to_thread(probed_duration_s, out)
        assert abs(duration_s - range_s) < 1.0, (duration_s, range_s)

        as_mkv = tmp_path / "out" / "clip.mkv"
        mkv = await siteline(
            "export",
            "--device",
            recorded.device_id,
            "--start",
            recorded.start,
            "--end",
            recorded.end,
            "--out",
            str(as_mkv),
            env=env,
        )
        assert mkv.code == 0, mkv
        assert "(mkv)" in mkv.out
        assert (await siteline("verify", str(as_mkv), env=env)).code == 0
        assert abs(await asyncio.to_thread(probed_duration_s, as_mkv) - range_s) < 1.0


async def test_a_download_cut_midway_resumes_where_it_stopped(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        proxy = TcpProxy(central.node.port or 0)
        await proxy.start()
        try:
            proxy.cut_after_bytes = CUT_AFTER_BYTES  # inside the media download
            out = tmp_path / "cut.mp4"
            exported = await siteline(
                "export",
                *("--device", recorded.device_id, "--start", recorded.start),
                *("--end", recorded.end, "--out", str(out)),
                env=central_env(
                    f"https://127.0.0.1:{proxy.port}", tmp_path / "config", password=ADMIN_PASSWORD
                ),
            )
        finally:
            await proxy.close()
        assert exported.code == 0, exported
        assert proxy.cuts == 1
        assert (await siteline("verify", str(out), env={"HOME": str(tmp_path)})).code == 0
        media_bytes = out.stat().st_size
        evidence_bytes = out.with_name(out.name + ".evidence").stat().st_size
        assert media_bytes > CUT_AFTER_BYTES
        # Resumed, not started again: had the download restarted, the bytes before the cut
        # would have come twice (the rest is TLS, headers, JSON, and what the cut discarded).
        overhead = proxy.forwarded_to_client - media_bytes - evidence_bytes
        assert 0 < overhead < CUT_AFTER_BYTES, overhead


async def test_the_export_routes_answer_ranges_and_only_to_the_exporter(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        status, export = await central.call(
            "POST",
            "/exports",
            json={"device": recorded.device_id, "start": recorded.start, "end": recorded.end},
        )
        assert status == 201, export
        export_id = export["id"]
        assert export["device_id"] == recorded.device_id
        assert (export["start"], export["end"]) == (recorded.start, recorded.end)
        assert export["container"] == "mp4"
        assert export["media_path"] == f"/api/v1/exports/{export_id}/media"
        assert export["evidence_path"] == f"/api/v1/exports/{export_id}/evidence"
        assert export["duration_s"] == pytest.approx(
            (recorded.end_ns - recorded.start_ns) / NS_PER_S, abs=1.0
        )

        headers = {"Authorization": f"Bearer {central.token}"}
        async with central.client.get(
            central.base_url + export["media_path"], headers=headers
        ) as reply:
            assert reply.status == 200
            assert reply.content_type == "video/mp4"
            assert "attachment" in reply.headers["Content-Disposition"]
            media = await reply.read()
        assert len(media) == export["media_bytes"]
        assert hashlib.sha256(media).hexdigest() == export["media_sha256"]

        async with central.client.get(
            central.base_url + export["media_path"],
            headers={**headers, "Range": "bytes=100-1099"},
        ) as reply:
            assert reply.status == 206
            assert reply.headers["Content-Range"] == f"bytes 100-1099/{len(media)}"
            assert await reply.read() == media[100:1100]

        async with central.client.get(
            central.base_url + export["evidence_path"], headers=headers
        ) as reply:
            assert reply.status == 200
            assert len(await reply.read()) == export["evidence_bytes"]

        # Another user's export does not exist for an operator.
        await asyncio.to_thread(
            central.node.catalog.add_user, "olga", hash_password("olga-pw"), "operator"
        )
        olga = await central.login("olga", "olga-pw")
        status, body = await central.call("GET", f"/exports/{export_id}/media", token=olga)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
        status, body = await central.call("GET", "/exports/not-an-id/evidence")
        assert status == 404, body


async def test_exports_that_cannot_be_made_say_why(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
        hour_ns = 3600 * NS_PER_S
        before = format_instant(recorded.start_ns - 2 * hour_ns)
        out = tmp_path / "nothing.mp4"
        nothing = await siteline(
            "export",
            "--device",
            recorded.device_id,
            "--start",
            before,
            "--end",
            format_instant(recorded.start_ns - hour_ns),
            "--out",
            str(out),
            env=env,
        )
        assert nothing.code == 1, nothing
        assert "the central holds no video of it" in nothing.err
        assert "must be retrieved to the central before it can be exported" in nothing.err
        assert "Traceback" not in nothing.err
        assert not out.exists()

        malformed = await siteline(
            "export",
            "--device",
            recorded.device_id,
            "--start",
            "yesterday",
            "--end",
            recorded.end,
            "--out",
            str(out),
            env=env,
        )
        assert malformed.code == 1, malformed
        assert "siteline: start: not an ISO 8601 instant: 'yesterday'" in malformed.err

        no_folder = await siteline(
            "export",
            *("--device", recorded.device_id, "--start", recorded.start),
            *("--end", recorded.end, "--out", str(tmp_path / "missing" / "x.mp4")),
            env=env,
        )
        assert no_folder.code == 2, no_folder
        assert "does not exist" in no_folder.err

        day_later = format_instant(recorded.start_ns + 25 * hour_ns)
        for body, status, field in [
            ({"device": recorded.device_id, "start": "12:00", "end": recorded.end}, 400, "start"),
            ({"device": recorded.device_id, "start": recorded.start, "end": day_later}, 400, "end"),
            (
                {"device": recorded.device_id, "start": recorded.end, "end": recorded.start},
                400,
                "end",
            ),
            (
                {"device": recorded.device_id, "start": recorded.start, "end": recorded.end,
                 "container": "avi"},
                400,
                "container",
            ),
            (
                {"device": recorded.device_id, "start": recorded.start, "end": recorded.end,
                 "file_name": "../x.mp4"},
                400,
                "file_name",
            ),
            ({"device": "no-such-device", "start": recorded.start, "end": recorded.end}, 404, None),
            ({"device": "\ud800", "start": recorded.start, "end": recorded.end}, 400, "device"),
            (
                {"device": recorded.device_id, "start": recorded.start, "end": recorded.end,
                 "file_name": "x\udfff.mp4"},
                400,
                "file_name",
            ),
        ]:  # fmt: skip
            answered, error = await central.call("POST", "/exports", json=body)
            assert answered == status, (body, error)
            assert error["error"].get("field") == field, (body, error)
        answered, error = await central.call(
            "POST", "/exports", json={"device": recorded.device_id, "start": before, "end": before}
        )
        assert (answered, error["error"]["field"]) == (400, "end")
        answered, error = await central.call(
            "POST",
            "/exports",
            json={"device": recorded.device_id, "start": recorded.start, "end": recorded.end},
            token=None,
        )
        assert answered == 401


class GatedSource:
    """The central's store, with every listing held until the gate opens."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self.gate = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str
    ) -> Sequence[ChunkMeta]:
        with self._lock:
            self.waiting += 1
        assert self.gate.wait(GATE_TIMEOUT_S), "the gate never opened"
        return self.store.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str
    ) -> SignedChunk | None:
        return self.store.read_chunk(device_id, stream, seq, site_id=site_id)


async def test_two_exports_run_at_once_and_exports_last_a_day(tmp_path: Path) -> None:
    async with recorded_central(tmp_path) as recorded:
        central = recorded.central
        node = central.node
        assert node.services is not None
        source = GatedSource(node.store)
        clock = ManualClock(recorded.end_ns)
        folder = tmp_path / "exports"
        service = ExportService(node.catalog, source, folder, clock=clock, max_running=2)
        node.services.exports = service  # the routes use this one from now on

        def body(name: str) -> dict[str, str]:
            return {
                "device": recorded.device_id,
                "start": recorded.start,
                "end": recorded.end,
                "container": "mkv",
                "file_name": name,
            }

        try:
            running = [
                asyncio.create_task(central.call("POST", "/exports", json=body(f"{i}.mkv")))
                for i in (1, 2)
            ]
            for _ in range(600):
                if source.waiting >= 2:
                    break
                await asyncio.sleep(0.05)
            assert source.waiting >= 2
            status, refused = await central.call("POST", "/exports", json=body("3.mkv"))
            assert status == 429, refused
            assert refused["error"]["code"] == "too_many_exports"
            assert "2 exports are running" in refused["error"]["message"]
        finally:
            source.gate.set()
        (status_1, first), (status_2, second) = await asyncio.gather(*running)
        assert (status_1, status_2) == (201, 201), (first, second)
        assert first["id"] != second["id"]
        first_folder = folder / first["id"]
        record = json.loads((first_folder / RECORD_NAME).read_text())
        assert (record["files"][0]["file_name"], record["username"]) == ("1.mkv", "admin")
        assert (first_folder / "1.mkv").stat().st_size == first["media_bytes"]
        status, third = await central.call("POST", "/exports", json=body("3.mkv"))  # room again
        assert status == 201, third

        debris = folder / ("0" * 32)
        debris.mkdir()
        (debris / "half.mkv.partial").write_bytes(b"interrupted")
        clock.advance(EXPORT_KEEP_S - 60)
        assert await asyncio.to_thread(service.remove_expired) == 1  # only the debris
        assert (await central.call("GET", f"/exports/{first['id']}/evidence"))[0] == 200
        clock.advance(120)
        status, gone = await central.call("GET", f"/exports/{first['id']}/media")
        assert status == 404, gone  # expired, not yet deleted
        status, fourth = await central.call("POST", "/exports", json=body("4.mkv"))
        assert status == 201, fourth  # and the expired ones were deleted first
        assert sorted(p.name for p in folder.iterdir()) == [fourth["id"]]
