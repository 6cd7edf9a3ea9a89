"""
This minion's own health: metrics for the node exporter's textfile
collector (whether it holds a connection to one of its masters' publish
port, and when it last looked), and, with Salt's failover masters, the
check that moves it to the next master and back.

The minion's schedule (pillar/schedule.sls) runs ``check`` every 30 s,
whether or not a master hears it, so that the monitoring server sees both
a minion cut off from its masters (not connected) and one that no longer
runs (its timestamp grows old).

Failover masters (``master_type: failover``): Salt's own check, a schedule
job per master (``master_alive_interval``), is left off (0). Salt 3008
names that job ``__master_alive_<master>`` but deletes ``__master_alive``
when it changes masters (saltstack/salt#67967), so every master a minion
ever used stays checked and the minion keeps switching. ``check`` does the
same work as one job: when the publish connection to the current master
is gone it fires the event Salt's failover acts on
(``__master_disconnected``), and while on a later master it asks the first
one (``status.ping_master``, which fires ``__master_failback`` when it
answers) once its request port accepts a connection.

The connection is read from ``/proc/net/tcp`` (established IPv4 connections);
the parser is a pure function, tested on a captured table.

CLI example::

    salt-call minion_health.check
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterable

__virtualname__ = "minion_health"
__load__ = ["check", "write"]

TCP_TABLE = "/proc/net/tcp"
ESTABLISHED = "01"
FILE_NAME = "salt_minion.prom"
# Salt's own names (salt.minion.master_event): the event its failover acts
# on, and its per-master check jobs.
DISCONNECTED_EVENT = "__master_disconnected"
ALIVE_JOB = "__master_alive"
FAILBACK_JOB = "__master_failback"
PROBE_TIMEOUT_S = 2.0


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


def _address(master: str) -> str:
    """A master's IPv4 address (it is one already in this cluster's minion
    configuration); as given when it does not resolve."""
    try:
        return socket.gethostbyname(str(master))
    except OSError:
        return str(master)


def failover_step(current: str, first: str, connected: set[str]) -> str | None:
    """What Salt's failover masters need now, from the current master's and
    the first master's addresses and those this minion holds a publish
    connection to: ``disconnected`` (the current master's connection is
    gone), ``failback`` (on a later master: ask the first), or None."""
    if current not in connected:
        return "disconnected"
    if current != first:
        return "failback"
    return None


def stale_jobs(names: Iterable[str]) -> list[str]:
    """Salt's own master checks among a schedule's job names: left by a
    configuration with ``master_alive_interval`` set (and by #67967)."""
    return sorted(n for n in names if n.startswith(ALIVE_JOB) or n == FAILBACK_JOB)


def _publishing(masters: Iterable[str]) -> set[str]:
    """The addresses among these masters' that this minion holds an
    established connection to their publish port with."""
    port = int(__opts__.get("publish_port", 4505))  # noqa: F821
    with open(TCP_TABLE, encoding="ascii") as handle:
        peers = established(handle.read())
    addresses = {_address(m) for m in masters}
    return {address for address in addresses if (address, port) in peers}


def _answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _failover(connected: set[str] | None = None) -> str | None:
    """One step of Salt's failover between this minion's masters (none
    without failover masters), given the addresses of those this minion
    holds a publish connection to (read here when not given). Returns the
    step taken."""
    masters = __opts__.get("master_list") or []  # noqa: F821
    if __opts__.get("master_type") != "failover" or len(masters) < 2:  # noqa: F821
        return None
    for name in stale_jobs(__opts__.get("schedule") or {}):  # noqa: F821
        __salt__["schedule.delete"](name, persist=True)  # noqa: F821
    current, first = __opts__.get("master"), str(masters[0])  # noqa: F821
    if not isinstance(current, str):
        return None  # not connected yet: Salt is still going through its list
    first_address = _address(first)
    if connected is None:
        connected = _publishing([current])
    step = failover_step(_address(current), first_address, connected)
    port = int(__opts__.get("ret_port", 4506))  # noqa: F821
    if step == "disconnected":
        # Only when another master answers: a node cut off from every master
        # would otherwise have its minion try each in turn and restart, over
        # and over, on a node whose CPU its own services need at the heal.
        others = [str(m) for m in masters if str(m) != current]
        if not any(_answers(_address(m), port) for m in others):
            return None
        # Salt's minion acts on this event for its current master only.
        __salt__["event.fire"]({"master": current}, DISCONNECTED_EVENT)  # noqa: F821
    # On a later master: the first is asked only once its request port answers
    # (status.ping_master waits auth_timeout for one that does not); it fires
    # the failback event.
    elif step == "failback" and not (_answers(first_address, port) and __salt__["status.ping_master"](first)):  # noqa: F821
        step = None
    return step


def check() -> dict:
    """
    The minion's schedule runs this: its metrics (``write``), and one step
    of Salt's failover between its masters when it has several.

    CLI example::

        salt-call minion_health.check
    """
    connected = _connected()
    return {**_write(bool(connected)), "failover": _failover(connected)}


def write() -> dict:
    """
    Write this minion's metrics into the node exporter's textfile directory
    (the catalogue's node_exporter:textfile_dir); nothing where that
    directory does not exist (no node exporter here).

    CLI example::

        salt-call minion_health.write
    """
    return _write(bool(_connected()))


def _connected() -> set[str]:
    """The addresses of this minion's masters (the current one, or the list
    while it has none yet) that it holds a publish connection to."""
    masters = __opts__.get("master") or []  # noqa: F821
    return _publishing([masters] if isinstance(masters, str) else masters)


def _write(connected: bool) -> dict:
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
