"""Topology changes by pillar edit, with zero downtime (on the shared lab).

The steps a user takes: edit pillar/cluster.sls, let the lab create the
nodes the topology gained (`python -m lab up`), look at the plan
(`salt-run state.orchestrate orch.topology test=True`), roll the change out
(`salt-run state.orchestrate orch.topology`), let the lab retire the nodes
the topology lost (`python -m lab up` again). A bounded client load runs
through the VIPs the whole time: HTTP on :80 and :8000 and DNS, from the
`client` node (lab/probe.py, one HTTP and one DNS query every 100 ms).

Runs late in the session (the lab keeps the changed topology until it goes
down); the pillar file is restored whatever happens.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator

import pytest

from lab import node
from labtools import MASTER_NODE, in_node, lab, scraped, servers
from rollout import (
    DNS4,
    VIP,
    WEB4,
    assert_web4_and_dns4_in_rotation,
    dns_conns,
    edit,
    failed,
    outage,
    pillar_kept,
    under_load,
)

pytestmark = pytest.mark.usefixtures("running_lab")

# Files every change rewrites somewhere: unchanged means nothing was applied.
WATCHED = {
    "master": ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/etc/hosts"],
    "standby": ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"],
    "dns1": ["/etc/hosts"],
}


@pytest.fixture(scope="module", autouse=True)
def pillar_restored() -> Iterator[None]:
    with pillar_kept():
        yield


def orchestrate(test: bool = False) -> subprocess.CompletedProcess:
    argv = ["salt-run", "state.orchestrate", "orch.topology", *(["test=True"] if test else [])]
    return node.execute(MASTER_NODE, argv, timeout=900)


def checksums() -> dict[str, str]:
    out = {}
    for name, paths in WATCHED.items():
        for path in paths:
            out[f"{name}:{path}"] = hashlib.sha256(in_node(name, "cat", path).stdout.encode()).hexdigest()
    return out


def test_an_invalid_edit_changes_nothing_and_says_why():
    before = checksums()

    def reuse_web3s_mac(nodes: dict) -> None:
        eth0 = {**WEB4["interfaces"]["eth0"], "mac": nodes["web3"]["interfaces"]["eth0"]["mac"]}
        nodes["web4"] = {**WEB4, "interfaces": {"eth0": eth0}}

    edit(reuse_web3s_mac)
    why = "nodes.web4.interfaces.eth0.mac: '08:00:27:01:01:04' is already used by node 'web3'"
    run = orchestrate()
    assert run.returncode != 0 and why in run.stdout, run.stdout[-3000:]
    assert "Total states run:     1" in run.stdout, run.stdout[-3000:]  # the refusal, nothing else
    up = lab("up", check=False)
    assert up.returncode != 0 and why in up.stderr, up.stderr
    assert node.leader_pid("web4") is None, "lab up created a node from an invalid topology"
    assert checksums() == before


def test_add_web4_and_dns4_without_a_failed_request():
    edit(lambda nodes: nodes.update(web4=WEB4, dns4=DNS4))
    # The machines first: the directors learn their leases, they boot and
    # their minions connect (nothing balances to them yet).
    probes = under_load(lambda: lab("up", timeout=900))
    assert failed(probes) == [], outage(probes)
    assert dns_conns("10.0.100.9") == -1, "dns4 is balanced to before the rollout"
    plan = orchestrate(test=True)
    assert plan.returncode == 0, plan.stdout[-3000:]
    assert re.search(r"\+\s+server web4 10\.0\.100\.8:8081 ", plan.stdout), "the plan does not show web4 in HAProxy"
    assert "real_server 10.0.100.9 53" in plan.stdout, "the plan does not show dns4 in keepalived"
    assert "10.0.100.8" not in servers(f"http://{VIP}/", 12), "test=True must change nothing"

    def rollout() -> None:
        run = orchestrate()
        assert run.returncode == 0, run.stdout[-5000:]

    probes = under_load(rollout)
    assert failed(probes) == [], outage(probes)
    assert_web4_and_dns4_in_rotation()


def test_remove_web2_drained_first_without_a_failed_request():
    edit(lambda nodes: nodes.pop("web2"))
    plan = orchestrate(test=True)
    assert plan.returncode == 0, plan.stdout[-3000:]
    assert "would drain (not in the topology): " in plan.stdout and "web-http-l4/web2" in plan.stdout, plan.stdout
    assert re.search(r"-\s+server web2 10\.0\.100\.3:8081 ", plan.stdout), "the plan does not drop web2 from HAProxy"

    def change() -> None:
        run = orchestrate()
        assert run.returncode == 0, run.stdout[-5000:]
        assert "drained (not in the topology): " in run.stdout, run.stdout[-5000:]

    probes = under_load(change)
    assert failed(probes) == [], outage(probes)
    assert "10.0.100.3" not in servers(f"http://{VIP}/", 12)
    left = [target for target in scraped() if target[1] == "web2"]
    assert left == [], f"the monitoring server still scrapes web2: {left}"
    lab("up", timeout=600)
    assert node.leader_pid("web2") is None, "lab up did not retire web2"
    assert "web2" not in in_node(MASTER_NODE, "salt-key", "-l", "accepted").stdout.split()
