"""The lab's view of the topology pillar: which nodes to run and how to wire them.

The lab reads the very pillar the formulas render (pillar/cluster.sls) and the
same `cluster` module, so a node added there becomes a lab node. Two lab-only
nodes join it on the external network: `client` (the seed's external client)
and `upstream` (the "Internet": the external gateway and a small DNS).
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parent.parent
CLIENT_ADDRESS = "192.168.1.10"
BRIDGES = {"internal": "br-int", "external": "br-ext", "lab": "br-lab"}
# The lab's management network (never a cluster network): the switch namespace,
# the user-mode nodes' exec agents and, when the nas runs a user-mode kernel,
# the salt-master container behind it.
MGMT_NETWORK = ipaddress.IPv4Network("169.254.77.0/24")
MGMT_SWITCH_ADDRESS = "169.254.77.1"
MGMT_MASTER_ADDRESS = "169.254.77.2"
MASTER_CONTAINER = "salt"
# UML's vector NICs carry at most 1500-byte frames (the driver's maxmtu). One L2
# network must have one MTU, so a network with a user-mode node runs at 1500 in
# the lab (the topology's jumbo frames apply where every node can do them).
UML_MAX_MTU = 1500

# Public-looking names the upstream node answers for (its own small zone),
# each with its own address (the topology's external gateway).
UPSTREAM_NAMES = ("www.example.org", "mirror.example.net")


def repo_module(path: str) -> ModuleType:
    """One of the repo's Salt modules (``_modules/cluster.py``, a grain ...),
    imported as a plain module: their pure functions serve the lab too."""
    name = Path(path).stem
    if name not in _LOADED:
        spec = importlib.util.spec_from_file_location(f"repo_{name}", REPO / path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        hook = sys.excepthook
        spec.loader.exec_module(module)
        sys.excepthook = hook  # importing salt installs its own hook; the lab reports its own errors
        _LOADED[name] = module
    return _LOADED[name]


_LOADED: dict[str, ModuleType] = {}


def cluster_module() -> ModuleType:
    """The repo's `cluster` execution module, imported as a plain module."""
    return repo_module("_modules/cluster.py")


@dataclass
class Link:
    ifname: str
    network: str
    bridge: str
    mac: str
    mtu: int
    address: str  # the node's address on this network
    prefixlen: int
    dhcp: bool
    gateway: str | None = None  # a default route on this link (lab links only)


NETNS_PREFIX = "halab-"
# Names the lab gives its own nodes and switch namespace (not the topology's).
# `operator`: the lab's vantage point on the internal network (an administrator's
# machine: the stats page, the benchmark's direct paths); no route elsewhere.
OPERATOR = "operator"
LAB_OWN_NAMES = frozenset({"client", "upstream", OPERATOR, MASTER_CONTAINER, "sw"})


def netns_name(node: str) -> str:
    """The network namespace of a lab node (and of the lab's switch, "sw")."""
    return NETNS_PREFIX + node


@dataclass
class LabNode:
    name: str
    roles: list[str]
    links: list[Link]
    gateway: str | None
    minion: bool = True
    kind: str = "cluster"  # or "lab" for client/upstream
    order: int = 0  # boot wave: 0 nas/upstream/client, 1 directors, 2 servers
    extra: dict = field(default_factory=dict)
    platform: str = "nspawn"  # or "uml": a user-mode kernel (lab/uml.py)
    runs_master: bool = False  # the salt-master runs here (the primary: the lab's commands go through it)
    extra_master: bool = False  # a topology node that runs a further salt-master (salt_masters)

    @property
    def mgmt_address(self) -> str | None:
        return next((link.address for link in self.links if link.network == "lab"), None)

    @property
    def netns(self) -> str:
        return netns_name(self.name)

    @property
    def address(self) -> str:
        return (
            self.links[0].address
            if len(self.links) == 1
            else next(link.address for link in self.links if link.network == "internal")
        )


def stable_mac(*parts: str) -> str:
    """A locally administered MAC that stays the same for a node and interface."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def load(pillar: Path | None = None) -> tuple[dict, dict, dict[str, LabNode]]:
    """(topology, model, lab nodes) from the pillar; raises on an invalid topology."""
    pillar = pillar or REPO / "pillar" / "cluster.sls"
    with open(pillar, encoding="utf-8") as handle:
        topology = yaml.safe_load(handle)["cluster"]
    cluster = cluster_module()
    try:
        model = cluster.derive(topology)
    except cluster.TopologyError as err:
        raise ValueError(f"{pillar}: {err}") from None
    nodes: dict[str, LabNode] = {}
    for name, node in model["nodes"].items():
        links = [
            Link(
                ifname=iface["name"],
                network=iface["network"],
                bridge=BRIDGES[iface["network"]],
                mac=iface["mac"] or stable_mac(name, iface["name"]),
                mtu=iface["mtu"],
                address=iface["address"],
                prefixlen=iface["prefixlen"],
                dhcp=iface["dhcp"],
            )
            for iface in node["interfaces"].values()
        ]
        roles = node["roles"]
        order = 0 if "nas" in roles else 1 if "director" in roles else 2
        masters = [m["name"] for m in model["salt_masters"]]
        nodes[name] = LabNode(
            name=name,
            roles=roles,
            links=links,
            gateway=node["gateway"],
            order=order,
            runs_master="nas" in roles,
            extra_master=name in masters and "nas" not in roles,
        )
    taken = sorted(set(nodes) & LAB_OWN_NAMES)
    if taken:
        raise ValueError(
            f"{pillar}: node name {taken[0]!r} is the lab's own (lab names: {', '.join(sorted(LAB_OWN_NAMES))})"
        )
    ext = model["networks"]["external"]
    gateway = ext["gateway"]
    used = {link.address for n in nodes.values() for link in n.links} | set(model["vips"].get("external", []))
    for lab_name, address in (("upstream", gateway), ("client", CLIENT_ADDRESS)):
        if (
            lab_name in nodes
            or address in used
            or ipaddress.IPv4Address(address) not in ipaddress.IPv4Network(ext["cidr"])
        ):
            raise ValueError(f"lab node {lab_name} ({address}) collides with the topology or is outside {ext['cidr']}")
        nodes[lab_name] = _lab_node(lab_name, "external", address, ext["prefixlen"], mtu=ext["mtu"])
    internal = model["networks"]["internal"]
    address = operator_address(internal, used | set(model["vips"].get("internal", [])))
    nodes[OPERATOR] = _lab_node(OPERATOR, "internal", address, internal["prefixlen"], mtu=internal["mtu"])
    return topology, model, nodes


def operator_address(internal: dict, used: set[str]) -> str:
    """The internal network's highest address that no node, VIP or DHCP pool has."""
    net = ipaddress.IPv4Network(internal["cidr"])
    pool = internal["dhcp"]
    for address in reversed(list(net.hosts())):
        taken = str(address) in used or (
            pool and ipaddress.IPv4Address(pool["start"]) <= address <= ipaddress.IPv4Address(pool["end"])
        )
        if not taken:
            return str(address)
    raise ValueError(f"lab node {OPERATOR}: no free address on the internal network {net}")


def _lab_node(
    name: str,
    network: str,
    address: str,
    prefixlen: int,
    mtu: int = 1500,
    link_gateway: str | None = None,
    runs_master: bool = False,
) -> LabNode:
    """A node of the lab itself (not of the topology, no minion): one eth0 on ``network``."""
    link = Link(
        "eth0", network, BRIDGES[network], stable_mac(name, "eth0"), mtu, address, prefixlen, False, link_gateway
    )
    return LabNode(
        name=name,
        roles=[],
        links=[link],
        gateway=None,
        minion=False,
        kind="lab",
        order=0,
        runs_master=runs_master,
    )


def place_on_kernels(nodes: dict[str, LabNode], uml_roles: set[str], bare: bool = False) -> dict[str, LabNode]:
    """Move the nodes of ``uml_roles`` onto user-mode kernels (pure: returns new nodes).

    Each such node gets a management NIC (lab0) for the exec agent. A user-mode
    nas hands the salt-master to a container behind it (``salt``, on the
    management network; the nas forwards ports 4505/4506 to it): Salt under a
    user-mode kernel is several times slower, and every lab command goes
    through the master. A bare lab (``bare``) has no such container: the
    bootstrap puts the master where the topology says, on the nas."""
    out: dict[str, LabNode] = {}
    uml = sorted(n for n, node in nodes.items() if set(node.roles) & uml_roles)
    hosts = list(MGMT_NETWORK.hosts())
    for name, node in nodes.items():
        if name not in uml:
            out[name] = node
            continue
        mgmt = Link(
            "lab0",
            "lab",
            BRIDGES["lab"],
            stable_mac(name, "lab0"),
            1500,
            str(hosts[9 + uml.index(name)]),
            MGMT_NETWORK.prefixlen,
            False,
        )
        out[name] = replace(node, links=[*node.links, mgmt], platform="uml", runs_master=node.runs_master and bare)
    clamped = {link.network for name in uml for link in out[name].links if link.mtu > UML_MAX_MTU}
    for name, node in out.items():
        if any(link.network in clamped for link in node.links):
            links = [replace(link, mtu=UML_MAX_MTU) if link.network in clamped else link for link in node.links]
            out[name] = replace(node, links=links)
    nas = next((n for n in out.values() if "nas" in n.roles), None)
    if nas is not None and nas.platform == "uml" and not bare:
        if MASTER_CONTAINER in out:
            raise ValueError(f"lab node {MASTER_CONTAINER!r} collides with a topology node")
        out[MASTER_CONTAINER] = _lab_node(
            MASTER_CONTAINER,
            "lab",
            MGMT_MASTER_ADDRESS,
            MGMT_NETWORK.prefixlen,
            link_gateway=nas.mgmt_address,
            runs_master=True,
        )
    return out
