"""tools/bootstrap.py's pure parts: the inventory's checks, the roster and
known_hosts it generates, the settings it gives each node, the keys it
accepts, and how it reads salt-ssh's answers (captured from the lab)."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures" / "bootstrap"


def _tool():
    spec = importlib.util.spec_from_file_location("bootstrap_tool", REPO / "tools" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bootstrap_tool"] = module
    spec.loader.exec_module(module)
    return module


bootstrap = _tool()
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK702Ccg4AgJ3VmcnlIHjav7XFGFeklOyWLbESFtfJbz"


@pytest.fixture(scope="module")
def model() -> dict:
    cluster = bootstrap._cluster_module(REPO)
    topology = yaml.safe_load((REPO / "pillar" / "cluster.sls").read_text())["cluster"]
    return cluster.derive(topology)


def inventory(**nodes) -> dict:
    return {"ssh": {"user": "root", "key": "/root/.ssh/id_ed25519"}, "nodes": nodes}


def test_a_good_inventory_has_no_problem(model):
    good = inventory(nas={"host_key": KEY}, web1={"host": "web1.example.net", "port": 2222, "host_key": KEY})
    good |= {"salt": {"install": "present", "version": 3008}, "minion": {"log_level": "info"}}
    assert bootstrap.check_inventory(good, model["nodes"]) == []


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (inventory(web9={"host_key": KEY}), "nodes.web9: not a node of the topology"),
        (inventory(nas={"host": "10.0.100.100; rm -rf /"}), "nodes.nas.host: '10.0.100.100; rm -rf /' is not an"),
        (inventory(nas={"port": 0}), "nodes.nas.port: 0 is not a TCP port"),
        (inventory(nas={"port": True}), "nodes.nas.port: True is not a TCP port"),
        (inventory(nas={"user": "root -oProxyCommand=x"}), "nodes.nas.user: 'root -oProxyCommand=x' is not a user"),
        (inventory(nas={"host_key": "ssh-ed25519"}), "nodes.nas.host_key: 'ssh-ed25519' is not an SSH public key"),
        (inventory(nas={"hots": "x"}), "nodes.nas.hots: unknown key"),
        (inventory(nas=["10.0.100.100"]), "nodes.nas: ['10.0.100.100'] is not a mapping"),
        ({"nodes": {}, "salt": {"install": "pip"}}, "salt.install: 'pip' is neither 'repository' nor 'present'"),
        ({"nodes": {}, "salt": {"version": "latest"}}, "salt.version: 'latest' is not a Salt release"),
        ({"nodes": {}, "sssh": {}}, "sssh: unknown key"),
        ({"nodes": {}, "pillar": ["x"]}, "pillar: ['x'] is not a mapping"),
        ([], "inventory: [] is not a mapping"),
    ],
)
def test_a_bad_inventory_is_refused_naming_field_and_value(model, bad, problem):
    problems = bootstrap.check_inventory(bad, model["nodes"])
    assert any(p.startswith(problem) for p in problems), problems


def test_targets_default_to_the_internal_address_and_the_shared_ssh_settings(model):
    nodes = bootstrap.targets(inventory(nas={"host_key": KEY}, master={"host": "192.0.2.7", "user": "admin"}), model)
    assert set(nodes) == set(model["nodes"])
    assert (nodes["nas"].host, nodes["nas"].user, nodes["nas"].port) == ("10.0.100.100", "root", 22)
    assert nodes["web1"].host == model["nodes"]["web1"]["interfaces"]["eth0"]["address"]
    assert (nodes["master"].host, nodes["master"].user) == ("192.0.2.7", "admin")


def test_the_roster_holds_only_pinned_nodes_and_checks_their_keys(model):
    nodes = bootstrap.targets(
        inventory(nas={"host_key": KEY}, web1={"host_key": KEY, "user": "admin", "port": 2222}), model
    )
    roster = bootstrap.roster(nodes)
    assert sorted(roster) == ["nas", "web1"]
    assert roster["nas"]["ssh_options"] == ["StrictHostKeyChecking=yes"]
    assert "sudo" not in roster["nas"] and roster["web1"]["sudo"] is True
    lines = bootstrap.known_hosts(nodes).splitlines()
    web1 = model["nodes"]["web1"]["interfaces"]["eth0"]["address"]
    assert lines == [f"10.0.100.100 {KEY}", f"nas {KEY}", f"[{web1}]:2222 {KEY}", f"web1 {KEY}"]


def test_a_node_holding_a_pool_address_is_found_by_its_mac():
    """dnsmasq's lease table as a director held it: web4 booted before the
    directors knew its lease and took 10.0.100.27 from the pool."""
    leases = (FIXTURES / "dnsmasq.leases").read_text()
    found = bootstrap.pool_addresses(leases, ["08:00:27:01:01:08", "08:00:27:01:01:05"])
    assert found == {"08:00:27:01:01:08": "10.0.100.27"}
    assert bootstrap.pool_addresses("garbage\n0 08:00:27:01:01:08 not-an-address web4 *\n", ["08:00:27:01:01:08"]) == {}


def test_each_minion_gets_its_id_roles_masters_and_the_master_fingerprint(model):
    one = dict(model, salt_masters=[{"name": "nas", "address": "10.0.100.100"}])
    conf = bootstrap.minion_settings(one, "web2", "aa:bb", {"log_level": "warning"})
    assert conf["id"] == "web2"
    assert conf["grains"] == {"roles": ["web"]}
    assert conf["master"] == model["nodes"]["nas"]["interfaces"]["eth0"]["address"]
    assert conf["master_finger"] == "aa:bb"
    assert (conf["tcp_keepalive_idle"], conf["log_level"]) == (10, "warning")
    assert "master_type" not in conf


def test_two_masters_make_failover_masters(model):
    assert [m["name"] for m in model["salt_masters"]] == ["nas", "dns1"]  # the default topology
    conf = bootstrap.minion_settings(model, "web1", "aa", {})
    assert conf["master"] == ["10.0.100.100", "10.0.100.5"]
    assert conf["master_type"] == "failover"
    # Salt's own per-master check is off: the minion's schedule does it
    # (minion_health.check), without Salt's stale jobs (#67967).
    assert conf["master_alive_interval"] == 0


def test_each_master_pins_its_id_to_its_node():
    assert bootstrap.master_id("dns1") == "dns1_master"


def test_the_master_serves_the_checkout_and_keeps_the_secrets_outside_it():
    repo_master = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())
    conf = bootstrap.master_settings(repo_master, {"worker_threads": 2}, site_pillar=True)
    assert conf["file_roots"] == {"base": ["/srv/cluster", "/srv/cluster/salt"]}
    assert conf["pillar_roots"] == {"base": ["/srv/cluster/pillar", "/etc/salt/cluster-secrets"]}
    assert conf["auto_accept"] is False
    assert conf["ext_pillar"] == [{"cmd_yaml": "cat /etc/salt/cluster-site.yaml"}]
    assert "root_dir" not in conf and conf["worker_threads"] == 2


def test_salt_ssh_never_packs_the_checkouts_own_secrets(tmp_path):
    conf = bootstrap.salt_ssh_config(tmp_path, REPO)
    assert any("secrets" in pattern for pattern in conf["file_ignore_regex"])
    assert conf["known_hosts_file"] == str(tmp_path / "known_hosts")


def test_the_fingerprint_is_the_one_salt_key_prints():
    """Compared with Salt's own function (salt.utils.crypt.pem_finger)."""
    import salt.utils.crypt

    pem = (FIXTURES / "master.pub").read_text()
    assert bootstrap.finger(pem) == salt.utils.crypt.pem_finger(path=str(FIXTURES / "master.pub"))


def test_only_a_real_public_key_is_accepted():
    pem = (FIXTURES / "master.pub").read_text()
    assert bootstrap.public_key_problem("web1", pem) is None
    short = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(b"x" * 100).decode() + "\n-----END PUBLIC KEY-----\n"
    assert "shorter than RSA 2048" in bootstrap.public_key_problem("web1", short)
    assert "not a PEM public key" in bootstrap.public_key_problem("web1", "id: evil\n")
    assert "not base64" in bootstrap.public_key_problem("web1", pem.replace("M", "*", 1))
    assert "does not end" in bootstrap.public_key_problem("web1", pem.replace("-----END PUBLIC KEY-----", ""))


def answer(name: str) -> str:
    return (FIXTURES / f"salt-ssh-{name}.json").read_text()


def test_a_state_run_with_nothing_to_do_is_ok_without_changes():
    out = bootstrap.outcomes(answer("master-state"), ["nas"])
    assert out["nas"].ok and out["nas"].changes == [] and out["nas"].error == ""


def test_the_states_that_changed_something_are_named():
    data = json.loads(answer("accept-state"))
    key = next(k for k in data["nas"] if k.endswith("_|-managed"))
    data["nas"][key]["changes"] = {"diff": "New file"}
    out = bootstrap.outcomes(json.dumps(data), ["nas"])
    assert out["nas"].ok and out["nas"].changes == [key.split("_|-")[1]]


def test_a_failed_state_is_an_error_with_its_comment():
    data = json.loads(answer("accept-state"))
    key = next(iter(data["nas"]))
    data["nas"][key] |= {"result": False, "comment": "Permission denied"}
    out = bootstrap.outcomes(json.dumps(data), ["nas"])
    assert not out["nas"].ok and out["nas"].error == f"{key.split('_|-')[1]}: Permission denied"


def test_an_unreachable_node_carries_the_ssh_error():
    out = bootstrap.outcomes(answer("unreachable"), ["dns3", "ghost"])
    assert not out["dns3"].ok
    assert out["dns3"].error == "ssh: connect to host 10.0.100.7 port 22: No route to host"
    assert not out["ghost"].ok and out["ghost"].error == "no answer from salt-ssh"
    assert not bootstrap.outcomes("not json", ["nas"])["nas"].ok


def test_a_host_key_that_is_not_the_pinned_one_is_said_plainly():
    banner = (
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
        "Host key verification failed.\n"
    )
    out = bootstrap.outcomes(json.dumps({"web1": banner}), ["web1"])["web1"]
    assert not out.ok and out.error.startswith("Host key verification failed: the node's host key is not")
