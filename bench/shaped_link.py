"""A site's line for benchmarks: a network namespace joined to this one by a veth pair, the
site's uplink shaped with `tc tbf`, cut with `ip link set down`, and counted.

The benchmark runs the site inside the namespace (`run_inside`) and the central here; what
the site sends crosses the token bucket on its end of the pair, so the shaped rate is the
most the site's recordings can travel at. `received_bytes` reads this end's receive
counter: what the site sent, with headers, but one set of them per GSO packet (up to the
bucket's burst), where the bucket charges the Ethernet, IP and TCP headers of every segment;
so the counter understates the headers a little. `site_tcp_retransmits` counts the segments
TCP in the namespace sent again (what a cut or the bucket lost). `bulk_tcp_rate` is the
baseline: one plain TCP stream of zeros from inside the namespace (bench/zero_sender.py) to
here, the most any TCP transfer gets through the shaped line.

The same construction as the fault tests' namespace (tests/faults/netns.py), which skips a
test where namespaces are missing; a benchmark instead stops with `NamespaceUnavailable`,
saying why. Needs root and iproute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TBF_BURST = "16kb"
TBF_LATENCY = "500ms"
BASELINE_GRACE_S = 30.0


class NamespaceUnavailable(RuntimeError):
    """This machine cannot make the namespace (not root, no iproute2, no netns support)."""


@dataclass(frozen=True)
class ShapedLink:
    """The namespace `name`, reached from here at `site_address` over `host_device`."""

    name: str
    host_device: str
    site_device: str
    host_address: str
    site_address: str

    def run_inside(self, argv: Sequence[str]) -> list[str]:
        """`argv` as a command line that runs inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def shape(self, rate: str) -> None:
        """Cap what the site sends at `rate` (tc's syntax: "20mbit") with a token bucket."""
        _run(
            "ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev", self.site_device,
            "root", "tbf", "rate", rate, "burst", TBF_BURST, "latency", TBF_LATENCY,
        )  # fmt: skip

    def cut(self) -> None:
        """Pull the cable at the site: packets in both directions vanish, nothing is reset.

        The site's end goes down, so this end keeps its route (taking this end down would
        withdraw it, and the central's packets for the site would leave by the default
        route, where a host may answer for the site's address)."""
        _run(*self.run_inside(["ip", "link", "set", self.site_device, "down"]))

    def reset_connections(self) -> None:
        """End every TCP connection of the site at once, as a router that restarts or a
        mobile line that changes its address does: the site's sockets are aborted and the
        central's end gets a reset (`ss -K`)."""
        _run(*self.run_inside(["ss", "-K", "state", "established"]))

    def heal(self) -> None:
        _run(*self.run_inside(["ip", "link", "set", self.site_device, "up"]))

    def received_bytes(self) -> int:
        """Bytes that came from the site so far (this end's counter; see the module
        docstring for the headers it leaves out)."""
        path = Path(f"/sys/class/net/{self.host_device}/statistics/rx_bytes")
        return int(path.read_text())

    def shaper_drops(self) -> int:
        """Packets the token bucket dropped so far (its queue overflowed)."""
        out = _run(
            "ip", "netns", "exec", self.name, "tc", "-s", "qdisc", "show", "dev", self.site_device
        )  # fmt: skip
        found = re.search(r"\bdropped (\d+)", out)
        if found is None:
            raise RuntimeError(f"tc -s qdisc show dev {self.site_device} names no drops: {out}")
        return int(found.group(1))

    def site_tcp_retransmits(self) -> int:
        """TCP segments the namespace retransmitted so far (`RetransSegs` of its
        /proc/net/snmp): what TCP sent again, e.g. what a cut lost."""
        lines = _run(*self.run_inside(["cat", "/proc/net/snmp"])).splitlines()
        tcp = [n.split()[1:] for n in lines if n.startswith("Tcp:")]
        if len(tcp) != 2 or "RetransSegs" not in tcp[0]:
            raise RuntimeError(f"/proc/net/snmp in {self.name} has no TCP RetransSegs: {lines}")
        names, values = tcp
        return int(values[names.index("RetransSegs")])


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why no namespace can be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces and tc need root; run it as root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install iproute2"
    return None


@contextlib.contextmanager
def shaped_link(rate: str) -> Iterator[ShapedLink]:
    """A fresh namespace with a /30 between it and this one, the site's uplink shaped at
    `rate`; removed afterwards (`NamespaceUnavailable` where it cannot be made)."""
    reason = unavailable_reason()
    if reason is not None:
        raise NamespaceUnavailable(reason)
    tag = secrets.token_hex(3)
    subnet = 16 + secrets.randbelow(200)
    link = ShapedLink(
        name=f"siteline-bench-{tag}",
        host_device=f"sbh{tag}",
        site_device=f"sbs{tag}",
        host_address=f"10.232.{subnet}.1",
        site_address=f"10.232.{subnet}.2",
    )
    try:
        _run("ip", "netns", "add", link.name)
    except RuntimeError as exc:
        raise NamespaceUnavailable(f"cannot create a network namespace here: {exc}") from exc
    try:
        _run(
            "ip", "link", "add", link.host_device, "type", "veth", "peer", "name", link.site_device
        )
        _run("ip", "link", "set", link.site_device, "netns", link.name)
        _run("ip", "addr", "add", f"{link.host_address}/30", "dev", link.host_device)
        _run("ip", "link", "set", link.host_device, "up")
        inside = ("ip", "netns", "exec", link.name, "ip")
        _run(*inside, "addr", "add", f"{link.site_address}/30", "dev", link.site_device)
        _run(*inside, "link", "set", link.site_device, "up")
        _run(*inside, "link", "set", "lo", "up")
        link.shape(rate)
        yield link
    finally:
        # Deleting the namespace destroys its end of the veth pair, and with it ours.
        subprocess.run(["ip", "netns", "del", link.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", link.host_device], capture_output=True, check=False)


@dataclass(frozen=True)
class BulkReading:
    """What the plain TCP stream brought: payload bytes, and the time from its first byte
    to its end; `wire_bytes`: the frames the site sent meanwhile."""

    payload_bytes: int
    seconds: float
    wire_bytes: int

    @property
    def bytes_per_s(self) -> float:
        return self.payload_bytes / self.seconds if self.seconds > 0 else 0.0


async def bulk_tcp_rate(link: ShapedLink, seconds: float) -> BulkReading:
    """One TCP stream of zeros from the namespace to here for `seconds`."""
    received = 0
    first_at: float | None = None
    ended_at = 0.0
    done = asyncio.Event()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received, first_at, ended_at
        try:
            while block := await reader.read(1 << 20):
                if first_at is None:
                    first_at = time.monotonic()
                received += len(block)
            ended_at = time.monotonic()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(take, link.host_address, 0)
    port = server.sockets[0].getsockname()[1]
    wire_before = link.received_bytes()
    try:
        sender = await asyncio.create_subprocess_exec(
            *link.run_inside(
                [sys.executable, str(BENCH / "zero_sender.py"), link.host_address, str(port),
                 str(seconds)]
            ),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, errors = await sender.communicate()
        if sender.returncode != 0:
            raise RuntimeError(f"the baseline's sender failed: {errors.decode().strip()}")
        async with asyncio.timeout(BASELINE_GRACE_S):
            await done.wait()
    finally:
        server.close()
        await server.wait_closed()
    if first_at is None:
        raise RuntimeError("the baseline's sender sent nothing")
    return BulkReading(received, ended_at - first_at, link.received_bytes() - wire_before)
