"""`siteline central run`: open the central, serve until SIGTERM or SIGINT, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from central.catalog.errors import CatalogError
from central.central_node import CentralNode
from central.config import CentralConfig, ConfigError, load_central_config
from shared.api_server import ApiServerError
from shared.clock import SystemClock
from shared.signing import SigningKeyError
from shared.store.errors import StoreError
from shared.tls_identity import TlsIdentityError

_log = logging.getLogger("siteline.central")


def run_central(config_path: Path, *, log_level: str) -> int:
    """Run the central of `config_path`; the process exit code."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_central_config(config_path)
    except ConfigError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config))
    except (
        StoreError,
        CatalogError,
        SigningKeyError,
        TlsIdentityError,
        ApiServerError,
        OSError,
    ) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2


async def _serve(config: CentralConfig) -> int:
    clock = SystemClock()
    node = await asyncio.to_thread(CentralNode.open, config, clock=clock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await node.start()
        print(f"central {config.central.name!r} ({config.central.id})", flush=True)
        print(f"  API:         {node.base_url}/api/v1 (OpenAPI at /api/v1/openapi.json)")
        if node.identity is not None:
            print(f"  certificate: SHA-256 {node.identity.fingerprint}")
        print(f"  media store: {config.storage.media_path}")
        print(f"  catalog:     {config.storage.catalog_path}", flush=True)
        await stop.wait()
        print("stopping", flush=True)
    finally:
        await node.stop()
    return 0
