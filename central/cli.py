"""`siteline central ...`: init, run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    """Add the central's subcommands to `parser`."""
    commands = parser.add_subparsers(dest="central_command", metavar="COMMAND", required=True)

    init = commands.add_parser(
        "init",
        help="write DIR/central.toml and create the first administrator, 'admin'",
        description="Write DIR/central.toml and create the first administrator, 'admin'. "
        "A folder that has a central already is refused unless --force is given.",
    )
    init.add_argument("--dir", type=Path, required=True, help="folder of the central")
    init.add_argument(
        "--admin-password", help="password of the user 'admin' (default: a random one, shown)"
    )
    init.add_argument("--port", type=int, default=8600, help="API port (default: 8600)")
    init.add_argument(
        "--bind", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)"
    )
    init.add_argument("--scheme", choices=("https", "http"), default="https", help="default: https")
    init.add_argument("--name", default="Siteline central", help="the central's name")
    init.add_argument("--quota", default="20 GiB", help="media store quota (default: 20 GiB)")
    init.add_argument(
        "--force", action="store_true", help="rewrite central.toml and reset admin's password"
    )
    init.set_defaults(handler=_init)

    run = commands.add_parser(
        "run",
        help="serve until stopped (SIGTERM or SIGINT)",
        description="Serve the central's API, links and recordings until stopped "
        "(SIGTERM or SIGINT stop it cleanly, exit 0).",
    )
    run.add_argument("--config", type=Path, required=True, help="the central.toml to use")
    run.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    run.set_defaults(handler=_run)


def _init(args: argparse.Namespace) -> int:
    from central.catalog.errors import CatalogError  # noqa: PLC0415
    from central.central_init import InitError, init_central  # noqa: PLC0415
    from central.config import ConfigError  # noqa: PLC0415
    from shared.clock import SystemClock  # noqa: PLC0415

    try:
        result = init_central(
            args.dir,
            clock=SystemClock(),
            admin_password=args.admin_password,
            port=args.port,
            bind=args.bind,
            scheme=args.scheme,
            name=args.name,
            quota=args.quota,
            overwrite=args.force,
        )
    except (InitError, ConfigError, CatalogError, OSError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.config_path}")
    if result.password_was_generated:
        print(f"user 'admin', password: {result.admin_password}")
    print(f"start it with: siteline central run --config {result.config_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from central.run_command import run_central  # noqa: PLC0415

    return run_central(args.config, log_level=args.log_level)
