"""
The kernel's IPVS table, structured, and compared with the cluster topology.

Salt core's ``lvs`` module returns ``ipvsadm`` text. This module parses it:
virtual services (protocol, address:port or firewall mark, scheduler, flags)
with their real servers (address:port, forwarding method, weight, active and
inactive connections) and, on request, their counters and rates. The parsers
are pure functions tested on output captured from a real kernel
(``tools/capture_ipvs.py``).

CLI examples::

    salt-call ipvs.services
    salt-call ipvs.services stats=True rate=True
    salt-call ipvs.check                     # live table vs cluster.model
    salt-call ipvs.sync_daemons              # the connection sync threads
    salt-call ipvs.set_weight udp 192.168.1.200:53 10.0.100.22:53 0
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "ipvs"
__load__ = ["services", "check", "sync_daemons", "set_weight", "node_plan", "set_node"]

PROC = "/proc/net/ip_vs"
FORWARD = {"Masq": "nat", "Route": "dr", "Tunnel": "tun", "Local": "local"}
FORWARD_FLAG = {"nat": "-m", "dr": "-g", "tun": "-i"}
COUNTERS = ("conns", "inpkts", "outpkts", "inbytes", "outbytes")
RATES = ("cps", "inpps", "outpps", "inbps", "outbps")


def __virtual__():
    if not shutil.which("ipvsadm"):
        return (False, "ipvs: ipvsadm is not installed")
    if not os.path.exists(PROC):
        return (False, f"ipvs: this kernel has no IPVS ({PROC} is missing; is the ip_vs module loaded?)")
    return __virtualname__


# ---------------------------------------------------------------------------
# Pure parsers
# ---------------------------------------------------------------------------

_SERVICE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$")
_REAL = re.compile(r"^\s+->\s+(\S+)\s+(.*)$")


def _endpoint(text: str) -> tuple[str, int]:
    """'10.0.100.1:80' or '[fe80::1]:80' -> (address, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def service_key(protocol: str, address: str | None = None, port: int | None = None, fwmark: int | None = None) -> str:
    """The one spelling of a virtual service used in every answer: 'udp 192.168.1.200:53' or 'fwm 7'."""
    protocol = protocol.lower()
    if protocol == "fwm":
        return f"fwm {fwmark}"
    return f"{protocol} {address}:{port}"


def _flags(words: list[str]) -> dict[str, Any]:
    """'persistent 300 mask 255.255.255.0 ops' -> {'persistent': 300, 'mask': '255.255.255.0', 'ops': True}."""
    flags: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("persistent", "pe", "mask") and i + 1 < len(words):
            value = words[i + 1]
            flags[word] = int(value) if value.isdigit() else value
            i += 2
        else:
            flags[word] = True
            i += 1
    return flags


def _blocks(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Split ipvsadm -L output into (service words, [real server words]) blocks, headers skipped."""
    blocks: list[tuple[list[str], list[list[str]]]] = []
    for line in (text or "").splitlines():
        service = _SERVICE.match(line)
        if service:
            blocks.append(([service.group(1), service.group(2), *service.group(3).split()], []))
            continue
        real = _REAL.match(line)
        if real and blocks and real.group(1) != "RemoteAddress:Port":
            blocks[-1][1].append([real.group(1), *real.group(2).split()])
    return blocks


def _service_head(words: list[str]) -> dict[str, Any]:
    protocol = words[0].lower()
    if protocol == "fwm":
        return {"key": service_key("fwm", fwmark=int(words[1])), "protocol": "fwm", "fwmark": int(words[1])}
    address, port = _endpoint(words[1])
    return {"key": service_key(protocol, address, port), "protocol": protocol, "address": address, "port": port}


def _real(words: list[str], endpoint) -> dict[str, Any]:
    """['10.0.100.11:80', 'Masq', '1', '0', '2'] -> one real server."""
    address, port = endpoint(words[0])
    forward, weight, active, inactive = words[1], int(words[2]), int(words[3]), int(words[4])
    return {
        "address": address,
        "port": port,
        "forward": FORWARD.get(forward, forward.lower()),
        "weight": weight,
        "active": active,
        "inactive": inactive,
    }


def parse_list(text: str) -> list[dict[str, Any]]:
    """``ipvsadm -Ln --exact`` -> virtual services with their real servers (pure).

    Each service: key, protocol (tcp/udp/sctp/fwm), address and port (or fwmark),
    scheduler, flags (e.g. {'persistent': 300}), real_servers. Each real server:
    address, port, forward (nat/dr/tun/local), weight, active, inactive."""
    services = []
    for head, reals in _blocks(text):
        service = _service_head(head)
        service["scheduler"] = head[2] if len(head) > 2 else None
        service["flags"] = _flags(head[3:])
        service["real_servers"] = [_real(words, _endpoint) for words in reals]
        services.append(service)
    return services


def parse_counters(text: str, names: tuple[str, ...] = COUNTERS) -> dict[str, dict[str, Any]]:
    """``ipvsadm -Ln --stats --exact`` (or ``--rate`` with names=RATES) -> numbers (pure).

    {service key: {counter: n, ..., 'real_servers': {'address:port': {counter: n}}}}"""
    out: dict[str, dict[str, Any]] = {}
    for head, reals in _blocks(text):
        key = _service_head(head)["key"]
        out[key] = dict(zip(names, (int(v) for v in head[2 : 2 + len(names)]), strict=True))
        out[key]["real_servers"] = {
            words[0]: dict(zip(names, (int(v) for v in words[1 : 1 + len(names)]), strict=True)) for words in reals
        }
    return out


def _hex_endpoint(text: str) -> tuple[str, int]:
    """'C0A801C8:0035' -> ('192.168.1.200', 53)."""
    host, _, port = text.partition(":")
    return str(ipaddress.IPv4Address(int(host, 16))), int(port, 16)


def parse_proc(text: str) -> list[dict[str, Any]]:
    """/proc/net/ip_vs (hexadecimal, IPv4) -> the same shape as parse_list (pure).

    The kernel prints persistence as 'persistent TIMEOUT NETMASK' with the
    timeout in jiffies (HZ depends on the kernel build): it is kept as
    persistent_jiffies rather than guessed into seconds."""
    services = []
    for head, reals in _blocks(text):
        protocol = head[0].lower()
        if protocol == "fwm":
            service: dict[str, Any] = {"key": service_key("fwm", fwmark=int(head[1], 16))}
            service.update(protocol="fwm", fwmark=int(head[1], 16))
        else:
            address, port = _hex_endpoint(head[1])
            service = {"key": service_key(protocol, address, port), "protocol": protocol}
            service.update(address=address, port=port)
        service["scheduler"] = head[2] if len(head) > 2 else None
        words = head[3:]
        extra: dict[str, Any] = {}
        if "persistent" in words:
            i = words.index("persistent")
            extra = {"persistent_jiffies": int(words[i + 1]), "mask": str(ipaddress.IPv4Address(int(words[i + 2], 16)))}
            words = [*words[:i], "persistent", *words[i + 3 :]]
        service["flags"] = {**_flags(words), **extra}
        service["real_servers"] = [_real(words, _hex_endpoint) for words in reals]
        services.append(service)
    return services


def merge(services: list[dict], stats: dict | None = None, rates: dict | None = None) -> list[dict]:
    """Attach counters and rates (from parse_counters) to parse_list's services (pure)."""
    for service in services:
        for name, table in (("stats", stats), ("rate", rates)):
            if table is None or service["key"] not in table:
                continue
            numbers = table[service["key"]]
            service[name] = {k: v for k, v in numbers.items() if k != "real_servers"}
            for real in service["real_servers"]:
                real[name] = numbers["real_servers"].get(_real_key(real))
    return services


def _real_key(real: dict) -> str:
    address = f"[{real['address']}]" if ":" in real["address"] else real["address"]
    return f"{address}:{real['port']}"


def compare(expected: list[dict], live: list[dict]) -> dict[str, Any]:
    """The model's virtual services vs the live table (pure).

    expected: cluster.model's ``ipvs.virtual_servers``. Returns missing and extra
    services and real servers, and real servers at weight 0 (drained or failed
    a health check: keepalived sets weight 0 or removes the server)."""
    want = {service_key(vs["protocol"], vs["vip"], vs["port"]): vs for vs in expected}
    have = {service["key"]: service for service in live}
    result: dict[str, Any] = {
        "missing_services": sorted(set(want) - set(have)),
        "extra_services": sorted(set(have) - set(want)),
        "missing_real_servers": [],
        "extra_real_servers": [],
        "zero_weight": [],
    }
    for key in sorted(set(want) & set(have)):
        wanted = {f"{rs['address']}:{rs['port']}": rs["name"] for rs in want[key]["real_servers"]}
        live_reals = {_real_key(rs): rs for rs in have[key]["real_servers"]}
        for real in sorted(set(wanted) - set(live_reals)):
            result["missing_real_servers"].append({"service": key, "real_server": real, "node": wanted[real]})
        for real in sorted(set(live_reals) - set(wanted)):
            live_real = live_reals[real]
            result["extra_real_servers"].append(
                {"service": key, "real_server": real, "weight": live_real["weight"], "active": live_real["active"]}
            )
        for real, rs in sorted(live_reals.items()):
            if rs["weight"] == 0:
                result["zero_weight"].append({"service": key, "real_server": real, "node": wanted.get(real)})
    result["matches"] = not any(result[k] for k in result)
    return result


_DAEMON = re.compile(r"^(master|backup) sync daemon \((.*)\)$")


def parse_daemons(text: str) -> list[dict[str, Any]]:
    """``ipvsadm -L --daemon`` -> the running sync threads (pure): state
    (master or backup), interface, sync id, multicast group and port."""
    out = []
    for line in text.splitlines():
        if m := _DAEMON.match(line.strip()):
            fields = dict(part.split("=", 1) for part in m[2].split(", ") if "=" in part)
            out.append(
                {
                    "state": m[1],
                    "interface": fields.get("mcast"),
                    "sync_id": int(fields["syncid"]) if "syncid" in fields else None,
                    "group": fields.get("group"),
                    "port": int(fields["port"]) if "port" in fields else None,
                }
            )
    return out


def compare_sync(expected: dict | None, live: list[dict]) -> list[str]:
    """The sync threads a director should run and does not (pure): with the
    model's ``state_sync`` sharing IPVS connections (an ``ipvs_port``), a
    master and a backup thread on its interface, sync id and port; none
    otherwise (a thread of any kind is then reported too)."""
    want = set()
    if expected and expected.get("ipvs_port"):
        where = (expected["interface"], expected["sync_id"], expected["ipvs_port"])
        want = {(state, *where) for state in ("master", "backup")}
    have = {(d["state"], d["interface"], d["sync_id"], d["port"]) for d in live}
    problems = [f"{s} sync thread on {i} (syncid {n}, port {p}) is not running" for s, i, n, p in sorted(want - have)]
    problems += [f"unexpected {s} sync thread on {i} (syncid {n}, port {p})" for s, i, n, p in sorted(have - want)]
    return problems


# ---------------------------------------------------------------------------
# Salt functions
# ---------------------------------------------------------------------------


def _ipvsadm(*args: str) -> str:
    proc = subprocess.run(["ipvsadm", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandExecutionError(f"ipvsadm {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def services(stats: bool = False, rate: bool = False) -> list[dict[str, Any]]:
    """The live IPVS table: virtual services and real servers, optionally with counters and rates.

    CLI example: ``salt-call ipvs.services stats=True``"""
    table = parse_list(_ipvsadm("-Ln", "--exact"))
    counters = parse_counters(_ipvsadm("-Ln", "--stats", "--exact")) if stats else None
    rates = parse_counters(_ipvsadm("-Ln", "--rate", "--exact"), RATES) if rate else None
    return merge(table, counters, rates)


def sync_daemons() -> list[dict[str, Any]]:
    """The kernel's IPVS connection sync threads running on this node.

    CLI example: ``salt-call ipvs.sync_daemons``"""
    return parse_daemons(_ipvsadm("-L", "--daemon"))


def check() -> dict[str, Any]:
    """The live table compared with the cluster topology's virtual servers,
    and the connection sync threads with the ones this director should run
    (``sync``: what is wrong, empty when right).

    CLI example: ``salt-call ipvs.check``"""
    model = __salt__["cluster.model"]()  # noqa: F821
    result = compare(model["ipvs"]["virtual_servers"], services())
    director = model["vrrp"]["directors"].get(__opts__["id"], {})  # noqa: F821
    result["sync"] = compare_sync(director.get("state_sync"), sync_daemons())
    result["matches"] = result["matches"] and not result["sync"]
    return result


def plan_node(live: list[dict], address: str, weight: int) -> list[dict[str, Any]]:
    """Real server entries of ``address`` whose weight is not ``weight`` (pure).

    Only entries present in the table count: keepalived owns membership (it
    removes a real server that fails its check and adds it back); a drain
    only zeroes the weight of what is there."""
    return [
        {
            "protocol": service["protocol"],
            "service": str(service["fwmark"])
            if service["protocol"] == "fwm"
            else f"{service['address']}:{service['port']}",
            "real_server": _real_key(real),
            "old": real["weight"],
            "new": weight,
        }
        for service in live
        for real in service["real_servers"]
        if real["address"] == address and real["weight"] != weight
    ]


def _node_target(node: str, admin_state: str) -> tuple[str, int]:
    if admin_state not in ("ready", "drain", "maint"):
        raise CommandExecutionError(f"state {admin_state!r} is not one of ready, drain, maint")
    model = __salt__["cluster.model"]()  # noqa: F821
    if node not in model["nodes"]:
        raise CommandExecutionError(f"node {node!r} is not in the cluster topology")
    weights = [
        rs.get("weight", 1)
        for vs in model["ipvs"]["virtual_servers"]
        for rs in vs["real_servers"]
        if rs["name"] == node
    ]
    ready = weights[0] if weights else 1
    return model["nodes"][node]["address"], ready if admin_state == "ready" else 0


def node_plan(node: str, admin_state: str = "ready") -> list[dict[str, Any]]:
    """What set_node would change: the node's real server entries not yet at the state's weight.

    CLI example: ``salt-call ipvs.node_plan dns2 drain``"""
    address, weight = _node_target(node, admin_state)
    return plan_node(services(), address, weight)


def set_node(node: str, admin_state: str = "ready") -> list[dict[str, Any]]:
    """Drain (weight 0) or ready (the topology's weight) every IPVS entry of a node; returns the changes.

    CLI example: ``salt-call ipvs.set_node web2 drain``"""
    todo = node_plan(node, admin_state)
    for change in todo:
        set_weight(change["protocol"], change["service"], change["real_server"], change["new"])
    return todo


def set_weight(protocol: str, service: str, real: str, weight: int) -> bool:
    """Set one real server's weight (0 drains it: no new connections, current ones finish).

    protocol: tcp/udp/fwm; service: 'vip:port' (or the mark); real: 'address:port'.
    CLI example: ``salt-call ipvs.set_weight udp 192.168.1.200:53 10.0.100.22:53 0``"""
    flag = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service", "fwm": "-f"}.get(str(protocol).lower())
    if flag is None:
        raise CommandExecutionError(f"protocol {protocol!r} is not one of tcp, udp, sctp, fwm")
    weight = int(weight)
    if not 0 <= weight <= 65535:
        raise CommandExecutionError(f"weight {weight} is not in 0..65535")
    key = service_key(protocol, *_endpoint(service)) if flag != "-f" else service_key("fwm", fwmark=int(service))
    live = next((s for s in services() if s["key"] == key), None)
    if live is None:
        raise CommandExecutionError(f"no IPVS virtual service {key}")
    rs = next((r for r in live["real_servers"] if _real_key(r) == real), None)
    if rs is None:
        raise CommandExecutionError(f"{key} has no real server {real}")
    forward = FORWARD_FLAG.get(rs["forward"], "-m")
    _ipvsadm("-e", flag, service, "-r", real, forward, "-w", str(weight))
    return True
