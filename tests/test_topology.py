"""The topology checks and the derived model, as pure functions."""

from __future__ import annotations

import copy
import datetime

import jinja2
import pytest

import cluster
from conftest import REPO
from topology_cases import CASES

TODAY = datetime.date(2026, 11, 27)


def test_seed_topology_is_valid(topology):
    assert cluster.check(topology) == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named_and_changes_nothing(topology, case):
    case.mutate(topology)
    before = copy.deepcopy(topology)
    problems = cluster.check(topology)
    assert any(case.expected in p for p in problems), problems
    with pytest.raises(cluster.TopologyError) as err:
        cluster.derive(topology)
    assert case.expected in str(err.value)
    assert topology == before, "checking must not modify the topology"


def test_every_problem_is_reported_at_once(topology):
    for case in CASES[:4]:
        case.mutate(topology)
    problems = cluster.check(topology)
    for case in CASES[:4]:
        assert any(case.expected in p for p in problems), (case.id, problems)


def test_garbage_is_reported_not_crashed():
    assert cluster.check(None) == ["cluster: None is not a mapping: the pillar needs a top-level 'cluster' key"]
    problems = cluster.check({"domain": "lab.local", "networks": [], "nodes": {"a": "b"}, "vips": 3})
    assert "networks: [] is not a mapping (the internal and external networks)" in problems
    assert "nodes.a: 'b' is not a mapping" in problems


def test_secrets_are_checked_but_never_echoed(topology):
    problems = cluster.check(
        topology, {"haproxy_stats": {"user": "admin", "password": "123"}, "vrrp_auth_pass": "far-too-long-secret"}
    )
    assert "cluster_secrets.haproxy_stats: the seed's well-known credentials are refused" in problems
    assert "cluster_secrets.vrrp_auth_pass: must be a string of at most 8 characters" in problems
    assert not any("far-too-long-secret" in p or "'123'" in p for p in problems)
    assert cluster.check(topology) == []
    assert cluster.check(topology, None)[0].startswith("cluster_secrets: missing")
    assert cluster.check(topology, {})[0].startswith("cluster_secrets: missing")


def test_hosts_entries_cover_every_node_with_aliases(topology):
    model = cluster.derive(topology)
    lines = {e["address"]: e["names"] for e in model["hosts"]}
    assert lines["10.0.100.1"] == ["master.lab.local", "master", "cluster1", "lb1"]
    assert lines["10.0.100.100"] == ["nas.lab.local", "nas"]
    assert [e["address"] for e in model["hosts"]][:2] == ["10.0.100.1", "10.0.100.2"]
    assert len(lines) == len(topology["nodes"])


def test_dhcp_leases_are_the_seed_static_leases(topology):
    dhcp = cluster.derive(topology)["dhcp"]
    assert [(lease["mac"], lease["address"]) for lease in dhcp["leases"]] == [
        (f"08:00:27:01:01:0{i}", f"10.0.100.{i}") for i in range(2, 8)
    ]
    assert dhcp["router"] == dhcp["dns"] == "10.0.100.200"
    assert dhcp["mtu"] == 9000
    assert dhcp["range"] == {"start": "10.0.100.2", "end": "10.0.100.49", "lease_time": "infinite"}


def test_zones_hold_a_cname_ns_and_ptr(topology):
    dns = cluster.derive(topology)["dns"]
    forward, reverse = dns["zones"]
    assert forward["name"] == "lab.local" and reverse["name"] == "100.0.10.in-addr.arpa"
    assert forward["ns"] == ["dns1.lab.local.", "dns2.lab.local.", "dns3.lab.local."]
    assert {"name": "web1", "type": "A", "data": "10.0.100.2"} in forward["records"]
    assert {"name": "lb2", "type": "CNAME", "data": "standby"} in forward["records"]
    assert {"name": "cluster7", "type": "CNAME", "data": "dns3"} in forward["records"]
    assert {"name": "100", "type": "PTR", "data": "nas.lab.local."} in reverse["records"]
    assert len([r for r in reverse["records"] if r["type"] == "PTR"]) == 9
    assert dns["forwarders"] == ["192.168.1.1"]
    assert dns["allow_recursion"] == ["10.0.100.0/24"]


def zone_file(zone: dict, serial: int) -> str:
    """The zone file the bind formula writes (its real template)."""
    source = (REPO / "salt" / "bind" / "files" / "zone.jinja").read_text()
    return jinja2.Template(source).render(zone=zone, serial=serial)


def test_serial_changes_only_when_records_change(topology):
    first = cluster.derive(topology)["dns"]["zones"][0]
    serial = cluster.next_serial(first["digest"], None, TODAY)
    assert serial == 2026112701
    previous = cluster.previous_serial(zone_file(first, serial))
    assert previous == (first["digest"], serial)
    later = datetime.date(2026, 12, 3)
    assert cluster.next_serial(cluster.derive(topology)["dns"]["zones"][0]["digest"], previous, later) == serial
    topology["nodes"]["web1"]["aliases"].append("www")
    changed = cluster.derive(topology)["dns"]["zones"][0]
    assert changed["digest"] != first["digest"]
    assert cluster.next_serial(changed["digest"], previous, later) == 2026120301
    # Two changes on one day still move forward.
    again = cluster.next_serial("other", ("x", 2026120301), later)
    assert again == 2026120301 + 1


def test_serial_never_goes_back_when_clock_is_behind():
    assert cluster.next_serial("new", ("old", 2030010105), datetime.date(2026, 1, 1)) == 2030010106


def test_vrrp_master_is_the_highest_priority(topology):
    vrrp = cluster.derive(topology)["vrrp"]
    assert vrrp["leader"] == "master"
    master, standby = vrrp["directors"]["master"], vrrp["directors"]["standby"]
    assert [i["state"] for i in master["instances"]] == ["MASTER", "MASTER"]
    assert [i["state"] for i in standby["instances"]] == ["BACKUP", "BACKUP"]
    ext = master["instances"][0]
    # Adverts on the internal network (eth1), the external VIPs on eth0.
    assert (ext["name"], ext["interface"], ext["vip_interface"], ext["virtual_router_id"]) == (
        "VI_E",
        "eth1",
        "eth0",
        51,
    )
    assert ext["vips"] == ["192.168.1.200/32", "192.168.1.202/32"]
    assert (ext["unicast_src"], ext["unicast_peers"]) == ("10.0.100.1", ["10.0.100.50"])
    assert standby["instances"][1]["vips"] == ["10.0.100.200/32"]
    topology["nodes"]["standby"]["priority"] = 200
    assert cluster.derive(topology)["vrrp"]["leader"] == "standby"


def test_haproxy_backends_follow_the_roles(topology):
    haproxy = cluster.derive(topology)["haproxy"]
    l7 = haproxy["backends"]["web-http-l7"]
    assert [(s["name"], s["address"], s["port"]) for s in l7["servers"]] == [
        ("web1", "10.0.100.2", 8080),
        ("web2", "10.0.100.3", 8080),
        ("web3", "10.0.100.4", 8080),
    ]
    assert l7["cookie"] == "SERVERID" and l7["mode"] == "http"
    assert haproxy["frontends"]["https-l4"]["bind"] == "192.168.1.200:443"
    assert haproxy["stats"]["bind"] == "10.0.100.200:7000"


def test_adding_a_web_node_reaches_every_view(topology):
    topology["nodes"]["web4"] = {
        "roles": ["web"],
        "aliases": ["cluster8"],
        "interfaces": {
            "eth0": {"network": "internal", "address": "10.0.100.8", "mac": "08:00:27:01:01:08", "dhcp": True}
        },
    }
    model = cluster.derive(topology)
    assert "web4" in [s["name"] for s in model["haproxy"]["backends"]["web-http-l4"]["servers"]]
    web_vs = next(v for v in model["ipvs"]["virtual_servers"] if v["name"] == "web")
    assert "10.0.100.8" in [r["address"] for r in web_vs["real_servers"]]
    assert {"mac": "08:00:27:01:01:08", "address": "10.0.100.8", "hostname": "web4"} in model["dhcp"]["leases"]
    assert "web4" in model["nfs"]["clients"]
    assert model["roles"]["web"] == ["web1", "web2", "web3", "web4"]


def test_ipvs_virtual_servers(topology):
    ipvs = cluster.derive(topology)["ipvs"]["virtual_servers"]
    dns = next(v for v in ipvs if v["name"] == "dns")
    assert (dns["vip"], dns["port"], dns["protocol"], dns["scheduler"], dns["forwarding"]) == (
        "192.168.1.200",
        53,
        "udp",
        "rr",
        "nat",
    )
    assert [r["address"] for r in dns["real_servers"]] == ["10.0.100.5", "10.0.100.6", "10.0.100.7"]


def test_nfs_export_and_mounts(topology):
    nfs = cluster.derive(topology)["nfs"]
    assert nfs["device"] == "10.0.100.100:/srv/nfs/www"
    # The web nodes' own addresses, not the network (its DHCP pool serves anyone).
    assert nfs["export_to"] == ["10.0.100.2", "10.0.100.3", "10.0.100.4"]
    assert "root_squash" in nfs["options"] and "no_root_squash" not in nfs["options"]
    assert nfs["clients"] == ["web1", "web2", "web3"]
    # Apache serves each client's own copy, refreshed every 5 s.
    assert {k: nfs["copy"][k] for k in ("path", "refresh")} == {"path": "/srv/www", "refresh": 5}
    assert nfs["serve_root"] == "/srv/www" and nfs["export_docroot"] == "/srv/nfs/www/www"
    # Each copy offered to the nas (rsync daemon), and only to it (firewall).
    assert nfs["copy"]["rsync"]["sources"] == [f"rsync://10.0.100.{n}:873/docroot" for n in (2, 3, 4)]
    firewall = cluster.derive(topology)["firewall"]
    offered = {
        name: [r["saddr"] for r in rules["input"] if r["protocol"] == "tcp" and 873 in r["ports"]]
        for name, rules in firewall.items()
    }
    assert offered == {name: [["10.0.100.100"]] if name.startswith("web") else [] for name in firewall}
    del topology["nfs"]["copy"]
    topology["ha"] = False  # a docroot on the nas alone
    nfs = cluster.derive(topology)["nfs"]
    assert nfs["copy"] is None and nfs["serve_root"] == "/nfs/www"


def test_salt_masters_and_their_firewall(topology):
    assert topology["ha"] is True and topology["salt_masters"] == ["nas", "dns1"]
    model = cluster.derive(topology)
    assert model["salt_masters"] == [
        {"name": "nas", "address": "10.0.100.100"},
        {"name": "dns1", "address": "10.0.100.5"},
    ]
    for name in ("nas", "dns1"):
        rule = next(r for r in model["firewall"][name]["input"] if r["comment"] == "salt master from the minions")
        assert rule["ports"] == [4505, 4506] or tuple(rule["ports"]) == (4505, 4506)
    assert not any("salt master" in r["comment"] for r in model["firewall"]["dns2"]["input"])
    # Without the key: the nas alone, as in the seed (and ha must then be off).
    del topology["salt_masters"]
    topology["ha"] = False
    assert cluster.derive(topology)["salt_masters"] == [{"name": "nas", "address": "10.0.100.100"}]


def test_alertmanager_notifies_the_topologys_webhooks(topology):
    assert cluster.derive(topology)["monitoring"]["webhooks"] == []
    topology["monitoring"] = {"server": "nas", "webhooks": ["https://ops.example.org:8443/hooks/cluster"]}
    assert cluster.derive(topology)["monitoring"]["webhooks"] == ["https://ops.example.org:8443/hooks/cluster"]


def test_monitoring_scrapes_every_node_and_only_its_server_may(topology):
    model = cluster.derive(topology)
    monitoring = model["monitoring"]
    assert monitoring["server"] == {"name": "nas", "address": "10.0.100.100"}
    node_job = monitoring["jobs"]["node"]
    assert [t["name"] for t in node_job["targets"]] == sorted(topology["nodes"])
    assert [t["name"] for t in monitoring["jobs"]["haproxy"]["targets"]] == ["master", "standby"]
    for name in topology["nodes"]:
        rule = next(r for r in model["firewall"][name]["input"] if r["comment"].startswith("metrics"))
        assert rule["saddr"] == ["10.0.100.100"] and rule["iif"] == model["nodes"][name]["by_network"]["internal"]
        own = {"director": [8405], "dns": [9119], "web": [9117], "nas": []}
        expected = [9100] + [port for role in topology["nodes"][name]["roles"] for port in own[role]]
        assert rule["ports"] == sorted(expected)
        assert cluster.node_view(model, name)["exporters"]["node"] == 9100
    # A node added to the topology is a target; one removed is not.
    topology["nodes"]["web4"] = copy.deepcopy(topology["nodes"]["web3"])
    topology["nodes"]["web4"]["interfaces"]["eth0"].update(address="10.0.100.8", mac="08:00:27:01:01:08")
    topology["nodes"]["web4"]["aliases"] = []
    del topology["nodes"]["web2"]
    names = [t["name"] for t in cluster.derive(topology)["monitoring"]["jobs"]["node"]["targets"]]
    assert "web4" in names and "web2" not in names
    topology["monitoring"] = {"server": "dns1"}
    assert cluster.derive(topology)["monitoring"]["server"]["address"] == "10.0.100.5"


def test_node_view(topology):
    model = cluster.derive(topology)
    web1 = cluster.node_view(model, "web1")
    assert web1["gateway"] == "10.0.100.200" and web1["nfs_mount"]["docroot"] == "/nfs/www"
    master = cluster.node_view(model, "master")
    assert master["gateway"] == "192.168.1.1" and master["vrrp"]["state"] == "MASTER"
    assert master["by_network"] == {"external": "eth0", "internal": "eth1"}
    with pytest.raises(cluster.CommandExecutionError, match="'web9' is not in the cluster topology"):
        cluster.node_view(model, "web9")


def test_roles_grain_must_match():
    assert cluster.roles_mismatch("web1", ["web"], ["web"]) is None
    assert cluster.roles_mismatch("web1", ["web"], "web") is None
    assert "grain roles ['dns'] differ from the topology's nodes.web1.roles ['web']" in cluster.roles_mismatch(
        "web1", ["web"], ["dns"]
    )
    assert "grain roles []" in cluster.roles_mismatch("web1", ["web"], None)


def test_reverse_zone_names():
    import ipaddress

    assert cluster.reverse_zone_name(ipaddress.IPv4Network("10.0.100.0/24")) == "100.0.10.in-addr.arpa"
    assert cluster.reverse_zone_name(ipaddress.IPv4Network("10.0.0.0/16")) == "0.10.in-addr.arpa"
    assert cluster.reverse_zone_name(ipaddress.IPv4Network("10.0.100.0/25")) is None
