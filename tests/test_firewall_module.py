"""The firewall module's parsers, on counters captured from the lab: a
user-mode director's iptables rendering and a DNS container's nftables one."""

from __future__ import annotations

from conftest import REPO, load_module

firewall = load_module("_modules/firewall.py", "firewall")
runner = load_module("_runners/cluster.py", "cluster_runner")
FIXTURES = REPO / "tests" / "fixtures"


def test_iptables_counters_by_chain_and_comment():
    chains = firewall.parse_iptables_save((FIXTURES / "iptables-save-director.txt").read_text())
    assert set(chains) == {"input", "forward"}
    assert chains["input"]["dropped"] == {"packets": 555, "bytes": 24415}
    assert chains["input"]["ipvs dns"] == {"packets": 2281, "bytes": 137001}
    # Three ICMP error types, one comment: they add up.
    assert chains["input"]["icmp errors"]["packets"] == 0
    assert chains["forward"]["gateway: the internal network out"] == {"packets": 2392, "bytes": 181624}
    assert "lo" not in chains["input"]  # a rule without a comment is left out


def test_nftables_counters_by_chain_and_comment():
    chains = firewall.parse_nft_json((FIXTURES / "nft-list-table-dns.json").read_text())
    assert set(chains) == {"input", "forward"}
    assert "dropped" in chains["input"] and "dropped" in chains["forward"]
    assert chains["input"]["public service (udp)"]["packets"] > 0
    assert all(set(c) == {"packets", "bytes"} for chain in chains.values() for c in chain.values())


def test_health_reports_drops_and_a_director_without_firewall():
    held = {"master": {"192.168.1.200": "eth0"}, "standby": {"192.168.1.200": None}}
    rows = {"master": [{"backend": "web", "server": "web1", "status": "UP", "up": True, "sessions": 0}]}
    firewall_answers = {"master": {"input": 555, "forward": 16}, "standby": "no host firewall of the firewall formula"}
    health = runner.report(["192.168.1.200"], held, {}, rows, None, firewall_answers)
    assert health["firewall_dropped"] == {"master": {"input": 555, "forward": 16}}
    assert any(e.startswith("standby: no host firewall loaded") for e in health["errors"])
    assert "master    forward=16 input=555" in runner.table(health)
