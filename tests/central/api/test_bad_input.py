"""Malformed requests are refused with a 4xx whose error names the field at fault: never a
500, never a traceback. The site here is written straight into the catalog (its address
refuses connections), so every refusal comes from checking the request itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from central.catalog.records import NewDevice, NewSite, StreamInfo
from shared.media import MediaKind
from tests.central.api.central_calls import assert_refused, closed_port
from tests.central.central_fixture import RunningCentral, running_central

DAY = "2024-05-01T{}Z"
START = DAY.format("10:00:00")
END = DAY.format("11:00:00")


@contextlib.asynccontextmanager
async def _central_with_a_camera(tmp_path: Path) -> AsyncIterator[tuple[RunningCentral, str, str]]:
    """A central knowing one unreachable site with one camera: (central, site id, device id)."""
    async with running_central(tmp_path) as central:
        site, devices = await asyncio.to_thread(
            central.node.catalog.add_site,
            NewSite(
                name="Far away",
                dial="central",
                address="127.0.0.1",
                port=closed_port(),
                scheme="http",
                username="central",
            ),
            "site-pw",
            [
                NewDevice(
                    remote_device_id="cam-1",
                    kind="camera",
                    original_name="Gate",
                    streams=(StreamInfo("hq", MediaKind.VIDEO), StreamInfo("lq", MediaKind.VIDEO)),
                )
            ],
        )
        assert central.node.registry is not None
        central.node.registry.site_added(site.site_id)
        yield central, site.site_id, devices[0].device_id


async def _raw(
    central: RunningCentral, method: str, path: str, data: bytes
) -> tuple[int, dict[str, Any] | None, str]:
    """(status, JSON body or None, raw text) of a request with `data` as its body."""
    async with central.client.request(
        method,
        central.url(path),
        data=data,
        headers={"Authorization": f"Bearer {central.token}", "Content-Type": "application/json"},
    ) as reply:
        text = await reply.text()
        body = json.loads(text) if reply.content_type == "application/json" else None
        return reply.status, body, text


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"end": END}, "start"),
        ({"start": START}, "end"),
        ({"start": "2024-05-01T10:00:00", "end": END}, "start"),  # naive: no zone
        ({"start": START, "end": "2024-05-01 11:00:00"}, "end"),
        ({"start": END, "end": START}, "end"),  # reversed
        ({"start": START, "end": START}, "end"),  # empty
        ({"start": "yesterday", "end": END}, "start"),
        ({"start": "2024-13-01T10:00:00Z", "end": END}, "start"),
        ({"start": "2024-05-01T10:00:00+25:00", "end": END}, "start"),
        ({"start": "1969-12-31T23:00:00Z", "end": END}, "start"),
        ({"start": "2020-01-01T00:00:00Z", "end": END}, "end"),  # longer than a year
        ({"start": START, "end": END, "stream": "hq"}, "stream"),
        ({"start": "9" * 2000, "end": END}, "start"),
    ],
)
async def test_bad_time_ranges_name_the_parameter(
    tmp_path: Path, query: dict[str, str], field: str
) -> None:
    async with _central_with_a_camera(tmp_path) as (central, _, device_id):
        reply = await central.call("GET", f"/devices/{device_id}/timeline", params=query)
    assert_refused(reply, 400, "bad_request", field)


async def test_unknown_ids_are_not_found(tmp_path: Path) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, device_id):
        for method, path, body in [
            ("GET", "/sites/s-nothere", None),
            ("PATCH", "/sites/s-nothere", {"name": "x"}),
            ("DELETE", "/sites/s-nothere", None),
            ("POST", "/sites/s-nothere/hardware", None),
            ("GET", "/devices/d-nothere", None),
            ("PATCH", "/devices/d-nothere", {"name": "x"}),
            ("GET", f"/devices/{'d' * 300}", None),
            ("GET", "/devices/%00", None),
        ]:
            reply = await central.call(method, path, json=body)
            message = assert_refused(reply, 404, "not_found", None)
            assert "nothere" in message or "does not exist" in message or "no " in message
        reply = await central.call(
            "GET", "/devices/d-nothere/timeline", params={"start": START, "end": END}
        )
        assert_refused(reply, 404, "not_found", None)
        # The known ones are there.
        assert (await central.call("GET", f"/sites/{site_id}"))[0] == 200
        assert (await central.call("GET", f"/devices/{device_id}"))[0] == 200


async def test_unknown_query_parameters_are_named(tmp_path: Path) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, device_id):
        for path in (
            "/sites",
            f"/sites/{site_id}",
            "/devices",
            f"/devices/{device_id}",
            "/notifications",
            "/central",
            "/auth/me",
            "/enrolments",
        ):
            reply = await central.call("GET", path, params={"colour": "blue"})
            assert_refused(reply, 400, "bad_request", "colour")
        for query, field in [
            ({"open": "maybe"}, "open"),
            ({"limit": "0"}, "limit"),
            ({"limit": "ten"}, "limit"),
        ]:
            reply = await central.call("GET", "/notifications", params=query)
            assert_refused(reply, 400, "bad_request", field)
        for query, field in [({"site": "s-nothere"}, "site"), ({"present": "yes"}, "present")]:
            reply = await central.call("GET", "/devices", params=query)
            assert_refused(reply, 400, "bad_request", field)
        reply = await central.call("GET", "/sites?a=1&a=2")
        assert_refused(reply, 400, "bad_request", "a")


_ADD = {"address": "127.0.0.1", "port": 8443, "username": "u", "password": "p"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        # unknown members
        ("POST", "/sites", {**_ADD, "colour": "blue"}, "colour"),
        ("POST", "/auth/login", {"username": "a", "password": "b", "otp": "1"}, "otp"),
        ("POST", "/enrolments", {"lifetime": 60}, "lifetime"),
        ("PATCH", "/sites/{site}", {"colour": "blue"}, "colour"),
        ("PATCH", "/devices/{device}", {"colour": "blue"}, "colour"),
        # missing members
        ("POST", "/sites", {"port": 8443, "username": "u", "password": "p"}, "address"),
        ("POST", "/sites", {"address": "127.0.0.1", "password": "p"}, "username"),
        ("POST", "/auth/login", {"username": "admin"}, "password"),
        # wrong types
        ("POST", "/sites", {**_ADD, "port": "8443"}, "port"),
        ("POST", "/sites", {**_ADD, "port": 70000}, "port"),
        ("POST", "/sites", {**_ADD, "port": True}, "port"),
        ("POST", "/sites", {**_ADD, "username": 5}, "username"),
        ("POST", "/sites", {**_ADD, "address": ["127.0.0.1"]}, "address"),
        ("POST", "/sites", {**_ADD, "scheme": "ftp"}, "scheme"),
        ("POST", "/sites", {**_ADD, "fingerprint": 12}, "fingerprint"),
        ("POST", "/auth/login", {"username": {"a": 1}, "password": "b"}, "username"),
        ("POST", "/enrolments", {"expires_in_s": "soon"}, "expires_in_s"),
        ("POST", "/enrolments", {"expires_in_s": 5}, "expires_in_s"),
        ("POST", "/enrolments", {"label": 7}, "label"),
        ("PATCH", "/sites/{site}", {"enabled": "yes"}, "enabled"),
        ("PATCH", "/sites/{site}", {"name": None}, "name"),
        ("PATCH", "/sites/{site}", {"name": ""}, "name"),
        ("PATCH", "/sites/{site}", {"port": 0}, "port"),
        ("PATCH", "/sites/{site}", {"retrieval": []}, "retrieval"),
        ("PATCH", "/sites/{site}", {"retrieval": {"speed": 1}}, "retrieval.speed"),
        (
            "PATCH",
            "/sites/{site}",
            {"retrieval": {"max_bandwidth_bps": 64_000}},
            "retrieval.max_bandwidth_bps",
        ),
        (
            "PATCH",
            "/sites/{site}",
            {"retrieval": {"parallel_devices": 0}},
            "retrieval.parallel_devices",
        ),
        (
            "PATCH",
            "/sites/{site}",
            {"retrieval": {"parallel_devices": "many"}},
            "retrieval.parallel_devices",
        ),
        (
            "PATCH",
            "/sites/{site}",
            {"retrieval": {"window_start": "25:00", "window_end": "06:00"}},
            "retrieval.window_start",
        ),
        ("PATCH", "/sites/{site}", {"time_zone": "Mars/Olympus"}, "time_zone"),
        ("PATCH", "/sites/{site}", {}, "body"),
        ("PATCH", "/devices/{device}", {"name": 5}, "name"),
        ("PATCH", "/devices/{device}", {"name": None}, "name"),
        ("PATCH", "/devices/{device}", {"name": "x" * 5000}, "name"),
        ("PATCH", "/devices/{device}", {}, "body"),
        # bad device settings
        ("PATCH", "/devices/{device}", {"recording": "everywhere"}, "recording"),
        ("PATCH", "/devices/{device}", {"recording": 1}, "recording"),
        ("PATCH", "/devices/{device}", {"live_feed": "sometimes"}, "live_feed"),
        ("PATCH", "/devices/{device}", {"live_feed": True}, "live_feed"),
        ("PATCH", "/devices/{device}", {"central_rule": "always"}, "central_rule"),
        ("PATCH", "/devices/{device}", {"central_rule": {"mode": "often"}}, "central_rule.mode"),
        ("PATCH", "/devices/{device}", {"central_rule": {"when": 1}}, "central_rule.when"),
        (
            "PATCH",
            "/devices/{device}",
            {"central_rule": {"pre_buffer_s": -1}},
            "central_rule.pre_buffer_s",
        ),
        (
            "PATCH",
            "/devices/{device}",
            {"central_rule": {"post_buffer_s": "long"}},
            "central_rule.post_buffer_s",
        ),
        (
            "PATCH",
            "/devices/{device}",
            {"central_rule": {"mode": "schedule"}},
            "central_rule.schedule",
        ),
        (
            "PATCH",
            "/devices/{device}",
            {"central_rule": {"mode": "schedule", "schedule": ["someday 25:00-26:00"]}},
            "central_rule.schedule",
        ),
    ],
)
async def test_bad_bodies_name_the_member(
    tmp_path: Path, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, device_id):
        target = path.format(site=site_id, device=device_id)
        reply = await central.call(method, target, json=body)
        assert_refused(reply, 400, "bad_request", field)
        # Nothing was changed by the refused request.
        assert (await central.call("GET", f"/sites/{site_id}"))[1]["name"] == "Far away"
        device = (await central.call("GET", f"/devices/{device_id}"))[1]
        assert (device["name"], device["recording"], device["central_rule"]) == (
            "Gate",
            "site_only",
            {},
        )


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"not json",
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"[" * 30_000 + b"]" * 30_000,
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(tmp_path: Path, data: bytes) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, device_id):
        for method, path in [
            ("POST", "/sites"),
            ("POST", "/auth/login"),
            ("POST", "/enrolments"),
            ("PATCH", f"/sites/{site_id}"),
            ("PATCH", f"/devices/{device_id}"),
        ]:
            status, body, text = await _raw(central, method, path, data)
            expected = 413 if len(data) > 64 * 1024 else 400
            assert status == expected, text
            assert "Traceback" not in text
            assert body is not None
            assert body["error"]["message"].startswith("body"), body


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/auth/login", b'{"username": "\\ud800", "password": "x"}', "username"),
        ("POST", "/auth/login", b'{"username": "admin", "password": "\\udfff"}', "password"),
        ("POST", "/enrolments", b'{"label": "\\ud800"}', "label"),
        ("PATCH", "/sites/{site}", b'{"name": "x\\ud800"}', "name"),
        ("PATCH", "/devices/{device}", b'{"name": "\\ud800"}', "name"),
    ],
)
async def test_a_string_that_is_not_unicode_is_refused(
    tmp_path: Path, method: str, path: str, body: bytes, field: str
) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, device_id):
        target = path.format(site=site_id, device=device_id)
        status, reply, text = await _raw(central, method, target, body)
    assert "Traceback" not in text
    assert_refused((status, reply), 400, "bad_request", field)


async def test_a_body_over_64_kib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with _central_with_a_camera(tmp_path) as (central, site_id, _):
        big = json.dumps({"name": "x" * (64 * 1024)}).encode()
        for method, path in [
            ("POST", "/auth/login"),
            ("POST", "/sites"),
            ("PATCH", f"/sites/{site_id}"),
        ]:
            status, body, text = await _raw(central, method, path, big)
            assert status == 413, text
            assert body is not None
            assert body["error"]["code"] == "payload_too_large"
            assert body["error"]["message"].startswith("body: larger than 65536 bytes")
        # The central still answers afterwards, and the site is unchanged.
        status, site = await central.call("GET", f"/sites/{site_id}")
        assert (status, site["name"]) == (200, "Far away")


async def test_a_method_a_path_does_not_take_is_named(tmp_path: Path) -> None:
    async with _central_with_a_camera(tmp_path) as (central, _, device_id):
        for method, path in [("PUT", "/sites"), ("DELETE", f"/devices/{device_id}")]:
            message = assert_refused(
                await central.call(method, path), 405, "method_not_allowed", None
            )
            assert method in message
