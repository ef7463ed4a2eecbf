"""A recording site with its API and link on loopback, and a TCP proxy that can cut or stall.

The site is the real thing: synthetic cameras encoding H.264, the LMDB store, the recorders,
the HTTPS API with the link route. Its accounts are those of tests/agent_api/api_site.py
(`admin` sees everything, `clerk` only cam-a and the door).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from agent.accounts import Accounts
from agent.config import AgentConfig, load_agent_config
from agent.link_endpoint import link_route
from agent.run_command import retention_policy
from agent.site_runtime import AgentSite
from agent.site_service import SiteService
from agent.site_tls import site_identity
from agent.source_factory import build_source
from agent.store_writer import StoreWriter
from agent.web_api import build_web_app
from shared.api_server import ApiServer
from shared.clock import SystemClock
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from shared.tls_identity import TlsIdentity
from tests.agent_api.api_site import api_config

READ_TIMEOUT_S = 3.0


@dataclass
class LinkSite:
    config: AgentConfig
    site: AgentSite
    store: ChunkStore
    signer: SiteSigner
    identity: TlsIdentity
    port: int
    clock: SystemClock
    service: SiteService

    @property
    def site_id(self) -> str:
        return self.config.site.id

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def wait_for_chunks(self, device_id: str, stream: str, count: int) -> None:
        for _ in range(600):
            summaries = await asyncio.to_thread(self.store.streams)
            for summary in summaries:
                if (summary.device_id, summary.stream) == (device_id, stream) and (
                    summary.chunk_count >= count
                ):
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{device_id}/{stream} never had {count} chunks")


@contextlib.asynccontextmanager
async def running_link_site(
    directory: Path, *, api_toml: str = "", port: int = 0
) -> AsyncIterator[LinkSite]:
    """The site in `directory`: made the first time, the same site (identity, key, store)
    when started again there; `port` 0 picks a free one."""
    existing = directory / "agent.toml"
    if existing.exists():
        config = load_agent_config(existing)
    else:
        config = api_config(directory, api_toml=api_toml)
    async with running_site_of(config, port=port) as site:
        yield site


@contextlib.asynccontextmanager
async def running_site_of(
    config: AgentConfig,
    *,
    port: int = 0,
    read_timeout_s: float = READ_TIMEOUT_S,
    seed: int = 3,
) -> AsyncIterator[LinkSite]:
    """A recording site of `config` with its API and link on loopback."""
    clock = SystemClock()
    signer = await asyncio.to_thread(SiteSigner.load_or_create, config.storage.key_path)
    identity = await asyncio.to_thread(site_identity, config, clock)
    store = await asyncio.to_thread(
        ChunkStore.open,
        config.storage.path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=clock,
        home_site_id=config.site.id,
        retention=retention_policy(config),  # as `siteline agent run` opens it
    )
    writer = StoreWriter(store)
    site = AgentSite(
        config,
        writer=writer,
        signer=signer,
        clock=clock,
        source_factory=lambda camera: build_source(camera, clock=clock),
        rng=random.Random(seed),
    )
    service = SiteService(
        config,
        store,
        public_key=signer.public_key,
        fingerprint=identity.fingerprint,
        clock=clock,
        cameras_up=lambda: {c.camera.id: c.supervisor.connected for c in site.cameras},
        version="test",
        stream_codecs=site.stream_codecs,  # as `siteline agent run` builds it
    )
    route = link_route(
        events=site.events,
        live=site.live,
        clock=clock,
        software="siteline-agent test",
        read_timeout_s=read_timeout_s,
    )
    app = build_web_app(service, Accounts(config.users, clock=clock), extra_routes=[route])
    server = ApiServer(app, host="127.0.0.1", port=port, ssl_context=identity.server_ssl_context())
    recording = asyncio.create_task(site.run(), name="site")
    try:
        port = await server.start()
        yield LinkSite(config, site, store, signer, identity, port, clock, service)
    finally:
        await server.stop()
        recording.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recording
        await service.wait_idle()
        await asyncio.to_thread(writer.close)
        store.close()


class TcpProxy:
    """Forwards loopback TCP to a target; can cut every connection, stall them (stop
    forwarding without closing, as a half-open connection looks), delay what it forwards
    (`latency_s`, each way, order kept) and slice it (`slice_bytes`: written on in pieces of
    at most that many bytes, each its own send, so frames arrive split at odd places)."""

    def __init__(
        self, target_port: int, *, latency_s: float = 0.0, slice_bytes: int | None = None
    ) -> None:
        if latency_s < 0 or (slice_bytes is not None and slice_bytes < 1):
            raise ValueError("latency_s must be >= 0 and slice_bytes >= 1")
        self.target_port = target_port
        self.latency_s = latency_s
        self.slice_bytes = slice_bytes
        self.port = 0
        self.flowing = asyncio.Event()  # cleared: stalled
        self.flowing.set()
        self.cut_after_bytes: int | None = None  # cut when this many bytes went to the client
        self.forwarded_to_client = 0
        self.sends = 0  # writes made to either side (slices count one each)
        self.cuts = 0
        self.accepted = 0  # connections accepted from clients
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        """Listen on `port` (0: a free one; another: the port of a proxy closed before)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        """Reset every open connection at once."""
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers |= {writer, upstream_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, upstream_writer, to_client=False)),
            asyncio.create_task(self._pump(upstream_reader, writer, to_client=True)),
        ]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_client: bool
    ) -> None:
        """Read from one side; a delivery task writes it to the other when it is due."""
        due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=64)
        delivery = asyncio.create_task(self._deliver(due, writer, to_client=to_client))
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(16384):
                await self.flowing.wait()
                await due.put((loop.time() + self.latency_s, data))
            await due.put(None)
            await delivery
        except (ConnectionError, OSError):
            pass
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await delivery
            writer.transport.abort()

    async def _deliver(
        self,
        due: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        to_client: bool,
    ) -> None:
        """Write each piece when due; after a cut or a write error, take the rest and drop
        it (so the reading side never waits on a full queue)."""
        loop = asyncio.get_running_loop()
        broken = False
        while (item := await due.get()) is not None:
            if broken:
                continue
            at, data = item
            if (wait_s := at - loop.time()) > 0:
                await asyncio.sleep(wait_s)
            await self.flowing.wait()
            try:
                broken = await self._write_sliced(writer, data, to_client=to_client)
            except (ConnectionError, OSError):
                broken = True

    async def _write_sliced(
        self, writer: asyncio.StreamWriter, data: bytes, *, to_client: bool
    ) -> bool:
        """Write `data` in slices; True when the armed cut was made."""
        step = self.slice_bytes or len(data)
        for offset in range(0, len(data), step):
            piece = data[offset : offset + step]
            if to_client:
                self.forwarded_to_client += len(piece)
            writer.write(piece)
            self.sends += 1
            await writer.drain()
            limit = self.cut_after_bytes
            if to_client and limit is not None and self.forwarded_to_client >= limit:
                self.cut_after_bytes = None
                self.cuts += 1
                self.cut()
                return True
        return False
