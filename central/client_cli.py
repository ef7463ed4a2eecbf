"""What the central's client commands (`siteline site ...`, `siteline export`) share: where
the central is, who logs in, which certificate to trust, and how an outcome becomes an exit
code.

Every client command takes `--central URL --user U --password PW`, or the environment
variables `SITELINE_CENTRAL`, `SITELINE_USER`, `SITELINE_PASSWORD` (a flag wins over its
variable). A command whose `--user/--password` mean something else (the site's account in
`siteline site add`) takes the central's login as `--central-user/--central-password`.

Over HTTPS the central's certificate is pinned: to `--central-fingerprint` (or
`SITELINE_CENTRAL_FINGERPRINT`) when given, else to the fingerprint remembered for that URL
in `known_centrals.json`, else, on first contact, to the one the central presents, which is
printed and remembered (see `known_centrals`). A certificate other than the remembered one is
refused. There is no way to switch the check off.

Exit codes: 0 done; 1 the central refused or failed the request (its message is printed);
2 the command was used wrongly, or the central could not be reached or trusted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import os
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import aiohttp
from yarl import URL

from central.central_client import (
    CentralClient,
    CentralRefused,
    CentralUnreachable,
    CertificateMismatch,
    describe_os_error,
)
from central.known_centrals import (
    FILE_NAME,
    KnownCentral,
    KnownCentrals,
    KnownCentralsError,
    presented_fingerprint,
)
from shared.clock import Clock, SystemClock
from shared.tls_pinning import format_fingerprint, normalize_fingerprint

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

ENV_CENTRAL = "SITELINE_CENTRAL"
ENV_USER = "SITELINE_USER"
ENV_PASSWORD = "SITELINE_PASSWORD"  # noqa: S105 - the variable's name, not a password
ENV_FINGERPRINT = "SITELINE_CENTRAL_FINGERPRINT"
ENV_CONFIG_DIR = "SITELINE_CONFIG_DIR"

CONNECTION_HELP = f"""\
login and trust:
  --central, --user and --password may come from the environment instead:
  {ENV_CENTRAL}, {ENV_USER}, {ENV_PASSWORD}; a flag wins over its
  variable. Over HTTPS the central's certificate is pinned to
  --central-fingerprint ({ENV_FINGERPRINT}); without it, the
  fingerprint seen on first contact is printed and remembered in
  ~/.config/siteline/{FILE_NAME} ({ENV_CONFIG_DIR} moves the folder),
  and a different certificate later is refused.

exit codes: 0 done; 1 the central refused the request (its message is printed);
  2 wrong usage, or the central could not be reached or trusted."""

SITE_ADD_CONNECTION_HELP = CONNECTION_HELP.replace(
    "  --central, --user and --password may come from the environment instead:\n"
    f"  {ENV_CENTRAL}, {ENV_USER}, {ENV_PASSWORD}; a flag wins over its\n"
    "  variable.",
    "  Here --user and --password are the SITE's account. The central's login is\n"
    "  --central-user and --central-password, or the environment variables\n"
    f"  {ENV_USER} and {ENV_PASSWORD}; --central may come from\n"
    f"  {ENV_CENTRAL}.",
)


def described(text: str) -> str:
    """A description paragraph wrapped for --help (the formatter keeps epilogs as written)."""
    return textwrap.fill(text, width=78)


class UsageError(Exception):
    """The command was given something it cannot use; the message says what."""


@dataclass(frozen=True, slots=True)
class CentralLogin:
    """Where the central is, who logs in, and how its certificate is trusted."""

    base_url: str  # scheme://host:port
    username: str
    password: str
    fingerprint: str | None  # given by the operator
    known_centrals: Path

    @property
    def host(self) -> str:
        return URL(self.base_url).host or ""

    @property
    def port(self) -> int:
        return URL(self.base_url).port or 0

    @property
    def https(self) -> bool:
        return self.base_url.startswith("https:")


@dataclass(frozen=True, slots=True)
class ClientSession:
    """A logged-in client and what a command may need to print about the central."""

    client: CentralClient
    login: CentralLogin
    out: TextIO
    err: TextIO


Command = Callable[[ClientSession], Awaitable[int]]


def add_central_options(
    parser: argparse.ArgumentParser, *, login_flags: tuple[str, str] = ("--user", "--password")
) -> None:
    """The options naming the central and its login (`login_flags` spells the latter)."""
    group = parser.add_argument_group("the central")
    group.add_argument("--central", metavar="URL", help=f"e.g. https://host:8600 (${ENV_CENTRAL})")
    user_flag, password_flag = login_flags
    group.add_argument(
        user_flag, dest="central_user", metavar="USER", help=f"the central's user (${ENV_USER})"
    )
    group.add_argument(
        password_flag,
        dest="central_password",
        metavar="PASSWORD",
        help=f"the central user's password (${ENV_PASSWORD}; asked for on a terminal)",
    )
    group.add_argument(
        "--central-fingerprint",
        metavar="SHA256",
        help=f"pin the central's certificate (${ENV_FINGERPRINT})",
    )


def central_base_url(text: str) -> str:
    """`scheme://host:port` of a central URL as an operator types it (a trailing /api/v1 or
    slash is fine); `UsageError` says what is wrong with anything else."""
    try:
        url = URL(text.strip())
    except ValueError as exc:
        raise UsageError(f"--central {text!r}: not a URL ({exc})") from exc
    if url.scheme not in ("https", "http") or not url.host:
        raise UsageError(f"--central {text!r}: expected https://HOST:PORT (or http://)")
    if url.path.rstrip("/") not in ("", "/api/v1") or url.query_string or url.fragment:
        raise UsageError(f"--central {text!r}: expected https://HOST:PORT, without a path")
    if url.user is not None:
        raise UsageError(f"--central {text!r}: the login goes in --user/--password, not the URL")
    host = url.host
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"{url.scheme}://{host}:{url.port}"


def central_login(args: argparse.Namespace, environ: Mapping[str, str]) -> CentralLogin:
    """The central and login of a parsed command line and its environment."""
    central = args.central or environ.get(ENV_CENTRAL)
    if not central:
        raise UsageError(f"which central? Give --central URL or set {ENV_CENTRAL}")
    base_url = central_base_url(central)
    username = args.central_user or environ.get(ENV_USER)
    if not username:
        raise UsageError(f"who logs in to the central? Give the user or set {ENV_USER}")
    password = args.central_password or environ.get(ENV_PASSWORD)
    if not password:
        if not sys.stdin.isatty():
            raise UsageError(f"the central user's password is missing; set {ENV_PASSWORD}")
        password = getpass.getpass(f"password of {username} at {base_url}: ")
    fingerprint = args.central_fingerprint or environ.get(ENV_FINGERPRINT) or None
    if fingerprint is not None:
        if not base_url.startswith("https:"):
            raise UsageError(f"{base_url} is plain HTTP: it has no certificate to pin")
        try:
            fingerprint = format_fingerprint(normalize_fingerprint(fingerprint))
        except ValueError as exc:
            raise UsageError(f"--central-fingerprint: {exc}") from exc
    config_dir = environ.get(ENV_CONFIG_DIR)
    folder = Path(config_dir) if config_dir else Path.home() / ".config" / "siteline"
    return CentralLogin(base_url, username, password, fingerprint, folder / FILE_NAME)


def run_client_command(
    args: argparse.Namespace,
    command: Command,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Clock | None = None,
) -> int:
    """Log in to the central `args` name, run `command`, and turn the outcome into the exit
    code, printing what went wrong; never a traceback."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        login = central_login(args, os.environ if environ is None else environ)
        return asyncio.run(_logged_in(login, command, out, err, clock or SystemClock()))
    except UsageError as exc:
        print(f"siteline: {exc}", file=err)
        return EXIT_USAGE
    except CentralRefused as exc:
        print(f"siteline: {exc.describe()}", file=err)
        return EXIT_REFUSED
    except (CentralUnreachable, KnownCentralsError) as exc:
        print(f"siteline: {exc}", file=err)
        return EXIT_USAGE
    except OSError as exc:  # writing what was asked for: a folder, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"siteline: {where}{exc.strerror or exc}", file=err)
        return EXIT_USAGE
    except (KeyError, TypeError, ValueError) as exc:
        print(
            f"siteline: the central's answer is not what this command expects ({exc!r}); "
            "are the central and this command of the same version?",
            file=err,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("siteline: interrupted", file=err)
        return EXIT_USAGE


def usage_failure(message: str, err: TextIO | None = None) -> int:
    """Print a usage problem found before contacting the central; the exit code."""
    print(f"siteline: {message}", file=sys.stderr if err is None else err)
    return EXIT_USAGE


async def _logged_in(
    login: CentralLogin, command: Command, out: TextIO, err: TextIO, clock: Clock
) -> int:
    known_centrals = KnownCentrals(login.known_centrals, clock=clock)
    known = None if login.fingerprint or not login.https else known_centrals.get(login.base_url)
    pin = login.fingerprint or (None if known is None else known.fingerprint)
    if login.https and pin is None:
        pin = await _first_contact(login, known_centrals, err)
    if not login.https and not _loopback(login.host):
        print(
            f"siteline: warning: {login.base_url} is plain HTTP; passwords cross unencrypted",
            file=err,
        )
    async with aiohttp.ClientSession() as http:
        client = CentralClient(http, login.base_url, pin=pin, clock=clock)
        try:
            await client.login(login.username, login.password)
        except CertificateMismatch as exc:
            raise CentralUnreachable(_mismatch_message(login, known, exc)) from exc
        except CentralRefused:
            _remember(known_centrals, login, known, pin)  # the handshake passed
            raise
        _remember(known_centrals, login, known, pin)
        return await command(ClientSession(client, login, out, err))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _first_contact(login: CentralLogin, known_centrals: KnownCentrals, err: TextIO) -> str:
    try:
        fingerprint = await presented_fingerprint(login.host, login.port)
    except TimeoutError as exc:
        raise CentralUnreachable(f"the central at {login.base_url} did not answer in time") from exc
    except OSError as exc:
        reason = describe_os_error(exc)
        raise CentralUnreachable(f"cannot reach the central at {login.base_url}: {reason}") from exc
    print(
        f"siteline: first contact with the central at {login.base_url}; its certificate has\n"
        f"  SHA-256 {fingerprint}\n"
        "  Compare it with what `siteline central run` printed there. It is trusted from now\n"
        f"  on and remembered in {known_centrals.path}.",
        file=err,
    )
    return fingerprint


def _remember(
    known_centrals: KnownCentrals, login: CentralLogin, known: KnownCentral | None, pin: str | None
) -> None:
    if pin is not None and (known is None or known.fingerprint != pin):
        known_centrals.remember(login.base_url, pin)


def _mismatch_message(
    login: CentralLogin, known: KnownCentral | None, exc: CertificateMismatch
) -> str:
    if known is not None:
        return (
            f"the certificate of the central at {login.base_url} is NOT the one remembered!\n"
            f"  remembered: SHA-256 {exc.expected} (first seen {known.first_seen})\n"
            f"  presented:  SHA-256 {exc.presented}\n"
            "Someone may be intercepting the connection: nothing was sent. If the central's "
            "certificate was\nreplaced on purpose, run again with --central-fingerprint set to "
            "the fingerprint\n`siteline central run` prints at the central; it then replaces the "
            f"remembered one in\n{login.known_centrals}."
        )
    if login.fingerprint is not None:
        return (
            f"the central at {login.base_url} presented a certificate with SHA-256 "
            f"{exc.presented},\nnot the pinned {exc.expected} (--central-fingerprint); "
            "nothing was sent"
        )
    return (
        f"the certificate of the central at {login.base_url} changed while connecting "
        f"(first {exc.expected}, then {exc.presented}); nothing was sent"
    )
