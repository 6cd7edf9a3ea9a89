"""Bad topologies: each a mutation of the seed and the problem it must report.

Every expected text names the field and the bad value, as users see it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Case(NamedTuple):
    id: str
    mutate: Callable[[dict], None]
    expected: str


def _iface(topo: dict, node: str) -> dict:
    return topo["nodes"][node]["interfaces"]["eth0" if node not in ("master", "standby") else "eth1"]


def _set(path: str, value: object) -> Callable[[dict], None]:
    """Set topo[a][b]... = value, path given as 'a.b.c'."""

    def mutate(topo: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            topo = topo[key]
        topo[last] = value

    return mutate


def _remove_nodes(*names: str) -> Callable[[dict], None]:
    def mutate(topo: dict) -> None:
        for name in names:
            del topo["nodes"][name]

    return mutate


def _rename_node(old: str, new: str) -> Callable[[dict], None]:
    def mutate(topo: dict) -> None:
        topo["nodes"][new] = topo["nodes"].pop(old)

    return mutate


def _roles_to_dns(topo: dict) -> None:
    for name in ("web1", "web2", "web3"):
        topo["nodes"][name]["roles"] = ["dns"]


CASES = [
    Case(
        "duplicate-ip",
        lambda t: _iface(t, "web2").update(address="10.0.100.2"),
        "nodes.web2.interfaces.eth0.address: '10.0.100.2' is already used by node 'web1'",
    ),
    Case(
        "duplicate-mac",
        lambda t: _iface(t, "web2").update(mac="08:00:27:01:01:02"),
        "nodes.web2.interfaces.eth0.mac: '08:00:27:01:01:02' is already used by node 'web1'",
    ),
    Case(
        "malformed-mac",
        lambda t: _iface(t, "dns1").update(mac="08:00:27:01:01"),
        "nodes.dns1.interfaces.eth0.mac: '08:00:27:01:01' is not a MAC address",
    ),
    Case(
        "malformed-ip",
        lambda t: _iface(t, "web3").update(address="10.0.100.300"),
        "nodes.web3.interfaces.eth0.address: '10.0.100.300' is not an IPv4 address",
    ),
    Case(
        "ip-outside-net",
        lambda t: _iface(t, "nas").update(address="192.168.1.50"),
        "nodes.nas.interfaces.eth0.address: '192.168.1.50' is outside the usable addresses of internal",
    ),
    Case(
        "vip-outside-net",
        _set("vips.external", ["10.0.100.201", "192.168.1.202"]),
        "vips.external: '10.0.100.201' is outside the usable addresses of external",
    ),
    Case(
        "vip-is-node-ip",
        _set("vips.internal", ["10.0.100.100"]),
        "vips.internal: '10.0.100.100' is the address of node 'nas'",
    ),
    Case(
        "vip-in-dhcp-range",
        _set("vips.internal", ["10.0.100.20"]),
        "vips.internal: '10.0.100.20' is inside the DHCP pool 10.0.100.2-10.0.100.49",
    ),
    Case(
        "static-ip-in-dhcp-range",
        lambda t: _iface(t, "nas").update(address="10.0.100.30"),
        "nodes.nas.interfaces.eth0.address: '10.0.100.30' is static but inside the DHCP pool",
    ),
    Case(
        "dhcp-range-outside-net",
        _set("networks.internal.dhcp.start", "10.0.99.2"),
        "networks.internal.dhcp.start: '10.0.99.2' is outside the usable addresses of 10.0.100.0/24",
    ),
    Case(
        "dhcp-range-reversed",
        _set("networks.internal.dhcp.end", "10.0.100.1"),
        "networks.internal.dhcp.end: '10.0.100.1' is before the start 10.0.100.2",
    ),
    Case(
        "duplicate-vrid",
        _set("vrrp.instances.VI_I.virtual_router_id", 51),
        "vrrp.instances.VI_I.virtual_router_id: 51 is already used by instance 'VI_E'",
    ),
    Case(
        "vrid-out-of-range",
        _set("vrrp.instances.VI_E.virtual_router_id", 256),
        "vrrp.instances.VI_E.virtual_router_id: 256 is out of range 1..255",
    ),
    Case(
        "vrrp-subsecond-needs-v3",
        lambda topo: topo["vrrp"].update(version=2, advert_int=0.2),
        "vrrp.advert_int: 0.2 is not whole seconds, which VRRP version 2 needs (set vrrp.version: 3)",
    ),
    Case("vrrp-version", _set("vrrp.version", 4), "vrrp.version: 4 is not 2 or 3"),
    Case("vrrp-ipvs-sync", _set("vrrp.ipvs_sync", "yes"), "vrrp.ipvs_sync: 'yes' is not true or false"),
    Case(
        "equal-priorities",
        _set("nodes.standby.priority", 150),
        "nodes.master.priority, nodes.standby.priority: 150 is shared",
    ),
    Case("no-director", _remove_nodes("master", "standby"), "nodes: missing (no node has the role 'director'"),
    Case(
        "unknown-role",
        _set("nodes.web1.roles", ["webserver"]),
        "nodes.web1.roles: 'webserver' is not one of nas, director, web, dns",
    ),
    Case("node-without-role", _set("nodes.web1.roles", []), "nodes.web1.roles: missing"),
    Case("name-not-a-label", _rename_node("web3", "web_3"), "nodes.web_3: 'web_3' is not a DNS label"),
    Case(
        "alias-is-node-name",
        _set("nodes.web1.aliases", ["web2"]),
        "nodes.web1.aliases: 'web2' collides with the node named 'web2'",
    ),
    Case(
        "duplicate-alias",
        _set("nodes.web2.aliases", ["cluster2"]),
        "nodes.web2.aliases: 'cluster2' is already an alias of node 'web1'",
    ),
    Case("backend-role-without-nodes", _roles_to_dns, "haproxy.backends.web-http-l4.role: 'web' has no nodes"),
    Case(
        "proxy-protocol-not-a-flag",
        _set("haproxy.backends.web-http-l4.proxy_protocol", "yes"),
        "haproxy.backends.web-http-l4.proxy_protocol: 'yes' is not true or false",
    ),
    Case(
        "proxy-protocol-on-layer7",
        _set("haproxy.backends.web-http-l7.proxy_protocol", True),
        "haproxy.backends.web-http-l7.proxy_protocol: True needs mode tcp",
    ),
    Case(
        "tls-without-proxy-protocol",
        _set("haproxy.backends.web-https-l4.proxy_protocol", False),
        "haproxy.backends.web-https-l4.tls: True needs proxy_protocol",
    ),
    Case(
        "proxy-port-shared-with-ipvs",
        _set("haproxy.backends.web-http-l4.port", 80),
        "haproxy.backends.web-http-l4.port: 80 takes the PROXY protocol, but is also the port of"
        " ipvs virtual server 'web', the web servers' plain HTTP",
    ),
    Case(
        "proxy-port-tls-disagreement",
        _set("haproxy.backends.web-https-l4.port", 8081),
        "haproxy.backends.web-https-l4.port: 8081 takes the PROXY protocol over TLS, but is also the port of"
        " backend 'web-http-l4'",
    ),
    Case(
        "frontend-port-collision",
        _set("haproxy.frontends.http-l7.port", 80),
        "haproxy.frontends.http-l7.port: 80 collides on 192.168.1.200 (tcp) with haproxy frontend 'http-l4'",
    ),
    Case(
        "ipvs-haproxy-collision",
        _set("ipvs.virtual_servers.web.vip", "192.168.1.200"),
        "ipvs.virtual_servers.web.port: 80 collides on 192.168.1.200 (tcp) with haproxy frontend 'http-l4'",
    ),
    Case(
        "mtu-out-of-range",
        _set("networks.internal.mtu", 70000),
        "networks.internal.mtu: 70000 is out of range 68..65535",
    ),
    Case(
        "reverse-zone-mismatch",
        _set("networks.internal.reverse_zone", "100.0.11.in-addr.arpa"),
        "networks.internal.reverse_zone: '100.0.11.in-addr.arpa' does not match the network 10.0.100.0/24",
    ),
    Case("missing-domain", lambda t: t.pop("domain"), "domain: missing"),
    Case(
        "malformed-cidr",
        _set("networks.external.cidr", "192.168.1.0/33"),
        "networks.external.cidr: '192.168.1.0/33' is not an IPv4 network",
    ),
    Case("dhcp-node-without-mac", lambda t: _iface(t, "dns2").pop("mac"), "nodes.dns2.interfaces.eth0.mac: missing"),
    Case("unknown-section", _set("vipz", {"external": ["192.168.1.200"]}), "cluster: 'vipz' is not a known section"),
    Case(
        "docroot-outside-mount",
        _set("nfs.docroot", "/var/www"),
        "nfs.docroot: '/var/www' is not under the mountpoint /nfs",
    ),
    Case(
        "docroot-with-space",
        _set("nfs.docroot", "/nfs/my www"),
        "nfs.docroot: '/nfs/my www' is not an absolute path",
    ),
    Case(
        "copy-on-the-mount",
        _set("nfs.copy", {"path": "/nfs/copy", "refresh": 5}),
        "nfs.copy.path: '/nfs/copy' is under the mountpoint /nfs",
    ),
    Case(
        "copy-relative",
        _set("nfs.copy", {"path": "srv/www", "refresh": 5}),
        "nfs.copy.path: 'srv/www' is not an absolute path",
    ),
    Case(
        "copy-refresh-zero",
        _set("nfs.copy", {"path": "/srv/www", "refresh": 0}),
        "nfs.copy.refresh: 0 is out of range 1..3600",
    ),
    Case(
        "copy-unknown-key",
        _set("nfs.copy", {"path": "/srv/www", "refresh": 5, "every": 5}),
        "nfs.copy: 'every' is not a known key",
    ),
    Case("nfs-missing", lambda t: t.pop("nfs"), "nfs: missing (the shared docroot)"),
    Case("salt-master-unknown", _set("salt_masters", ["nas", "dns9"]), "salt_masters: 'dns9' is not a node"),
    Case("salt-master-twice", _set("salt_masters", ["nas", "nas"]), "salt_masters: 'nas' is listed twice"),
    Case("salt-master-director", _set("salt_masters", ["nas", "standby"]), "salt_masters: 'standby' is a director"),
    Case(
        "ha-single-master",
        _set("salt_masters", ["nas"]),
        "salt_masters: ['nas'] names fewer than two nodes, and ha is true",
    ),
    Case(
        "ha-no-copy",
        lambda t: t["nfs"].pop("copy"),
        "nfs.copy: None is not set, and ha is true",
    ),
    Case("ha-not-bool", _set("ha", "yes"), "ha: 'yes' is not true or false"),
    Case("monitoring-unknown", _set("monitoring", {"server": "nas9"}), "monitoring.server: 'nas9' is not a node"),
    Case("monitoring-director", _set("monitoring", {"server": "master"}), "monitoring.server: 'master' is a director"),
    Case("monitoring-key", _set("monitoring", {"server": "nas", "port": 1}), "monitoring: 'port' is not a known key"),
    Case(
        "monitoring-webhook-scheme",
        _set("monitoring", {"server": "nas", "webhooks": ["ftp://ops.example.org/"]}),
        "monitoring.webhooks: 'ftp://ops.example.org/' is not an http(s) URL",
    ),
    Case(
        "monitoring-webhook-injection",
        _set("monitoring", {"server": "nas", "webhooks": ["http://ops.example.org/\n- url: http://evil/"]}),
        "monitoring.webhooks: 'http://ops.example.org/\\n- url: http://evil/' is not an http(s) URL",
    ),
    Case(
        "monitoring-webhooks-list",
        _set("monitoring", {"server": "nas", "webhooks": "http://ops.example.org/"}),
        "monitoring.webhooks: 'http://ops.example.org/' is not a list",
    ),
    Case(
        "forwarder-not-an-ip",
        _set("dns.forwarders", ["resolver.example"]),
        "dns.forwarders: 'resolver.example' is not an IPv4 address",
    ),
    Case(
        "open-resolver-cidr",
        _set("dns.allow_recursion", ["internal", "0.0.0.0/0"]),
        "dns.allow_recursion: '0.0.0.0/0' opens recursion to everyone",
    ),
    Case(
        "open-resolver-v6",
        _set("dns.allow_recursion", ["::/0"]),
        "dns.allow_recursion: '::/0' opens recursion to everyone",
    ),
    Case(
        "open-resolver-any",
        _set("dns.allow_recursion", ["any"]),
        "dns.allow_recursion: 'any' opens recursion to everyone",
    ),
    Case(
        "stats-on-external-vip",
        _set("haproxy.stats.vip", "192.168.1.202"),
        "haproxy.stats.vip: '192.168.1.202' is not an internal VIP",
    ),
    Case(
        "frontend-name-with-quote",
        lambda t: t["haproxy"]["frontends"].update({'x" accept': t["haproxy"]["frontends"].pop("http-l7")}),
        "haproxy.frontends: 'x\" accept' is not a name",
    ),
    Case("no-nodes", _set("nodes", {}), "nodes: missing (the machines of the cluster; it is empty)"),
    Case(
        "node-without-interfaces",
        _set("nodes.web1.interfaces", {}),
        "nodes.web1.interfaces: missing (interface name -> network, address; it is empty)",
    ),
    Case(
        "no-internal-vip",
        lambda t: t["vips"].pop("internal"),
        "vips.internal: missing (a VIP on the internal network",
    ),
    Case(
        "unknown-node-key",
        lambda t: t["nodes"]["web1"].update({"alias": ["www"]}),
        "nodes.web1: 'alias' is not a known key (roles, aliases, priority, interfaces)",
    ),
    Case(
        "unknown-interface-key",
        lambda t: _iface(t, "web2").update({"hwaddr": "08:00:27:01:01:09"}),
        "nodes.web2.interfaces.eth0: 'hwaddr' is not a known key (network, address, mac, dhcp)",
    ),
    Case(
        "unknown-backend-key",
        lambda t: t["haproxy"]["backends"]["web-http-l7"].update({"check": "/x"}),
        "haproxy.backends.web-http-l7: 'check' is not a known key",
    ),
    Case(
        "interface-network-a-list",
        lambda t: _iface(t, "web3").update({"network": ["internal"]}),
        "nodes.web3.interfaces.eth0.network: ['internal'] is not a network defined in 'networks'",
    ),
    Case(
        "balance-unknown",
        _set("haproxy.backends.web-http-l4.balance", "random;"),
        "haproxy.backends.web-http-l4.balance: 'random;' is not one of roundrobin",
    ),
]
