"""The lab's wires: a switch namespace with one bridge per network, and a
network namespace per node joined to the bridges by veth pairs.

Nothing here touches the host's own network namespace: the cluster's networks
exist only inside these namespaces, and the switch has no uplink.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lab.topology import BRIDGES, MGMT_NETWORK, MGMT_SWITCH_ADDRESS, NETNS_PREFIX, LabNode, netns_name
from lab.util import run

SWITCH = netns_name("sw")


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ip(netns: str, *args: str, check: bool = True):
    return run(["ip", "-n", netns, *args], check=check)


def host_ifname(node: str, ifname: str) -> str:
    """The switch-side name of a node's interface, within IFNAMSIZ."""
    name = f"{node}.{ifname}"
    if len(name) <= 15:
        return name
    return f"{node[:6]}{hashlib.sha256(name.encode()).hexdigest()[:4]}.{ifname}"[:15]


def ensure_switch(mtus: dict[str, int]) -> None:
    """The switch namespace and its bridges (idempotent)."""
    if not netns_exists(SWITCH):
        run(["ip", "netns", "add", SWITCH])
    ip(SWITCH, "link", "set", "lo", "up")
    for network, bridge in BRIDGES.items():
        if ip(SWITCH, "link", "show", bridge, check=False).returncode != 0:
            ip(SWITCH, "link", "add", bridge, "type", "bridge")
        ip(SWITCH, "link", "set", bridge, "mtu", str(mtus.get(network, 1500)), "up")
    # The switch's own address on the management bridge: the exec agents' only peer.
    mgmt = f"{MGMT_SWITCH_ADDRESS}/{MGMT_NETWORK.prefixlen}"
    if mgmt not in ip(SWITCH, "-4", "-o", "addr", "show", "dev", BRIDGES["lab"]).stdout:
        ip(SWITCH, "addr", "add", mgmt, "dev", BRIDGES["lab"])


def wire(node: LabNode) -> None:
    """The node's namespace and its links to the bridges (idempotent)."""
    if node.platform == "uml":
        wire_taps(node)
        return
    if not netns_exists(node.netns):
        run(["ip", "netns", "add", node.netns])
    # The cluster is IPv4 only; without IPv6 nothing waits on AAAA lookups.
    run(
        [
            "ip",
            "netns",
            "exec",
            node.netns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv6.conf.lo.disable_ipv6=1",
        ]
    )
    ip(node.netns, "link", "set", "lo", "up")
    for link in node.links:
        outside = host_ifname(node.name, link.ifname)
        if ip(node.netns, "link", "show", link.ifname, check=False).returncode != 0:
            ip(SWITCH, "link", "del", outside, check=False)
            ip(
                SWITCH,
                "link",
                "add",
                outside,
                "mtu",
                str(link.mtu),
                "type",
                "veth",
                "peer",
                "name",
                link.ifname,
                "netns",
                node.netns,
            )
        # One segment per packet: the stack would otherwise hand the veth
        # 64 kB TSO packets, which a user-mode node's vector NIC (tap with a
        # virtio header) loses; measured: 2 MB from a container to the
        # user-mode nas in 74 s (60 % of the bytes sent again), 0.03 s so.
        ip(node.netns, "link", "set", link.ifname, "address", link.mac, "mtu", str(link.mtu), "gso_max_segs", "1")
        ip(SWITCH, "link", "set", outside, "master", link.bridge, "mtu", str(link.mtu), "up")


def wire_taps(node: LabNode) -> None:
    """A user-mode node's NICs are taps on the bridges, named like an nspawn node's veths."""
    for link in node.links:
        tap = host_ifname(node.name, link.ifname)
        if ip(SWITCH, "link", "show", tap, check=False).returncode != 0:
            ip(SWITCH, "tuntap", "add", "dev", tap, "mode", "tap")
        ip(SWITCH, "link", "set", tap, "master", link.bridge, "mtu", str(link.mtu), "up")


def _details(port: str) -> str:
    """`ip -d` of a switch port: its kind (tap or veth), link and bridge port state."""
    return ip(SWITCH, "-d", "-o", "link", "show", port, check=False).stdout


def _is_tap(details: str) -> bool:
    """Whether a switch port (its _details) is a user-mode node's tap, else an nspawn node's veth."""
    return " tun type tap " in details


def set_links(node: LabNode, up: bool) -> None:
    """Cut or heal a node's cables. An nspawn node's switch-side veth goes down
    (the node sees no carrier). A user-mode node's tap must stay up: one frame
    written to a tap that is down sets UML's vector driver in error, and it
    sends and receives nothing more until the guest reopens the NIC. Its
    bridge port is disabled instead (frames both ways dropped by the
    bridge). Which of the two a port is comes from the port itself, so a
    caller holding unplaced nodes (lab.topology.load) cannot take a tap
    down. The management link stays: the lab must still reach the node."""
    ports = [host_ifname(node.name, link.ifname) for link in node.links if link.network != "lab"]
    for argv, script in link_commands({port: _is_tap(_details(port)) for port in ports}, up):
        run(argv, input=script)


def link_commands(ports: dict[str, bool], up: bool) -> list[tuple[list[str], str]]:
    """The commands (argv, batch on stdin) that set these switch ports (name ->
    is a tap) up or down: one per kind, so that every cable of the node goes
    at the same moment. One command a port let a loaded host cut a
    director's external cable up to tenths of a second before its internal
    one, where its VRRP adverts go, and the takeover measured that too."""
    taps = [port for port, tap in ports.items() if tap]
    veths = [port for port, tap in ports.items() if not tap]
    commands = []
    if taps:
        state = "3" if up else "0"
        script = "".join(f"link set dev {port} state {state}\n" for port in taps)
        commands.append((["bridge", "-n", SWITCH, "-batch", "-"], script))
    if veths:
        script = "".join(f"link set {port} {'up' if up else 'down'}\n" for port in veths)
        commands.append((["ip", "-n", SWITCH, "-batch", "-"], script))
    return commands


def links_up(node: LabNode) -> bool:
    details = _details(host_ifname(node.name, node.links[0].ifname))
    if _is_tap(details):
        return "bridge_slave state forwarding " in details
    return ",UP" in details or "<UP" in details


def unwire(node: LabNode) -> None:
    for link in node.links:
        if netns_exists(SWITCH):
            ip(SWITCH, "link", "del", host_ifname(node.name, link.ifname), check=False)
    if netns_exists(node.netns):
        run(["ip", "netns", "del", node.netns], check=False)


def unwire_retired(name: str) -> None:
    """Unwire a node that is no longer in the topology (its links are not known any more)."""
    if netns_exists(SWITCH):
        for line in ip(SWITCH, "-o", "link", "show").stdout.splitlines():
            ifname = line.split(": ")[1].split("@")[0]
            if "." in ifname and host_ifname(name, ifname.rsplit(".", 1)[1]) == ifname:
                ip(SWITCH, "link", "del", ifname, check=False)
    if netns_exists(netns_name(name)):
        run(["ip", "netns", "del", netns_name(name)], check=False)


def remove_switch() -> None:
    if netns_exists(SWITCH):
        run(["ip", "netns", "del", SWITCH], check=False)


def lab_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]
