"""A second host on this machine: a network namespace joined to the test's by a veth pair.

The link between the two ends is a real network path the kernel routes, so the tests can do
to it what happens to a site's line: shape it with `tc tbf`, pull it (`ip link set down`),
which drops every packet without a reset on either side: the half-open connection a dead
mobile link leaves behind; or blackhole the routes between the two ends (a routing failure
on the way, both links up). (`tc netem` is not available here, so there is no kernel delay or
loss; the TCP proxy in `tests/link_io/link_site.py` covers resets and byte-exact cuts.)

Needs root and iproute2; `namespace_or_skip` skips the test, saying why, where either is
missing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class NamespacePair:
    """The namespace `name`, reached from here at `site_address` over `host_device`."""

    name: str
    host_device: str
    site_device: str
    host_address: str
    site_address: str

    def run_inside(self, argv: Sequence[str]) -> list[str]:
        """`argv` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def link_down(self) -> None:
        """Pull the cable at the site: packets in both directions vanish, nothing is reset.

        The site's end goes down, so ours loses its carrier but keeps its route: what is
        sent to the site is dropped here. (Taking our end down instead would withdraw the
        route, and this namespace's traffic to the site would leave by the default route,
        where a host on the way may answer for the site's address.)"""
        _ip("netns", "exec", self.name, "ip", "link", "set", self.site_device, "down")

    def link_up(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", self.site_device, "up")

    def blackhole_on(self) -> None:
        """A routing failure on the way: each end's route to the other becomes a blackhole
        (a /32 more specific than the pair's /30), so every packet either end sends is
        dropped by its own kernel, while both links stay up and nothing is reset."""
        _ip("route", "add", "blackhole", f"{self.site_address}/32")
        _ip(*self._inside_route("add"))

    def blackhole_off(self) -> None:
        _ip("route", "del", "blackhole", f"{self.site_address}/32")
        _ip(*self._inside_route("del"))

    def _inside_route(self, action: str) -> tuple[str, ...]:
        route = ("route", action, "blackhole", f"{self.host_address}/32")
        return ("netns", "exec", self.name, "ip", *route)

    def received_bytes(self) -> int:
        """Bytes that came from the namespace over the pair so far: this end's receive
        counter (frames with their headers, one set of headers per GSO packet)."""
        return int(Path(f"/sys/class/net/{self.host_device}/statistics/rx_bytes").read_text())

    def shape_site_uplink(self, rate: str) -> None:
        """Cap what the site sends (its recordings travel this way) with a token bucket."""
        _ip(
            "netns", "exec", self.name, "tc", "qdisc", "replace", "dev", self.site_device,
            "root", "tbf", "rate", rate, "burst", "16kb", "latency", "500ms",
            tool="tc",
        )  # fmt: skip


def _ip(*args: str, tool: str = "ip") -> None:
    command = ["ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed: {' '.join(command)}: {done.stderr.strip()}")


def _unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "network namespaces need iproute2 (ip, tc)"
    return None


@contextlib.contextmanager
def namespace_or_skip() -> Iterator[NamespacePair]:
    """A fresh namespace with a /30 between it and this one; removed afterwards."""
    reason = _unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    subnet = 16 + secrets.randbelow(200)
    pair = NamespacePair(
        name=f"siteline-{tag}",
        host_device=f"slh{tag}",
        site_device=f"sls{tag}",
        host_address=f"10.231.{subnet}.1",
        site_address=f"10.231.{subnet}.2",
    )
    try:
        _ip("netns", "add", pair.name)
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    try:
        _ip("link", "add", pair.host_device, "type", "veth", "peer", "name", pair.site_device)
        _ip("link", "set", pair.site_device, "netns", pair.name)
        _ip("addr", "add", f"{pair.host_address}/30", "dev", pair.host_device)
        _ip("link", "set", pair.host_device, "up")
        inside = ("netns", "exec", pair.name, "ip")
        _ip(*inside, "addr", "add", f"{pair.site_address}/30", "dev", pair.site_device)
        _ip(*inside, "link", "set", pair.site_device, "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield pair
    finally:
        # Deleting the namespace destroys its end of the veth pair, and with it ours.
        subprocess.run(["ip", "netns", "del", pair.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", pair.host_device], capture_output=True, check=False)
        subprocess.run(  # a blackhole left by a failed test
            ["ip", "route", "del", "blackhole", f"{pair.site_address}/32"],
            capture_output=True,
            check=False,
        )
