"""The operator's "update hardware" after a real change at a site: a real central and a real
recording site on loopback, the site restarted with a configuration that adds a camera,
removes one, renames one, makes one's reference (LQ) stream smaller and turns an input into
an output; the operator asks the central (the API route, then `siteline site hardware`) and
is told exactly what was added, removed, returned and changed (for a stream's format, from
what to what), although the central already applied the change by itself when the site's
link opened again. Unasked, the central told of it in the site's `hardware_changed`
notification, naming the devices, which the operator's question clears; it is in the
catalog, so a change the central applied before it was restarted is still told of after.
The central's own names survive, a removed device is kept as not present (never online),
and what the central recorded of it stays listed and playable without asking the site,
which no longer has it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.agent.site_config import small_camera, write_site_config
from tests.central.api.central_calls import site_devices, wait_for_state
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.cli_process import central_env, siteline
from tests.central.link_sites import add_link_site
from tests.central.playback_client import play
from tests.link_io.link_site import LinkSite, running_link_site
from tests.rtsp_server import RtspServerProcess

WAIT_S = 30.0
POLL_S = 0.1

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


SMALL_LQ = "width = 160, height = 90"
"""The reference stream of `small_camera` (at 5 fps)."""
SMALLER_LQ = "width = 128, height = 72"


def _camera(
    camera_id: str, *, name: str | None = None, audio: bool = False, lq: str = SMALL_LQ
) -> str:
    """A small synthetic camera (with its motion device); `name` None: the site's default;
    `lq` the reference stream's size."""
    table = small_camera(camera_id, audio=audio)
    assert table.count(SMALL_LQ) == 1
    table = table.replace(SMALL_LQ, lq)
    if name is None:
        return table
    return table.replace(f'id = "{camera_id}"\n', f'id = "{camera_id}"\nname = "{name}"\n', 1)


_DOOR_INPUT = '\n[[inputs]]\nid = "door"\nname = "Back door"\n'
_DOOR_OUTPUT = '\n[[outputs]]\nid = "door"\nname = "Back door"\n'
_SIREN = '\n[[outputs]]\nid = "siren"\nname = "Siren"\n'

BEFORE = _camera("cam-a", audio=True) + _camera("cam-b") + _DOOR_INPUT + _SIREN
"""cam-a (+ .mic, .motion), cam-b (+ .motion), the door as an input, the siren."""

_ENTRANCE = _camera("cam-a", name="Entrance", audio=True, lq=SMALLER_LQ)

AFTER = _ENTRANCE + _camera("cam-c") + _DOOR_OUTPUT + _SIREN
"""cam-a renamed at the site (its microphone and motion device with it) and its LQ stream
made smaller, cam-b gone, cam-c new, the door wired as an output now, the siren as it was."""

BACK = _camera("cam-a", name="Entrance", audio=True) + _camera("cam-b") + _DOOR_OUTPUT + _SIREN
"""cam-b plugged in again, cam-c taken away, cam-a's LQ stream at its first size again."""

LAST = (
    _camera("cam-a", name="Entrance", audio=True)
    + _camera("cam-b", lq=SMALLER_LQ)
    + _DOOR_OUTPUT
    + _SIREN
)
"""cam-b's LQ stream made smaller."""

UNKNOWN_FORMAT = {"codec": None, "width": None, "height": None, "frame_rate": None}


def _reconfigure(site_dir: Path, before: str, after: str) -> None:
    """Replace the site's devices in its agent.toml; its id, key, certificate and store stay."""
    path = site_dir / "agent.toml"
    text = path.read_text()
    assert text.count(before) == 1, "the devices to replace are not in the site's agent.toml"
    path.write_text(text.replace(before, after))


@contextlib.asynccontextmanager
async def _site_again(
    central: RunningCentral, site_id: str, site_dir: Path, port: int
) -> AsyncIterator[LinkSite]:
    """The site restarted from `site_dir` on the port the central dials, once online again."""
    async with running_link_site(site_dir, port=port) as site:
        await wait_for_state(central, site_id, "online", within_s=WAIT_S)
        yield site


async def _until_link_closed(central: RunningCentral, site_id: str) -> None:
    registry = central.node.registry
    assert registry is not None
    async with asyncio.timeout(WAIT_S):
        while registry.link(site_id) is not None:  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(POLL_S)


async def _hardware_notices(
    central: RunningCentral, site_id: str, *, open_only: bool = True
) -> list[dict[str, Any]]:
    """The site's `hardware_changed` notifications (the open ones), newest first."""
    status, body = await central.call(
        "GET", "/notifications", params={"open": "true" if open_only else "false"}
    )
    assert status == 200, body
    wanted = ("hardware_changed", site_id)
    return [n for n in body["notifications"] if (n["kind"], n["site_id"]) == wanted]


async def _hardware_notice(central: RunningCentral, site_id: str) -> dict[str, Any]:
    """The site's open `hardware_changed` notification, once there is one (bounded poll)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            notices = await _hardware_notices(central, site_id)
            if notices:
                (notice,) = notices  # at most one open per site
                assert (notice["device_id"], notice["open"]) == (None, True), notice
                return notice
            await asyncio.sleep(POLL_S)


async def _by_remote_id(central: RunningCentral, site_id: str) -> dict[str, dict[str, Any]]:
    return {d["remote_device_id"]: d for d in await site_devices(central, site_id)}


async def _rename(central: RunningCentral, device_id: str, name: str) -> None:
    status, body = await central.call("PATCH", f"/devices/{device_id}", json={"name": name})
    assert (status, body["name"]) == (200, name), body


async def _central_lq_chunks(central: RunningCentral, remote_site: str, device: str) -> list[Any]:
    """The central's LQ chunk metadata of a device, once it holds at least three."""
    async with asyncio.timeout(WAIT_S):
        while True:
            metas = await asyncio.to_thread(
                central.node.store.chunk_metas, device, "lq", 0, 1 << 62, site_id=remote_site
            )
            if len(metas) >= 3:
                return list(metas)
            await asyncio.sleep(0.2)


async def _plays_what_the_central_holds(
    central: RunningCentral, device_id: str, start_ns: int, end_ns: int, held: list[Any]
) -> list[dict[str, Any]]:
    """Play the range to its end: every chunk the central holds plays (LQ), nothing fails;
    the text messages."""
    texts, runs = await play(central, device_id, start_ns, end_ns, wait_s=WAIT_S)
    assert texts[-1] == {"type": "end"}, texts[-3:]
    segments = [t for t in texts if t["type"] == "segment"]
    assert {t["stream"] for t in segments} == {"lq"}, texts
    assert {t["start_ns"] for t in segments} >= {m.header.start_ns for m in held[1:]}, texts
    assert sum(len(run) for run in runs) > 0
    return texts


async def test_update_hardware_reports_a_real_change_and_keeps_what_the_central_decided(
    tmp_path: Path,
) -> None:
    site_dir = tmp_path / "site"
    write_site_config(site_dir, BEFORE)
    async with running_central(tmp_path / "central") as central:
        async with running_link_site(site_dir) as site:
            port = site.port
            remote_site = site.site_id
            site_id, ids = await add_link_site(central, site)
            assert sorted(ids) == [
                "cam-a",
                "cam-a.mic",
                "cam-a.motion",
                "cam-b",
                "cam-b.motion",
                "door",
                "siren",
            ]
            await wait_for_state(central, site_id, "online", within_s=WAIT_S)
            await _rename(central, ids["cam-a"], "Front gate")
            await _rename(central, ids["cam-b"], "Car park")
            await _rename(central, ids["door"], "Rear exit")
            # The central records cam-b's reference stream, so it holds some of it.
            status, body = await central.call(
                "PATCH", f"/devices/{ids['cam-b']}", json={"recording": "both"}
            )
            assert status == 200, body
            held = await _central_lq_chunks(central, remote_site, "cam-b")
            # The central keeps each stream's format as the site reports it.
            cam_a_lq = (await _by_remote_id(central, site_id))["cam-a"]["streams"][1]
            assert cam_a_lq == {
                "name": "lq",
                "media": "video",
                "codec": "h264",
                "width": 160,
                "height": 90,
                "frame_rate": 5,
            }
            assert await _hardware_notices(central, site_id, open_only=False) == []
        await _until_link_closed(central, site_id)

        _reconfigure(site_dir, BEFORE, AFTER)
        async with _site_again(central, site_id, site_dir, port):
            # Unasked, the central tells of the change it applied when the link opened,
            # naming the devices by the central's names.
            notice = await _hardware_notice(central, site_id)
            message = notice["message"]
            assert message.startswith("devices changed at the site: "), message
            assert "added 'cam-c', 'cam-c motion'" in message, message
            assert "removed 'Car park', 'cam-b motion'" in message, message
            assert "'Front gate' (site name; lq: h264 160x90 5 fps -> h264 128x72 5 fps)" in (
                message
            ), message
            assert "'Rear exit' (kind; streams)" in message, message
            assert "returned" not in message, message

            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert status == 200, diff
            devices = await _by_remote_id(central, site_id)
            assert sorted(diff["added"]) == sorted(
                [devices["cam-c"]["id"], devices["cam-c.motion"]["id"]]
            )
            assert sorted(diff["removed"]) == sorted([ids["cam-b"], ids["cam-b.motion"]])
            assert diff["returned"] == []
            assert sorted((c["id"], c["fields"]) for c in diff["changed"]) == sorted(
                [
                    (ids["cam-a"], ["original_name", "stream_format"]),
                    (ids["cam-a.mic"], ["original_name"]),
                    (ids["cam-a.motion"], ["original_name"]),
                    (ids["door"], ["kind", "streams"]),
                ]
            )
            # What changed of cam-a's format: from what to what.
            changed = {c["id"]: c for c in diff["changed"]}
            assert changed[ids["cam-a"]]["stream_formats"] == [
                {
                    "stream": "lq",
                    "fields": ["width", "height"],
                    "before": {"codec": "h264", "width": 160, "height": 90, "frame_rate": 5},
                    "after": {"codec": "h264", "width": 128, "height": 72, "frame_rate": 5},
                }
            ]
            assert changed[ids["door"]]["stream_formats"] == []
            # Reported once: asked again, nothing is new; the notification was cleared.
            again = await central.call("POST", f"/sites/{site_id}/hardware")
            assert again == (200, {"added": [], "removed": [], "returned": [], "changed": []})
            assert await _hardware_notices(central, site_id) == []
            (cleared,) = await _hardware_notices(central, site_id, open_only=False)
            assert (cleared["id"], cleared["open"]) == (notice["id"], False), cleared

            # The device list is the site's new set; the central's names stay.
            _, present = await central.call("GET", "/devices", params={"present": "true"})
            assert sorted(d["remote_device_id"] for d in present["devices"]) == [
                "cam-a",
                "cam-a.mic",
                "cam-a.motion",
                "cam-c",
                "cam-c.motion",
                "door",
                "siren",
            ]
            assert all(d["online"] for d in present["devices"]), present
            cam_a, door = devices["cam-a"], devices["door"]
            assert (cam_a["name"], cam_a["original_name"]) == ("Front gate", "Entrance")
            assert [(s["name"], s["width"], s["height"]) for s in cam_a["streams"]] == [
                ("hq", 320, 180),
                ("lq", 128, 72),
            ]
            assert devices["cam-a.mic"]["streams"][0]["codec"] == "aac"
            assert devices["cam-a.motion"]["streams"][0].items() >= UNKNOWN_FORMAT.items()
            assert devices["cam-a.mic"]["original_name"] == "Entrance microphone"
            assert (door["name"], door["kind"], door["streams"]) == ("Rear exit", "output", [])
            assert devices["cam-c"]["name"] == devices["cam-c"]["original_name"] == "cam-c"
            # A removed device is kept, not present and never online, with its settings.
            for gone in ("cam-b", "cam-b.motion"):
                assert (devices[gone]["present"], devices[gone]["online"]) == (False, False)
            assert (devices["cam-b"]["name"], devices["cam-b"]["recording"]) == (
                "Car park",
                "both",
            )

            # What the central recorded of the removed camera is still listed and plays.
            start_ns, end_ns = held[0].header.start_ns, held[-1].header.end_ns
            status, timeline = await central.call(
                "GET",
                f"/devices/{ids['cam-b']}/timeline",
                params={"start": format_instant(start_ns), "end": format_instant(end_ns)},
            )
            assert status == 200, timeline
            central_lq = [p for p in timeline["periods"] if p["kind"] == "central_lq"]
            assert central_lq, timeline
            assert central_lq[0]["start_ns"] <= start_ns
            await _plays_what_the_central_holds(central, ids["cam-b"], start_ns, end_ns, held)
            # A range reaching past what it holds plays that too, the rest as gaps: the site,
            # which no longer has the camera, is not asked.
            after_ns = end_ns + 5 * NS_PER_S
            texts = await _plays_what_the_central_holds(
                central, ids["cam-b"], start_ns - 5 * NS_PER_S, after_ns, held
            )
            gaps = [t for t in texts if t["type"] == "gap"]
            assert gaps, texts
            assert gaps[-1]["end"] == format_instant(after_ns), texts
            status, body = await central.call(
                "GET",
                f"/devices/{ids['cam-b']}/playback",
                params={"start": format_instant(after_ns), "end": format_instant(after_ns + 1)},
            )
            assert (status, body["error"]["code"]) == (409, "nothing_recorded"), body
        await _until_link_closed(central, site_id)

        # cam-b plugged in again, cam-c taken away, cam-a's LQ stream as it was; the operator
        # asks from the command line.
        _reconfigure(site_dir, AFTER, BACK)
        async with _site_again(central, site_id, site_dir, port):
            notice = await _hardware_notice(central, site_id)
            assert notice["message"] == (
                "devices changed at the site: removed 'cam-c', 'cam-c motion'; "
                "returned 'Car park', 'cam-b motion'; "
                "changed 'Front gate' (lq: h264 128x72 5 fps -> h264 160x90 5 fps)"
            ), notice
            env = central_env(central.base_url, tmp_path / "config", password=ADMIN_PASSWORD)
            result = await siteline("site", "hardware", site_id, env=env)
            assert result.code == 0, result
            devices = await _by_remote_id(central, site_id)
            lines = dict(line.split(":", 1) for line in result.out.splitlines())
            assert {k: sorted(v.strip().split(", ")) for k, v in lines.items()} == {
                "added": ["none"],
                "removed": sorted([devices["cam-c"]["id"], devices["cam-c.motion"]["id"]]),
                "returned": sorted([ids["cam-b"], ids["cam-b.motion"]]),
                "changed": [
                    f"{ids['cam-a']} (stream_format lq: h264 128x72 5 fps -> h264 160x90 5 fps)"
                ],
            }, result
            # The returned camera is present again under the name the central gave it.
            cam_b = devices["cam-b"]
            assert (cam_b["present"], cam_b["online"], cam_b["name"]) == (True, True, "Car park")
            assert (devices["cam-c"]["present"], devices["cam-c"]["online"]) == (False, False)
            assert await _hardware_notices(central, site_id) == []
        await _until_link_closed(central, site_id)

        # cam-b's LQ stream made smaller: told of, not asked about before the central stops.
        _reconfigure(site_dir, BACK, LAST)
        async with _site_again(central, site_id, site_dir, port):
            notice = await _hardware_notice(central, site_id)
            assert notice["message"] == (
                "devices changed at the site: "
                "changed 'Car park' (lq: h264 160x90 5 fps -> h264 128x72 5 fps)"
            ), notice

    # The central restarted: the notification is still open, the site's format as it was
    # applied; the operator's question (whose own reading finds nothing new) still gets the
    # change the central kept, and clears the notification.
    async with running_central(tmp_path / "central") as central:
        assert await _hardware_notices(central, site_id) == [notice]
        async with _site_again(central, site_id, site_dir, port):
            lq = (await _by_remote_id(central, site_id))["cam-b"]["streams"][1]
            assert (lq["width"], lq["height"]) == (128, 72)
            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert status == 200, diff
            assert (diff["added"], diff["removed"], diff["returned"]) == ([], [], []), diff
            (changed,) = diff["changed"]
            assert changed["id"] == ids["cam-b"]
            (lq_change,) = changed["stream_formats"]
            assert (lq_change["stream"], lq_change["before"]["width"]) == ("lq", 160), diff
            assert lq_change["after"]["width"] == 128, diff
            assert await _hardware_notices(central, site_id) == []


async def test_a_camera_reconfigured_while_the_site_runs_is_told_of_when_it_comes_back(
    tmp_path: Path, rtsp_server: RtspServerProcess
) -> None:
    """A real RTSP camera whose main profile is set to another size while the site keeps
    running: its stream drops, the site reconnects and announces the new format, and the
    central, told the camera is back, reads the device list again and tells of the change."""
    devices = f"""
[[cameras]]
id = "ipcam"
name = "Loading bay"
source = "rtsp"
[cameras.rtsp]
hq_url = "{rtsp_server.url("/hq")}"
lq_url = "{rtsp_server.url("/lq")}"
open_timeout_s = 2
read_timeout_s = 2
[cameras.motion]
enabled = false
"""
    site_dir = tmp_path / "site"
    write_site_config(site_dir, devices)
    async with (
        running_central(tmp_path / "central") as central,
        running_link_site(site_dir) as site,
    ):
        (camera,) = site.site.cameras
        async with asyncio.timeout(WAIT_S):
            while not camera.supervisor.connected:  # noqa: ASYNC110 - a bounded poll
                await asyncio.sleep(POLL_S)
        site_id, ids = await add_link_site(central, site)
        await wait_for_state(central, site_id, "online", within_s=WAIT_S)
        # The format the camera's source announced, learnt on the first link.
        hq = await _stream(central, site_id, "ipcam", "hq")
        async with asyncio.timeout(WAIT_S):
            while hq["width"] is None:
                await asyncio.sleep(POLL_S)
                hq = await _stream(central, site_id, "ipcam", "hq")
        assert (hq["codec"], hq["width"], hq["height"], hq["frame_rate"]) == (
            "h264",
            320,
            240,
            None,  # an IP camera's frame rate is not known
        )
        assert await _hardware_notices(central, site_id, open_only=False) == []

        # The installer sets the main profile to 480x272: the camera restarts with it.
        rtsp_server.stop()
        reconfigured = RtspServerProcess(rtsp_server.port, audio=True, hq_profile="480x272@15:400")
        reconfigured.start()
        try:
            notice = await _hardware_notice(central, site_id)
            assert notice["message"] == (
                "devices changed at the site: "
                "changed 'Loading bay' (hq: h264 320x240 -> h264 480x272)"
            ), notice
            hq = await _stream(central, site_id, "ipcam", "hq")
            assert (hq["width"], hq["height"]) == (480, 272)
            status, diff = await central.call("POST", f"/sites/{site_id}/hardware")
            assert status == 200, diff
            assert [(c["id"], c["fields"]) for c in diff["changed"]] == [
                (ids["ipcam"], ["stream_format"])
            ]
            assert await _hardware_notices(central, site_id) == []
        finally:
            reconfigured.stop()


async def _stream(
    central: RunningCentral, site_id: str, remote_id: str, stream: str
) -> dict[str, Any]:
    """A stream of a device as the central's device list shows it."""
    device = (await _by_remote_id(central, site_id))[remote_id]
    (found,) = [s for s in device["streams"] if s["name"] == stream]
    return dict(found)
