"""Exports: make one of a device's range, then download its media and its evidence.

`POST /exports` runs the export to the end before it answers (at most a day of recording,
at most `MAX_RUNNING_EXPORTS` at once) and returns where the two files are; both downloads
answer Range requests, so an interrupted download resumes where it stopped. An export
belongs to the user who made it: to anyone else its id does not exist. Exports are deleted
a day after they were made.
"""

from __future__ import annotations

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
    MAX_EXPORT_RANGE_S,
    ExportRequest,
    ExportsBusy,
    FinishedExport,
    NothingRecorded,
    check_file_name,
)
from shared.api_input import (
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


def export_routes() -> list[ApiRoute]:
    return [
        ApiRoute("POST", "/exports", _make_export, Action.EXPORT),
        ApiRoute("GET", "/exports/{export_id}/media", _media, Action.EXPORT),
        ApiRoute("GET", "/exports/{export_id}/evidence", _evidence, Action.EXPORT),
    ]


async def _make_export(request: web.Request) -> web.Response:
    no_query(request)
    body = json_object(
        await request.read(), allowed=("device", "start", "end", "container", "file_name")
    )
    device_id = required_string(body, "device")
    try:
        device_id.encode("utf-8")  # SQLite cannot look up a lone surrogate
    except UnicodeEncodeError as exc:
        raise BadRequest("device", "must be Unicode text (it holds a lone surrogate)") from exc
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
    if file_name is not None and (problem := check_file_name(file_name)) is not None:
        raise BadRequest("file_name", problem)
    if not principal_may(request, Action.EXPORT, device_id):
        raise ApiError(404, "not_found", f"device {device_id!r} does not exist")
    services = request.app[SERVICES]
    try:
        export = await services.exports.export(
            ExportRequest(
                device_id,
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


def _export_json(export: FinishedExport) -> dict[str, object]:
    base = f"{API_PREFIX}/exports/{export.export_id}"
    return {
        "id": export.export_id,
        "device_id": export.device_id,
        "start": format_instant(export.start_ns),
        "end": format_instant(export.end_ns),
        "container": export.container,
        "file_name": export.file_name,
        "media_bytes": export.media_bytes,
        "media_sha256": export.media_sha256,
        "evidence_bytes": export.evidence_bytes,
        "duration_s": export.duration_ns / NS_PER_S,
        "expires": format_instant(export.created_ns + EXPORT_KEEP_S * NS_PER_S),
        "media_path": f"{base}/media",
        "evidence_path": f"{base}/evidence",
    }


async def _callers_export(request: web.Request) -> FinishedExport:
    no_query(request)
    export_id = request.match_info["export_id"]
    export = await request.app[SERVICES].exports.finished(export_id)
    if (
        export is None
        or export.username != request[PRINCIPAL].username
        or not principal_may(request, Action.EXPORT, export.device_id)
    ):
        raise ApiError(
            404, "not_found", f"export {export_id!r} does not exist (exports last a day)"
        )
    return export


async def _media(request: web.Request) -> web.FileResponse:
    export = await _callers_export(request)
    return _file(export.media_path, export.file_name, _MEDIA_TYPES[export.container])


async def _evidence(request: web.Request) -> web.FileResponse:
    export = await _callers_export(request)
    return _file(export.evidence_path, export.evidence_path.name, _EVIDENCE_TYPE)


def _file(path: Path, name: str, content_type: str) -> web.FileResponse:
    plain = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Content-Disposition": disposition}
    )
