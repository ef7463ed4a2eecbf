"""Reading a site's device list as its API and link answer it: this site's answer with each
stream's format, an older site's without, and answers the central cannot read, refused
with the place at fault named."""

from __future__ import annotations

from typing import Any

import pytest

from central.catalog import NewDevice, StreamInfo
from central.site_device_list import DeviceListError, discovered_devices
from shared.media import MediaKind


def _camera(**lq: Any) -> dict[str, Any]:
    """A camera as a site lists it; `lq` replaces members of its LQ stream."""
    return {
        "id": "cam-a",
        "kind": "camera",
        "name": "Entrance",
        "parent": None,
        "streams": [
            {
                "name": "hq",
                "media": "video",
                "recording": "continuous",
                "codec": "hevc",
                "width": 1920,
                "height": 1080,
                "frame_rate": 25,
            },
            {
                "name": "lq",
                "media": "video",
                "recording": "continuous",
                "codec": "h264",
                "width": 640,
                "height": 360,
                "frame_rate": 7.5,
                **lq,
            },
        ],
    }


def test_a_sites_list_with_formats_is_read_with_them() -> None:
    state = {"name": "state", "media": "events", "recording": "continuous", "codec": None}
    door = {"id": "door", "kind": "input", "name": "Back door", "parent": None, "streams": [state]}
    assert discovered_devices([_camera(), door]) == [
        NewDevice(
            remote_device_id="cam-a",
            kind="camera",
            original_name="Entrance",
            streams=(
                StreamInfo("hq", MediaKind.VIDEO, "hevc", 1920, 1080, 25.0),
                StreamInfo("lq", MediaKind.VIDEO, "h264", 640, 360, 7.5),
            ),
        ),
        NewDevice("door", "input", "Back door", (StreamInfo("state", MediaKind.EVENTS),)),
    ]


def test_an_older_sites_list_without_formats_reads_as_unknown() -> None:
    """A site from before formats were reported: streams have name, media and recording
    only; devices without streams may leave `streams` out."""
    older = [
        {
            "id": "cam-a",
            "kind": "camera",
            "name": "Entrance",
            "parent": None,
            "streams": [
                {"name": "hq", "media": "video", "recording": "continuous"},
                {"name": "lq", "media": "video", "recording": "relay_only"},
            ],
        },
        {"id": "siren", "kind": "output", "name": "Siren", "parent": None},
    ]
    cam, siren = discovered_devices(older)
    assert cam.streams == (StreamInfo("hq", MediaKind.VIDEO), StreamInfo("lq", MediaKind.VIDEO))
    assert all(
        (s.codec, s.width, s.height, s.frame_rate) == (None, None, None, None) for s in cam.streams
    )
    assert (siren.kind, siren.streams) == ("output", ())


def test_null_format_fields_are_unknown() -> None:
    """A camera not reached yet: the site does not know its format."""
    (cam,) = discovered_devices([_camera(codec=None, width=None, height=None, frame_rate=None)])
    assert cam.streams[1] == StreamInfo("lq", MediaKind.VIDEO)


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ({"devices": []}, "devices: must be an array, not dict"),
        (["cam-a"], "devices[0]: must be an object, not str"),
        ([_camera(), {"kind": "camera", "name": "x"}], "devices[1].id: is missing"),
        ([{**_camera(), "kind": "drone"}], "devices[0].kind: must be one of camera,"),
        ([{**_camera(), "name": ""}], "devices[0].name: must not be empty"),
        ([{**_camera(), "streams": {}}], "devices[0].streams: must be an array, not dict"),
        ([_camera(media="smell")], "devices[0].streams[1].media: must be one of video,"),
        ([_camera(width="640")], "devices[0].streams[1].width: must be an integer, not str"),
        ([_camera(height=0)], "devices[0].streams[1].height: must be between 1 and"),
        ([_camera(frame_rate=-5)], "devices[0].streams[1].frame_rate: must be above 0"),
        ([_camera(frame_rate=True)], "devices[0].streams[1].frame_rate: must be a number"),
        ([_camera(codec=264)], "devices[0].streams[1].codec: must be a string, not int"),
        ([_camera(name="hq")], "devices[0].streams: stream names must be unique"),
    ],
)
def test_a_list_the_central_cannot_read_names_the_place_at_fault(
    devices: object, message: str
) -> None:
    with pytest.raises(DeviceListError) as refused:
        discovered_devices(devices)
    assert str(refused.value).startswith(message), str(refused.value)
