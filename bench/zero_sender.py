"""The bulk TCP baseline's sender: connects to HOST:PORT and sends zeros for SECONDS, then
closes. Plain blocking sockets, nothing else: the most a TCP stream gets through a link.

    .venv/bin/python bench/zero_sender.py HOST PORT SECONDS

(bench/shaped_link.py runs it inside the site's network namespace.)
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

BLOCK = bytes(64 * 1024)


def send_zeros(host: str, port: int, seconds: float) -> int:
    """Bytes sent (handed to the kernel) in `seconds`."""
    sent = 0
    with socket.create_connection((host, port), timeout=30.0) as connection:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.sendall(BLOCK)
            sent += len(BLOCK)
        connection.shutdown(socket.SHUT_WR)
    return sent


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    arguments = parser.parse_args()
    send_zeros(arguments.host, arguments.port, arguments.seconds)
    sys.exit(0)
