"""
The cluster's floating addresses on this node: which VIPs it holds, the VRRP
state of each keepalived instance, and whether a VIP answers.

The VRRP states come from the files the keepalived formula's notify script
writes on every transition (``/run/keepalived-cluster/INSTANCE-<name>``).
Parsers are pure functions, tested on captured output.

CLI examples::

    salt-call vip.held
    salt-call vip.vrrp_state
    salt-call vip.answers 192.168.1.200 80
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from typing import Any

__virtualname__ = "vip"
__load__ = ["held", "vrrp_state", "answers"]

STATE_DIR = "/run/keepalived-cluster"


def __virtual__():
    if shutil.which("ip"):
        return __virtualname__
    return (False, "vip: the ip command (iproute2) is missing")


def parse_ip_addr(text: str) -> dict[str, str]:
    """``ip -j addr`` -> {IPv4 address: interface}."""
    out = {}
    for link in json.loads(text or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                out[addr["local"]] = link["ifname"]
    return out


def parse_notify(text: str) -> dict[str, Any] | None:
    """A notify state file: 'STATE EPOCH PRIORITY' -> dict."""
    parts = text.split()
    if not parts:
        return None
    return {
        "state": parts[0],
        "since": float(parts[1]) if len(parts) > 1 else None,
        "priority": int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None,
    }


def configured_vips(model: dict) -> list[str]:
    return [vip for addrs in model["vips"].values() for vip in addrs]


def held() -> dict[str, str | None]:
    """Every VIP of the topology -> the interface holding it here, or None."""
    proc = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True)
    present = parse_ip_addr(proc.stdout)
    model = __salt__["cluster.model"]()  # noqa: F821
    return {vip: present.get(vip) for vip in configured_vips(model)}


def vrrp_state(state_dir: str | None = None) -> dict[str, Any]:
    """keepalived's instances and sync groups -> their last notified state
    (files of keepalived's notify script in ``state_dir``; by default the
    minion option ``vip.state_dir``, else /run/keepalived-cluster)."""
    state_dir = state_dir or __opts__.get("vip.state_dir", STATE_DIR)  # noqa: F821
    out: dict[str, Any] = {}
    if not os.path.isdir(state_dir):
        return out
    for name in sorted(os.listdir(state_dir)):
        if name.endswith(".tmp"):
            continue
        with open(os.path.join(state_dir, name), encoding="utf-8") as handle:
            parsed = parse_notify(handle.read())
        if parsed:
            out[name] = parsed
    return out


def answers(address: str, port: int | None = None, timeout: float = 2) -> bool:
    """True when the address accepts a TCP connection on port (or answers a ping)."""
    if port is None:
        return subprocess.run(["ping", "-c1", "-W", str(int(timeout)), address], capture_output=True).returncode == 0
    try:
        with socket.create_connection((address, int(port)), timeout=timeout):
            return True
    except OSError:
        return False
