"""The cluster's edge, attacked from the Internet side (on the shared lab).

The lab's `client` (192.168.1.10) plays an attacker on the external segment:
it listens for VRRP, forges adverts (with the real VRRP key: the strongest
attacker), routes into the internal network through each director, asks the
VIP for recursion. Every attack must fail, and probes through the VIPs must
lose nothing meanwhile. Each test first shows that its attack arrived (a
firewall counter moved, a listener exists, the sniffer saw other traffic), so
that a silent failure of the attack itself cannot pass for a defence.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from conftest import REPO, load_module
from lab import catalogue
from lab.bench import Cluster, Probe, held_vips
from lab.topology import OPERATOR, load
from labtools import LAB_NODES, MASTER_NODE, PREFIX, in_node, salt_json, wait_until_serving

pytestmark = pytest.mark.usefixtures("running_lab")

cluster = load_module("_modules/cluster.py", "cluster_model")

_, MODEL, NODES = load()
VIP = MODEL["vips"]["external"][0]
ALL_VIPS = [v for vips in MODEL["vips"].values() for v in vips]
LEADER = MODEL["vrrp"]["leader"]
DIRECTORS = MODEL["roles"]["director"]
L7_PORT = Cluster(MODEL, NODES, MASTER_NODE, ipvs=True).l7_port
ATTACKER = (REPO / "tests" / "attacker.py").read_text()
INTERNAL = MODEL["networks"]["internal"]["cidr"]


def attack(node: str, *argv: str, timeout: float = 60) -> dict:
    return json.loads(in_node(node, "python3", "-c", ATTACKER, *argv, timeout=timeout).stdout)


def dropped(director: str) -> dict[str, int]:
    return salt_json(director, "firewall.dropped")[director]


def vrrp_key() -> str:
    return yaml.safe_load((REPO / "pillar" / "secrets.sls").read_text())["cluster_secrets"]["vrrp_auth_pass"]


def external_address(director: str) -> str:
    return MODEL["nodes"][director]["addresses"]["external"]


def failed(probes: list[list]) -> list[list]:
    return [p for p in probes if not p[2]]


def test_no_vrrp_advert_is_seen_on_the_external_segment():
    """Sniffing 4 s on the external segment while fetching a page from the VIP:
    the page's packets are seen, no VRRP. On the internal segment the adverts
    are there (so VRRP runs, and the sniffer would see it): at a peer
    director's internal interface, since VRRPv3 sends them unicast to the
    peers (with version 2, multicast, any node there sees them)."""
    found: dict = {}
    sniffer = threading.Thread(target=lambda: found.update(attack("client", "sniff", "eth0", "4", VIP)))
    sniffer.start()
    time.sleep(1)
    in_node("client", "curl", "-s", "-m", "3", "-o", "/dev/null", f"http://{VIP}/")
    sniffer.join()
    print(f"external segment, 4 s: {len(found['vrrp'])} VRRP adverts, {found['control']} packets from the VIP")
    assert found["control"] > 0, "the sniffer saw nothing of the page it fetched"
    assert found["vrrp"] == [], f"VRRP adverts on the external segment from {sorted(set(found['vrrp']))}"
    peer = next((d for d in DIRECTORS if d != LEADER), LEADER)
    inside = attack(peer, "sniff", MODEL["nodes"][peer]["by_network"]["internal"], "3", "0.0.0.0")
    print(f"internal segment at {peer}, 3 s: {len(inside['vrrp'])} VRRP adverts from {sorted(set(inside['vrrp']))}")
    assert MODEL["nodes"][LEADER]["address"] in inside["vrrp"], inside


def test_forged_vrrp_from_the_external_segment_changes_nothing():
    """VRRPv2 with the real key and VRRPv3, priority 254, from the peer
    director's external and internal addresses: to VRRP's group, and to each
    director's own external address (there the firewall's drop counter shows
    that they arrived). The leader keeps every VIP, keepalived logs nothing,
    and no probe through the VIPs fails."""
    key = vrrp_key()
    before = {d: dropped(d)["input"] for d in DIRECTORS}
    since = int(time.time())
    probe = Probe(VIP, L7_PORT, "web1.lab.local", interval=0.1, timeout=5.0)
    # Rounds of every forged advert, 0.1 s apart: 8 s of attack, longer than
    # a backup's master-down timer, while the probe runs.
    count = 80
    adverts = []
    for instance in MODEL["vrrp"]["directors"][LEADER]["instances"]:
        vips = [v.split("/")[0] for v in instance["vips"]]
        for version in (2, 3):
            for director in DIRECTORS:
                peer = next(d for d in DIRECTORS if d != director) if len(DIRECTORS) > 1 else director
                for source in (external_address(peer), MODEL["nodes"][peer]["address"]):
                    for dest in ("224.0.0.18", external_address(director)):
                        adverts.append(
                            {
                                "dest": dest,
                                "version": version,
                                "vrid": instance["virtual_router_id"],
                                "priority": 254,
                                "source": source,
                                "key": key,
                                "vips": vips,
                            }
                        )
    unicast = count * sum(1 for a in adverts if a["dest"] != "224.0.0.18")
    try:
        sent = attack("client", "forge", "eth0", str(count), json.dumps(adverts))
        assert sent == {"sent": count * len(adverts)}, sent
    finally:
        probes = probe.stop()
    after = {d: dropped(d)["input"] for d in DIRECTORS}
    print(f"forged {unicast} unicast frames (and as many to the group); dropped: ", end="")
    print({d: after[d] - before[d] for d in DIRECTORS}, f"; {len(probes)} probes, {len(failed(probes))} failed")
    for director in DIRECTORS:
        assert after[director] - before[director] >= unicast // len(DIRECTORS), (director, before, after)
        journal = in_node(director, "journalctl", "-u", "keepalived", "--since", f"@{since}", "--no-pager", "-q")
        assert "priority" not in journal.stdout and "Entering" not in journal.stdout, journal.stdout
    assert held_vips(LEADER, ALL_VIPS) == set(ALL_VIPS)
    for director in DIRECTORS:
        if director != LEADER:
            assert held_vips(director, ALL_VIPS) == set()
    assert len(probes) > 50, f"the probe hardly ran: {len(probes)}"
    assert failed(probes) == [], failed(probes)[:10]


SEND_UDP = """
import socket, sys
count = int(sys.argv[1])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    for target in sys.argv[2:]:
        host, port = target.rsplit(":", 1)
        for _ in range(count):
            sock.sendto(b"forged connection state", (host, int(port)))
"""


@pytest.mark.parametrize("vantage", ["client", OPERATOR])
def test_connection_state_is_taken_from_the_peer_directors_only(vantage):
    """The directors share their IPVS and conntrack entries over UDP (the
    model's state_sync ports) on the internal network. Datagrams to those
    ports from the Internet side (the client, at each director's external
    address and the VIP) and from an internal node that is no director (the
    operator, at each director's internal address) are all dropped: each
    director's input drop counter grows by at least what was aimed at it,
    and the peers' state keeps flowing (conntrackd still receives)."""
    # conntrackd's port and the IPVS sync's, whether in use or not (when the
    # topology does not share IPVS connections, nothing listens there, and it
    # must be closed all the same).
    sync = MODEL["vrrp"]["directors"][LEADER]["state_sync"]
    ports = sorted({sync["conntrack_port"], cluster.STATE_SYNC_PORTS["ipvs"]})
    count = 20
    network = "external" if vantage == "client" else "internal"
    aimed = {d: [MODEL["nodes"][d]["addresses"][network]] for d in DIRECTORS}
    if vantage == "client":
        aimed[LEADER].append(VIP)
    before = {d: dropped(d)["input"] for d in DIRECTORS}
    received = int(in_node(LEADER, "sh", "-c", "conntrackd -s | grep -o '[0-9]* Pckts recv'").stdout.split()[0])
    targets = [f"{a}:{port}" for addresses in aimed.values() for a in addresses for port in ports]
    in_node(vantage, "python3", "-c", SEND_UDP, str(count), *targets)
    time.sleep(1)
    after = {d: dropped(d)["input"] for d in DIRECTORS}
    print(f"{vantage}: {count} datagrams to each of {targets}; dropped", {d: after[d] - before[d] for d in DIRECTORS})
    for director in DIRECTORS:
        assert after[director] - before[director] >= count * len(ports) * len(aimed[director]), (director, after)
    later = int(in_node(LEADER, "sh", "-c", "conntrackd -s | grep -o '[0-9]* Pckts recv'").stdout.split()[0])
    assert later > received, "conntrackd received nothing from its peer meanwhile"


# (address, port, protocol, node whose listener it is): what the internal
# network offers that the Internet side must not reach.
NAS = MODEL["nodes"][MODEL["roles"]["nas"][0]]["address"]
WEB1 = MODEL["nodes"]["web1"]
INTERNAL_TARGETS = [
    (NAS, 2049, "tcp", "nas"),
    (NAS, 4506, "tcp", MASTER_NODE),
    # Every further Salt master of the topology (salt_masters), on its own node.
    *[(m["address"], 4506, "tcp", m["name"]) for m in MODEL["salt_masters"] if m["name"] not in MODEL["roles"]["nas"]],
    (WEB1["address"], 8080, "tcp", "web1"),
    # HAProxy's layer 4 ports (PROXY protocol: whoever reaches them names the client).
    (WEB1["address"], 8081, "tcp", "web1"),
    (WEB1["address"], 8444, "tcp", "web1"),
    (WEB1["address"], 80, "tcp", "web1"),
    # The web server's copy of the docroot, offered to the nas (rsync daemon).
    (WEB1["address"], MODEL["nfs"]["copy"]["rsync"]["port"], "tcp", "web1"),
    (MODEL["nodes"]["dns1"]["address"], 53, "tcp", "dns1"),
    (MODEL["haproxy"]["stats"]["vip"], MODEL["haproxy"]["stats"]["port"], "tcp", LEADER),
]


def listening(node: str, port: int) -> bool:
    return bool(in_node(node, "ss", "-Hltn", f"sport = :{port}").stdout.strip())


@pytest.mark.parametrize("director", DIRECTORS)
def test_no_route_from_the_internet_into_the_internal_network(director):
    """The client routes the internal network through a director (as any host
    on its segment can) and tries every internal service, each one listening."""
    for _, port, _, owner in INTERNAL_TARGETS:
        assert listening(owner, port), f"{owner} does not listen on {port}: the attack would prove nothing"
    before = dropped(director)["forward"]
    in_node("client", "ip", "route", "replace", INTERNAL, "via", external_address(director))
    try:
        # Every service tried at once, each for 3 s.
        script = " ".join(
            f'(timeout 3 bash -c "echo > /dev/tcp/{address}/{port}" 2>/dev/null && echo "open {address}:{port}") &'
            for address, port, _, _ in INTERNAL_TARGETS
        )
        opened = in_node("client", "bash", "-c", script + " wait").stdout
        dns = in_node(
            "client",
            "dig",
            "+time=2",
            "+tries=1",
            f"@{MODEL['nodes']['dns1']['address']}",
            "web1.lab.local",
            check=False,
        )
    finally:
        in_node("client", "ip", "route", "del", INTERNAL, check=False)
    print(f"via {director}: {len(INTERNAL_TARGETS)} services tried, open: {opened.split() or 'none'};", end=" ")
    print(f"forward drops +{dropped(director)['forward'] - before}")
    assert opened == "", opened
    assert "timed out" in dns.stdout and "ANSWER SECTION" not in dns.stdout, dns.stdout
    assert dropped(director)["forward"] - before >= len(INTERNAL_TARGETS), "the attempts did not reach the director"


def test_the_vip_is_no_open_resolver_but_answers_its_zone_over_udp_and_tcp():
    recursion = in_node("client", "dig", "+time=2", "+tries=2", f"@{VIP}", "www.example.org").stdout
    assert "status: REFUSED" in recursion, recursion
    for transport in ("+notcp", "+tcp"):
        answer = in_node("client", "dig", "+short", "+time=2", "+tries=2", transport, f"@{VIP}", "web1.lab.local")
        assert answer.stdout.split() == [WEB1["address"]], (transport, answer.stdout)
    # Recursion stays open to the internal network.
    inside = in_node(OPERATOR, "dig", "+time=2", "+tries=2", f"@{MODEL['nodes']['dns2']['address']}", "www.example.org")
    assert "status: NOERROR" in inside.stdout, inside.stdout


def test_nfs_is_exported_to_the_client_nodes_only():
    exported = in_node("nas", "exportfs", "-s").stdout.split()
    clients = sorted(word.split("(")[0] for word in exported if "(" in word)
    assert clients == sorted(MODEL["nodes"][n]["address"] for n in MODEL["nfs"]["clients"]), exported


def test_the_docroot_copies_are_offered_to_the_nas_only():
    """Each web server offers its copy (rsync, read-only) for the nas to take
    back after a disk loss: the nas lists it; the operator, an internal node
    that is no nas, is dropped by the web server's firewall; and the nas
    cannot write into it."""
    rsync = MODEL["nfs"]["copy"]["rsync"]
    source = rsync["sources"][0]
    marker = catalogue.runtime("webcontent", "marker")
    listed = in_node("nas", "rsync", "--contimeout=5", "--list-only", f"{source}/{marker}", check=False)
    assert listed.returncode == 0 and marker in listed.stdout, listed.stderr
    planted = in_node("nas", "sh", "-c", f"echo defaced > /tmp/planted && rsync /tmp/planted {source}/", check=False)
    assert planted.returncode != 0 and "read only" in planted.stderr, planted.stderr
    before = dropped("web1")["input"]
    script = f'timeout 3 bash -c "echo > /dev/tcp/{WEB1["address"]}/{rsync["port"]}" 2>/dev/null && echo open'
    opened = in_node(OPERATOR, "bash", "-c", script + "; true").stdout
    assert opened == "", opened
    assert dropped("web1")["input"] > before, "the operator's attempt did not reach web1"


def test_stats_page_is_read_only_and_for_the_internal_network():
    stats = yaml.safe_load((REPO / "pillar" / "secrets.sls").read_text())["cluster_secrets"]["haproxy_stats"]
    url = f"http://{MODEL['haproxy']['stats']['vip']}:{MODEL['haproxy']['stats']['port']}/"
    page = in_node(OPERATOR, "curl", "-s", "-m", "5", "-u", f"{stats['user']}:{stats['password']}", url).stdout
    assert "web-http-l7" in page, page[:500]
    # HAProxy's admin level adds a form that posts actions on the checked servers.
    assert "Choose the action" not in page and 'method="post"' not in page


def test_every_node_runs_its_firewall():
    """Default drop everywhere, with the backend the node's kernel allows."""
    minions = [n.name for n in LAB_NODES.values() if n.minion]
    answers = salt_json("*", "firewall.counters")
    for name in minions:
        chains = answers[name]["chains"]
        assert "dropped" in chains["input"] and "dropped" in chains["forward"], (name, chains)
        expected = "iptables" if LAB_NODES[name].platform == "uml" else "nftables"
        assert answers[name]["backend"] == expected, (name, answers[name]["backend"])


def test_a_leader_whose_external_link_dies_hands_every_vip_over():
    """VRRP runs on the internal network, so the external link is tracked: the
    leader with that link down goes to FAULT and the peer takes every VIP
    (the internal one too, through the sync group); back up, it takes them
    again."""
    peer = next(d for d in DIRECTORS if d != LEADER)
    outside = MODEL["nodes"][LEADER]["by_network"]["external"]
    assert held_vips(LEADER, ALL_VIPS) == set(ALL_VIPS)
    in_node(LEADER, "ip", "link", "set", outside, "down")
    try:
        deadline = time.monotonic() + 20
        while held_vips(peer, ALL_VIPS) != set(ALL_VIPS) and time.monotonic() < deadline:
            time.sleep(0.5)
        taken = held_vips(peer, ALL_VIPS)
        answer = in_node("client", "curl", "-s", "-m", "5", f"http://{VIP}/", check=False).stdout
    finally:
        # networkd puts back the routes that went with the link.
        in_node(LEADER, "sh", "-c", f"ip link set {outside} up && networkctl reconfigure {outside}")
    assert taken == set(ALL_VIPS), f"{peer} holds {taken}"
    assert PREFIX in answer, answer[:300]
    deadline = time.monotonic() + 60
    while held_vips(LEADER, ALL_VIPS) != set(ALL_VIPS) and time.monotonic() < deadline:
        time.sleep(1)
    assert held_vips(LEADER, ALL_VIPS) == set(ALL_VIPS), f"{LEADER} did not take the VIPs back"
    assert "default" in in_node(LEADER, "ip", "route", "show", "default").stdout
    wait_until_serving(timeout=120)
