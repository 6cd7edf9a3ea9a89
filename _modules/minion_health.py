"""
This minion's own health, as metrics for the node exporter's textfile
collector: whether it holds a connection to one of its masters' publish
port, and when it last looked. The minion's schedule (pillar/schedule.sls)
runs ``write`` every 30 s, whether or not a master hears it, so that the
monitoring server sees both a minion cut off from its masters (not
connected) and one that no longer runs (its timestamp grows old).

The connection is read from ``/proc/net/tcp`` (established IPv4 connections);
the parser is a pure function, tested on a captured table.

CLI example::

    salt-call minion_health.write
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterable

__virtualname__ = "minion_health"
__load__ = ["write"]

TCP_TABLE = "/proc/net/tcp"
ESTABLISHED = "01"
FILE_NAME = "salt_minion.prom"


def __virtual__():
    if os.path.exists(TCP_TABLE):
        return __virtualname__
    return (False, f"minion_health: {TCP_TABLE} is missing (not Linux)")


def established(table: str) -> set[tuple[str, int]]:
    """The remote (IPv4 address, port) of every established connection in a
    /proc/net/tcp table (addresses in the kernel's little-endian hex)."""
    peers = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        address, _, port = fields[2].partition(":")
        peers.add((socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)))
    return peers


def metrics(connected: bool, now: float) -> str:
    """The textfile's content."""
    return (
        "# HELP salt_minion_master_connected Whether the salt-minion holds a connection to a master's publish port.\n"
        "# TYPE salt_minion_master_connected gauge\n"
        f"salt_minion_master_connected {int(connected)}\n"
        "# HELP salt_minion_checked_timestamp_seconds When the salt-minion last wrote these metrics.\n"
        "# TYPE salt_minion_checked_timestamp_seconds gauge\n"
        f"salt_minion_checked_timestamp_seconds {now:.3f}\n"
    )


def _addresses(masters: Iterable[str]) -> set[str]:
    found = set()
    for master in masters:
        try:
            found.add(socket.gethostbyname(str(master)))
        except OSError:
            continue
    return found


def write() -> dict:
    """
    Write this minion's metrics into the node exporter's textfile directory
    (the catalogue's node_exporter:textfile_dir); nothing where that
    directory does not exist (no node exporter here).

    CLI example::

        salt-call minion_health.write
    """
    masters = __opts__.get("master") or []  # noqa: F821
    masters = [masters] if isinstance(masters, str) else list(masters)
    port = int(__opts__.get("publish_port", 4505))  # noqa: F821
    with open(TCP_TABLE, encoding="ascii") as handle:
        peers = established(handle.read())
    connected = any((address, port) in peers for address in _addresses(masters))
    directory = __salt__["cluster.settings"]("node_exporter", {}).get("textfile_dir")  # noqa: F821
    if not directory or not os.path.isdir(directory):
        return {"connected": connected, "written": None}
    # Written whole, then renamed: a scrape never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".salt_minion.")
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(metrics(connected, time.time()))
    os.chmod(tmp, 0o644)
    path = os.path.join(directory, FILE_NAME)
    os.replace(tmp, path)
    return {"connected": connected, "written": path}
