"""The lab's pure parts: its reading of the pillar and the files it writes into nodes."""

from __future__ import annotations

import yaml

from conftest import REPO
from lab import net, provision, topology


def test_lab_nodes_come_from_the_pillar_plus_client_and_upstream():
    _, model, nodes = topology.load()
    assert set(nodes) == set(model["nodes"]) | {"client", "upstream"}
    assert nodes["upstream"].address == "192.168.1.1" and not nodes["upstream"].minion
    assert nodes["client"].address == "192.168.1.10"
    web1 = nodes["web1"]
    assert (web1.links[0].mac, web1.links[0].dhcp, web1.links[0].mtu) == ("08:00:27:01:01:02", True, 9000)
    master = nodes["master"]
    assert [(link.ifname, link.bridge) for link in master.links] == [("eth0", "br-ext"), ("eth1", "br-int")]
    assert master.links[0].mac == topology.stable_mac("master", "eth0")
    assert [n.order for n in (nodes["nas"], master, web1)] == [0, 1, 2]


def test_a_node_added_to_the_pillar_becomes_a_lab_node(tmp_path):
    pillar = yaml.safe_load((REPO / "pillar" / "cluster.sls").read_text())
    pillar["cluster"]["nodes"]["web4"] = {
        "roles": ["web"],
        "interfaces": {
            "eth0": {"network": "internal", "address": "10.0.100.8", "mac": "08:00:27:01:01:08", "dhcp": True}
        },
    }
    path = tmp_path / "cluster.sls"
    path.write_text(yaml.safe_dump(pillar))
    _, _, nodes = topology.load(path)
    assert nodes["web4"].links[0].mac == "08:00:27:01:01:08" and nodes["web4"].order == 2


def test_host_side_interface_names_fit_ifnamsiz():
    assert net.host_ifname("standby", "eth1") == "standby.eth1"
    long = net.host_ifname("a-very-long-node-name", "eth0")
    assert len(long) <= 15 and long != net.host_ifname("a-very-long-node-nameX", "eth0")


def test_network_units_static_and_dhcp():
    _, _, nodes = topology.load()
    web1 = provision.network_units(nodes["web1"])["/etc/systemd/network/10-eth0.network"]
    assert "DHCP=ipv4" in web1 and "ClientIdentifier=mac" in web1 and "Address=" not in web1
    master = provision.network_units(nodes["master"])
    assert "Address=192.168.1.101/24\nGateway=192.168.1.1" in master["/etc/systemd/network/10-eth0.network"]
    internal = master["/etc/systemd/network/10-eth1.network"]
    assert "Address=10.0.100.1/24" in internal and "Gateway" not in internal and "MTUBytes=9000" in internal
    nas = provision.network_units(nodes["nas"])["/etc/systemd/network/10-eth0.network"]
    assert "Gateway=10.0.100.200" in nas


def test_master_config_is_the_repo_config_with_absolute_roots():
    repo_master = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())
    conf = yaml.safe_load(provision.master_conf(repo_master, "/srv/cluster", "10.0.100.100"))
    assert conf["file_roots"] == {"base": ["/srv/cluster", "/srv/cluster/salt"]}
    assert conf["pillar_roots"] == {"base": ["/srv/cluster/pillar"]}
    assert conf["interface"] == "10.0.100.100" and conf["auto_accept"] is False
    assert "root_dir" not in conf


def test_minion_config_carries_id_master_and_roles():
    _, _, nodes = topology.load()
    conf = yaml.safe_load(provision.minion_conf(nodes["dns2"], "10.0.100.100"))
    assert (conf["id"], conf["master"], conf["grains"]) == ("dns2", "10.0.100.100", {"roles": ["dns"]})


def test_resolvers_never_leave_the_lab():
    _, model, nodes = topology.load()
    assert "\nnameserver 10.0.100.200\n" in provision.resolv_conf(nodes["web1"], model)
    assert "\nnameserver 192.168.1.200\n" in provision.resolv_conf(nodes["client"], model)
    assert "\nnameserver 127.0.0.1\n" in provision.resolv_conf(nodes["upstream"], model)
    unit = provision.upstream_dns_unit("192.168.1.1")
    assert "--no-resolv" in unit and "--address=/www.example.org/192.168.1.1" in unit
