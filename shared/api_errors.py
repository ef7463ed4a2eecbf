"""Every refusal of an API as JSON, the same way for the agent's API and the central's.

`json_errors(classify, ...)` is an aiohttp middleware. It asks `classify` what an exception
raised by a handler means (a `Refusal`: status, code, message, headers, the field at
fault), answers the framework's own refusals (unknown route, method not allowed, body too
large), and turns anything else into a 500 that says only that the log has the details:
never a traceback. Every answer it gives, and every ordinary response that is not a stream
already under way, carries `no-store` and `nosniff`.

The body is ``{"error": {"code": ..., "message": ..., "field": ...}}``; `field` is there
only when one parameter is at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    field: str | None = None


Classify = Callable[[Exception], Refusal | None]
"""What an exception means to the client; None: not a refusal (a bug, so a 500)."""


def error_response(refusal: Refusal) -> web.Response:
    body: dict[str, object] = {"code": refusal.code, "message": refusal.message}
    if refusal.field is not None:
        body["field"] = refusal.field
    return web.json_response(
        {"error": body}, status=refusal.status, headers={**NO_STORE, **refusal.headers}
    )


def json_errors(
    classify: Classify, *, max_body_bytes: int, log: logging.Logger, who: str
) -> Middleware:
    """The middleware; `who` names the program in a 500's message ("the agent's log")."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                Refusal(413, "payload_too_large", f"body: larger than {max_body_bytes} bytes")
            )
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            return error_response(
                Refusal(
                    405,
                    "method_not_allowed",
                    f"{request.method} is not allowed here (allowed: {allowed})",
                    {"Allow": allowed},
                )
            )
        except web.HTTPNotFound:
            return error_response(Refusal(404, "not_found", f"no route {request.path}"))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(Refusal(exc.status, "http_error", exc.reason))
        except Exception as exc:
            refusal = classify(exc)
            if refusal is not None:
                return error_response(refusal)
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                Refusal(500, "internal", f"internal error; {who}'s log has the details")
            )
        if not response.prepared:
            response.headers.update(NO_STORE)
        return response

    return middleware
