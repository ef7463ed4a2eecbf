"""Timelines match the store's, retention holds are placed, listed and released through the
API, and every bad parameter is refused with a message naming it."""

from __future__ import annotations

import pytest

from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.agent_api.api_site import ApiSite
from tests.store.store_chunks import T0_NS, ChunkFactory

S = NS_PER_S
TIMELINE = "/api/v1/devices/cam-a/timeline"


async def _record_cam_a(api: ApiSite) -> None:
    """hq: [T0, T0+10 s) and [T0+60 s, T0+66 s); lq: [T0, T0+4 s)."""
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    await api.put(factory.run(5, device_id="cam-a", stream="hq"))
    await api.put(factory.run(3, start_ns=T0_NS + 60 * S, device_id="cam-a", stream="hq"))
    await api.put(factory.run(2, device_id="cam-a", stream="lq"))


def _ranges(items: object) -> list[tuple[int, int]]:
    assert isinstance(items, list)
    return [(item["start_ns"], item["end_ns"]) for item in items]


async def test_the_timeline_is_the_stores_timeline(api: ApiSite) -> None:
    await _record_cam_a(api)
    token = await api.login()
    # The same instants, one written with an offset.
    query = {"start": "2023-11-14T23:13:10+01:00", "end": format_instant(T0_NS + 120 * S)}
    status, data, _ = await api.call("GET", TIMELINE, token=token, params=query)
    assert status == 200, data
    assert isinstance(data, dict)
    assert (data["device_id"], data["start_ns"], data["end_ns"]) == (
        "cam-a",
        T0_NS - 10 * S,
        T0_NS + 120 * S,
    )
    assert data["start"] == "2023-11-14T22:13:10Z"
    assert [s["stream"] for s in data["streams"]] == ["hq", "lq"]
    for stream in data["streams"]:
        spans = api.store.timeline("cam-a", stream["stream"], T0_NS - 10 * S, T0_NS + 120 * S)
        assert _ranges(stream["spans"]) == [(s.start_ns, s.end_ns) for s in spans]
        assert [
            (s["first_seq"], s["last_seq"], s["chunk_count"], s["payload_bytes"])
            for s in stream["spans"]
        ] == [(s.first_seq, s.last_seq, s.chunk_count, s.payload_bytes) for s in spans]
    hq = data["streams"][0]
    assert _ranges(hq["spans"]) == [(T0_NS, T0_NS + 10 * S), (T0_NS + 60 * S, T0_NS + 66 * S)]
    assert _ranges(hq["gaps"]) == [(T0_NS + 10 * S, T0_NS + 60 * S)]
    assert hq["spans"][1]["start"] == "2023-11-14T22:14:20Z"


async def test_one_stream_and_an_empty_range(api: ApiSite) -> None:
    await _record_cam_a(api)
    token = await api.login()
    query = {"start": format_instant(T0_NS + 5 * S), "end": format_instant(T0_NS + 61 * S)}
    status, data, _ = await api.call("GET", TIMELINE, token=token, params={**query, "stream": "hq"})
    assert status == 200
    assert isinstance(data, dict)
    [hq] = data["streams"]
    # Spans cover the chunks that overlap the query, with the chunks' own extents.
    assert _ranges(hq["spans"]) == [
        (T0_NS + 4 * S, T0_NS + 10 * S),
        (T0_NS + 60 * S, T0_NS + 62 * S),
    ]
    query = {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00.000000001Z"}
    status, data, _ = await api.call("GET", TIMELINE, token=token, params=query)
    assert status == 200
    assert isinstance(data, dict)
    assert data["end_ns"] % S == 1
    assert [(s["stream"], s["spans"], s["gaps"]) for s in data["streams"]] == [
        ("hq", [], []),
        ("lq", [], []),
    ]


GOOD = {"start": "2023-11-14T22:00:00Z", "end": "2023-11-14T23:00:00Z"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**GOOD, "start": "yesterday"}, "start: not an ISO 8601 instant: 'yesterday'"),
        (
            {**GOOD, "start": "2023-11-14T22:00:00"},
            "start: has no time zone: '2023-11-14T22:00:00' (add Z for UTC",
        ),
        ({**GOOD, "end": "2023-02-30T00:00:00Z"}, "end: not a valid date and time"),
        ({**GOOD, "end": "2023-11-14T21:00:00Z"}, "end: must be after start"),
        ({**GOOD, "end": "2023-11-14T22:00:00Z"}, "end: must be after start"),
        ({**GOOD, "end": "2023-12-16T22:00:00Z"}, "end: must be at most 31 days after start"),
        ({**GOOD, "start": "1969-12-31T23:00:00Z"}, "start: must not be before 1970"),
        ({"start": GOOD["start"]}, "end: missing (required)"),
        ({**GOOD, "limit": "5"}, "limit: unknown parameter (this route takes start, end"),
        ({**GOOD, "stream": "audio"}, "stream: 'audio' is not a stream of device 'cam-a'"),
    ],
)
async def test_bad_timeline_parameters_are_named(
    api: ApiSite, params: dict[str, str], message: str
) -> None:
    token = await api.login()
    status, data, _ = await api.call("GET", TIMELINE, token=token, params=params)
    assert status == 400
    assert isinstance(data, dict)
    assert data["error"]["code"] == "bad_request"
    assert data["error"]["message"].startswith(message), data


async def test_a_repeated_parameter_is_refused(api: ApiSite) -> None:
    token = await api.login()
    status, data, _ = await api.call(
        "GET",
        f"{TIMELINE}?start=2023-11-14T22:00:00Z&start=2023-11-14T21:00:00Z&end=x",
        token=token,
    )
    assert status == 400
    assert data == {"error": {"code": "bad_request", "message": "start: given more than once"}}


def _hold_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "device": "cam-a",
        "start": format_instant(T0_NS),
        "end": format_instant(T0_NS + 10 * S),
        "expires": format_instant(T0_NS + 24 * 3600 * S),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def test_holds_are_placed_listed_and_released(api: ApiSite) -> None:
    await _record_cam_a(api)
    token = await api.login()
    status, data, _ = await api.call(
        "POST", "/api/v1/holds", token=token, json=_hold_body(streams=["hq", "lq"])
    )
    assert status == 201, data
    assert isinstance(data, dict)
    placed = data["holds"]
    assert [(h["device_id"], h["stream"], h["owner"]) for h in placed] == [
        ("cam-a", "hq", "admin"),
        ("cam-a", "lq", "admin"),
    ]
    assert placed[0]["start_ns"] == T0_NS
    assert placed[0]["expires"] == "2023-11-15T22:13:20Z"
    stored = api.store.list_holds()
    assert sorted(h.hold_id for h in stored) == sorted(h["id"] for h in placed)
    assert (await api.call("GET", "/api/v1/holds", token=token))[1] == {"holds": placed}
    hold_id = placed[0]["id"]
    assert (await api.call("DELETE", f"/api/v1/holds/{hold_id}", token=token))[0] == 204
    assert [h.hold_id for h in api.store.list_holds()] == [placed[1]["id"]]
    status, data, _ = await api.call("DELETE", f"/api/v1/holds/{hold_id}", token=token)
    assert status == 404
    assert data == {"error": {"code": "not_found", "message": f"no hold {hold_id}"}}
    # Without stream(s), a hold covers every stream of the device.
    status, data, _ = await api.call("POST", "/api/v1/holds", token=token, json=_hold_body())
    assert status == 201
    assert isinstance(data, dict)
    assert [h["stream"] for h in data["holds"]] == ["hq", "lq"]


async def test_a_hold_over_the_budget_is_refused_and_nothing_is_placed(api: ApiSite) -> None:
    factory = ChunkFactory(api.signer, site_id=api.config.site.id)
    await api.put(factory.run(2, device_id="cam-a", stream="lq", payload_size=1024))
    # 20 chunks of 4 KiB: more than the 64 KiB hold budget of the test site.
    await api.put(factory.run(20, device_id="cam-a", stream="hq", payload_size=4096))
    token = await api.login()
    body = _hold_body(streams=["lq", "hq"], end=format_instant(T0_NS + 40 * S))
    status, data, _ = await api.call("POST", "/api/v1/holds", token=token, json=body)
    assert status == 409
    assert isinstance(data, dict)
    assert data["error"]["code"] == "hold_refused"
    message = data["error"]["message"]
    assert message.startswith("hold on cam-a/hq"), message
    assert "over the hold budget of 65536 by" in message
    # The lq hold that fitted was taken back: all or nothing.
    assert api.store.list_holds() == []
    assert (await api.call("GET", "/api/v1/holds", token=token))[1] == {"holds": []}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_hold_body(device=None), "device: missing (required)"),
        (_hold_body(expires=format_instant(T0_NS - S)), "expires: must be in the future"),
        (
            _hold_body(expires=format_instant(T0_NS + 91 * 24 * 3600 * S)),
            "expires: must be at most 90 days from now",
        ),
        (_hold_body(end=format_instant(T0_NS)), "end: must be after start"),
        (_hold_body(start="soon"), "start: not an ISO 8601 instant: 'soon'"),
        (_hold_body(stream="hq", streams=["lq"]), "streams: give either stream or streams"),
        (_hold_body(streams="hq"), "streams: must be a list of strings, not a string"),
        (_hold_body(streams=[]), "streams: must hold 1 to 32 items"),
        (_hold_body(stream="motion"), "stream: 'motion' is not a stream of device 'cam-a'"),
        (_hold_body(device="siren"), "streams: device 'siren' has no recorded streams"),
        (_hold_body(owner="me"), "owner: unknown member"),
    ],
)
async def test_bad_hold_requests_are_named(
    api: ApiSite, body: dict[str, object], message: str
) -> None:
    token = await api.login()
    status, data, _ = await api.call("POST", "/api/v1/holds", token=token, json=body)
    assert status == 400, data
    assert isinstance(data, dict)
    assert data["error"]["message"].startswith(message), data
    assert api.store.list_holds() == []


async def test_a_hold_id_must_be_a_number(api: ApiSite) -> None:
    token = await api.login()
    status, data, _ = await api.call("DELETE", "/api/v1/holds/first", token=token)
    assert status == 400
    message = "hold_id: not a hold id (a whole number): 'first'"
    assert data == {"error": {"code": "bad_request", "message": message}}
