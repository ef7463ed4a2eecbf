"""The `siteline` command: dispatches to the agent's and (later) the central's commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

# Each program registers its commands; imported lazily so `siteline agent ...` never loads
# the central's code and the other way round.
_COMMAND_GROUPS = {
    "agent": ("agent.cli", "the site agent: record cameras into the edge store"),
    "central": ("central.cli", "the central aggregator: sites, live, recordings, API"),
    "demo": ("central.demo_cli", "a central and simulated sites on loopback"),
    "site": ("central.site_cli", "the central's sites: add, list, update, remove, enrol"),
    "export": ("central.export_cli", "export a device's recording of a range from the central"),
    "retrieve": ("central.retrieve_cli", "retrieve recordings of a span from a site, queued"),
    "verify": ("central.verify_command", "check an export: exit 0 only if authentic and complete"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="siteline", description="Siteline: multi-site video surveillance."
    )
    parser.add_argument("--version", action="version", version=f"siteline {_version()}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in _COMMAND_GROUPS.items():
        group = groups.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.register(group)
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


def _version() -> str:
    try:
        return metadata.version("siteline")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
