"""The one-host lab, end to end: one lab is built for the whole module, then torn down.

These tests boot real Debian nodes (systemd-nspawn) on lab-only bridges, with a
real Salt master on nas and minions everywhere; the first run also builds the
rootfs (mmdebstrap, a minute or two).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SEED
from lab import node
from labtools import LAB_NODES, MASTER_NODE, in_node, lab, salt_json

pytestmark = pytest.mark.usefixtures("running_lab")

MINIONS = sorted(SEED["nodes"])


def test_every_minion_answers():
    assert salt_json("*", "test.ping") == dict.fromkeys(MINIONS, True)


def test_keys_were_accepted_by_the_lab_not_automatically():
    keys = json.loads(lab("exec", MASTER_NODE, "--", "salt-key", "-L", "--out=json").stdout)
    assert sorted(keys["minions"]) == MINIONS
    assert keys["minions_pre"] == [] and keys["minions_rejected"] == []
    # The running master's own setting (the runner answers from its config).
    conf = in_node(MASTER_NODE, "salt-run", "config.get", "auto_accept", "--out=json")
    assert json.loads(conf.stdout) is False, conf.stdout


def test_highstate_applies_everywhere_and_a_second_run_changes_nothing(running_lab):
    # The first run is `python -m lab lab`'s (the shared lab's): one line per minion.
    first = re.findall(r"^\[ *[\d.]+s\] (\S+) +(\d+) states, \d+ changed, (\d+) failed$", running_lab.stderr, re.M)
    assert sorted(m for m, _, _ in first) == MINIONS, running_lab.stderr
    assert all(int(states) > 0 and failed == "0" for _, states, failed in first), first
    result = salt_json("*", "state.apply", "-t", "600")
    assert sorted(result) == MINIONS
    failed = {m: k for m, states in result.items() for k, v in states.items() if not v["result"]}
    changed = {m: k for m, states in result.items() for k, v in states.items() if v["changes"]}
    assert failed == {} and changed == {}


def test_servers_get_their_static_lease_and_route_through_the_internal_vip():
    for name in ("web1", "dns3"):
        expected = SEED["nodes"][name]["interfaces"]["eth0"]
        link = json.loads(in_node(name, "ip", "-j", "addr", "show", "eth0").stdout)[0]
        assert link["address"] == expected["mac"]
        assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == [expected["address"]]
        status = in_node(name, "networkctl", "status", "eth0", "--no-pager").stdout
        assert f"{expected['address']} (DHCP4 via " in status, status
        routes = json.loads(in_node(name, "ip", "-j", "route", "show", "default").stdout)
        assert routes[0]["gateway"] == "10.0.100.200"
        # The lab's MTU for the internal network: the topology's 9000, or 1500
        # when user-mode nodes (whose NICs cannot do jumbo frames) are on it.
        assert link["mtu"] == LAB_NODES[name].links[0].mtu
    offered = in_node("master", "grep", "-h", "option:mtu", "/etc/dnsmasq.d/cluster.conf").stdout
    assert offered.strip() == f"dhcp-option=option:mtu,{SEED['networks']['internal']['mtu']}"


def test_static_nodes_keep_their_addresses():
    master = json.loads(in_node("master", "ip", "-j", "-4", "addr").stdout)
    addresses = {a["local"] for link in master for a in link["addr_info"]}
    assert {"192.168.1.101", "10.0.100.1"} <= addresses


def test_status_lists_nodes_addresses_leases_roles_and_capabilities():
    out = lab("status").stdout
    for name in [*MINIONS, "client", "upstream"]:
        assert any(line.startswith(name + " ") and " running " in line for line in out.splitlines()), name
    web1 = next(line for line in out.splitlines() if line.startswith("web1 "))
    assert "dhcp lease" in web1 and "10.0.100.2/24" in web1 and " web " in web1
    assert "\nipvs: " in out and "\nnfs: " in out


def test_verify_reports_a_table(running_lab):
    table = running_lab.stdout
    assert "every minion answers test.ping" in table and "FAIL" not in table
    assert re.search(r"^HTTP :8000 sticky via 192\.168\.1\.200 +ok", table, re.M), table
    # make lab reported every minion's highstate and leaves the second one to `verify`.
    assert re.search(r"^second highstate +info +not run here: `python -m lab verify` runs it", table, re.M), table
    assert "test=True" not in table


def test_verify_adds_a_second_highstate_that_finds_nothing_pending():
    proc = lab("verify", timeout=600)  # fails on any FAIL row
    pending = re.search(r"^highstate applied: test=True shows 0 pending changes +ok +(\d+) minions$", proc.stdout, re.M)
    assert pending and int(pending.group(1)) == len(MINIONS), proc.stdout
    assert re.search(r"^HTTP :80 round robin via 192\.168\.1\.200 +ok", proc.stdout, re.M), proc.stdout


def test_lab_nodes_reach_upstream_without_leaving_the_lab():
    assert in_node("client", "curl", "-s", "-m", "5", "http://192.168.1.1/").stdout.startswith("upstream")
    answer = in_node("client", "dig", "+short", "+time=2", "@192.168.1.1", "www.example.org").stdout.split()
    assert answer == ["192.168.1.1"]
    # The lab's networks have no uplink: a public address is unreachable from inside.
    assert in_node("upstream", "ping", "-c1", "-W1", "1.1.1.1", check=False).returncode != 0


def test_cut_and_heal_a_node():
    assert in_node("nas", "ping", "-c1", "-W1", "10.0.100.3", check=False).returncode == 0
    lab("cut", "web2")
    try:
        assert in_node("nas", "ping", "-c2", "-W1", "10.0.100.3", check=False).returncode != 0
        assert " CUT " in next(line for line in lab("status").stdout.splitlines() if line.startswith("web2 "))
    finally:
        lab("heal", "web2")
    deadline = time.monotonic() + 30
    while in_node("nas", "ping", "-c1", "-W1", "10.0.100.3", check=False).returncode != 0:
        assert time.monotonic() < deadline, "web2 did not come back after heal"
        time.sleep(1)


def test_up_again_changes_nothing():
    before = lab("status").stdout
    started = time.monotonic()
    lab("up", timeout=300)
    assert time.monotonic() - started < 60
    assert salt_json("*", "test.ping") == dict.fromkeys(MINIONS, True)
    assert len(lab("status").stdout.splitlines()) == len(before.splitlines())


def test_user_mode_directors_run_realtime_on_the_host():
    """Read from the host's scheduler, not from the lab's own settings: every
    host process of a user-mode director's kernel is SCHED_RR (the guest's
    processes too: they are forked from it), a web server's is not."""
    placed = [n for n in LAB_NODES.values() if n.platform == "uml"]
    assert any("director" in n.roles for n in placed), "no user-mode director in this lab"
    for lab_node in placed:
        leader = node.backend(lab_node.name).leader_pid(lab_node.name)
        tasks = [int(t) for t in os.listdir(f"/proc/{leader}/task")]
        children = [int(c) for t in tasks for c in Path(f"/proc/{leader}/task/{t}/children").read_text().split()]
        policies = {os.sched_getscheduler(p) for p in [*tasks, *children]}
        expected = os.SCHED_RR if "director" in lab_node.roles else os.SCHED_OTHER
        assert policies == {expected}, (lab_node.name, policies)


def test_two_busy_directors_leave_the_servers_their_share_of_the_host():
    """Both directors' guests spin for 5 s at once. Their kernels are
    realtime on the host, and with the kernel's default budget (950 ms of
    every second) every health check of both directors timed out; the lab's
    budget (80 ms of every 100 ms) keeps the servers answering: no server
    leaves HAProxy or IPVS, and no VRRP instance changes state."""
    directors = [n.name for n in LAB_NODES.values() if "director" in n.roles and n.platform == "uml"]
    assert len(directors) == 2, directors
    since = time.time() - 1
    used = {d: node.cpu_seconds(d) for d in directors}
    spins = [
        subprocess.Popen(
            [sys.executable, "-m", "lab", "exec", d, "--", "timeout", "5", "sh", "-c", "while :; do :; done"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for d in directors
    ]
    # timeout's 124: the loop spun for the whole 5 s.
    assert [spin.wait(timeout=60) for spin in spins] == [124, 124]
    spent = {d: node.cpu_seconds(d) - used[d] for d in directors}
    assert all(seconds > 2.5 for seconds in spent.values()), f"the spin did not load the host: {spent}"
    time.sleep(1)  # a check that timed out at the end of the spin is logged
    for director in directors:
        journal = in_node(
            director,
            "journalctl",
            "--no-pager",
            "-o",
            "short-precise",
            "--since",
            f"@{since:.0f}",
            "-u",
            "haproxy",
            "-u",
            "keepalived",
        ).stdout
        hits = [line for line in journal.splitlines() if re.search(r"is DOWN|Removing service|Entering", line)]
        assert hits == [], (director, spent, hits)
