"""Pure parts of the introspection modules, beacon and runner, on captured output."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import threading
import time
from pathlib import Path

import jinja2
import pytest

from conftest import REPO, SEED, load_module

FIXTURES = Path(__file__).parent / "fixtures"


haproxy_runtime = load_module("_modules/haproxy_runtime.py", "haproxy_runtime")
vip = load_module("_modules/vip.py", "vip")
balancer = load_module("_modules/balancer.py", "balancer")
cluster_watch = load_module("_beacons/cluster_watch.py", "cluster_watch")
runner = load_module("_runners/cluster.py", "cluster_runner")


def test_show_stat_all_up():
    rows = haproxy_runtime.parse_stat((FIXTURES / "haproxy-show-stat-servers.csv").read_text())
    assert len(rows) == 9
    assert {r["backend"] for r in rows} == {"web-http-l4", "web-http-l7", "web-https-l4"}
    assert all(r["up"] and r["status"] == "UP" for r in rows)
    web2 = next(r for r in rows if r["backend"] == "web-http-l7" and r["server"] == "web2")
    assert web2["address"] == "10.0.100.3:8080" and web2["weight"] == 1


def test_show_stat_drain_and_maint():
    rows = haproxy_runtime.parse_stat((FIXTURES / "haproxy-show-stat-drain-maint.csv").read_text())
    status = {(r["backend"], r["server"]): r["status"] for r in rows}
    assert status[("web-http-l4", "web1")] == "MAINT"
    assert status[("web-http-l7", "web3")] == "DRAIN"
    assert [r["up"] for r in rows].count(False) == 2
    assert haproxy_runtime.parse_stat("") == []


def test_set_state_refuses_unknown_states():
    with pytest.raises(haproxy_runtime.CommandExecutionError, match="'down' is not one of ready, drain, maint"):
        haproxy_runtime.set_state("web-http-l4", "web1", "down", sock="/nonexistent")


def test_ip_addr_shows_the_vips_on_the_master_only():
    master = vip.parse_ip_addr((FIXTURES / "ip-addr-master.json").read_text())
    standby = vip.parse_ip_addr((FIXTURES / "ip-addr-standby.json").read_text())
    for address in ("192.168.1.200", "192.168.1.202"):
        assert master[address] == "eth0" and address not in standby
    assert master["10.0.100.200"] == "eth1" and standby["10.0.100.50"] == "eth1"


def test_notify_state_file():
    assert vip.parse_notify("MASTER 1764236400.25 150\n") == {
        "state": "MASTER",
        "since": 1764236400.25,
        "priority": 150,
    }
    assert vip.parse_notify("") is None


def test_beacon_fires_only_on_change():
    before = {"apache2": "active"}
    assert cluster_watch.diff("service", ("name",), before, {"apache2": "active"}) == []
    assert cluster_watch.diff("service", ("name",), before, {"apache2": "failed"}) == [
        {"kind": "service", "name": "apache2", "state": "failed", "previous": "active"}
    ]
    backends = cluster_watch.diff(
        "backend",
        ("backend", "server"),
        {("web-http-l4", "web2"): "UP"},
        {("web-http-l4", "web2"): "DOWN", ("web-http-l4", "web9"): "UP"},
    )
    assert backends == [
        {"kind": "backend", "backend": "web-http-l4", "server": "web2", "state": "DOWN", "previous": "UP"}
    ]


def test_beacon_records_first_then_fires_once_per_change(monkeypatch):
    states = iter(["active", "active", "failed", "failed", "active"])
    monkeypatch.setattr(cluster_watch, "_services", lambda names: {"apache2": next(states)})
    cluster_watch.__context__ = {}
    fired = [cluster_watch.beacon([{"services": ["apache2"]}]) for _ in range(5)]
    assert [len(f) for f in fired] == [0, 0, 1, 0, 1]
    assert fired[2][0]["state"] == "failed" and fired[4][0]["previous"] == "failed"
    assert fired[2][0]["tag"] == "service"


def test_beacon_marks_a_units_first_start_since_the_minion_started(monkeypatch):
    # A node coming up: apache2 inactive until the highstate starts it.
    states = iter(["inactive", "active", "failed", "active"])
    monkeypatch.setattr(cluster_watch, "_services", lambda names: {"apache2": next(states)})
    cluster_watch.__context__ = {}
    fired = [cluster_watch.beacon([{"services": ["apache2"]}, {"backend": True}]) for _ in range(4)]
    assert [(e["state"], e["first"]) for f in fired for e in f] == [
        ("active", True),
        ("failed", False),
        ("active", False),
    ]
    # Active at the first poll (the minion restarted on a serving node): seen.
    states = iter(["active", "failed", "active"])
    cluster_watch.__context__ = {}
    fired = [cluster_watch.beacon([{"services": ["apache2"]}]) for _ in range(3)]
    assert [(e["state"], e["first"]) for f in fired for e in f] == [("failed", False), ("active", False)]


def test_beacon_keeps_what_it_saw_when_salt_builds_it_anew(monkeypatch, tmp_path):
    """Salt builds its beacons anew (an empty __context__) on a change of
    master: apache2 stopped just before one still fires, and its start
    after is no first one. Another process (a restarted minion) starts
    afresh."""
    states = iter(["active", "active", "inactive", "inactive", "active"])
    monkeypatch.setattr(cluster_watch, "_services", lambda names: {"apache2": next(states)})
    monkeypatch.setattr(cluster_watch, "__opts__", {"cachedir": str(tmp_path)}, raising=False)
    config = [{"services": ["apache2"]}, {"backend": True}]
    fired = []
    for rebuilt in (False, False, True, False, True):  # the minion's rebuilds, before a poll
        if rebuilt or not fired:
            cluster_watch.__context__ = {}
        fired.append(cluster_watch.beacon(config))
    assert [(e["state"], e["previous"], e["first"]) for f in fired for e in f] == [
        ("inactive", "active", False),
        ("active", "inactive", False),
    ]
    # What is kept names this process; a new minion process does not take it.
    kept = (tmp_path / cluster_watch.KEPT_FILE).read_text()
    assert cluster_watch.load(kept, cluster_watch._process())["cluster_watch.service"] == {"apache2": "active"}
    assert cluster_watch.load(kept, "another-boot/1") == {}
    monkeypatch.setattr(cluster_watch, "_process", lambda: "another-boot/1")
    states = iter(["inactive", "active"])
    cluster_watch.__context__ = {}
    fired = [cluster_watch.beacon(config) for _ in range(2)]
    assert [(e["state"], e["first"]) for f in fired for e in f] == [("active", True)]


def test_beacon_kept_file_round_trips_haproxy_keys():
    context = {
        "cluster_watch.seen_active": {"haproxy"},
        "cluster_watch.backend": {("web-http-l4", "web2"): "UP"},
        "cluster_watch.vrrp": {"INSTANCE-VI_1": "MASTER"},
    }
    assert cluster_watch.load(cluster_watch.dump(context, "b/7"), "b/7") == context
    assert cluster_watch.load("not json", "b/7") == {}
    assert cluster_watch.load('["a list"]', "b/7") == {}


def _rows(path: str) -> list[dict]:
    return haproxy_runtime.parse_stat((FIXTURES / path).read_text())


VIPS = ["192.168.1.200", "192.168.1.202", "10.0.100.200"]


def test_runner_healthy_cluster():
    held = {"master": dict.fromkeys(VIPS, "eth0"), "standby": dict.fromkeys(VIPS)}
    health = runner.report(VIPS, held, {}, {"master": _rows("haproxy-show-stat-servers.csv")})
    assert health["healthy"] and health["vips"]["192.168.1.200"] == ["master"]
    assert "healthy" in runner.table(health)


def test_runner_split_brain_and_outage():
    held = {
        "master": {"192.168.1.200": "eth0", "192.168.1.202": None, "10.0.100.200": "eth1"},
        "standby": {"192.168.1.200": "eth0", "192.168.1.202": None, "10.0.100.200": None},
    }
    health = runner.report(VIPS, held, {}, {d: _rows("haproxy-show-stat-servers.csv") for d in held})
    assert not health["healthy"]
    assert "split brain: 192.168.1.200 is held by master, standby" in health["errors"]
    assert "outage: no director holds 192.168.1.202" in health["errors"]
    assert "NOT HEALTHY" in runner.table(health)


def test_runner_reports_a_split_sync_group():
    """The standby's internal instance stayed MASTER while its external one
    went back to BACKUP (seen on the lab, 2026-12-03): an error naming both;
    a director whose instances agree is not reported."""
    held = {"master": dict.fromkeys(VIPS, "eth0"), "standby": dict.fromkeys(VIPS)}
    vrrp = {
        "master": {n: {"state": "MASTER"} for n in ("GROUP-VG1", "INSTANCE-VI_E", "INSTANCE-VI_I")},
        "standby": {
            "GROUP-VG1": {"state": "BACKUP"},
            "INSTANCE-VI_E": {"state": "BACKUP"},
            "INSTANCE-VI_I": {"state": "MASTER"},
        },
    }
    health = runner.report(VIPS, held, vrrp, {"master": _rows("haproxy-show-stat-servers.csv")})
    assert health["errors"] == ["standby: VRRP sync group split (VI_E BACKUP, VI_I MASTER)"], health["errors"]
    vrrp["standby"]["INSTANCE-VI_I"]["state"] = "BACKUP"
    assert runner.report(VIPS, held, vrrp, {"master": _rows("haproxy-show-stat-servers.csv")})["healthy"]


def test_runner_reports_missing_ipvs_sync_threads_on_every_director():
    """The holder's IPVS table is compared with the topology; the sync
    threads of every answering director are, the standby's included (its
    backup thread holds the connections it must carry on)."""
    held = {"master": dict.fromkeys(VIPS, "eth0"), "standby": dict.fromkeys(VIPS)}
    rows = {"master": _rows("haproxy-show-stat-servers.csv")}
    fine = {"matches": True, "missing_services": [], "extra_services": [], "missing_real_servers": []}
    fine |= {"extra_real_servers": [], "zero_weight": [], "sync": []}
    missing = "backup sync thread on eth1 (syncid 52, port 8848) is not running"
    ipvs_diffs = {"master": fine, "standby": {**fine, "matches": False, "sync": [missing]}}
    health = runner.report(VIPS, held, {}, rows, ipvs_diffs)
    assert health["errors"] == [f"IPVS on standby: connection sync: {missing}"], health["errors"]
    assert health["ipvs"] == {"master": "matches the topology"}
    ipvs_diffs["standby"]["sync"] = []
    assert runner.report(VIPS, held, {}, rows, ipvs_diffs)["healthy"]


STANDBY_HOLDS = {"standby": dict.fromkeys(VIPS, "eth0")}


def master_silent(seen: dict) -> dict:
    """The report of a cut master: only the standby answers (holding every VIP)."""
    rows = {"standby": _rows("haproxy-show-stat-servers.csv")}
    return runner.report(VIPS, STANDBY_HOLDS, {}, rows, None, None, expected=["master", "standby"], seen=seen)


def test_runner_with_a_silent_director_cannot_say_no_split_brain_unseen():
    """The master is cut: only the standby answers. Where a node outside the
    directors saw the segment (the internal VIP, from the nas) the answer is
    what it saw; elsewhere: unknown, and the silent director is an error."""
    seen = {
        "10.0.100.200": {"from": "nas", "directors": ["standby"]},
        "192.168.1.200": "no node but the directors is on the external network",
        "192.168.1.202": "no node but the directors is on the external network",
    }
    health = master_silent(seen)
    assert health["split_brain"] == {"192.168.1.200": "unknown", "192.168.1.202": "unknown", "10.0.100.200": "no"}
    assert not health["healthy"] and any(e.startswith("master: no answer") for e in health["errors"])
    assert any(w.startswith("split brain unknown for 192.168.1.200: master did not answer") for w in health["warnings"])
    # Leaving the silent director out (as the runner once did) says "no" everywhere.
    blind = runner.report(VIPS, STANDBY_HOLDS, {}, {"standby": _rows("haproxy-show-stat-servers.csv")})
    assert set(blind["split_brain"].values()) == {"no"}


def test_runner_sees_split_brain_on_the_wire_that_a_director_does_not_report():
    seen = {"10.0.100.200": {"from": "nas", "directors": ["master", "standby"]}}
    health = master_silent(seen)
    assert health["split_brain"]["10.0.100.200"] == "yes"
    assert "split brain: 10.0.100.200 is held by master, standby" in health["errors"]


def test_director_macs_from_cached_grains():
    grains = {
        "master": {"hwaddr_interfaces": {"lo": "00:00:00:00:00:00", "eth1": "02:AA:00:00:00:01"}},
        "standby": {"hwaddr_interfaces": {"eth1": "02:aa:00:00:00:02"}},
        "gone": None,
    }
    assert runner.director_macs(grains) == {"02:aa:00:00:00:01": "master", "02:aa:00:00:00:02": "standby"}


def test_arp_request_and_reply_frames():
    request = vip.arp_request("02:aa:00:00:00:09", "10.0.100.100", "10.0.100.200")
    # Broadcast, ARP ethertype, who-has 10.0.100.200 tell 10.0.100.100 (as tcpdump -xx shows one).
    assert request.hex() == ("ffffffffffff02aa000000090806000108000604000102aa000000090a0064640000000000000a0064c8")
    reply = bytes.fromhex(
        "02aa0000000902aa000000010806000108000604000202aa000000010a0064c802aa000000090a006464"
    ) + bytes(18)  # padded to Ethernet's minimum frame
    assert vip.parse_arp_reply(reply) == ("10.0.100.200", "02:aa:00:00:00:01")
    assert vip.parse_arp_reply(request) is None  # a request is no answer


def test_runner_reports_servers_that_are_not_up():
    held = {"standby": dict.fromkeys(VIPS, "eth0")}
    health = runner.report(VIPS, held, {}, {"standby": _rows("haproxy-show-stat-drain-maint.csv")})
    assert health["healthy"]
    assert "web-http-l4/web1 is MAINT on standby" in health["warnings"]


cluster_lb = load_module("_states/cluster_lb.py", "cluster_lb")


def test_server_state_plan_is_idempotent():
    rows = _rows("haproxy-show-stat-drain-maint.csv")
    assert cluster_lb.plan(rows, "web3", "drain") == {"web-http-l4": "UP", "web-https-l4": "UP"}
    assert cluster_lb.plan(rows, "web3", "ready") == {"web-http-l7": "DRAIN"}
    assert cluster_lb.plan(rows, "web1", "ready") == {"web-http-l4": "MAINT"}
    assert cluster_lb.plan(rows, "web2", "ready") == {}


# --- ipvs: parsers on output captured from a real kernel (tools/capture_ipvs.py) ---

ipvs = load_module("_modules/ipvs.py", "ipvs")
IPVS = FIXTURES / "ipvs"


def ipvs_fixture(name: str) -> str:
    return (IPVS / name).read_text()


def test_ipvs_empty_table():
    assert ipvs.parse_list(ipvs_fixture("ipvs-empty.txt")) == []
    assert ipvs.parse_proc(ipvs_fixture("proc-ip_vs-empty.txt")) == []
    assert ipvs.parse_counters(ipvs_fixture("ipvs-empty.txt")) == {}
    assert ipvs.parse_list("") == []


def test_ipvs_list_udp_tcp_fwm_services():
    table = {s["key"]: s for s in ipvs.parse_list(ipvs_fixture("ipvs-list.txt"))}
    assert list(table) == ["tcp 192.168.1.202:80", "tcp 192.168.1.202:443", "udp 192.168.1.200:53", "fwm 7"]
    dns = table["udp 192.168.1.200:53"]
    assert (dns["protocol"], dns["address"], dns["port"], dns["scheduler"], dns["flags"]) == (
        "udp",
        "192.168.1.200",
        53,
        "rr",
        {},
    )
    assert [(r["address"], r["port"], r["forward"], r["weight"]) for r in dns["real_servers"]] == [
        ("10.0.100.21", 53, "nat", 1),
        ("10.0.100.22", 53, "nat", 1),
        ("10.0.100.23", 53, "nat", 1),
    ]
    assert [r["inactive"] for r in dns["real_servers"]] == [3, 3, 3]
    https = table["tcp 192.168.1.202:443"]
    assert https["scheduler"] == "wlc" and https["flags"] == {"persistent": 300}
    assert [r["weight"] for r in https["real_servers"]] == [3, 0]
    assert table["fwm 7"]["fwmark"] == 7 and table["fwm 7"]["real_servers"][0]["port"] == 0


def test_ipvs_proc_matches_ipvsadm():
    """/proc/net/ip_vs (hex) and ipvsadm describe one table the same way (order aside)."""

    def comparable(services):
        return {
            s["key"]: (
                s["scheduler"],
                sorted((r["address"], r["port"], r["forward"], r["weight"]) for r in s["real_servers"]),
            )
            for s in services
        }

    proc = ipvs.parse_proc(ipvs_fixture("proc-ip_vs.txt"))
    assert comparable(proc) == comparable(ipvs.parse_list(ipvs_fixture("ipvs-list.txt")))
    https = next(s for s in proc if s["key"] == "tcp 192.168.1.202:443")
    assert https["flags"] == {"persistent": True, "persistent_jiffies": 30000, "mask": "255.255.255.255"}


def test_ipvs_stats_and_rate():
    stats = ipvs.parse_counters(ipvs_fixture("ipvs-stats.txt"))
    dns = stats["udp 192.168.1.200:53"]
    assert dns["conns"] == 9 and dns["inpkts"] == 9 and dns["outbytes"] == 405
    assert {k: v["conns"] for k, v in dns["real_servers"].items()} == {
        "10.0.100.21:53": 3,
        "10.0.100.22:53": 3,
        "10.0.100.23:53": 3,
    }
    assert sum(v["conns"] for v in stats["tcp 192.168.1.202:80"]["real_servers"].values()) == 6
    rate = ipvs.parse_counters(ipvs_fixture("ipvs-rate.txt"), ipvs.RATES)
    assert set(rate["tcp 192.168.1.202:80"]) == {*ipvs.RATES, "real_servers"}
    assert rate["tcp 192.168.1.202:80"]["inbps"] > 0


def test_ipvs_merge_attaches_counters_per_real_server():
    merged = ipvs.merge(
        ipvs.parse_list(ipvs_fixture("ipvs-after-drain.txt")),
        ipvs.parse_counters(ipvs_fixture("ipvs-after-drain-stats.txt")),
    )
    dns = next(s for s in merged if s["key"] == "udp 192.168.1.200:53")
    by_address = {r["address"]: r for r in dns["real_servers"]}
    # dns2 drained to weight 0 took no new query; the others kept counting
    assert by_address["10.0.100.22"]["weight"] == 0
    assert by_address["10.0.100.22"]["stats"]["conns"] == 3
    assert by_address["10.0.100.21"]["stats"]["conns"] + by_address["10.0.100.23"]["stats"]["conns"] == 15
    assert dns["stats"]["conns"] == 18


MODEL_IPVS = [
    {
        "name": "dns",
        "vip": "192.168.1.200",
        "port": 53,
        "protocol": "udp",
        "real_servers": [{"name": f"dns{i}", "address": f"10.0.100.2{i}", "port": 53} for i in (1, 2, 3)],
    },
    {
        "name": "web",
        "vip": "192.168.1.202",
        "port": 80,
        "protocol": "tcp",
        "real_servers": [{"name": f"web{i}", "address": f"10.0.100.1{i}", "port": 80} for i in (1, 2, 4)],
    },
]


def test_ipvs_compare_with_model():
    live = ipvs.parse_list(ipvs_fixture("ipvs-after-drain.txt"))
    diff = ipvs.compare(MODEL_IPVS, live)
    assert diff["missing_services"] == []
    assert diff["extra_services"] == ["fwm 7", "tcp 192.168.1.202:443"]
    assert diff["missing_real_servers"] == [
        {"service": "tcp 192.168.1.202:80", "real_server": "10.0.100.14:80", "node": "web4"}
    ]
    assert diff["extra_real_servers"] == [
        {"service": "tcp 192.168.1.202:80", "real_server": "10.0.100.13:80", "weight": 1, "active": 0}
    ]
    assert diff["zero_weight"] == [{"service": "udp 192.168.1.200:53", "real_server": "10.0.100.22:53", "node": "dns2"}]
    assert diff["matches"] is False
    dns_only = [s for s in ipvs.parse_list(ipvs_fixture("ipvs-list.txt")) if s["key"] == "udp 192.168.1.200:53"]
    assert ipvs.compare(MODEL_IPVS[:1], dns_only)["matches"] is True
    assert ipvs.compare(MODEL_IPVS, [])["missing_services"] == ["tcp 192.168.1.202:80", "udp 192.168.1.200:53"]


def test_ipvs_plan_node_only_touches_present_entries():
    live = ipvs.parse_list(ipvs_fixture("ipvs-list.txt"))
    drain = ipvs.plan_node(live, "10.0.100.11", 0)
    assert [(c["protocol"], c["service"], c["real_server"], c["old"]) for c in drain] == [
        ("tcp", "192.168.1.202:80", "10.0.100.11:80", 1),
        ("tcp", "192.168.1.202:443", "10.0.100.11:443", 3),
    ]
    assert ipvs.plan_node(live, "10.0.100.99", 0) == []
    after = ipvs.parse_list(ipvs_fixture("ipvs-after-drain.txt"))
    assert ipvs.plan_node(after, "10.0.100.22", 0) == []  # already drained: nothing to do
    assert [c["new"] for c in ipvs.plan_node(after, "10.0.100.22", 1)] == [1]


def test_runner_reports_the_ipvs_table_against_the_model():
    held = {"master": {v: "eth1" for v in VIPS}, "standby": {v: None for v in VIPS}}
    rows = {"master": _rows("haproxy-show-stat-servers.csv")}
    diff = ipvs.compare(MODEL_IPVS, ipvs.parse_list(ipvs_fixture("ipvs-after-drain.txt")))
    health = runner.report(VIPS, held, {}, rows, {"master": diff, "standby": "'ipvs.check' is not available."})
    assert health["ipvs"] == {"master": "differs from the topology"}
    assert "IPVS on master: unexpected virtual service fwm 7" in health["errors"]
    assert any("lacks web4" in w for w in health["warnings"])
    assert any("10.0.100.22:53 has weight 0" in w for w in health["warnings"])
    assert not health["healthy"]
    clean = ipvs.compare(
        MODEL_IPVS[:1], [s for s in ipvs.parse_list(ipvs_fixture("ipvs-list.txt")) if s.get("port") == 53]
    )
    health = runner.report(VIPS, held, {}, rows, {"master": clean})
    assert health["ipvs"] == {"master": "matches the topology"} and health["healthy"]
    health = runner.report(VIPS, held, {}, rows, {"master": "'ipvs.check' is not available."})
    assert health["ipvs"] == {"master": "not checked: 'ipvs.check' is not available."} and health["healthy"]
    assert "IPVS table" in runner.table(health)


# --- balancer: which lost nodes the presence reactor may drain ---------------------


def test_a_node_serves_while_any_of_its_servers_passes_checks():
    rows = haproxy_runtime.parse_stat((FIXTURES / "haproxy-show-stat-drain-maint.csv").read_text())
    drained = [r for r in rows if r["status"] == "DRAIN"]
    in_maint = [r for r in rows if r["status"] == "MAINT"]
    assert [r["server"] for r in drained] == ["web3"] and [r["server"] for r in in_maint] == ["web1"]
    # Drained by an admin, a server still answers its checks; in maintenance it is not checked.
    assert balancer.is_serving("web3", "10.0.100.4", drained, None)
    assert not balancer.is_serving("web1", "10.0.100.2", in_maint, None)
    assert balancer.is_serving("web1", "10.0.100.2", rows, None)  # UP in the other backends
    down = [{**in_maint[0], "status": "DOWN 1/2"}]
    assert not balancer.is_serving("web1", "10.0.100.2", down, None)


def test_a_node_serves_while_keepalived_keeps_it_in_ipvs():
    live = [{"real_servers": [{"address": "10.0.100.5", "weight": 1}, {"address": "10.0.100.7", "weight": 0}]}]
    assert balancer.is_serving("dns1", "10.0.100.5", [], live)
    assert balancer.is_serving("dns3", "10.0.100.7", [], live)  # drained, still checked
    assert not balancer.is_serving("dns2", "10.0.100.6", [], live)  # keepalived removed it
    assert not balancer.is_serving("dns2", "10.0.100.6", [], None)


def test_notify_fifo_reader_keeps_the_last_transition_of_each_instance(tmp_path):
    # The formula's reader, run by sh as keepalived runs it: the FIFO's
    # transitions are recorded in order, even two in the same instant (a
    # takeover and a preemption), and the last one is what vip reads.
    template = (REPO / "salt/keepalived/files/notify.sh.jinja").read_text()
    script = tmp_path / "keepalived-notify"
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    script.write_text(jinja2.Template(template).render(state_dir=str(tmp_path / "state"), textfile_dir=textfiles))
    fifo = tmp_path / "notify.fifo"
    os.mkfifo(fifo)
    # As keepalived starts it: umask 077.
    reader = subprocess.Popen(["bash", str(script), str(fifo)], umask=0o077)
    with open(fifo, "w") as writer:
        writer.write('INSTANCE "VI_E" MASTER 100\nGROUP "G" MASTER 0\n')
        writer.write('INSTANCE "VI_E" BACKUP 100\nGROUP "G" BACKUP 0\nINSTANCE "VI_I" FAULT 100\n')
        writer.write('VS [192.168.1.202]:tcp:80 UP\nINSTANCE "VI_I" MASTER_RX_LOWER_PRI 100\n')
        writer.write('INSTANCE "VI_M" MASTER 150\n')
    assert reader.wait(timeout=10) == 0
    states = {name: s["state"] for name, s in vip.vrrp_state(str(tmp_path / "state")).items()}
    assert states == {
        "INSTANCE-VI_E": "BACKUP",
        "GROUP-G": "BACKUP",
        "INSTANCE-VI_I": "FAULT",
        "INSTANCE-VI_M": "MASTER",
    }
    # The same last states, as the node exporter's textfile collector reads them.
    samples = [line for line in (textfiles / "keepalived.prom").read_text().splitlines() if line[:1] != "#"]
    assert sorted(samples) == [
        'keepalived_vrrp_master{type="group",name="G",state="BACKUP"} 0',
        'keepalived_vrrp_master{type="instance",name="VI_E",state="BACKUP"} 0',
        'keepalived_vrrp_master{type="instance",name="VI_I",state="FAULT"} 0',
        'keepalived_vrrp_master{type="instance",name="VI_M",state="MASTER"} 1',
    ]
    assert sorted(p.name for p in textfiles.iterdir()) == ["keepalived.prom"]
    assert (textfiles / "keepalived.prom").stat().st_mode & 0o004, "the node exporter's user cannot read it"


# --- balancer: topology changes (orch/topology.sls) --------------------------------

cluster_model = load_module("_modules/cluster.py", "cluster_model")
SEED_ROWS = haproxy_runtime.parse_stat((FIXTURES / "haproxy-show-stat-servers.csv").read_text())


def derived(change) -> dict:
    topology = copy.deepcopy(SEED)
    change(topology["nodes"])
    return cluster_model.derive(topology)


def programmed(model: dict, sessions: dict[str, int] | None = None) -> list[dict]:
    """The IPVS table keepalived programs for ``model`` (as ipvs.services returns it)."""
    by_address = {n["address"]: n["name"] for n in model["nodes"].values()}
    return [
        {
            "key": f"{vs['protocol']} {vs['vip']}:{vs['port']}",
            "protocol": vs["protocol"],
            "address": vs["vip"],
            "port": vs["port"],
            "real_servers": [
                {
                    "address": rs["address"],
                    "port": rs["port"],
                    "forward": "masq",
                    "weight": 1,
                    "active": (sessions or {}).get(by_address[rs["address"]], 0),
                    "inactive": 0,
                }
                for rs in vs["real_servers"]
            ],
        }
        for vs in model["ipvs"]["virtual_servers"]
    ]


def checked(model: dict, live: list[dict]) -> dict:
    """What ``ipvs.check`` answers on a director whose table is ``live``."""
    return ipvs.compare(model["ipvs"]["virtual_servers"], live)


def test_a_server_the_topology_dropped_is_retired_everywhere_it_is_balanced():
    full = derived(lambda nodes: None)
    assert balancer.retired_entries(full, SEED_ROWS, checked(full, programmed(full))) == []
    without_web2 = derived(lambda nodes: nodes.pop("web2"))
    retired = balancer.retired_entries(without_web2, SEED_ROWS, checked(without_web2, programmed(full, {"web2": 3})))
    assert sorted(e["backend"] for e in retired if e["kind"] == "haproxy") == [
        "web-http-l4",
        "web-http-l7",
        "web-https-l4",
    ]
    assert {e["server"] for e in retired if e["kind"] == "haproxy"} == {"web2"}
    assert [(e["service"], e["server"], e["sessions"]) for e in retired if e["kind"] == "ipvs"] == [
        ("192.168.1.202:80", "10.0.100.3:80", 3)
    ]
    # Without IPVS (a kernel that lacks it), HAProxy alone.
    assert {e["kind"] for e in balancer.retired_entries(without_web2, SEED_ROWS, None)} == {"haproxy"}


def test_a_director_is_rolled_out_once_it_balances_to_every_server_of_the_topology():
    eth0 = {"network": "internal", "address": "10.0.100.8", "mac": "08:00:27:01:01:08", "dhcp": True}
    web4 = {"roles": ["web"], "interfaces": {"eth0": eth0}}
    with_web4 = derived(lambda nodes: nodes.update(web4=web4))
    full = derived(lambda nodes: None)
    assert balancer.not_in_rotation(full, SEED_ROWS, checked(full, programmed(full))) == []
    problems = balancer.not_in_rotation(with_web4, SEED_ROWS, checked(with_web4, programmed(full)))
    assert "web-http-l7/web4: not in HAProxy's configuration" in problems
    assert "IPVS tcp 192.168.1.202:80: web4 (10.0.100.8:80) not in the table" in problems and len(problems) == 4
    rows = SEED_ROWS + [{**r, "server": "web4", "status": "DOWN", "check": "L4CON"} for r in SEED_ROWS[:1]]
    assert "web-http-l4/web4: DOWN (L4CON)" in balancer.not_in_rotation(with_web4, rows, None)
    drained = [{**r, "status": "DRAIN"} if r["server"] == "web2" else r for r in SEED_ROWS]
    assert balancer.not_in_rotation(full, drained, None) == []  # drained on purpose, not missing


def test_ipvs_sync_threads_parsed_and_compared_with_the_model():
    """Both threads on one director (captured on the lab's master director)."""
    live = ipvs.parse_daemons(ipvs_fixture("ipvs-daemon-both.txt"))
    assert live == [
        {"state": state, "interface": "eth1", "sync_id": 52, "group": "224.0.0.81", "port": 8848}
        for state in ("master", "backup")
    ]
    assert ipvs.parse_daemons("") == []
    expected = {"interface": "eth1", "sync_id": 52, "ipvs_port": 8848}
    assert ipvs.compare_sync(expected, live) == []
    assert ipvs.compare_sync(expected, live[:1]) == ["backup sync thread on eth1 (syncid 52, port 8848) is not running"]
    # Off in the topology: a thread left running is reported.
    assert ipvs.compare_sync({**expected, "ipvs_port": None}, live[1:]) == [
        "unexpected backup sync thread on eth1 (syncid 52, port 8848)"
    ]
    assert ipvs.compare_sync(None, []) == []


def test_the_periodic_check_starts_only_known_stopped_services_of_the_node_that_answered():
    """cluster.reconcile's decision, on answers as nodes give them (and as a
    lying or broken one might): only the topology's nodes, only daemons the
    catalogue knows, only those reported stopped; balanced roles drained."""
    import yaml

    topology = copy.deepcopy(SEED)
    catalogue = yaml.safe_load((REPO / "pillar" / "catalogue.sls").read_text())["catalogue"]
    answers = {
        "web2": {"apache2": False},
        "web1": {"apache2": True},
        "web3": {"apache2": None},  # masked by an operator: held down on purpose
        "dns1": {"named": False, "ssh": False},  # not a daemon of any formula
        "standby": {"keepalived": True, "haproxy": False, "dnsmasq": True},
        "master": {"haproxy": "no"},  # not a boolean
        "intruder": {"apache2": False},  # not a node of the topology
        "dns3": "Minion did not return. [No response]",
    }
    assert runner.stopped_services(answers, topology, catalogue) == {
        "dns1": {"start": ["named"], "drain": True},
        "standby": {"start": ["haproxy"], "drain": False},
        "web2": {"start": ["apache2"], "drain": True},
    }
    assert runner.stopped_services({}, topology, catalogue) == {}


def test_the_periodic_check_readies_only_service_drained_nodes_whose_services_run_again():
    """cluster.reconcile's second decision: a node this master drained for a
    stopped service is readied once every service it watches runs, and not
    while one is down or masked, the node silent, or about to be started;
    a node drained by someone else is not in ``drained`` and stays as it is."""
    answers = {
        "web1": {"apache2": True},
        "web2": {"apache2": False},
        "web3": {"apache2": None},  # masked: held down on purpose
        "dns1": {"named": True},
        "dns2": "Minion did not return. [No response]",
        "dns3": {},
    }
    drained = ["web1", "web2", "web3", "dns1", "dns2", "dns3"]
    stopped = {"dns1": {"start": ["named"], "drain": True}}
    assert runner.ready_again(answers, drained, stopped) == ["web1"]
    assert runner.ready_again(answers, [], stopped) == []
    assert runner.ready_again({}, drained, {}) == []


def test_the_periodic_check_asks_the_minions_connected_to_its_master_only():
    """With failover masters each minion is connected to one of them: a run
    asks those (waiting for the others made it outlast its period); without
    the master's minion data to tell, every node."""
    nodes = ["dns1", "master", "standby", "web1", "web2"]
    assert runner.connected(nodes, {"web2", "standby", "intruder"}) == ["standby", "web2"]
    assert runner.connected(nodes, set()) == []
    assert runner.connected(nodes, None) == nodes
    # The publish port's peers, told apart by the topology's addresses.
    addresses = runner.node_addresses({**SEED["nodes"], "odd": None, "bare": {"interfaces": {"eth0": {}}}})
    assert addresses["master"] == ["192.168.1.101", "10.0.100.1"]
    assert addresses["odd"] == addresses["bare"] == []
    peers = {"10.0.100.3", "10.0.100.1", "192.168.1.10"}
    assert runner.at_addresses(addresses, peers) == {"web2", "master"}
    assert runner.at_addresses(addresses, set()) == set()


def test_the_periodic_check_takes_the_service_drains_every_director_kept():
    """Either master drained it: whichever director answers says so."""
    answers = {"master": ["web2"], "standby": ["web2", "dns1"], "silent": "Minion did not return", "odd": [7]}
    assert runner.service_drained(answers) == ["dns1", "web2"]
    assert runner.service_drained({}) == []


def test_a_director_keeps_its_service_drains_until_the_node_is_set_again(monkeypatch, tmp_path):
    """balancer.set_nodes with for_service keeps the drain on the director
    (whichever master asked); a ready, or an operator's drain, ends it."""
    nodes = {"web1": {"address": "10.0.100.2"}, "web2": {"address": "10.0.100.3"}}
    funcs = {
        "cluster.model": lambda: {"nodes": nodes},
        "haproxy_runtime.set_server_everywhere": lambda name, state: {"web-http-l4": state},
    }
    monkeypatch.setattr(balancer, "__salt__", funcs, raising=False)
    monkeypatch.setattr(balancer, "__opts__", {"cachedir": str(tmp_path)}, raising=False)
    assert balancer.service_drained() == []
    done = balancer.set_nodes(["web1", "web2", "web9"], "drain", for_service=True)
    assert sorted(done) == ["web1", "web2"]  # web9: not balanced here
    assert balancer.service_drained() == ["web1", "web2"]
    balancer.set_nodes("web1", "ready")
    assert balancer.service_drained() == ["web2"]
    balancer.set_nodes("web2", "drain")  # an operator's drain takes over
    assert balancer.service_drained() == []
    balancer.set_nodes(["web1", "web2"], "drain", for_service=True)
    assert balancer.service_drained(forget="web1") == ["web2"]  # cluster_lb.server_state's
    with pytest.raises(balancer.CommandExecutionError, match="for_service is a drain's, not admin_state 'ready'"):
        balancer.set_nodes("web1", "ready", for_service=True)
    assert balancer.kept_drains(["web1"], ["web2"], ["web2", "web3"]) == ["web1", "web2"]


def test_a_nodes_service_reactions_run_one_at_a_time(tmp_path):
    """A restart's down and up reactions for one node do not overlap (the
    drain could land after the ready); another node's are not held up."""
    order = []

    def reaction(what: str, hold: float) -> None:
        with runner._node_lock("cluster-service", "web2", str(tmp_path)):
            order.append(f"{what} in")
            time.sleep(hold)
            order.append(f"{what} out")

    down = threading.Thread(target=reaction, args=("down", 0.4))
    down.start()
    time.sleep(0.1)
    up = threading.Thread(target=reaction, args=("up", 0))
    up.start()
    with runner._node_lock("cluster-service", "web3", str(tmp_path)):
        order.append("web3")
    down.join()
    up.join()
    assert order == ["down in", "web3", "down out", "up in", "up out"]


def test_every_runner_the_masters_call_is_exported():
    """The reactor files and the masters' schedule name runner functions;
    Salt loads only those in the module's ``__load__`` (a function left out
    is not run, and the reactor says nothing of it)."""
    import re

    import yaml

    called = set()
    for sls in sorted((REPO / "reactor").glob("*.sls")):
        called |= set(re.findall(r"^\s*runner\.cluster\.(\w+):", sls.read_text(), re.M))
    master = yaml.safe_load((REPO / "etc/salt/master").read_text())
    for job in (master.get("schedule") or {}).values():
        if job["function"].startswith("cluster."):
            called.add(job["function"].removeprefix("cluster."))
    assert {"react", "reconcile"} <= called
    assert called <= set(runner.__load__)
    assert all(callable(getattr(runner, name)) for name in runner.__load__)


class _Director:
    """A stand-in for Salt's LocalClient: a director answering vip.vrrp_state
    from ``states``, counting the questions."""

    def __init__(self, states: dict[str, str]):
        self.states = states
        self.questions = 0

    def cmd(self, node, fun, arg, **_):
        assert fun == "vip.vrrp_state"
        self.questions += 1
        time.sleep(0.05)  # a job's round trip: claims arriving meanwhile wait for it
        return {node: {name: {"state": state} for name, state in self.states.items()}}


TRANSITION = {"INSTANCE-VI_E": "MASTER", "INSTANCE-VI_I": "MASTER", "GROUP-VG1": "MASTER"}


def test_the_events_of_one_burst_share_one_question(tmp_path):
    """Each reaction asking at once (the reactor runs them side by side),
    the stale claim of the burst included (a cut director's MASTER sent when
    it is back as BACKUP): one question, which confirms the true claims
    and denies the stale one."""
    director = _Director(dict(TRANSITION))
    claims = [*TRANSITION.items(), ("INSTANCE-VI_I", "FAULT")]
    arrived = time.time()
    answers: dict[tuple[str, str], object] = {}

    def react(name: str, state: str) -> None:
        answers[name, state] = runner._vrrp_state(director, "standby", arrived, str(tmp_path))

    threads = [threading.Thread(target=react, args=claim) for claim in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert director.questions == 1
    assert [runner._vrrp_confirms(answers[claim], *claim) for claim in claims] == [True, True, True, False]


def test_a_claim_that_arrived_after_the_last_answer_gets_its_own_question(tmp_path):
    """The node may have moved on since its last answer: a claim that
    arrived later is asked about, and that answer judges it. A forged claim
    the node denies is asked about once, and denied."""
    director = _Director(dict(TRANSITION))
    clock = [100.0]
    ask = functools.partial(runner._vrrp_state, director, "master", cachedir=str(tmp_path), now=lambda: clock[0])
    assert runner._vrrp_confirms(ask(clock[0]), "INSTANCE-VI_E", "MASTER")
    clock[0] += 5
    director.states["INSTANCE-VI_E"] = "BACKUP"
    assert runner._vrrp_confirms(ask(clock[0] - 0.1), "INSTANCE-VI_E", "BACKUP")
    assert director.questions == 2
    clock[0] += 5
    assert not runner._vrrp_confirms(ask(clock[0] - 0.1), "INSTANCE-VI_E", "FAULT")
    assert director.questions == 3


def test_an_answer_given_before_a_claim_arrived_judges_nothing(tmp_path):
    director = _Director(dict(TRANSITION))
    clock = [100.0]
    runner._vrrp_state(director, "master", 99.0, str(tmp_path), lambda: clock[0])
    runner._vrrp_state(director, "master", 100.0, str(tmp_path), lambda: clock[0])
    assert director.questions == 1
    runner._vrrp_state(director, "master", 100.5, str(tmp_path), lambda: clock[0] + 1)
    assert director.questions == 2
    # A clock that went back (an answer "from the future") is not trusted.
    clock[0] = 50.0
    runner._vrrp_state(director, "master", 40.0, str(tmp_path), lambda: clock[0])
    assert director.questions == 3
