"""Exports: make one of the same range of one or more devices, then download each device's
media and evidence.

`POST /exports` runs the export to the end before it answers (at most a day of recording,
at most `MAX_EXPORT_DEVICES` devices, at most `MAX_RUNNING_EXPORTS` exports at once) and
returns where the files are: `files/{device}/media` and `files/{device}/evidence` for every
export, and `media`, `evidence` as well for an export of one device (the shape clients had
before exports of several devices). Downloads answer Range requests, so an interrupted
download resumes where it stopped. An export belongs to the user who made it, and only while
the user may export every device in it: to anyone else its id does not exist. Exports are
deleted a day after they were made.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from central.api.account_routes import no_query
from central.api.services import SERVICES
from central.api.web_app import API_PREFIX, PRINCIPAL, ApiError, ApiRoute, principal_may
from central.auth import Action
from central.export.errors import ExportError
from central.export.export_writer import ExportContainer
from central.export_service import (
    EXPORT_KEEP_S,
    MAX_EXPORT_DEVICES,
    MAX_EXPORT_RANGE_S,
    ExportedFile,
    ExportRequest,
    ExportsBusy,
    FinishedExport,
    NothingRecorded,
    check_file_name,
)
from shared.api_input import (
    MAX_STRING_CHARS,
    BadRequest,
    format_instant,
    json_object,
    optional_string,
    parse_instant,
    required_string,
)
from shared.clock import NS_PER_S

BUSY_RETRY_AFTER_S = 10
_MEDIA_TYPES = {"mp4": "video/mp4", "mkv": "video/x-matroska"}
_EVIDENCE_TYPE = "application/octet-stream"
_DEVICE_FILES = "/exports/{export_id}/files/{device_id}"


def export_routes() -> list[ApiRoute]:
    return [
        ApiRoute("POST", "/exports", _make_export, Action.EXPORT),
        ApiRoute("GET", "/exports/{export_id}/media", _media, Action.EXPORT),
        ApiRoute("GET", "/exports/{export_id}/evidence", _evidence, Action.EXPORT),
        ApiRoute("GET", _DEVICE_FILES + "/media", _device_media, Action.EXPORT),
        ApiRoute("GET", _DEVICE_FILES + "/evidence", _device_evidence, Action.EXPORT),
    ]


async def _make_export(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(
        await request.read(),
        allowed=("device", "devices", "start", "end", "container", "file_name"),
    )
    device_ids = _asked_devices(body)
    start_ns = parse_instant("start", required_string(body, "start"))
    end_ns = parse_instant("end", required_string(body, "end"))
    if end_ns <= start_ns:
        raise BadRequest("end", "must be after start")
    if end_ns - start_ns > MAX_EXPORT_RANGE_S * NS_PER_S:
        raise BadRequest(
            "end",
            f"the range is longer than {MAX_EXPORT_RANGE_S // 3600} hours; export it in parts",
        )
    container_name = optional_string(body, "container") or ExportContainer.MP4.value
    if container_name not in tuple(ExportContainer):
        raise BadRequest("container", f"must be mp4 or mkv, not {container_name!r}")
    file_name = optional_string(body, "file_name")
    if file_name is not None:
        if len(device_ids) > 1:
            raise BadRequest(
                "file_name",
                "names the file of an export of one device; with several devices each file "
                "is named after its device and the start",
            )
        if (problem := check_file_name(file_name)) is not None:
            raise BadRequest("file_name", problem)
    for device_id in device_ids:
        if not principal_may(request, Action.EXPORT, device_id):
            raise ApiError(404, "not_found", f"device {device_id!r} does not exist")
    services = request.app[SERVICES]
    try:
        export = await services.exports.export(
            ExportRequest(
                device_ids,
                start_ns,
                end_ns,
                ExportContainer(container_name),
                username=request[PRINCIPAL].username,
                file_name=file_name,
            )
        )
    except ExportsBusy as exc:
        raise ApiError(
            429, "too_many_exports", str(exc), {"Retry-After": str(BUSY_RETRY_AFTER_S)}
        ) from exc
    except NothingRecorded as exc:
        raise ApiError(409, "nothing_recorded", str(exc)) from exc
    except ExportError as exc:
        raise ApiError(422, "export_failed", str(exc)) from exc
    return web.json_response(_export_json(export), status=201)


def _asked_devices(body: Mapping[str, object]) -> tuple[str, ...]:
    """The devices of the body: `device` (one) or `devices` (a list), exactly one of them."""
    if body.get("devices") is None:
        if body.get("device") is None:
            raise BadRequest("device", "missing (required): give device, or devices for several")
        device_id = required_string(body, "device")
        _check_device_id("device", device_id)
        return (device_id,)
    if body.get("device") is not None:
        raise BadRequest("devices", "give either device (one) or devices (a list), not both")
    value = body["devices"]
    if not isinstance(value, list) or not 0 < len(value) <= MAX_EXPORT_DEVICES:
        raise BadRequest("devices", f"must be a list of 1 to {MAX_EXPORT_DEVICES} device ids")
    if not all(isinstance(item, str) for item in value):
        raise BadRequest("devices", "every item must be a device id (a string)")
    device_ids = tuple(str(item) for item in value)
    for device_id in device_ids:
        _check_device_id("devices", device_id)
    if len(set(device_ids)) != len(device_ids):
        twice = next(d for d in device_ids if device_ids.count(d) > 1)
        raise BadRequest("devices", f"names device {twice!r} more than once")
    return device_ids


def _check_device_id(field: str, device_id: str) -> None:
    if len(device_id) > MAX_STRING_CHARS:
        raise BadRequest(field, f"a device id is at most {MAX_STRING_CHARS} characters")
    try:
        device_id.encode("utf-8")  # SQLite cannot look up a lone surrogate
    except UnicodeEncodeError as exc:
        raise BadRequest(field, "must be Unicode text (it holds a lone surrogate)") from exc


def _export_json(export: FinishedExport) -> dict[str, object]:
    base = f"{API_PREFIX}/exports/{export.export_id}"
    answer: dict[str, object] = {
        "id": export.export_id,
        "start": format_instant(export.start_ns),
        "end": format_instant(export.end_ns),
        "container": export.container,
        "expires": format_instant(export.created_ns + EXPORT_KEEP_S * NS_PER_S),
        "files": [_file_json(base, file) for file in export.files],
        "skipped": [{"device_id": s.device_id, "reason": s.reason} for s in export.skipped],
    }
    lone = export.lone_file
    if lone is not None:  # the answer's shape from before exports of several devices
        answer.update(_file_json(base, lone))
        answer.update(media_path=f"{base}/media", evidence_path=f"{base}/evidence")
    return answer


def _file_json(base: str, file: ExportedFile) -> dict[str, object]:
    files = f"{base}/files/{quote(file.device_id, safe='')}"
    return {
        "device_id": file.device_id,
        "file_name": file.file_name,
        "media_bytes": file.media_bytes,
        "media_sha256": file.media_sha256,
        "evidence_bytes": file.evidence_bytes,
        "duration_s": file.duration_ns / NS_PER_S,
        "media_path": f"{files}/media",
        "evidence_path": f"{files}/evidence",
    }


async def _callers_export(request: web.Request) -> FinishedExport:
    no_query(request)
    export_id = request.match_info["export_id"]
    export = await request.app[SERVICES].exports.finished(export_id)
    if (
        export is None
        or export.username != request[PRINCIPAL].username
        or not all(principal_may(request, Action.EXPORT, d) for d in export.device_ids)
    ):
        raise ApiError(
            404, "not_found", f"export {export_id!r} does not exist (exports last a day)"
        )
    return export


async def _lone_file(request: web.Request) -> tuple[FinishedExport, ExportedFile]:
    export = await _callers_export(request)
    lone = export.lone_file
    if lone is None:
        raise ApiError(
            404,
            "not_found",
            f"export {export.export_id} covers {len(export.device_ids)} devices, each in a "
            "file of its own: use files/{device}/media and files/{device}/evidence",
        )
    return export, lone


async def _device_file(request: web.Request) -> tuple[FinishedExport, ExportedFile]:
    export = await _callers_export(request)
    device_id = request.match_info["device_id"]
    file = export.file_of(device_id)
    if file is None:
        skipped = next((s for s in export.skipped if s.device_id == device_id), None)
        why = f": skipped, {skipped.reason}" if skipped else ""
        raise ApiError(
            404, "not_found", f"export {export.export_id} has no file of device {device_id!r}{why}"
        )
    return export, file


async def _media(request: web.Request) -> web.FileResponse:
    return _media_file(*await _lone_file(request))


async def _evidence(request: web.Request) -> web.FileResponse:
    return _evidence_file(*await _lone_file(request))


async def _device_media(request: web.Request) -> web.FileResponse:
    return _media_file(*await _device_file(request))


async def _device_evidence(request: web.Request) -> web.FileResponse:
    return _evidence_file(*await _device_file(request))


def _media_file(export: FinishedExport, file: ExportedFile) -> web.FileResponse:
    return _file(export.media_path(file), file.file_name, _MEDIA_TYPES[export.container])


def _evidence_file(export: FinishedExport, file: ExportedFile) -> web.FileResponse:
    return _file(export.evidence_path(file), file.evidence_name, _EVIDENCE_TYPE)


def _file(path: Path, name: str, content_type: str) -> web.FileResponse:
    plain = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Content-Disposition": disposition}
    )
