"""The site's TLS identity, at the paths its configuration names."""

from __future__ import annotations

from agent.config import AgentConfig
from shared.clock import Clock
from shared.tls_identity import TlsIdentity, server_identity


def site_identity(config: AgentConfig, clock: Clock) -> TlsIdentity:
    """The identity at `[api] tls_certificate` and `tls_key`, made if absent, naming the
    site, this host, loopback and a specific bind address."""
    return server_identity(
        config.api.tls_certificate,
        config.api.tls_key,
        common_name=f"Siteline site {config.site.id}",
        bind=config.api.bind,
        clock=clock,
    )
