"""Serving the API application on a TCP port (TLS when given a context), and stopping it."""

from __future__ import annotations

import ssl

from aiohttp import web

SHUTDOWN_TIMEOUT_S = 5.0


class ApiServerError(Exception):
    """The server could not listen (address in use, no permission, unknown address)."""


class ApiServer:
    """One aiohttp application on `host:port`; `port=0` picks a free port."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the port actually bound, once started

    @property
    def app(self) -> web.Application:
        """The application served (to inspect its routes; not to change it)."""
        return self._app

    @property
    def scheme(self) -> str:
        return "http" if self._ssl_context is None else "https"

    async def start(self) -> int:
        """Listen; the bound port. Raises `ApiServerError` naming the address on failure."""
        runner = web.AppRunner(self._app, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ApiServerError(
                f"cannot serve the API on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and finish or cancel the requests in progress (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
