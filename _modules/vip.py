"""
The cluster's floating addresses on this node: which VIPs it holds, the VRRP
state of each keepalived instance, whether a VIP answers, and which MAC
addresses answer ARP for a VIP on this node's segment (``arp_answers``: the
health runner's view from outside the directors, where split brain shows as
two).

The VRRP states come from the files the keepalived formula's notify script
writes on every transition (``/run/keepalived-cluster/INSTANCE-<name>``).
Parsers are pure functions, tested on captured output.

CLI examples::

    salt-call vip.held
    salt-call vip.vrrp_state
    salt-call vip.answers 192.168.1.200 80
    salt-call vip.arp_answers '[10.0.100.200]'
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "vip"
__load__ = ["held", "vrrp_state", "answers", "arp_answers"]


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


def _catalogue(formula: str, key: str) -> str:
    """A runtime path from the catalogue of roles (pillar/catalogue.sls)."""
    value = __salt__["config.get"](f"catalogue:formulas:{formula}:{key}")  # noqa: F821
    if not value:
        raise CommandExecutionError(f"pillar catalogue:formulas:{formula}:{key} is missing (pillar/catalogue.sls)")
    return value


def vrrp_state(state_dir: str | None = None) -> dict[str, Any]:
    """keepalived's instances and sync groups -> their last notified state
    (files of keepalived's notify script in ``state_dir``; by default the
    minion option ``vip.state_dir``, else the catalogue's keepalived
    ``state_dir``)."""
    state_dir = state_dir or __opts__.get("vip.state_dir") or _catalogue("keepalived", "state_dir")  # noqa: F821
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


ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_request(src_mac: str, src_ip: str, target: str) -> bytes:
    """An Ethernet frame asking who has ``target`` (pure)."""
    mac = _mac_bytes(src_mac)
    arp = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(src_ip), b"\0" * 6, socket.inet_aton(target)
    )
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def parse_arp_reply(frame: bytes) -> tuple[str, str] | None:
    """(sender IPv4 address, sender MAC) of an ARP reply frame, else None (pure)."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, oper) != (1, 0x0800, 6, 4, 2):
        return None
    return socket.inet_ntoa(frame[28:32]), _mac_text(frame[22:28])


def _route(address: str) -> dict:
    """How this node reaches ``address`` (``ip route get``: dev, prefsrc, gateway)."""
    out = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def arp_answers(addresses: list[str], wait: float = 1.5, rounds: int = 2) -> dict[str, Any]:
    """
    For each address on a segment this node is on: the MAC addresses that
    answer ARP for it, asked ``rounds`` times over ``wait`` seconds. Two
    answers for a VIP: two directors hold it (split brain on that segment).
    An address that is not on one of this node's segments: a string saying so.
    """
    out: dict[str, Any] = {}
    by_iface: dict[str, list[tuple[str, str]]] = {}
    for address in addresses:
        route = _route(address)
        if "gateway" in route or route.get("dev") in (None, "lo"):
            out[address] = f"not on a segment of this node (via {route.get('gateway') or route.get('dev')})"
            continue
        by_iface.setdefault(route["dev"], []).append((address, route.get("prefsrc", "0.0.0.0")))
    for dev, targets in by_iface.items():
        with open(f"/sys/class/net/{dev}/address", encoding="ascii") as handle:
            mac = handle.read().strip()
        seen: dict[str, set[str]] = {address: set() for address, _ in targets}
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
            sock.bind((dev, ETH_P_ARP))
            sock.settimeout(0.1)
            for _ in range(rounds):
                for address, src in targets:
                    sock.send(arp_request(mac, src, address))
                round_end = time.monotonic() + wait / rounds
                while time.monotonic() < round_end:
                    try:
                        reply = parse_arp_reply(sock.recv(2048))
                    except TimeoutError:
                        continue
                    if reply and reply[0] in seen:
                        seen[reply[0]].add(reply[1])
        out.update({address: sorted(macs) for address, macs in seen.items()})
    return out
