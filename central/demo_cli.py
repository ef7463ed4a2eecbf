"""`siteline demo`: its arguments; the demo itself is in `demo_command.py` (loaded only
when it runs, so other commands never load the central)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

DEFAULT_PORT = 8600


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, default=None, help="stop by itself after S seconds"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the central's API port; the sites take the next ports (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("siteline-demo"),
        help="where the central and the sites keep everything (default ./siteline-demo)",
    )
    parser.add_argument(
        "--admin-password", help="password of the central's user 'admin' (default: kept random)"
    )
    parser.add_argument("--sites", type=int, default=2, help="how many sites (1-4, default 2)")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 1 <= args.sites <= 4:
        print("siteline demo: --sites must be 1 to 4", file=sys.stderr)
        return 2
    if not 1 <= args.port <= 65535 - args.sites:
        print(f"siteline demo: --port must leave room for {args.sites} site ports", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("siteline demo: --duration must be positive", file=sys.stderr)
        return 2
    from central.config import ConfigError  # noqa: PLC0415
    from central.demo_command import DemoError, run_demo  # noqa: PLC0415
    from shared.api_server import ApiServerError  # noqa: PLC0415

    try:
        return asyncio.run(
            run_demo(
                args.data_dir.resolve(),
                port=args.port,
                duration_s=args.duration,
                admin_password=args.admin_password,
                site_count=args.sites,
            )
        )
    except (DemoError, ConfigError, ApiServerError, OSError) as exc:
        print(f"siteline demo: {exc}", file=sys.stderr)
        return 2
