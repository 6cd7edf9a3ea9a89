"""
HAProxy's runtime API (the admin socket), structured.

Salt core's ``haproxy`` module needs an unmaintained library; this one speaks
the socket protocol directly. The parser is a pure function, tested on
captured ``show stat`` output.

CLI examples::

    salt-call haproxy_runtime.servers
    salt-call haproxy_runtime.set_state web-http-l7 web2 drain
"""

from __future__ import annotations

import csv
import os
import socket
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "haproxy_runtime"
__load__ = ["servers", "set_state", "set_server_everywhere", "command", "socket_path"]

STATES = ("ready", "drain", "maint")
CATALOGUE_KEY = "catalogue:formulas:haproxy:socket"


def __virtual__():
    if os.path.exists("/usr/sbin/haproxy"):
        return __virtualname__
    return (False, "haproxy_runtime: HAProxy is not installed (/usr/sbin/haproxy)")


def parse_stat(text: str) -> list[dict[str, Any]]:
    """Rows of ``show stat`` (CSV with a '# ' header) as dicts of the useful fields."""
    lines = text.lstrip("# ").splitlines()
    if not lines:
        return []
    reader = csv.DictReader(lines)
    rows = []
    for row in reader:
        if not row.get("pxname") or row.get("svname") in (None, "FRONTEND", "BACKEND"):
            continue
        rows.append(
            {
                "backend": row["pxname"],
                "server": row["svname"],
                "status": row.get("status", ""),
                "up": row.get("status", "").startswith("UP"),
                "weight": int(row["weight"]) if (row.get("weight") or "").isdigit() else None,
                "sessions": int(row["scur"]) if (row.get("scur") or "").isdigit() else 0,
                "total": int(row["stot"]) if (row.get("stot") or "").isdigit() else 0,
                "check": row.get("check_status", ""),
                "address": row.get("addr", ""),
            }
        )
    return rows


def socket_path(sock: str | None = None) -> str:
    """The admin socket: ``sock`` if given, else the minion option
    ``haproxy_runtime.socket`` (config.get), else the catalogue's
    (pillar ``catalogue:formulas:haproxy:socket``)."""
    found = sock or __salt__["config.get"]("haproxy_runtime.socket") or __salt__["config.get"](CATALOGUE_KEY)  # noqa: F821
    if not found:
        raise CommandExecutionError(f"no admin socket: pillar {CATALOGUE_KEY} is missing (pillar/catalogue.sls)")
    return found


def command(cmd: str, sock: str | None = None, timeout: float = 3) -> str:
    """Send one runtime API command; return HAProxy's answer."""
    sock = socket_path(sock)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(sock)
            conn.sendall(cmd.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as err:
        raise CommandExecutionError(f"HAProxy runtime socket {sock}: {err}") from err
    return b"".join(chunks).decode(errors="replace")


def servers(sock: str | None = None) -> list[dict[str, Any]]:
    """Every backend server with its status (UP, DOWN, DRAIN, MAINT...), weight and sessions."""
    return parse_stat(command("show stat -1 4 -1", sock))


def set_state(backend: str, server: str, state: str, sock: str | None = None) -> bool:
    """Set a server to ready, drain (no new sessions) or maint."""
    if state not in STATES:
        raise CommandExecutionError(f"state {state!r} is not one of {', '.join(STATES)}")
    answer = command(f"set server {backend}/{server} state {state}", sock).strip()
    if answer:
        raise CommandExecutionError(f"HAProxy refused 'set server {backend}/{server} state {state}': {answer}")
    return True


def set_server_everywhere(server: str, state: str, sock: str | None = None) -> dict[str, str]:
    """Set the named server to ``state`` in every backend that has it (a node
    is one server in several backends). Returns backend -> new state."""
    done = {}
    for row in servers(sock):
        if row["server"] == server:
            set_state(row["backend"], server, state, sock)
            done[row["backend"]] = state
    return done
