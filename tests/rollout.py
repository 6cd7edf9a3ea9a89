"""Topology edits as a user makes them, and a client load that watches them.

Shared by the tests that change the topology of a running lab: the pillar
edit (restored afterwards), the servers a user adds, and the probe that runs
from the external client through the VIPs while a change rolls out.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator

import yaml

from conftest import REPO
from lab.bench import Cluster, Probe
from lab.topology import load
from labtools import MASTER_NODE, in_node, salt_json, scraped, servers

PILLAR = REPO / "pillar" / "cluster.sls"
_, MODEL, NODES = load()
VIP = MODEL["vips"]["external"][0]
L7_PORT = Cluster(MODEL, NODES, MASTER_NODE, ipvs=True).l7_port


def new_node(role: str, address: str, mac: str) -> dict:
    """A server as a user adds it to the topology: its address by DHCP, by MAC."""
    eth0 = {"network": "internal", "address": address, "mac": mac, "dhcp": True}
    return {"roles": [role], "aliases": [], "interfaces": {"eth0": eth0}}


WEB4 = new_node("web", "10.0.100.8", "08:00:27:01:01:08")
DNS4 = new_node("dns", "10.0.100.9", "08:00:27:01:01:09")


@contextlib.contextmanager
def pillar_kept() -> Iterator[None]:
    """The topology pillar as it was, whatever the edits in between."""
    original = PILLAR.read_text()
    try:
        yield
    finally:
        PILLAR.write_text(original)


def edit(change: Callable[[dict], None]) -> None:
    """Edit the topology pillar as a user would (here through YAML)."""
    data = yaml.safe_load(PILLAR.read_text())
    change(data["cluster"]["nodes"])
    PILLAR.write_text("# Edited by a test (tests/rollout.py)\n" + yaml.safe_dump(data, sort_keys=False))


def under_load(action: Callable[[], None]) -> list[list]:
    """Run ``action`` while the client probes the VIPs; the probes' results."""
    probe = Probe(VIP, L7_PORT, "web1.lab.local", interval=0.1, timeout=5.0)
    try:
        action()
    finally:
        probes = probe.stop()
    assert len(probes) > 100, f"the probe hardly ran: {len(probes)} probes"
    return probes


def failed(probes: list[list]) -> list[tuple[str, float, str | None]]:
    """The probes whose first attempt failed: (kind, sent at, what went wrong)."""
    return [(p[0], p[1], p[6]) for p in probes if not p[2]]


def outage(probes: list[list]) -> str:
    """The failed probes, summed up, and what both directors' keepalived and
    HAProxy logged around them (a rollout step that cost requests says so here)."""
    bad = failed(probes)
    if not bad:
        return ""
    first, last = bad[0][1], bad[-1][1]
    kinds = Counter(f"{kind} {error}" for kind, _, error in bad)
    lines = [f"{len(bad)} failed probes over {last - first:.1f} s from {first:.1f}: {dict(kinds)}"]
    units = ["-u", "keepalived", "-u", "haproxy", "-u", "keepalived-haproxy-watch"]
    window = ["--since", f"@{int(first) - 10}", "--until", f"@{int(last) + 5}"]
    for director in MODEL["roles"]["director"]:
        journal = in_node(director, "journalctl", "--no-pager", "-o", "short-precise", *window, *units, check=False)
        lines += [f"--- {director}", *journal.stdout.splitlines()[-60:]]
    return "\n".join(lines)


def dns_conns(address: str) -> int:
    """The connections the master director's IPVS gave ``address`` on the
    external DNS service (-1: not one of its real servers)."""
    services = salt_json("master", "ipvs.services", "stats=True")["master"]
    dns = next(s for s in services if s["key"] == f"udp {VIP}:53")
    return next((r["stats"]["conns"] for r in dns["real_servers"] if r["address"] == address), -1)


def assert_web4_and_dns4_in_rotation() -> None:
    """After a rollout that added them: web4 answers HTTP through the VIP,
    dns4 gets DNS queries through IPVS, and the monitoring server scrapes
    both (the nas's highstate in the rollout)."""
    assert "10.0.100.8" in servers(f"http://{VIP}/", 12), "web4 receives no traffic"
    in_node("client", "sh", "-c", f"for i in $(seq 12); do dig +short +time=2 +tries=1 @{VIP} web4.lab.local; done")
    assert dns_conns("10.0.100.9") > 0, "dns4 receives no queries"
    assert in_node("client", "dig", "+short", f"@{VIP}", "web4.lab.local").stdout.split() == ["10.0.100.8"]
    targets = scraped()
    expected = {("node", "web4"), ("apache", "web4"), ("node", "dns4"), ("bind", "dns4")}
    assert expected <= set(targets), targets
