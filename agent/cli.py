"""`siteline agent ...`: init, run, check, status, fingerprint."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from agent.config import ConfigError, load_agent_config
from agent.sample_config import InitError, write_sample_config


def register(parser: argparse.ArgumentParser) -> None:
    """Add the agent's subcommands to `parser`."""
    commands = parser.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)

    init = commands.add_parser(
        "init", help="write a working sample configuration with synthetic cameras"
    )
    init.add_argument("--dir", type=Path, required=True, help="folder for agent.toml and the store")
    init.add_argument("--name", default="My site", help="the site's name (default: My site)")
    init.add_argument(
        "--admin-password", help="password of the account 'admin' (default: a random one)"
    )
    init.add_argument("--port", type=int, default=8443, help="API port (default: 8443)")
    init.add_argument("--time-zone", default="UTC", help="IANA time zone (default: UTC)")
    init.add_argument("--quota", default="4 GiB", help="storage quota (default: 4 GiB)")
    init.add_argument("--force", action="store_true", help="replace an existing agent.toml")
    init.set_defaults(handler=_init)

    run = commands.add_parser("run", help="record until stopped (SIGTERM or SIGINT)")
    run.add_argument("--config", type=Path, required=True, help="the agent.toml to use")
    run.add_argument(
        "--status-interval", type=float, default=10.0, help="seconds between status lines"
    )
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check", help="verify the store's invariants and every signature; exit 0 only if all hold"
    )
    check.add_argument("--config", type=Path, required=True, help="the agent.toml to use")
    check.add_argument("--verbose", action="store_true", help="list every finding")
    check.set_defaults(handler=_check)

    status = commands.add_parser("status", help="what the store holds, stream by stream")
    status.add_argument("--config", type=Path, required=True, help="the agent.toml to use")
    status.set_defaults(handler=_status)

    fingerprint = commands.add_parser(
        "fingerprint",
        help="print the SHA-256 fingerprint of the site's TLS certificate (made if absent)",
    )
    fingerprint.add_argument("--config", type=Path, required=True, help="the agent.toml to use")
    fingerprint.set_defaults(handler=_fingerprint)


def _init(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        print(f"siteline: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    password = args.admin_password or secrets.token_urlsafe(12)
    try:
        path = write_sample_config(
            args.dir,
            name=args.name,
            admin_password=password,
            port=args.port,
            time_zone=args.time_zone,
            quota=args.quota,
            overwrite=args.force,
        )
        load_agent_config(path)  # the sample must always be valid; fail loudly if not
    except (InitError, ConfigError, OSError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    if not args.admin_password:
        print(f"account 'admin', password: {password}")
    print(f"start it with: siteline agent run --config {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.run_command import run_agent  # noqa: PLC0415 - loads PyAV and LMDB

    return run_agent(args.config, status_interval_s=args.status_interval, log_level=args.log_level)


def _check(args: argparse.Namespace) -> int:
    from agent.store_audit import audit_command  # noqa: PLC0415

    return audit_command(args.config, verbose=args.verbose)


def _status(args: argparse.Namespace) -> int:
    from agent.store_audit import status_command  # noqa: PLC0415

    return status_command(args.config)


def _fingerprint(args: argparse.Namespace) -> int:
    from agent.site_tls import site_identity  # noqa: PLC0415
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.tls_identity import TlsIdentityError  # noqa: PLC0415

    try:
        config = load_agent_config(args.config)
        existed = config.api.tls_certificate.exists()
        identity = site_identity(config, SystemClock())
    except (ConfigError, TlsIdentityError, OSError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    if not existed:
        print(
            f"siteline: made a new self-signed certificate {identity.cert_path} "
            f"(key {identity.key_path}); the agent serves it from its next start",
            file=sys.stderr,
        )
    if config.api.scheme != "https":
        print(
            'siteline: note: [api] scheme is "http", so this certificate is not served',
            file=sys.stderr,
        )
    print(identity.fingerprint)
    return 0
