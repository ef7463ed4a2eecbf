"""`siteline site ...`: the central's sites from the command line (add, list, update, remove,
update hardware, enrolment tokens), through the central's REST API.

The connection options and exit codes are those of every client command (see
`client_cli`); in `site add`, `--user/--password` are the site's account and the central's
login is `--central-user/--central-password` or the environment.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from central.client_cli import (
    CONNECTION_HELP,
    EXIT_OK,
    SITE_ADD_CONNECTION_HELP,
    ClientSession,
    add_central_options,
    described,
    run_client_command,
    usage_failure,
)
from central.stream_format_text import format_text

DEFAULT_SITE_PORT = 8443
LINK_ACCOUNT = "admin"


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `site` subcommands to `parser`."""
    parser.epilog = CONNECTION_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = parser.add_subparsers(dest="site_command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, epilog: str = CONNECTION_HELP
    ) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=described(help_text),
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    add = command(
        "add",
        "add a site the central dials: it is probed first, nothing is added when a setting "
        "is wrong (the error names it)",
        SITE_ADD_CONNECTION_HELP,
    )
    site = add.add_argument_group("the site")
    site.add_argument("--address", required=True, help="the site's host name or IP address")
    site.add_argument(
        "--port", type=int, default=DEFAULT_SITE_PORT, help=f"default: {DEFAULT_SITE_PORT}"
    )
    site.add_argument("--user", dest="site_user", required=True, help="the site's account")
    site.add_argument(
        "--password", dest="site_password", required=True, help="that account's password"
    )
    site.add_argument(
        "--fingerprint",
        metavar="SHA256",
        help="the site's certificate (`siteline agent fingerprint` prints it); needed for "
        "https: without it the error shows the certificate's, to compare",
    )
    site.add_argument("--scheme", choices=("https", "http"), default="https")
    site.add_argument("--name", help="the central's name for it (default: the site's own)")
    add_central_options(add, login_flags=("--central-user", "--central-password"))
    add.set_defaults(handler=_handler(_add))

    listing = command("list", "every site with its status, address, devices and last contact")
    listing.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    add_central_options(listing)
    listing.set_defaults(handler=_handler(_list))

    update = command(
        "update",
        "change a site's name, how it is reached, or whether it is used; new connection "
        "settings are probed first",
    )
    update.add_argument("site_id", metavar="SITE_ID")
    change = update.add_argument_group("what to change")
    change.add_argument("--name")
    change.add_argument("--address")
    change.add_argument("--port", type=int)
    change.add_argument("--scheme", choices=("https", "http"))
    change.add_argument("--site-user", help="the site's account")
    change.add_argument("--site-password", help="that account's password")
    change.add_argument("--fingerprint", metavar="SHA256", help="the site's certificate")
    enabled = change.add_mutually_exclusive_group()
    enabled.add_argument(
        "--enable", dest="enabled", action="store_const", const=True, help="connect to it again"
    )
    enabled.add_argument(
        "--disable", dest="enabled", action="store_const", const=False, help="stop using it"
    )
    add_central_options(update)
    update.set_defaults(handler=_handler(_update))

    remove = command(
        "remove",
        "remove a site and its devices from the catalog (recordings the central holds stay "
        "until retention removes them)",
    )
    remove.add_argument("site_id", metavar="SITE_ID")
    add_central_options(remove)
    remove.set_defaults(handler=_handler(_remove))

    hardware = command(
        "hardware", "read the site's devices now and report what was added, removed or changed"
    )
    hardware.add_argument("site_id", metavar="SITE_ID")
    add_central_options(hardware)
    hardware.set_defaults(handler=_handler(_hardware))

    enrol = command(
        "enrol",
        "make an enrolment token for a site that dials in (behind NAT) and print the lines "
        "to paste into its agent.toml",
    )
    enrol.add_argument("--label", help="what the token is for (default: site)")
    enrol.add_argument("--expires-in-s", type=float, metavar="S", help="lifetime (default: 7 days)")
    enrol.add_argument(
        "--account",
        default=LINK_ACCOUNT,
        help=f"the site's [[users]] account the central acts as (default: {LINK_ACCOUNT})",
    )
    add_central_options(enrol)
    enrol.set_defaults(handler=_handler(_enrol))


def _handler(
    run: Callable[[ClientSession, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        problem = _usage_problem(args)
        if problem is not None:
            return usage_failure(problem)
        return run_client_command(args, lambda session: run(session, args))

    return handle


def _usage_problem(args: argparse.Namespace) -> str | None:
    port = getattr(args, "port", None)
    if port is not None and not 1 <= port <= 65535:
        return f"--port {port}: must be 1 to 65535"
    if args.site_command == "update" and not _changes(args):
        return (
            "update: name something to change (--name, --address, --port, --scheme, "
            "--site-user, --site-password, --fingerprint, --enable or --disable)"
        )
    return None


# -- the commands ----------------------------------------------------------------------------


async def _add(session: ClientSession, args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "address": args.address,
        "port": args.port,
        "scheme": args.scheme,
        "username": args.site_user,
        "password": args.site_password,
    }
    if args.fingerprint:
        body["fingerprint"] = args.fingerprint
    if args.name:
        body["name"] = args.name
    site = await session.client.call("POST", "/sites", body=body)
    print(
        f"added site {site['id']} ({site['name']}): {_devices(site['device_count'])}",
        file=session.out,
    )
    return EXIT_OK


async def _list(session: ClientSession, args: argparse.Namespace) -> int:
    answer = await session.client.call("GET", "/sites")
    sites = answer["sites"]
    if args.json:
        print(json.dumps(sites, indent=2), file=session.out)
    elif not sites:
        print("no sites yet: add one with `siteline site add`", file=session.out)
    else:
        print(site_table(sites), file=session.out)
    return EXIT_OK


def _changes(args: argparse.Namespace) -> dict[str, object]:
    changes: dict[str, object] = {}
    for option, member in (
        ("name", "name"),
        ("address", "address"),
        ("port", "port"),
        ("scheme", "scheme"),
        ("site_user", "username"),
        ("site_password", "password"),
        ("fingerprint", "fingerprint"),
        ("enabled", "enabled"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[member] = value
    return changes


async def _update(session: ClientSession, args: argparse.Namespace) -> int:
    site = await session.client.call("PATCH", f"/sites/{_path(args.site_id)}", body=_changes(args))
    print(
        f"updated site {site['id']} ({site['name']}): {_state(site)}, "
        f"{_devices(site['device_count'])}",
        file=session.out,
    )
    return EXIT_OK


async def _remove(session: ClientSession, args: argparse.Namespace) -> int:
    await session.client.call("DELETE", f"/sites/{_path(args.site_id)}")
    print(f"removed site {args.site_id}", file=session.out)
    return EXIT_OK


async def _hardware(session: ClientSession, args: argparse.Namespace) -> int:
    diff = await session.client.call("POST", f"/sites/{_path(args.site_id)}/hardware")
    print(hardware_report(diff), file=session.out)
    return EXIT_OK


async def _enrol(session: ClientSession, args: argparse.Namespace) -> int:
    body: dict[str, object] = {}
    if args.label:
        body["label"] = args.label
    if args.expires_in_s is not None:
        body["expires_in_s"] = args.expires_in_s
    issued = await session.client.call("POST", "/enrolments", body=body)
    link_url = session.client.base_url + issued["link_path"]
    print(
        f"enrolment token {issued['label']!r} (shown only now; usable until "
        f"{issued['expires']}):\n  {issued['token']}\n\n"
        "Paste these lines into the site's agent.toml and restart its agent (central_url\n"
        "must be an address the site can reach):\n",
        file=session.out,
    )
    print(
        link_table(link_url, issued["token"], args.account, session.client.pin),
        file=session.out,
    )
    return EXIT_OK


# -- what they print -------------------------------------------------------------------------


def link_table(central_url: str, token: str, account: str, fingerprint: str | None) -> str:
    """The agent's `[link]` table for a token (agent/config.py reads it)."""
    lines = [
        "[link]",
        f"central_url = {_toml_string(central_url)}",
        f"enrolment_token = {_toml_string(token)}",
        f"account = {_toml_string(account)}",
    ]
    if fingerprint is not None:
        lines.append(f"central_fingerprint = {_toml_string(fingerprint)}")
    return "\n".join(lines)


def site_table(sites: Sequence[Mapping[str, Any]]) -> str:
    """The sites as an aligned table."""
    header = ("ID", "NAME", "STATUS", "ADDRESS", "DEVICES", "LAST SEEN")
    rows = [
        (
            str(site["id"]),
            str(site["name"]),
            _state(site),
            _address(site),
            str(site["device_count"]),
            site["last_seen"] or "never",
        )
        for site in sites
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def hardware_report(diff: Mapping[str, Any]) -> str:
    changed = [_change_line(c) for c in diff["changed"]]
    lines = [
        f"added:    {', '.join(diff['added']) or 'none'}",
        f"removed:  {', '.join(diff['removed']) or 'none'}",
        f"returned: {', '.join(diff['returned']) or 'none'}",
        f"changed:  {', '.join(changed) or 'none'}",
    ]
    return "\n".join(lines)


def _change_line(change: Mapping[str, Any]) -> str:
    """``d-1 (original_name, stream_format lq: h264 640x360 -> h264 480x270)``; a central
    from before stream formats were reported sends no `stream_formats`."""
    fields = [field for field in change["fields"] if field != "stream_format"]
    fields += [
        f"stream_format {c['stream']}: {_format(c['before'])} -> {_format(c['after'])}"
        for c in change.get("stream_formats", [])
    ]
    if "stream_format" in change["fields"] and not change.get("stream_formats"):
        fields.append("stream_format")
    return f"{change['id']} ({', '.join(fields)})"


def _format(stream: Mapping[str, Any]) -> str:
    return format_text(
        stream.get("codec"), stream.get("width"), stream.get("height"), stream.get("frame_rate")
    )


def _state(site: Mapping[str, Any]) -> str:
    state = str(site["status"]["state"])
    return state if site["enabled"] else f"{state} (disabled)"


def _address(site: Mapping[str, Any]) -> str:
    if site["dial"] == "site":
        return "(dials in)"
    return f"{site['scheme']}://{site['address']}:{site['port']}"


def _devices(count: int) -> str:
    return "1 device" if count == 1 else f"{count} devices"


def _path(site_id: str) -> str:
    return quote(site_id, safe="")


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's for these characters."""
    return json.dumps(text, ensure_ascii=False)
