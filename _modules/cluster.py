"""
The cluster topology: validation and the model every formula renders.

One pillar key, ``cluster``, describes the whole cluster (networks, nodes and
their roles, VIPs, services). This module checks it and derives the views that
the services need: /etc/hosts entries, DHCP static leases, DNS zones, HAProxy
frontends and backends, keepalived VRRP instances and IPVS virtual servers,
NFS exports and mounts, and each node's own data.

The logic lives in pure functions (``check``, ``derive``, ``next_serial`` ...)
that take plain data and return plain data, so tests and the lab import them
directly. The Salt functions at the bottom only read the pillar and the
minion's id.

CLI examples::

    salt-call cluster.validate
    salt-call cluster.model
    salt-call cluster.node web1
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import salt.utils.dictupdate
import yaml
from salt.exceptions import CommandExecutionError

__virtualname__ = "cluster"
# Only these are Salt functions; the pure helpers stay importable for tests and the lab.
__load__ = ["validate", "model", "node", "zone_serial", "settings", "watched"]

ROLES = ("nas", "director", "web", "dns")
SECTIONS = (
    "domain",
    "networks",
    "vips",
    "nodes",
    "vrrp",
    "haproxy",
    "ipvs",
    "nfs",
    "dns",
    "salt_masters",
    "monitoring",
    "ha",
)
PROTOCOLS = ("tcp", "udp")
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")
FORWARDING = ("nat", "dr", "tun")
HAPROXY_MODES = ("tcp", "http")
HAPROXY_BALANCE = ("roundrobin", "static-rr", "leastconn", "first", "source")
# The keys each part of the topology may have (anything else is a typo).
NETWORK_KEYS = ("cidr", "mtu", "dhcp", "reverse_zone", "gateway")
DHCP_KEYS = ("start", "end", "lease_time")
NODE_KEYS = ("roles", "aliases", "priority", "interfaces")
INTERFACE_KEYS = ("network", "address", "mac", "dhcp")
VRRP_KEYS = ("sync_group", "version", "advert_int", "ipvs_sync", "instances")
INSTANCE_KEYS = ("network", "virtual_router_id")
HAPROXY_KEYS = ("frontends", "backends", "stats")
FRONTEND_KEYS = ("vip", "port", "mode", "backend")
BACKEND_KEYS = ("role", "port", "mode", "cookie", "check_path", "balance", "proxy_protocol", "tls")
# The web servers' own listeners, outside HAProxy's backends: plain HTTP
# (IPVS, the direct path) and HTTPS.
SERVER_PORTS = {80: "plain HTTP", 443: "HTTPS"}
VIRTUAL_SERVER_KEYS = ("vip", "port", "protocol", "role", "scheduler", "forwarding", "real_port")
NFS_KEYS = ("export", "mountpoint", "docroot", "clients", "copy")
# The roles that mount the docroot when nfs.clients does not say.
NFS_DEFAULT_CLIENTS = ["web"]
NFS_COPY_KEYS = ("path", "refresh")
NFS_REFRESH_RANGE = (1, 3600)  # seconds between two refreshes of a client's copy
DNS_KEYS = ("forwarders", "allow_recursion", "ttl")
MONITORING_KEYS = ("server", "webhooks")
# A webhook Alertmanager posts the alerts to: http(s), a host name or address,
# an optional port and path; nothing a YAML or shell reader could take for more.
_WEBHOOK = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$")
# Prometheus's scrape jobs: the roles whose nodes each scrapes, and the port
# its exporter listens on, on the node's internal address (the firewall opens
# it to the monitoring server only).
EXPORTERS = {
    "node": {"roles": ROLES, "port": 9100},
    "haproxy": {"roles": ("director",), "port": 8405},
    "bind": {"roles": ("dns",), "port": 9119},
    "apache": {"roles": ("web",), "port": 9117},
}
MTU_RANGE = (68, 65535)  # IPv4 minimum .. largest Linux MTU
VRID_RANGE = (1, 255)
PRIORITY_RANGE = (1, 254)  # 255 is reserved for the address owner
# VRRP when the topology does not say: version 3, 0.1 s adverts (a takeover
# within about 0.4 s of the last advert).
VRRP_DEFAULTS = {"version": 3, "advert_int": 0.1, "ipvs_sync": True}
VRRP_PASS_MAX = 8  # keepalived truncates PASS authentication to 8 characters

# Zone timers (seconds), the seed's values.
SOA_TIMERS = {"refresh": 28800, "retry": 3600, "expire": 604800, "minimum": 38400}

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# A path the formulas write into Apache's, NFS's and systemd's files as it is.
_ABSOLUTE = re.compile(r"^/[A-Za-z0-9._/-]*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Names of frontends, backends, virtual servers and VRRP instances: they become
# identifiers and comments in daemons' configurations.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_URL_PATH = re.compile(r"^/[!-~]{0,200}$")


def __virtual__() -> str:
    return __virtualname__


class TopologyError(CommandExecutionError):
    """The topology has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "cluster topology is invalid ({} problem{}):\n  - {}".format(
                len(problems), "" if len(problems) == 1 else "s", "\n  - ".join(problems)
            )
        )


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


class _Checker:
    """Collects problems as ``field: value: what is wrong`` lines."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, field: str, value: Any, message: str) -> None:
        self.problems.append(f"{field}: {value!r} {message}")

    def missing(self, field: str, what: str) -> None:
        self.problems.append(f"{field}: missing ({what})")

    def mapping(self, parent: Mapping, key: str, field: str, what: str, required: bool = True) -> dict:
        value = parent.get(key)
        if value is None:
            if required:
                self.missing(field, what)
            return {}
        if not isinstance(value, Mapping):
            self.add(field, value, f"is not a mapping ({what})")
            return {}
        if not value and required:
            self.missing(field, f"{what}; it is empty")
        return dict(value)

    def known(self, field: str, spec: Mapping, keys: Iterable[str]) -> None:
        """Every key of ``spec`` is one of ``keys``: a misspelt key is no silent default."""
        keys = tuple(keys)
        for key in spec:
            if key not in keys:
                self.add(field, key, "is not a known key (" + ", ".join(keys) + ")")

    def address(self, field: str, value: Any) -> ipaddress.IPv4Address | None:
        if value is None:
            self.missing(field, "an IPv4 address")
            return None
        try:
            return ipaddress.IPv4Address(str(value))
        except ValueError:
            self.add(field, value, "is not an IPv4 address")
            return None

    def integer(self, field: str, value: Any, bounds: tuple[int, int], what: str) -> int | None:
        if value is None:
            self.missing(field, what)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(field, value, f"is not an integer ({what})")
            return None
        low, high = bounds
        if not low <= value <= high:
            self.add(field, value, f"is out of range {low}..{high} ({what})")
            return None
        return value

    def label(self, field: str, value: Any, what: str) -> bool:
        if not isinstance(value, str) or not _LABEL.match(value):
            self.add(field, value, f"is not a DNS label ({what}: a-z, 0-9 and '-', 1-63 characters)")
            return False
        return True

    def choice(self, field: str, value: Any, allowed: Iterable[str]) -> bool:
        allowed = tuple(allowed)
        if value not in allowed:
            self.add(field, value, "is not one of " + ", ".join(allowed))
            return False
        return True


def _is_in(value: Any, names: Mapping) -> bool:
    """``value`` names a key of ``names`` (False for lists, mappings and other unhashables)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value in names


def _as_list(ck: _Checker, field: str, value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    ck.add(field, value, "is not a list")
    return []


def _domain_ok(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= 253
        and all(_LABEL.match(part) for part in value.rstrip(".").split("."))
    )


def reverse_zone_name(network: ipaddress.IPv4Network) -> str | None:
    """The in-addr.arpa zone of a network on an octet boundary, else None."""
    if network.prefixlen % 8 or network.prefixlen == 0:
        return None
    octets = str(network.network_address).split(".")[: network.prefixlen // 8]
    return ".".join(reversed(octets)) + ".in-addr.arpa"


_UNCHECKED = object()


def check(topology: Any, secrets: Any = _UNCHECKED) -> list[str]:
    """Every problem of a topology (and of its secrets, when given), or []."""
    ck = _Checker()
    if not isinstance(topology, Mapping):
        ck.add("cluster", topology, "is not a mapping: the pillar needs a top-level 'cluster' key")
        return ck.problems

    for key in topology:
        if key not in SECTIONS:
            ck.add("cluster", key, "is not a known section (" + ", ".join(SECTIONS) + ")")
    domain = topology.get("domain")
    if domain is None:
        ck.missing("domain", "the DNS domain of the cluster, e.g. lab.local")
    elif not _domain_ok(domain):
        ck.add("domain", domain, "is not a DNS domain name")

    networks = _check_networks(ck, topology)
    nodes = _check_nodes(ck, topology, networks)
    vips = _check_vips(ck, topology, networks, nodes)
    _check_vrrp(ck, topology, networks, nodes)
    listeners: dict[tuple[str, int, str], str] = {}
    _check_haproxy(ck, topology, nodes, vips, listeners)
    _check_ipvs(ck, topology, nodes, vips, listeners)
    _check_nfs(ck, topology, nodes)
    _check_dns(ck, topology, networks)
    _check_salt_masters(ck, topology, nodes)
    _check_monitoring(ck, topology, nodes)
    _check_ha(ck, topology, nodes)
    if secrets is not _UNCHECKED:
        _check_secrets(ck, secrets)
    return ck.problems


def _check_networks(ck: _Checker, topo: Mapping) -> dict[str, dict]:
    """Valid networks by name: {'net': IPv4Network, 'dhcp': (start, end) | None, ...}."""
    out: dict[str, dict] = {}
    raw = ck.mapping(topo, "networks", "networks", "the internal and external networks")
    for required in ("internal", "external"):
        if raw and required not in raw:
            ck.missing(f"networks.{required}", "every cluster has an internal and an external network")
    for name, spec in raw.items():
        field = f"networks.{name}"
        if not isinstance(spec, Mapping):
            ck.add(field, spec, "is not a mapping")
            continue
        ck.known(field, spec, NETWORK_KEYS)
        try:
            net = ipaddress.IPv4Network(str(spec.get("cidr")), strict=True)
        except ValueError:
            ck.add(f"{field}.cidr", spec.get("cidr"), "is not an IPv4 network in CIDR form (e.g. 10.0.100.0/24)")
            continue
        entry: dict[str, Any] = {"net": net, "dhcp": None}
        mtu = spec.get("mtu", 1500)
        if ck.integer(f"{field}.mtu", mtu, MTU_RANGE, "bytes") is not None:
            entry["mtu"] = mtu
        if "gateway" in spec:
            gateway = ck.address(f"{field}.gateway", spec["gateway"])
            if gateway is not None and gateway not in net:
                ck.add(f"{field}.gateway", str(gateway), f"is outside the network {net}")
        dhcp = spec.get("dhcp")
        if dhcp is not None:
            entry["dhcp"] = _check_dhcp(ck, f"{field}.dhcp", dhcp, net)
        if "reverse_zone" in spec:
            expected = reverse_zone_name(net)
            if spec["reverse_zone"] != expected:
                ck.add(
                    f"{field}.reverse_zone",
                    spec["reverse_zone"],
                    f"does not match the network {net} (expected {expected!r})"
                    if expected
                    else f"cannot be served: {net} is not on an octet boundary",
                )
        elif name == "internal" and reverse_zone_name(net) is None:
            ck.add(f"{field}.cidr", str(net), "is not on an octet boundary, so it has no reverse zone")
        out[name] = entry
    return out


def _check_dhcp(ck: _Checker, field: str, dhcp: Any, net: ipaddress.IPv4Network) -> tuple | None:
    if not isinstance(dhcp, Mapping):
        ck.add(field, dhcp, "is not a mapping (start, end, lease_time)")
        return None
    ck.known(field, dhcp, DHCP_KEYS)
    start = ck.address(f"{field}.start", dhcp.get("start"))
    end = ck.address(f"{field}.end", dhcp.get("end"))
    if start is None or end is None:
        return None
    bad = False
    for key, addr in (("start", start), ("end", end)):
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            ck.add(f"{field}.{key}", str(addr), f"is outside the usable addresses of {net}")
            bad = True
    if start > end:
        ck.add(f"{field}.end", str(end), f"is before the start {start}")
        bad = True
    lease = dhcp.get("lease_time", "infinite")
    if not (lease == "infinite" or re.match(r"^\d+[mhd]?$", str(lease))):
        ck.add(f"{field}.lease_time", lease, "is not 'infinite' or a duration like 12h, 45m, 3600")
    return None if bad else (start, end)


def _check_nodes(ck: _Checker, topo: Mapping, networks: dict) -> dict[str, dict]:
    """Valid nodes: {'roles': [...], 'addresses': {network: addr}, 'priority': int|None}."""
    raw = ck.mapping(topo, "nodes", "nodes", "the machines of the cluster")
    nodes: dict[str, dict] = {}
    seen_addr: dict[ipaddress.IPv4Address, str] = {}
    seen_mac: dict[str, str] = {}
    names: set[str] = set(raw)
    aliases: dict[str, str] = {}
    for name, spec in raw.items():
        field = f"nodes.{name}"
        ck.label(field, name, "node names are host names")
        if not isinstance(spec, Mapping):
            ck.add(field, spec, "is not a mapping")
            continue
        ck.known(field, spec, NODE_KEYS)
        roles = _as_list(ck, f"{field}.roles", spec.get("roles"))
        if not roles:
            ck.missing(f"{field}.roles", "at least one of " + ", ".join(ROLES))
        for role in roles:
            ck.choice(f"{field}.roles", role, ROLES)
        for alias in _as_list(ck, f"{field}.aliases", spec.get("aliases")):
            afield = f"{field}.aliases"
            if not ck.label(afield, alias, "aliases are host names"):
                continue
            if alias in names:
                ck.add(afield, alias, f"collides with the node named {alias!r}")
            elif alias in aliases:
                ck.add(afield, alias, f"is already an alias of node {aliases[alias]!r}")
            else:
                aliases[alias] = name
        node = {"roles": roles, "addresses": {}, "priority": None}
        ifaces = ck.mapping(spec, "interfaces", f"{field}.interfaces", "interface name -> network, address")
        for ifname, iface in ifaces.items():
            ifield = f"{field}.interfaces.{ifname}"
            if not isinstance(ifname, str) or not _IFNAME.match(ifname):
                ck.add(ifield, ifname, "is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
            if not isinstance(iface, Mapping):
                ck.add(ifield, iface, "is not a mapping (network, address, mac, dhcp)")
                continue
            ck.known(ifield, iface, INTERFACE_KEYS)
            _check_interface(ck, ifield, name, iface, networks, node, seen_addr, seen_mac)
        if "director" in roles:
            node["priority"] = ck.integer(f"{field}.priority", spec.get("priority"), PRIORITY_RANGE, "VRRP priority")
        if "internal" in networks and "internal" not in node["addresses"]:
            ck.missing(f"{field}.interfaces", "an interface with an address on the internal network")
        nodes[name] = node
    return nodes


def _check_interface(
    ck: _Checker,
    field: str,
    node_name: str,
    iface: Mapping,
    networks: dict,
    node: dict,
    seen_addr: dict,
    seen_mac: dict,
) -> None:
    netname = iface.get("network")
    if not _is_in(netname, networks):
        if netname is None:
            ck.missing(f"{field}.network", "the name of a network in 'networks'")
        else:
            ck.add(f"{field}.network", netname, "is not a network defined in 'networks'")
        net = None
    else:
        net = networks[netname]["net"]
    if net is not None and netname in node["addresses"]:
        ck.add(f"{field}.network", netname, "is used by two interfaces of the node")
    addr = ck.address(f"{field}.address", iface.get("address"))
    mac = iface.get("mac")
    if mac is not None:
        if not isinstance(mac, str) or not _MAC.match(mac.lower()):
            ck.add(f"{field}.mac", mac, "is not a MAC address (six hex pairs separated by ':')")
            mac = None
        elif int(mac[:2], 16) & 1:
            ck.add(f"{field}.mac", mac, "is a multicast MAC address")
            mac = None
        else:
            mac = mac.lower()
            if mac in seen_mac:
                ck.add(f"{field}.mac", mac, f"is already used by node {seen_mac[mac]!r}")
            seen_mac[mac] = node_name
    dhcp = iface.get("dhcp", False)
    if not isinstance(dhcp, bool):
        ck.add(f"{field}.dhcp", dhcp, "is not true or false")
        dhcp = False
    if dhcp and iface.get("mac") is None:
        ck.missing(f"{field}.mac", "a node configured by DHCP gets its static lease by MAC")
    if addr is None:
        return
    if addr in seen_addr:
        ck.add(f"{field}.address", str(addr), f"is already used by node {seen_addr[addr]!r}")
    seen_addr[addr] = node_name
    if net is None:
        return
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        ck.add(f"{field}.address", str(addr), f"is outside the usable addresses of {netname} ({net})")
        return
    pool = networks[netname]["dhcp"]
    if pool and pool[0] <= addr <= pool[1] and not dhcp:
        ck.add(
            f"{field}.address",
            str(addr),
            f"is static but inside the DHCP pool {pool[0]}-{pool[1]} (only static leases may be there)",
        )
    if dhcp and networks[netname].get("dhcp") is None:
        ck.add(f"{field}.dhcp", dhcp, f"but network {netname} has no 'dhcp' section")
    node["addresses"][netname] = addr


def _check_vips(ck: _Checker, topo: Mapping, networks: dict, nodes: dict) -> dict[ipaddress.IPv4Address, str]:
    """Valid VIPs -> network name."""
    raw = ck.mapping(topo, "vips", "vips", "floating addresses per network")
    used = {addr: name for name, node in nodes.items() for addr in node["addresses"].values()}
    vips: dict[ipaddress.IPv4Address, str] = {}
    for netname, addrs in raw.items():
        field = f"vips.{netname}"
        if not _is_in(netname, networks):
            ck.add("vips", netname, "is not a network defined in 'networks'")
            continue
        net = networks[netname]["net"]
        pool = networks[netname]["dhcp"]
        for value in _as_list(ck, field, addrs):
            addr = ck.address(field, value)
            if addr is None:
                continue
            if addr not in net or addr in (net.network_address, net.broadcast_address):
                ck.add(field, str(addr), f"is outside the usable addresses of {netname} ({net})")
            elif addr in used:
                ck.add(field, str(addr), f"is the address of node {used[addr]!r}")
            elif pool and pool[0] <= addr <= pool[1]:
                ck.add(field, str(addr), f"is inside the DHCP pool {pool[0]}-{pool[1]}")
            elif addr in vips:
                ck.add(field, str(addr), "is listed twice")
            else:
                vips[addr] = netname
    if "internal" in networks and "internal" not in vips.values():
        ck.missing(
            "vips.internal",
            "a VIP on the internal network: the internal nodes' gateway and DNS server, handed out by DHCP",
        )
    return vips


def _check_name(ck: _Checker, field: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        ck.add(field, name, "is not a name (1-32 of A-Z a-z 0-9 _ . -)")


def _directors(nodes: dict) -> list[str]:
    return [name for name, node in nodes.items() if "director" in node["roles"]]


def _check_vrrp(ck: _Checker, topo: Mapping, networks: dict, nodes: dict) -> None:
    directors = _directors(nodes)
    if nodes and not directors:
        ck.missing("nodes", "no node has the role 'director' (the VIPs need at least one)")
    _check_priorities(ck, {n: nodes[n]["priority"] for n in directors if nodes[n]["priority"] is not None})
    vrrp = ck.mapping(topo, "vrrp", "vrrp", "the VRRP instances")
    if not vrrp:
        return
    ck.known("vrrp", vrrp, VRRP_KEYS)
    if "sync_group" in vrrp and not (isinstance(vrrp["sync_group"], str) and _IFNAME.match(vrrp["sync_group"])):
        ck.add("vrrp.sync_group", vrrp["sync_group"], "is not a simple name")
    version = vrrp.get("version", VRRP_DEFAULTS["version"])
    if version not in (2, 3) or isinstance(version, bool):
        ck.add("vrrp.version", version, "is not 2 or 3")
    advert = vrrp.get("advert_int", VRRP_DEFAULTS["advert_int"])
    if isinstance(advert, bool) or not isinstance(advert, (int, float)) or not 0.01 <= advert <= 255:
        ck.add("vrrp.advert_int", advert, "is not a number of seconds in 0.01..255")
    elif version == 2 and advert != int(advert):
        # VRRPv2 carries whole seconds; VRRPv3 centiseconds (and no authentication).
        ck.add("vrrp.advert_int", advert, "is not whole seconds, which VRRP version 2 needs (set vrrp.version: 3)")
    if not isinstance(vrrp.get("ipvs_sync", VRRP_DEFAULTS["ipvs_sync"]), bool):
        ck.add("vrrp.ipvs_sync", vrrp["ipvs_sync"], "is not true or false")
    instances = ck.mapping(vrrp, "instances", "vrrp.instances", "one instance per network with VIPs")
    covered = _check_instances(ck, instances, networks, nodes, directors)
    raw_vips = topo.get("vips") if isinstance(topo.get("vips"), Mapping) else {}
    for netname in sorted(set(raw_vips) - covered, key=str):
        if netname in networks:
            ck.missing("vrrp.instances", f"no VRRP instance carries the VIPs of network {netname!r}")


def _check_priorities(ck: _Checker, priorities: dict[str, int]) -> None:
    """Exactly one director has the highest priority, and no two others share one."""
    if len(priorities) <= 1:
        return
    top = max(priorities.values())
    leaders = sorted(n for n, p in priorities.items() if p == top)
    if len(leaders) > 1:
        ck.add(
            "nodes." + ".priority, nodes.".join(leaders) + ".priority",
            top,
            "is shared: exactly one director must have the highest priority",
        )
    seen: dict[int, str] = {}
    for name in sorted(priorities):
        prio = priorities[name]
        if prio in seen and prio != top:
            ck.add(f"nodes.{name}.priority", prio, f"equals the priority of {seen[prio]!r}")
        seen.setdefault(prio, name)


def _check_instances(ck: _Checker, instances: Mapping, networks: dict, nodes: dict, directors: list[str]) -> set:
    """Each VRRP instance: its network (one instance each, every director on it)
    and its router id (unique). Returns the networks the instances cover."""
    vrids: dict[int, str] = {}
    covered = set()
    for name, inst in instances.items():
        field = f"vrrp.instances.{name}"
        _check_name(ck, "vrrp.instances", name)
        if not isinstance(inst, Mapping):
            ck.add(field, inst, "is not a mapping (network, virtual_router_id)")
            continue
        ck.known(field, inst, INSTANCE_KEYS)
        netname = inst.get("network")
        if not _is_in(netname, networks):
            ck.add(f"{field}.network", netname, "is not a network defined in 'networks'")
        elif netname in covered:
            ck.add(f"{field}.network", netname, "already has a VRRP instance")
        else:
            covered.add(netname)
            for director in directors:
                if netname not in nodes[director]["addresses"]:
                    ck.missing(f"nodes.{director}.interfaces", f"an interface on {netname} (VRRP instance {name})")
        vrid = ck.integer(f"{field}.virtual_router_id", inst.get("virtual_router_id"), VRID_RANGE, "VRRP router id")
        if vrid is not None:
            if vrid in vrids:
                ck.add(f"{field}.virtual_router_id", vrid, f"is already used by instance {vrids[vrid]!r}")
            vrids[vrid] = name
    return covered


def _role_nodes(nodes: dict, role: str) -> list[str]:
    return sorted(n for n, node in nodes.items() if role in node["roles"])


def _check_listener(
    ck: _Checker, field: str, spec: Mapping, vips: dict, listeners: dict, protocol: str, owner: str
) -> None:
    vip = ck.address(f"{field}.vip", spec.get("vip"))
    port = ck.integer(f"{field}.port", spec.get("port"), (1, 65535), "TCP/UDP port")
    if vip is None:
        return
    if vip not in vips:
        ck.add(f"{field}.vip", str(vip), "is not one of the VIPs in 'vips'")
        return
    if port is None:
        return
    key = (str(vip), port, protocol)
    if key in listeners:
        ck.add(f"{field}.port", port, f"collides on {vip} ({protocol}) with {listeners[key]}")
    else:
        listeners[key] = owner


def _check_backend_role(ck: _Checker, field: str, role: Any, nodes: dict) -> None:
    if ck.choice(field, role, ROLES) and nodes and not _role_nodes(nodes, role):
        ck.add(field, role, "has no nodes: the backend would be empty")


def _check_haproxy(ck: _Checker, topo: Mapping, nodes: dict, vips: dict, listeners: dict) -> None:
    haproxy = ck.mapping(topo, "haproxy", "haproxy", "frontends and backends", required=False)
    if not haproxy:
        return
    ck.known("haproxy", haproxy, HAPROXY_KEYS)
    backends = ck.mapping(haproxy, "backends", "haproxy.backends", "name -> role, port, mode")
    for name, spec in backends.items():
        field = f"haproxy.backends.{name}"
        _check_name(ck, "haproxy.backends", name)
        if not isinstance(spec, Mapping):
            ck.add(field, spec, "is not a mapping (role, port, mode)")
            continue
        ck.known(field, spec, BACKEND_KEYS)
        ck.choice(f"{field}.balance", spec.get("balance", "roundrobin"), HAPROXY_BALANCE)
        check_path = spec.get("check_path", "/")
        if not (isinstance(check_path, str) and _URL_PATH.match(check_path)):
            ck.add(f"{field}.check_path", check_path, "is not a URL path (/ then printable characters, no spaces)")
        _check_backend_role(ck, f"{field}.role", spec.get("role"), nodes)
        ck.integer(f"{field}.port", spec.get("port"), (1, 65535), "TCP port")
        ck.choice(f"{field}.mode", spec.get("mode", "tcp"), HAPROXY_MODES)
        if "cookie" in spec and spec.get("mode") != "http":
            ck.add(f"{field}.cookie", spec["cookie"], "needs mode http")
        for flag in ("proxy_protocol", "tls"):
            if flag in spec and not isinstance(spec[flag], bool):
                ck.add(f"{field}.{flag}", spec[flag], "is not true or false")
            elif spec.get(flag) and spec.get("mode", "tcp") != "tcp":
                ck.add(f"{field}.{flag}", spec[flag], "needs mode tcp (layer 7 sends the client's address in a header)")
        if spec.get("tls") is True and spec.get("proxy_protocol") is not True:
            ck.add(f"{field}.tls", True, "needs proxy_protocol (without it, HTTPS goes to port 443)")
    _check_proxy_ports(ck, backends, topo.get("ipvs"))
    frontends = ck.mapping(haproxy, "frontends", "haproxy.frontends", "name -> vip, port, mode, backend")
    for name, spec in frontends.items():
        field = f"haproxy.frontends.{name}"
        _check_name(ck, "haproxy.frontends", name)
        if not isinstance(spec, Mapping):
            ck.add(field, spec, "is not a mapping (vip, port, mode, backend)")
            continue
        ck.known(field, spec, FRONTEND_KEYS)
        _check_listener(ck, field, spec, vips, listeners, "tcp", f"haproxy frontend {name!r}")
        mode = spec.get("mode", "tcp")
        ck.choice(f"{field}.mode", mode, HAPROXY_MODES)
        backend = spec.get("backend")
        if not _is_in(backend, backends):
            ck.add(f"{field}.backend", backend, "is not a backend in haproxy.backends")
        elif isinstance(backends[backend], Mapping) and backends[backend].get("mode", "tcp") != mode:
            ck.add(f"{field}.mode", mode, f"differs from the mode of backend {backend!r}")
    if "stats" in haproxy:
        stats = ck.mapping(haproxy, "stats", "haproxy.stats", "vip, port")
        ck.known("haproxy.stats", stats, ("vip", "port"))
        _check_listener(ck, "haproxy.stats", stats, vips, listeners, "tcp", "haproxy stats")
        vip = str(stats.get("vip"))
        if any(str(addr) == vip and net != "internal" for addr, net in vips.items()):
            ck.add("haproxy.stats.vip", vip, "is not an internal VIP: the stats page is for the internal network only")


def _check_proxy_ports(ck: _Checker, backends: Mapping, ipvs: Any) -> None:
    """A port where a role's servers take the PROXY protocol takes it from
    every connection (Apache's RemoteIPProxyProtocol holds for the whole
    port): no other listener of the role may share it, and the backends on
    it must agree on TLS."""

    def key(spec: Mapping, port: Any) -> tuple[str, int] | None:
        role = spec.get("role")
        ok = isinstance(role, str) and isinstance(port, int) and not isinstance(port, bool)
        return (role, port) if ok else None

    def kind(spec: Mapping) -> str:
        return "proxy tls" if spec.get("tls") else "proxy" if spec.get("proxy_protocol") else str(spec.get("mode"))

    uses: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for name, spec in backends.items():
        where = key(spec, spec.get("port")) if isinstance(spec, Mapping) else None
        if where:
            uses.setdefault(where, []).append((f"backend {name!r}", kind(spec)))
    services = ipvs.get("virtual_servers") if isinstance(ipvs, Mapping) else None
    for name, spec in (services if isinstance(services, Mapping) else {}).items():
        if isinstance(spec, Mapping) and spec.get("protocol", "tcp") == "tcp":
            where = key(spec, spec.get("real_port", spec.get("port")))
            if where:
                uses.setdefault(where, []).append((f"ipvs virtual server {name!r}", "ipvs"))
    for name, spec in backends.items():
        where = key(spec, spec.get("port")) if isinstance(spec, Mapping) else None
        if not (where and spec.get("proxy_protocol") is True):
            continue
        port = where[1]
        others = [who for who, used in uses[where] if used != kind(spec)]
        if port in SERVER_PORTS:
            others.append(f"the web servers' {SERVER_PORTS[port]}")
        if others:
            ck.add(
                f"haproxy.backends.{name}.port",
                port,
                f"takes the PROXY protocol{' over TLS' if spec.get('tls') else ''}, but is also the port of "
                + ", ".join(sorted(set(others))),
            )


def _check_ipvs(ck: _Checker, topo: Mapping, nodes: dict, vips: dict, listeners: dict) -> None:
    ipvs = ck.mapping(topo, "ipvs", "ipvs", "virtual servers", required=False)
    if not ipvs:
        return
    ck.known("ipvs", ipvs, ("virtual_servers",))
    services = ck.mapping(ipvs, "virtual_servers", "ipvs.virtual_servers", "name -> vip, port, protocol, role")
    for name, spec in services.items():
        field = f"ipvs.virtual_servers.{name}"
        _check_name(ck, "ipvs.virtual_servers", name)
        if not isinstance(spec, Mapping):
            ck.add(field, spec, "is not a mapping (vip, port, protocol, role)")
            continue
        ck.known(field, spec, VIRTUAL_SERVER_KEYS)
        protocol = spec.get("protocol", "tcp")
        if ck.choice(f"{field}.protocol", protocol, PROTOCOLS):
            _check_listener(ck, field, spec, vips, listeners, protocol, f"ipvs virtual server {name!r}")
        ck.choice(f"{field}.scheduler", spec.get("scheduler", "rr"), SCHEDULERS)
        ck.choice(f"{field}.forwarding", spec.get("forwarding", "nat"), FORWARDING)
        _check_backend_role(ck, f"{field}.role", spec.get("role"), nodes)
        if "real_port" in spec:
            ck.integer(f"{field}.real_port", spec["real_port"], (1, 65535), "port on the real servers")


def _check_nfs(ck: _Checker, topo: Mapping, nodes: dict) -> None:
    # The nas exports the docroot and the web servers serve it: with either
    # role in the topology, the docroot must be described.
    needed = bool(_role_nodes(nodes, "nas") or _role_nodes(nodes, "web"))
    nfs = ck.mapping(topo, "nfs", "nfs", "the shared docroot", required=needed)
    if not nfs:
        return
    ck.known("nfs", nfs, NFS_KEYS)
    for key in ("export", "mountpoint", "docroot"):
        value = nfs.get(key)
        if not (isinstance(value, str) and _ABSOLUTE.match(value) and ".." not in value.split("/")):
            ck.add(f"nfs.{key}", value, "is not an absolute path (letters, digits, '.', '_', '-' and '/')")
    docroot, mountpoint = nfs.get("docroot"), nfs.get("mountpoint")
    if (
        isinstance(docroot, str)
        and isinstance(mountpoint, str)
        and not (docroot == mountpoint or docroot.startswith(mountpoint.rstrip("/") + "/"))
    ):
        ck.add("nfs.docroot", docroot, f"is not under the mountpoint {mountpoint}")
    servers = _role_nodes(nodes, "nas")
    if len(servers) != 1:
        ck.add("nodes", servers, "must hold exactly one node with role 'nas' (the NFS server)")
    for role in _as_list(ck, "nfs.clients", nfs.get("clients", NFS_DEFAULT_CLIENTS)):
        ck.choice("nfs.clients", role, ROLES)
    copy = ck.mapping(nfs, "copy", "nfs.copy", "each client's copy of the docroot", required=False)
    if copy:
        ck.known("nfs.copy", copy, NFS_COPY_KEYS)
        path = copy.get("path")
        if not (isinstance(path, str) and _ABSOLUTE.match(path) and ".." not in path.split("/")):
            ck.add("nfs.copy.path", path, "is not an absolute path (letters, digits, '.', '_', '-' and '/')")
        elif isinstance(mountpoint, str) and (path + "/").startswith(mountpoint.rstrip("/") + "/"):
            ck.add("nfs.copy.path", path, f"is under the mountpoint {mountpoint} (the copy is on the client's disk)")
        elif path.rstrip("/") in ("", "/"):
            ck.add("nfs.copy.path", path, "is the root directory")
        ck.integer("nfs.copy.refresh", copy.get("refresh"), NFS_REFRESH_RANGE, "seconds between two refreshes")


def _salt_masters(topo: Mapping, nodes: Mapping) -> list:
    """The topology's Salt masters; by default the nas (as in the seed)."""
    if "salt_masters" in topo:
        return topo["salt_masters"] if isinstance(topo["salt_masters"], list) else [topo["salt_masters"]]
    return _role_nodes(nodes, "nas")[:1]


def _check_salt_masters(ck: _Checker, topo: Mapping, nodes: dict) -> None:
    masters = _salt_masters(topo, nodes)
    if not masters:
        ck.missing("salt_masters", "the nodes the Salt masters run on")
    seen: set = set()
    for name in masters:
        if not _is_in(name, nodes):
            ck.add("salt_masters", name, "is not a node of the topology")
        elif name in seen:
            ck.add("salt_masters", name, "is listed twice")
        elif "director" in nodes[name]["roles"]:
            ck.add("salt_masters", name, "is a director (its CPU is for VRRP and the balancers)")
        seen.add(name if isinstance(name, str) else None)


def _monitoring_server(topo: Mapping, nodes: Mapping) -> Any:
    """Where Prometheus runs: the topology's choice, by default the nas."""
    monitoring = topo.get("monitoring")
    if isinstance(monitoring, Mapping) and "server" in monitoring:
        return monitoring["server"]
    return next(iter(_role_nodes(nodes, "nas")), None)


def _check_monitoring(ck: _Checker, topo: Mapping, nodes: dict) -> None:
    monitoring = ck.mapping(topo, "monitoring", "monitoring", "where Prometheus runs", required=False)
    ck.known("monitoring", monitoring, MONITORING_KEYS)
    for url in _as_list(ck, "monitoring.webhooks", monitoring.get("webhooks")):
        if not isinstance(url, str) or not _WEBHOOK.match(url):
            ck.add("monitoring.webhooks", url, "is not an http(s) URL (host, optional port and path)")
    if "server" not in monitoring:
        return
    server = monitoring["server"]
    if not _is_in(server, nodes):
        ck.add("monitoring.server", server, "is not a node of the topology")
    elif "director" in nodes[server]["roles"]:
        ck.add("monitoring.server", server, "is a director (its CPU is for VRRP and the balancers)")


def _check_ha(ck: _Checker, topo: Mapping, nodes: dict) -> None:
    """ha: true asks that no single node beyond a director holds anything
    alone: the Salt masters and the docroot's copies."""
    ha = topo.get("ha", False)
    if not isinstance(ha, bool):
        ck.add("ha", ha, "is not true or false")
        return
    if not ha:
        return
    masters = _salt_masters(topo, nodes)
    if len([m for m in masters if _is_in(m, nodes)]) < 2:
        ck.add("salt_masters", masters, "names fewer than two nodes, and ha is true (a single Salt master)")
    nfs = topo.get("nfs") if isinstance(topo.get("nfs"), Mapping) else {}
    clients = nfs.get("clients", NFS_DEFAULT_CLIENTS)
    clients = clients if isinstance(clients, list) else []
    if nfs and not nfs.get("copy"):
        ck.add("nfs.copy", nfs.get("copy"), "is not set, and ha is true (the docroot would exist on the nas alone)")
    elif nfs and not any(set(clients) & set(n["roles"]) for n in nodes.values()):
        ck.add("nfs.clients", clients, "match no node, and ha is true (no copy of the docroot besides the nas's)")


def _check_dns(ck: _Checker, topo: Mapping, networks: dict) -> None:
    dns = ck.mapping(topo, "dns", "dns", "forwarders and recursion", required=False)
    ck.known("dns", dns, DNS_KEYS)
    for value in _as_list(ck, "dns.forwarders", dns.get("forwarders")):
        ck.address("dns.forwarders", value)
    for value in _as_list(ck, "dns.allow_recursion", dns.get("allow_recursion")):
        if _is_in(value, networks):
            continue
        if _opens_to_everyone(value):
            ck.add(
                "dns.allow_recursion",
                value,
                "opens recursion to everyone (an open resolver, usable for amplification attacks): "
                "list the networks that may recurse, e.g. internal",
            )
            continue
        try:
            ipaddress.IPv4Network(str(value), strict=True)
        except ValueError:
            ck.add("dns.allow_recursion", value, "is neither a network name nor a CIDR")
    if "ttl" in dns:
        ck.integer("dns.ttl", dns["ttl"], (0, 2**31 - 1), "seconds")


def _opens_to_everyone(value: Any) -> bool:
    """An address match list entry that matches every address (bind's ``any``, /0)."""
    text = str(value).strip().lower()
    if text in ("any", "all", "*"):
        return True
    try:
        return ipaddress.ip_network(text, strict=False).prefixlen == 0
    except ValueError:
        return False


def _check_secrets(ck: _Checker, secrets: Any) -> None:
    """Secrets are named, never echoed."""
    where = "cluster_secrets"
    if not isinstance(secrets, Mapping) or not secrets:
        ck.missing(where, "pillar/secrets.sls is absent or empty: run `make secrets`")
        return
    stats = secrets.get("haproxy_stats")
    if not isinstance(stats, Mapping) or not stats.get("user") or not stats.get("password"):
        ck.missing(f"{where}.haproxy_stats", "user and password of the HAProxy stats page")
    elif (stats["user"], str(stats["password"])) == ("admin", "123"):
        ck.problems.append(f"{where}.haproxy_stats: the seed's well-known credentials are refused")
    vrrp = secrets.get("vrrp_auth_pass")
    if not vrrp:
        ck.missing(f"{where}.vrrp_auth_pass", "the VRRP PASS authentication string")
    elif not isinstance(vrrp, str) or len(vrrp) > VRRP_PASS_MAX:
        ck.problems.append(f"{where}.vrrp_auth_pass: must be a string of at most {VRRP_PASS_MAX} characters")


# ---------------------------------------------------------------------------
# The derived model
# ---------------------------------------------------------------------------


def derive(topology: Mapping) -> dict:
    """The model of a valid topology (topology in, views out; nothing else
    read). Raises TopologyError otherwise."""
    problems = check(topology)
    if problems:
        raise TopologyError(problems)
    domain = topology["domain"].rstrip(".")
    networks = {name: _network_view(name, spec) for name, spec in sorted(topology["networks"].items())}
    vips = {
        netname: [str(ipaddress.IPv4Address(v)) for v in addrs]
        for netname, addrs in sorted((topology.get("vips") or {}).items())
    }
    nodes = {name: _node_view(name, spec, domain, networks, vips) for name, spec in sorted(topology["nodes"].items())}
    roles = {role: sorted(n for n, node in nodes.items() if role in node["roles"]) for role in ROLES}
    model = {
        "domain": domain,
        "networks": networks,
        "vips": vips,
        "nodes": nodes,
        "roles": roles,
        "hosts": hosts_entries(nodes, domain),
        "dhcp": dhcp_view(networks, nodes, vips),
        "dns": dns_view(topology.get("dns") or {}, networks, nodes, domain),
        "vrrp": vrrp_view(topology.get("vrrp") or {}, networks, nodes, vips),
        "haproxy": haproxy_view(topology.get("haproxy") or {}, nodes),
        "ipvs": ipvs_view(topology.get("ipvs") or {}, nodes),
        "nfs": nfs_view(topology.get("nfs") or {}, networks, nodes),
        # The first is the minions' master while it answers (Salt's failover
        # masters); each runs the reactor and the periodic check.
        "salt_masters": [{"name": name, "address": nodes[name]["address"]} for name in _salt_masters(topology, nodes)],
        "monitoring": monitoring_view(
            _monitoring_server(topology, nodes), nodes, (topology.get("monitoring") or {}).get("webhooks") or ()
        ),
        "ha": topology.get("ha", False),
    }
    model["firewall"] = firewall_view(model)
    return model


def _network_view(name: str, spec: Mapping) -> dict:
    net = ipaddress.IPv4Network(str(spec["cidr"]))
    view: dict[str, Any] = {
        "name": name,
        "cidr": str(net),
        "address": str(net.network_address),
        "prefixlen": net.prefixlen,
        "netmask": str(net.netmask),
        "broadcast": str(net.broadcast_address),
        "mtu": spec.get("mtu", 1500),
        "gateway": str(spec["gateway"]) if spec.get("gateway") else None,
        "reverse_zone": reverse_zone_name(net),
        "dhcp": None,
    }
    if spec.get("dhcp"):
        view["dhcp"] = {
            "start": str(spec["dhcp"]["start"]),
            "end": str(spec["dhcp"]["end"]),
            "lease_time": str(spec["dhcp"].get("lease_time", "infinite")),
        }
    return view


def _node_view(name: str, spec: Mapping, domain: str, networks: dict, vips: dict) -> dict:
    interfaces = {}
    addresses = {}
    for ifname, iface in sorted(spec["interfaces"].items()):
        netname = iface["network"]
        net = networks[netname]
        address = str(ipaddress.IPv4Address(str(iface["address"])))
        interfaces[ifname] = {
            "name": ifname,
            "network": netname,
            "address": address,
            "prefixlen": net["prefixlen"],
            "cidr": f"{address}/{net['prefixlen']}",
            "mtu": net["mtu"],
            "mac": iface["mac"].lower() if iface.get("mac") else None,
            "dhcp": bool(iface.get("dhcp", False)),
        }
        addresses[netname] = address
    roles = list(spec["roles"])
    if "director" in roles:
        # Directors route out through the external network's gateway.
        gateway = networks.get("external", {}).get("gateway")
    else:
        # Everything else routes (and resolves) through the directors' internal VIP.
        gateway = (vips.get("internal") or [None])[0]
    return {
        "name": name,
        "fqdn": f"{name}.{domain}",
        "roles": roles,
        "aliases": list(spec.get("aliases") or []),
        "priority": spec.get("priority"),
        "interfaces": interfaces,
        "addresses": addresses,
        "address": addresses["internal"],
        "gateway": gateway,
        "by_network": {iface["network"]: ifname for ifname, iface in interfaces.items()},
    }


def hosts_entries(nodes: Mapping, domain: str) -> list[dict]:
    """/etc/hosts lines: each node's internal address with its FQDN, name and aliases."""
    entries = [
        {"address": node["address"], "names": [node["fqdn"], node["name"], *node["aliases"]]} for node in nodes.values()
    ]
    return sorted(entries, key=lambda e: ipaddress.IPv4Address(e["address"]))


def dhcp_view(networks: Mapping, nodes: Mapping, vips: Mapping) -> dict:
    """What the directors' DHCP server hands out on the internal network."""
    internal = networks["internal"]
    leases = [
        {"mac": iface["mac"], "address": iface["address"], "hostname": node["name"]}
        for node in nodes.values()
        for iface in node["interfaces"].values()
        if iface["dhcp"]
    ]
    vip = (vips.get("internal") or [None])[0]
    return {
        "network": "internal",
        "range": internal["dhcp"],
        "netmask": internal["netmask"],
        "leases": sorted(leases, key=lambda lease: ipaddress.IPv4Address(lease["address"])),
        "router": vip,
        "dns": vip,
        "mtu": internal["mtu"],
        "domain": None,
    }


def _zone_records(networks: Mapping, nodes: Mapping, domain: str) -> tuple[list, list, list]:
    ordered = sorted(nodes.values(), key=lambda n: ipaddress.IPv4Address(n["address"]))
    ns = [f"{n['fqdn']}." for n in ordered if "dns" in n["roles"]]
    forward = [{"name": n["name"], "type": "A", "data": n["address"]} for n in ordered]
    forward += [{"name": alias, "type": "CNAME", "data": n["name"]} for n in ordered for alias in n["aliases"]]
    net = ipaddress.IPv4Network(networks["internal"]["cidr"])
    host_octets = 4 - net.prefixlen // 8
    reverse = []
    for n in ordered:
        octets = n["address"].split(".")[-host_octets:]
        reverse.append({"name": ".".join(reversed(octets)), "type": "PTR", "data": f"{n['fqdn']}."})
    return ns, forward, reverse


def records_digest(ns: list, records: list) -> str:
    """A stable digest of a zone's content (NS and records, order-free)."""
    payload = json.dumps({"ns": sorted(ns), "records": sorted(records, key=json.dumps)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


_SERIAL_MARK = re.compile(r"^; cluster-zone digest=(?P<digest>[0-9a-f]+) serial=(?P<serial>\d+)\s*$", re.M)


def previous_serial(zone_text: str | None) -> tuple[str, int] | None:
    """(digest, serial) recorded in an existing zone file's first line (as
    salt/bind/files/zone.jinja writes it), if any."""
    match = _SERIAL_MARK.search(zone_text or "")
    return (match["digest"], int(match["serial"])) if match else None


def next_serial(digest: str, previous: tuple[str, int] | None, today: datetime.date) -> int:
    """Keep the serial while the records are the same; otherwise move it forward.

    New serials are date based (YYYYMMDDnn) and always greater than the
    previous one, so secondaries and caches see every change.
    """
    base = int(today.strftime("%Y%m%d")) * 100
    if previous is None:
        return base + 1
    old_digest, old_serial = previous
    if old_digest == digest:
        return old_serial
    return max(base + 1, old_serial + 1)


def dns_view(spec: Mapping, networks: Mapping, nodes: Mapping, domain: str) -> dict:
    """The zones (their serials are the bind formula's: ``zone_serial``),
    forwarders and recursion ACL."""
    ns, forward, reverse = _zone_records(networks, nodes, domain)
    zones = []
    for name, records in ((domain, forward), (networks["internal"]["reverse_zone"], reverse)):
        zones.append(
            {
                "name": name,
                "ns": ns,
                "records": records,
                "digest": records_digest(ns, records),
                "soa": {"mname": ns[0] if ns else f"{domain}.", "rname": f"hostmaster.{domain}.", **SOA_TIMERS},
                "ttl": spec.get("ttl", SOA_TIMERS["minimum"]),
            }
        )
    recursion = [networks[v]["cidr"] if v in networks else str(v) for v in spec.get("allow_recursion") or []]
    return {
        "zones": zones,
        "forwarders": [str(ipaddress.IPv4Address(str(f))) for f in spec.get("forwarders") or []],
        "allow_recursion": recursion,
        "servers": sorted(n["name"] for n in nodes.values() if "dns" in n["roles"]),
    }


def vrrp_view(spec: Mapping, networks: Mapping, nodes: Mapping, vips: Mapping) -> dict:
    directors = sorted((n for n in nodes.values() if "director" in n["roles"]), key=lambda n: -n["priority"])
    leader = directors[0]["name"] if directors else None
    per_director = {}
    for director in directors:
        instances = []
        for name, inst in sorted((spec.get("instances") or {}).items()):
            netname = inst["network"]
            # Every instance advertises on the internal network, whatever
            # network its VIPs are on: nothing of VRRP is seen on, or accepted
            # from, the external (Internet) side. The VIPs' own interface is
            # tracked, so a director whose link there dies goes to FAULT.
            peers = [d["addresses"]["internal"] for d in directors if d is not director]
            instances.append(
                {
                    "name": name,
                    "network": netname,
                    "interface": director["by_network"]["internal"],
                    "vip_interface": director["by_network"][netname],
                    "virtual_router_id": inst["virtual_router_id"],
                    "state": "MASTER" if director["name"] == leader else "BACKUP",
                    "priority": director["priority"],
                    "advert_int": spec.get("advert_int", VRRP_DEFAULTS["advert_int"]),
                    "version": spec.get("version", VRRP_DEFAULTS["version"]),
                    "unicast_src": director["addresses"]["internal"],
                    "unicast_peers": peers,
                    "vips": [f"{v}/32" for v in vips.get(netname, [])],
                }
            )
        per_director[director["name"]] = {
            "sync_group": spec.get("sync_group", "VG1"),
            "state": "MASTER" if director["name"] == leader else "BACKUP",
            "priority": director["priority"],
            "instances": instances,
            "state_sync": _state_sync(instances, spec.get("ipvs_sync", VRRP_DEFAULTS["ipvs_sync"])),
        }
    return {"leader": leader, "directors": per_director}


def _state_sync(instances: list[dict], ipvs: bool) -> dict | None:
    """How a director shares its connections with its peers, on the internal
    network: conntrackd (the NAT gateway's connections) and, unless the
    topology turns it off (vrrp.ipvs_sync), the kernel's IPVS connection
    sync (a master and a backup thread on every director, keepalived
    formula's sync unit); both to multicast groups that the firewall accepts
    from the peers' addresses only. ``ipvs_port`` is None when the IPVS
    connections are not shared. ``local_vips``: the VIPs, where the
    director's own daemons (HAProxy, dnsmasq) end the connections; those
    cannot outlive it, and conntrackd leaves them out."""
    internal = next((i for i in instances if i["network"] == "internal"), None)
    if internal is None or not internal["unicast_peers"]:
        return None
    return {
        "interface": internal["interface"],
        "address": internal["unicast_src"],
        "peers": internal["unicast_peers"],
        "instance": internal["name"],
        "sync_id": internal["virtual_router_id"],
        "ipvs_port": STATE_SYNC_PORTS["ipvs"] if ipvs else None,
        "conntrack_port": STATE_SYNC_PORTS["conntrackd"],
        "local_vips": sorted({v.split("/")[0] for i in instances for v in i["vips"]}, key=ipaddress.ip_address),
    }


def _servers(nodes: Mapping, role: str, port: int) -> list[dict]:
    return [
        {"name": n["name"], "address": n["address"], "port": port}
        for n in sorted(nodes.values(), key=lambda n: ipaddress.IPv4Address(n["address"]))
        if role in n["roles"]
    ]


def haproxy_view(spec: Mapping, nodes: Mapping) -> dict:
    backends = {}
    for name, b in sorted((spec.get("backends") or {}).items()):
        backends[name] = {
            "name": name,
            "role": b["role"],
            "port": b["port"],
            "mode": b.get("mode", "tcp"),
            "balance": b.get("balance", "roundrobin"),
            "cookie": b.get("cookie"),
            "check_path": b.get("check_path"),
            "proxy_protocol": b.get("proxy_protocol", False),
            "tls": b.get("tls", False),
            "servers": _servers(nodes, b["role"], b["port"]),
        }
    frontends = {
        name: {
            "name": name,
            "bind": f"{f['vip']}:{f['port']}",
            "vip": str(f["vip"]),
            "port": f["port"],
            "mode": f.get("mode", "tcp"),
            "backend": f["backend"],
        }
        for name, f in sorted((spec.get("frontends") or {}).items())
    }
    stats = spec.get("stats")
    return {
        "frontends": frontends,
        "backends": backends,
        "stats": {"vip": str(stats["vip"]), "port": stats["port"], "bind": f"{stats['vip']}:{stats['port']}"}
        if stats
        else None,
        "vips": sorted({f["vip"] for f in frontends.values()} | ({str(stats["vip"])} if stats else set())),
    }


def ipvs_view(spec: Mapping, nodes: Mapping) -> dict:
    services = []
    for name, vs in sorted((spec.get("virtual_servers") or {}).items()):
        protocol = vs.get("protocol", "tcp")
        services.append(
            {
                "name": name,
                "vip": str(vs["vip"]),
                "port": vs["port"],
                "protocol": protocol,
                "scheduler": vs.get("scheduler", "rr"),
                "forwarding": vs.get("forwarding", "nat"),
                "role": vs["role"],
                "real_servers": [
                    {**rs, "weight": 1} for rs in _servers(nodes, vs["role"], vs.get("real_port", vs["port"]))
                ],
            }
        )
    return {"virtual_servers": services}


def nfs_view(spec: Mapping, networks: Mapping, nodes: Mapping) -> dict | None:
    if not spec:
        return None
    server = next(n for n in nodes.values() if "nas" in n["roles"])
    clients = spec.get("clients", NFS_DEFAULT_CLIENTS)
    copy = spec.get("copy")
    client_nodes = sorted(n["name"] for n in nodes.values() if set(n["roles"]) & set(clients))
    return {
        "server": server["name"],
        "server_address": server["address"],
        "export": spec["export"],
        # Only the client nodes' own addresses: not the network, whose DHCP
        # pool hands addresses to anyone plugged in.
        "export_to": [nodes[name]["address"] for name in client_nodes],
        "options": ["rw", "sync", "no_subtree_check", "root_squash"],
        "mountpoint": spec["mountpoint"],
        "docroot": spec["docroot"],
        # The docroot as the nas holds it, in its export.
        "export_docroot": spec["export"].rstrip("/") + spec["docroot"][len(spec["mountpoint"].rstrip("/")) :],
        "device": f"{server['address']}:{spec['export']}",
        "clients": client_nodes,
        # Each client's own copy of the docroot, refreshed from the mount:
        # what Apache serves, so that the site outlives the nas (None: Apache
        # serves the mount itself, as in the seed). Each client also offers
        # its copy, read-only and to the nas alone, as an rsync daemon
        # module: a nas rebuilt without its data restores the export from it.
        "copy": (
            {
                "path": copy["path"].rstrip("/"),
                "refresh": copy["refresh"],
                "rsync": {
                    "port": RSYNC_PORT,
                    "module": RSYNC_MODULE,
                    "sources": [
                        f"rsync://{nodes[name]['address']}:{RSYNC_PORT}/{RSYNC_MODULE}" for name in client_nodes
                    ],
                },
            }
            if copy
            else None
        ),
        "serve_root": copy["path"].rstrip("/") if copy else spec["docroot"],
    }


def monitoring_view(server: str | None, nodes: Mapping, webhooks: Iterable[str] = ()) -> dict | None:
    """Prometheus's node, its scrape jobs (each job's port and targets: the
    nodes of its roles) and the webhooks Alertmanager notifies; None without
    a monitoring server."""
    if server is None:
        return None
    jobs = {}
    for job, exporter in EXPORTERS.items():
        targets = [
            {"name": name, "address": node["address"]}
            for name, node in sorted(nodes.items())
            if set(node["roles"]) & set(exporter["roles"])
        ]
        jobs[job] = {"port": exporter["port"], "targets": targets}
    return {"server": {"name": server, "address": nodes[server]["address"]}, "jobs": jobs, "webhooks": list(webhooks)}


SSH_PORT = 22
NFS_PORT = 2049  # NFSv4 needs nothing else (no rpcbind, no mountd)
# The web servers' rsync daemon, offering their copies of the docroot (nfs.copy).
RSYNC_PORT = 873
RSYNC_MODULE = "docroot"
SALT_PORTS = (4505, 4506)  # the master's publish and request ports
DHCP_PORTS = {"server": 67, "client": 68}
# The kernel's IPVS sync daemon (to its multicast group 224.0.0.81) and
# conntrackd's default port.
STATE_SYNC_PORTS = {"ipvs": 8848, "conntrackd": 3780}


def _fw_rule(comment: str, protocol: str | None = None, ports: Iterable[int] = (), **match: Any) -> dict:
    """One accept rule of a host firewall: every field left out matches anything.

    iif/oif: interface names; saddr/daddr: address lists; ct: a conntrack
    status the packet must have (``dnat``: forwarded by this host's own DNAT).
    """
    rule = {"comment": comment, "protocol": protocol, "ports": sorted(set(ports))}
    rule.update({key: match.get(key) for key in ("iif", "oif", "saddr", "daddr", "ct")})
    return rule


def _listener_rules(node: Mapping, networks: Mapping, listeners: list[tuple[str, str, str, int, str]]) -> list[dict]:
    """Accept rules for services published on VIPs: (what, vip network, vip, port, protocol)."""
    internal = node["by_network"]["internal"]
    rules = []
    for what, netname, vip, port, protocol in listeners:
        if netname == "internal":
            # An internal VIP is for the internal side only: a packet for it
            # that arrives on another interface is an outsider's.
            rules.append(
                _fw_rule(what, protocol, [port], daddr=[vip], iif=internal, saddr=[networks["internal"]["cidr"]])
            )
        else:
            rules.append(_fw_rule(what, protocol, [port], daddr=[vip]))
    return rules


def _published(vips: Mapping, haproxy: Mapping, ipvs: Mapping) -> list[tuple[str, str, str, int, str]]:
    """Every service on a VIP: (purpose, network, VIP, port, protocol)."""
    vip_network = {vip: netname for netname, addrs in vips.items() for vip in addrs}
    listeners = [
        (f"haproxy frontend {f['name']}", vip_network[f["vip"]], f["vip"], f["port"], "tcp")
        for f in haproxy["frontends"].values()
    ]
    if haproxy.get("stats"):
        stats = haproxy["stats"]
        listeners.append(("haproxy stats", vip_network[stats["vip"]], stats["vip"], stats["port"], "tcp"))
    listeners += [
        (f"ipvs {vs['name']}", vip_network[vs["vip"]], vs["vip"], vs["port"], vs["protocol"])
        for vs in ipvs["virtual_servers"]
    ]
    return listeners


def _director_rules(
    node: Mapping, networks: Mapping, directors: list[str], listeners: list, state_sync: Mapping | None
) -> tuple[list[dict], list[dict]]:
    """A director's input (VRRP from its peers, DHCP, the DNS forwarder, the
    published services) and forward (the NAT gateway) rules."""
    inside, internal_cidr = node["by_network"]["internal"], networks["internal"]["cidr"]
    inputs, forward = [], []
    peers = [a for a in directors if a != node["address"]]
    if peers:
        inputs.append(_fw_rule("vrrp from the peer directors", "vrrp", iif=inside, saddr=peers))
    if peers and state_sync:
        ports = sorted(p for p in (state_sync["conntrack_port"], state_sync["ipvs_port"]) if p)
        inputs.append(_fw_rule("connection state from the peer directors", "udp", ports, iif=inside, saddr=peers))
    inputs.append(_fw_rule("dhcp server", "udp", [DHCP_PORTS["server"]], iif=inside))
    for protocol in PROTOCOLS:
        inputs.append(_fw_rule(f"dns forwarder ({protocol})", protocol, [53], iif=inside, saddr=[internal_cidr]))
    inputs += _listener_rules(node, networks, listeners)
    outside = node["by_network"].get("external")
    if outside:
        forward.append(_fw_rule("gateway: the internal network out", iif=inside, oif=outside, saddr=[internal_cidr]))
    return inputs, forward


def _server_rules(node: Mapping, directors: list[str], vips: Mapping, haproxy: Mapping, ipvs: Mapping) -> list[dict]:
    """A real server's public ports (IPVS NAT keeps the client's address, so
    from anyone) and HAProxy's backend ports (from the directors only)."""
    inside, inputs = node["by_network"]["internal"], []
    public: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for vs in ipvs["virtual_servers"]:
        public[vs["protocol"]].update(rs["port"] for rs in vs["real_servers"] if rs["name"] == node["name"])
    proxied = {b["port"] for b in haproxy["backends"].values() if b["role"] in node["roles"]} - public["tcp"]
    for protocol in PROTOCOLS:
        if public[protocol]:
            inputs.append(_fw_rule(f"public service ({protocol})", protocol, public[protocol], iif=inside))
    if proxied:
        # HAProxy connects from a director's own address (or an internal VIP).
        sources = directors + list(vips.get("internal", []))
        inputs.append(_fw_rule("haproxy backends, from the directors", "tcp", proxied, iif=inside, saddr=sources))
    return inputs


def firewall_view(model: Mapping) -> dict:
    """Each node's host firewall: what it accepts (input) and routes (forward).

    Everything not listed is dropped, and so is everything from the external
    network but the services the topology publishes on the VIPs. Replies to
    what a node sends (and ICMP errors about it) are accepted by the firewall
    formula's fixed part, as is loopback.
    """
    networks, nodes, vips = model["networks"], model["nodes"], model["vips"]
    haproxy, ipvs, nfs, vrrp = model["haproxy"], model["ipvs"], model["nfs"], model["vrrp"]
    salt_masters, monitoring = model["salt_masters"], model["monitoring"]
    internal_cidr = networks["internal"]["cidr"]
    directors = sorted((n["address"] for n in nodes.values() if "director" in n["roles"]), key=ipaddress.IPv4Address)
    everyone = sorted((n["address"] for n in nodes.values()), key=ipaddress.IPv4Address)
    listeners = _published(vips, haproxy, ipvs)
    out = {}
    for name, node in nodes.items():
        inside = node["by_network"]["internal"]
        roles = node["roles"]
        inputs = [_fw_rule("ssh from the internal network", "tcp", [SSH_PORT], iif=inside, saddr=[internal_cidr])]
        forward = []
        if any(iface["dhcp"] for iface in node["interfaces"].values()):
            inputs.append(_fw_rule("dhcp answers", "udp", [DHCP_PORTS["client"]], iif=inside, saddr=directors))
        if "director" in roles:
            state_sync = vrrp["directors"].get(name, {}).get("state_sync")
            director_inputs, forward = _director_rules(node, networks, directors, listeners, state_sync)
            inputs += director_inputs
        if "nas" in roles and nfs:
            inputs.append(_fw_rule("nfs to its clients", "tcp", [NFS_PORT], iif=inside, saddr=nfs["export_to"]))
        if nfs and nfs["copy"] and name in nfs["clients"]:
            rsync = nfs["copy"]["rsync"]["port"]
            inputs.append(
                _fw_rule("docroot copy to the nas", "tcp", [rsync], iif=inside, saddr=[nfs["server_address"]])
            )
        if name in {m["name"] for m in salt_masters}:
            # A Salt master runs here (on the nas, or behind it, reached by
            # the nas's own port forwarding): its ports for the minions only.
            salt = {"protocol": "tcp", "ports": SALT_PORTS, "iif": inside, "saddr": everyone}
            inputs.append(_fw_rule("salt master from the minions", **salt))
            if "nas" in roles:
                forward.append(_fw_rule("salt master from the minions, forwarded", ct="dnat", **salt))
        inputs += _server_rules(node, directors, vips, haproxy, ipvs)
        scraped = exporters_of(monitoring, name)
        if scraped:
            server = [monitoring["server"]["address"]]
            inputs.append(
                _fw_rule("metrics, to the monitoring server", "tcp", scraped.values(), iif=inside, saddr=server)
            )
        out[name] = {"input": inputs, "forward": forward}
    return out


def exporters_of(monitoring: Mapping | None, name: str) -> dict[str, int]:
    """The exporters the monitoring server scrapes on node ``name``: job -> port."""
    jobs = (monitoring or {}).get("jobs", {})
    return {job: spec["port"] for job, spec in jobs.items() if name in {t["name"] for t in spec["targets"]}}


def node_view(model: Mapping, name: str) -> dict:
    """One node's slice of the model: its own data plus its role's views."""
    if name not in model["nodes"]:
        raise CommandExecutionError(
            f"node {name!r} is not in the cluster topology (nodes: {', '.join(sorted(model['nodes']))})"
        )
    node = dict(model["nodes"][name])
    roles = node["roles"]
    node["vrrp"] = model["vrrp"]["directors"].get(name) if "director" in roles else None
    nfs = model["nfs"]
    node["nfs_mount"] = nfs if nfs and name in nfs["clients"] else None
    node["firewall"] = model["firewall"][name]
    node["exporters"] = exporters_of(model["monitoring"], name)
    return node


# ---------------------------------------------------------------------------
# Salt functions
# ---------------------------------------------------------------------------


def _topology() -> Any:
    return __pillar__.get("cluster")  # noqa: F821 - injected by Salt's loader


def yaml_problem(path: str, text: str) -> str | None:
    """Where and why ``text`` is no YAML, as ``path: line L, column C: problem`` (pure)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        return f"{path}: {where}: {getattr(exc, 'problem', None) or exc} (not valid YAML)"
    return None


def _pillar_errors() -> list[str]:
    """The pillar's own render errors, and a YAML error in a topology file this
    machine has (the master's, or a checkout's for ``salt-call --local``):
    Salt reports only "see the log" for those, and the topology then looks absent."""
    if __pillar__.get("cluster") is not None and not __pillar__.get("_errors"):  # noqa: F821
        return []
    errors = [f"pillar: {error}" for error in __pillar__.get("_errors") or []]  # noqa: F821
    for root in (__opts__.get("pillar_roots") or {}).get("base", []):  # noqa: F821
        path = os.path.join(root, "cluster.sls")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                problem = yaml_problem(path, handle.read())
            if problem:
                errors.append(problem)
    return errors


def _pillar_directors(topology: Any) -> set[str]:
    """The director nodes' names, from whatever the pillar holds (maybe invalid)."""
    nodes = topology.get("nodes") if isinstance(topology, Mapping) else None
    if not isinstance(nodes, Mapping):
        return set()
    return {
        str(name)
        for name, node in nodes.items()
        if isinstance(node, Mapping) and isinstance(node.get("roles"), list) and "director" in node["roles"]
    }


def validate(secrets: bool | None = None) -> bool | list[str]:
    """
    Check the cluster topology in the pillar and report every problem at once.

    Returns True when it is valid. Otherwise returns the list of problems, each
    naming the field and the bad value, and sets a non-zero exit code.

    secrets
        Also check the ``cluster_secrets`` pillar (present and well formed).
        By default, where this minion needs them: on the topology's directors,
        the only minions pillar/top.sls gives them to.

    CLI example::

        salt-call cluster.validate
        salt-call --local --id master cluster.validate   # with the secrets
    """
    errors = _pillar_errors()
    if errors:
        __context__["retcode"] = 1  # noqa: F821
        return errors
    if secrets is None:
        secrets = __grains__.get("id") in _pillar_directors(_topology())  # noqa: F821
    extra = (__pillar__.get("cluster_secrets"),) if secrets else ()  # noqa: F821
    problems = check(_topology(), *extra)
    if problems:
        __context__["retcode"] = 1  # noqa: F821
        return problems
    return True


def model() -> dict:
    """
    The derived model of the cluster topology in the pillar.

    Raises an error listing every problem when the topology is invalid, so an
    SLS that renders the model fails before any state runs. Derived once per
    topology within a run (every formula of a highstate renders it).

    CLI example::

        salt-call cluster.model
    """
    topology = _topology()
    key = "cluster.model:" + hashlib.sha256(json.dumps(topology, sort_keys=True, default=str).encode()).hexdigest()
    if key not in __context__:  # noqa: F821
        __context__[key] = derive(topology)  # noqa: F821
    return copy.deepcopy(__context__[key])  # noqa: F821


def zone_serial(path: str, digest: str) -> int:
    """
    The serial for the zone file at ``path`` whose records have ``digest``:
    the serial the file records while its digest is the same, else a new one
    (YYYYMMDDnn, greater than the old). The bind formula asks it per zone.

    CLI example::

        salt-call cluster.zone_serial /var/lib/bind/cluster/db.lab.local 0123abcd
    """
    text = None
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read(4096)
    return next_serial(digest, previous_serial(text), datetime.date.today())


def settings(formula: str, defaults: Mapping) -> dict:
    """
    A formula's settings: its ``defaults`` (defaults.yaml), its entry in the
    catalogue of roles (pillar ``catalogue:formulas``) over them, then the
    pillar key of the formula's name over that.

    CLI example::

        salt-call cluster.settings haproxy '{}'
    """
    formulas = (__pillar__.get("catalogue") or {}).get("formulas")  # noqa: F821
    if not isinstance(formulas, Mapping):
        raise CommandExecutionError(
            "pillar catalogue:formulas is missing: pillar/top.sls gives pillar/catalogue.sls to every minion"
        )
    out = copy.deepcopy(dict(defaults))
    for layer in (formulas.get(formula) or {}, __pillar__.get(formula) or {}):  # noqa: F821
        salt.utils.dictupdate.update(out, copy.deepcopy(layer))
    return out


def roles_mismatch(node_name: str, topology_roles: list[str], grain_roles: Any) -> str | None:
    """Why a minion's ``roles`` grain disagrees with the topology, or None."""
    if isinstance(grain_roles, str):
        grain_roles = [grain_roles]
    if sorted(grain_roles or []) != sorted(topology_roles):
        return (
            f"minion {node_name!r}: grain roles {sorted(grain_roles or [])!r} differ from the "
            f"topology's nodes.{node_name}.roles {sorted(topology_roles)!r}"
        )
    return None


def node(name: str | None = None) -> dict:
    """
    One node's view of the model (default: this minion, whose ``roles`` grain
    must then match the topology).

    CLI example::

        salt-call cluster.node web1
    """
    view = node_view(model(), name or __grains__["id"])  # noqa: F821
    if name is None:
        problem = roles_mismatch(view["name"], view["roles"], __grains__.get("roles"))  # noqa: F821
        if problem:
            raise CommandExecutionError(problem)
    return view


def watched() -> dict[str, bool | None]:
    """
    The services this node's ``cluster_watch`` beacon watches (its pillar,
    as the master compiled it), each True while it runs, False when it does
    not, None when it does not because an operator masked it (``systemctl
    mask``: held down on purpose). What the master's periodic check
    (``salt-run cluster.reconcile``) asks every node.

    CLI example::

        salt-call cluster.watched
    """
    config = (__pillar__.get("beacons") or {}).get("cluster_watch") or []  # noqa: F821
    services: list[str] = []
    for item in config if isinstance(config, list) else [config]:
        if isinstance(item, Mapping) and isinstance(item.get("services"), list):
            services += [s for s in item["services"] if isinstance(s, str)]
    out: dict[str, bool | None] = {}
    for name in services:
        running = bool(__salt__["service.status"](name))  # noqa: F821
        masked = not running and (
            __salt__["service.masked"](name, runtime=True) or __salt__["service.masked"](name)  # noqa: F821
        )
        out[name] = None if masked else running
    return out
