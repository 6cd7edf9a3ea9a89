"""The lab's pure parts: its reading of the pillar and the files it writes into nodes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from lab import net, provision, topology, umlkernel


def test_lab_nodes_come_from_the_pillar_plus_client_upstream_and_operator():
    _, model, nodes = topology.load()
    assert set(nodes) == set(model["nodes"]) | {"client", "upstream", "operator"}
    assert nodes["upstream"].address == "192.168.1.1" and not nodes["upstream"].minion
    assert nodes["client"].address == "192.168.1.10"
    # The internal network's highest free address (.254), outside the DHCP pool.
    operator = nodes["operator"]
    assert (operator.address, operator.links[0].bridge, operator.minion) == ("10.0.100.254", "br-int", False)
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


@pytest.mark.parametrize("name", ["client", "salt", "sw"])
def test_a_node_named_like_the_labs_own_is_refused(tmp_path, name):
    pillar = yaml.safe_load((REPO / "pillar" / "cluster.sls").read_text())
    pillar["cluster"]["nodes"][name] = pillar["cluster"]["nodes"].pop("web3")
    path = tmp_path / "cluster.sls"
    path.write_text(yaml.safe_dump(pillar))
    with pytest.raises(ValueError, match=f"node name '{name}' is the lab's own"):
        topology.load(path)


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
    conf = yaml.safe_load(provision.master_conf(repo_master, "/srv/cluster", "10.0.100.100", "nas"))
    # Pinned: Salt names the master's key pair after its id.
    assert conf["id"] == "nas_master"
    assert conf["file_roots"] == {"base": ["/srv/cluster", "/srv/cluster/salt"]}
    assert conf["pillar_roots"] == {"base": ["/srv/cluster/pillar", "/etc/salt/cluster-secrets"]}
    assert conf["interface"] == "10.0.100.100" and conf["auto_accept"] is False
    assert "root_dir" not in conf


def test_minion_config_carries_id_master_and_roles():
    _, _, nodes = topology.load()
    conf = yaml.safe_load(provision.minion_conf(nodes["dns2"], ["10.0.100.100"]))
    assert (conf["id"], conf["master"], conf["grains"]) == ("dns2", "10.0.100.100", {"roles": ["dns"]})
    # A minion learns of a dead publish connection well before the master's
    # 30 s heartbeat timeout would have it miss jobs for minutes.
    detection = conf["tcp_keepalive_idle"] + conf["tcp_keepalive_intvl"] * conf["tcp_keepalive_cnt"]
    assert detection <= 30
    # Forks and scopes are dear only under a user-mode kernel.
    assert (conf["multiprocessing"], conf["systemd.scope"]) == (True, True)
    uml = yaml.safe_load(provision.minion_conf(replace(nodes["web2"], platform="uml"), ["10.0.100.100"]))
    assert (uml["multiprocessing"], uml["systemd.scope"]) == (False, False)
    # Lab minions start with the repo's modules; `lab apply` syncs, not each highstate.
    assert conf["autoload_dynamic_modules"] is False


def test_every_minion_fails_over_through_the_masters_of_the_topology(tmp_path):
    """salt_masters beyond the nas run on their nodes, with the repo's master
    settings on their own address; every minion knows each master, the nas
    first, and connects to one at a time (Salt's failover masters), back to
    the nas once it answers again."""
    pillar = (topology.REPO / "pillar" / "cluster.sls").read_text()
    assert "salt_masters: [nas, dns1]\n" in pillar
    (tmp_path / "cluster.sls").write_text(
        pillar.replace("salt_masters: [nas, dns1]\n", "salt_masters: [nas]\n").replace("ha: true\n", "ha: false\n")
    )
    assert [n.name for n in topology.load(tmp_path / "cluster.sls")[2].values() if n.extra_master] == []
    _, model, nodes = topology.load()
    extra = [n for n in nodes.values() if n.extra_master]
    assert [n.name for n in extra] == [m["name"] for m in model["salt_masters"] if m["name"] != "nas"] == ["dns1"]
    repo_master = yaml.safe_load((topology.REPO / "etc" / "salt" / "master").read_text())
    addresses = [m.address for m in extra]
    files = provision.files_for(nodes["dns1"], model, "10.0.100.100", repo_master, "/srv", "169.254.77.2", addresses)
    master = yaml.safe_load(files[provision.MASTER_CONF])
    assert master["interface"] == "10.0.100.5" and master["reactor"] == repo_master["reactor"]
    assert master["id"] == "dns1_master"
    assert master["schedule"]["cluster-reconcile"]["function"] == "cluster.reconcile"
    for name in ("web2", "dns1", "master"):
        files = provision.files_for(nodes[name], model, "10.0.100.100", repo_master, "/srv", "169.254.77.2", addresses)
        conf = yaml.safe_load(files[provision.MINION_CONF])
        assert conf["master"] == ["10.0.100.100", "10.0.100.5"] and conf["master_type"] == "failover"
        assert conf["master_failback"] is True and conf["master_alive_interval"] == 0  # minion_health.check
    assert provision.MASTER_CONF not in provision.files_for(nodes["dns2"], model, "10.0.100.100", repo_master, "/srv")


def custom_modules(root: Path, files: dict[str, str]) -> Path:
    """A repo's custom-module folders under root: {"_kind/name": text}."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_minions_start_with_the_repos_custom_modules(tmp_path):
    files = {
        "_grains/kernel.py": "# grain\n",
        "_modules/vip.py": "# module\n",
        "_modules/notes.txt": "not a module\n",
        "_runners/cluster.py": "# runner\n",  # the master's, not a minion's
    }
    assert provision.extension_modules(custom_modules(tmp_path, files)) == {
        "/var/cache/salt/minion/extmods/grains/kernel.py": "# grain\n",
        "/var/cache/salt/minion/extmods/modules/vip.py": "# module\n",
    }
    # The repo's own: every module a highstate or the beacons call.
    seeded = provision.extension_modules(REPO)
    for folder, kind in provision.SEEDED_EXTMODS.items():
        for path in (REPO / folder).glob("*.py"):
            assert seeded[f"{provision.MINION_EXTMODS}/{kind}/{path.name}"] == path.read_text()
    assert any(name.endswith("/beacons/cluster_watch.py") for name in seeded)


def test_resolvers_never_leave_the_lab():
    _, model, nodes = topology.load()
    assert "\nnameserver 10.0.100.200\n" in provision.resolv_conf(nodes["web1"], model)
    assert "\nnameserver 192.168.1.200\n" in provision.resolv_conf(nodes["client"], model)
    assert "\nnameserver 127.0.0.1\n" in provision.resolv_conf(nodes["upstream"], model)
    unit = provision.upstream_dns_unit("192.168.1.1")
    assert "--no-resolv" in unit and "--address=/www.example.org/192.168.1.1" in unit


# --- host kernel or user-mode kernel (lab/kernel.py, lab/topology.place_on_kernels, lab/uml.py) ---

from lab import kernel, uml  # noqa: E402


def test_kernel_path_is_the_host_unless_it_lacks_the_feature(monkeypatch):
    monkeypatch.setattr(kernel, "host_has", lambda feature: feature == "ipvs")
    monkeypatch.setattr(kernel, "uml_has", lambda feature: (True, "6.1.176"))
    assert kernel.choose("ipvs", "auto").path == kernel.HOST
    nfs = kernel.choose("nfs", "auto")
    assert nfs.uml and "the host kernel lacks nfs" in nfs.describe()
    assert kernel.choose("ipvs", "uml").uml and "forced by LAB_KERNEL=uml" in kernel.choose("ipvs", "uml").reason
    monkeypatch.setattr(kernel, "uml_has", lambda feature: (False, "no user-mode kernel (...)"))
    gone = kernel.choose("nfs", "auto")
    assert gone.path == "unavailable" and "the host kernel lacks nfs; no user-mode kernel" in gone.reason
    assert kernel.uml_roles({"ipvs": kernel.choose("ipvs", "auto"), "nfs": gone}) == set()


def test_lab_kernel_rejects_unknown_modes():
    import pytest

    with pytest.raises(ValueError, match="LAB_KERNEL='qemu'"):
        kernel.choose("ipvs", "qemu")


def test_user_mode_nodes_get_a_management_nic_and_nas_hands_the_master_to_a_container():
    _, _, nodes = topology.load()
    placed = topology.place_on_kernels(nodes, {"director", "nas", "web"})
    assert sorted(n for n, node in placed.items() if node.platform == "uml") == [
        "master",
        "nas",
        "standby",
        "web1",
        "web2",
        "web3",
    ]
    mgmt = {n: node.mgmt_address for n, node in placed.items() if node.platform == "uml"}
    assert len(set(mgmt.values())) == 6 and all(a.startswith("169.254.77.") for a in mgmt.values())
    assert topology.MGMT_SWITCH_ADDRESS not in mgmt.values()
    salt = placed[topology.MASTER_CONTAINER]
    assert salt.runs_master and not placed["nas"].runs_master and not salt.minion
    assert salt.address == topology.MGMT_MASTER_ADDRESS and salt.links[0].gateway == placed["nas"].mgmt_address
    # One MTU per network: the internal one carries user-mode NICs, so 1500 for every node on it.
    assert {link.mtu for node in placed.values() for link in node.links if link.network == "internal"} == {1500}
    assert {link.mtu for node in placed.values() for link in node.links if link.network == "external"} == {1500}
    # Nothing moves when the host kernel has everything.
    same = topology.place_on_kernels(nodes, set())
    assert same == nodes and not any(n.runs_master for n in same.values() if n.name != "nas")


def test_user_mode_node_files(monkeypatch):
    monkeypatch.setattr(kernel, "uml_version", lambda: "6.12.113")
    # The kernel the lab chose (Debian 13's from the cache, or the host's package).
    run_kernel = ["chroot-and-run", "/cache/uml/linux.uml"]
    monkeypatch.setattr(kernel, "uml_kernel", lambda: (run_kernel, Path("/cache/uml/modules")))
    _, _, nodes = topology.load()
    placed = topology.place_on_kernels(nodes, {"director", "nas", "web"})
    nas = uml.files_for(placed["nas"])
    assert "/dev/ubda / ext4" in nas["/etc/fstab"] and "hostfs /cache/uml/modules 0 0" in nas["/etc/fstab"]
    assert nas["/etc/lab-kernel"] == "user-mode Linux 6.12.113\n"
    assert uml.command(placed["nas"], REPO, REPO)[:2] == run_kernel
    assert "root=/dev/ubda" in uml.command(placed["nas"], REPO, REPO)
    assert "nfsd" in nas["/etc/modules-load.d/lab.conf"].split()
    director = uml.files_for(placed["master"])
    assert {"ip_vs", "ip_vs_rr"} <= set(director["/etc/modules-load.d/lab.conf"].split())
    assert "/dev/ubda" not in director["/etc/fstab"]
    assert f"rootflags={REPO}" in uml.command(placed["master"], REPO, REPO)
    link = director["/etc/systemd/network/10-eth1.link"]
    assert f"MACAddress={placed['master'].links[1].mac}" in link and "Name=eth1" in link
    agent_unit = director["/etc/systemd/system/lab-agent.service"]
    assert f"serve {placed['master'].mgmt_address} 7070 {topology.MGMT_SWITCH_ADDRESS}" in agent_unit
    assert uml.links_for(placed["master"])["/etc/alternatives/iptables"] == "/usr/sbin/iptables-legacy"
    forward = provision.files_for(
        placed["nas"],
        topology.load()[1],
        "10.0.100.100",
        {"file_roots": {}, "pillar_roots": {}},
        "/srv",
        "169.254.77.2",
    )
    unit = forward["/etc/systemd/system/lab-salt-forward.service"]
    assert "-d 10.0.100.100 --dport 4505:4506 -j DNAT --to-destination 169.254.77.2" in unit


def test_user_mode_nodes_boot_lean(monkeypatch):
    """What keeps a user-mode boot and Salt's systemctl calls short, and nothing a node needs masked."""
    monkeypatch.setattr(kernel, "uml_version", lambda: "6.1.176")
    _, model, nodes = topology.load()
    placed = topology.place_on_kernels(nodes, {"director", "nas", "web"})
    web1 = placed["web1"]
    assert "pty.legacy_count=0" in uml.command(web1, REPO, REPO)
    links = uml.links_for(web1)
    masked = {path.rsplit("/", 1)[1] for path, target in links.items() if target == "/dev/null"}
    assert "systemd-logind.service" in masked and "systemd-gpt-auto-generator" in masked
    # The SysV one made only ipvsadm's unit (keepalived programs IPVS; nothing runs that service).
    assert "systemd-sysv-generator" in masked
    # A unit that requires a masked one is masked too (or the boot ends degraded).
    assert {"modprobe@configfs.service", "sys-kernel-config.mount"} <= masked
    assert {"systemd-update-utmp.service", "systemd-update-utmp-runlevel.service"} <= masked
    assert "systemd-journal-flush.service" in masked
    assert "Storage=volatile" in uml.files_for(web1)[uml.JOURNALD_CONF]
    # The fstab generator mounts the NFS docroot at boot, nfs-server's orders the exports.
    assert not masked & {"systemd-fstab-generator", "nfs-server-generator", "rpc-pipefs-generator"}

    def files(name: str) -> dict[str, str]:
        return provision.files_for(placed[name], model, "10.0.100.100", {"file_roots": {}, "pillar_roots": {}}, "/srv")

    assert "Environment=SYSTEMCTL_SKIP_SYSV=1" in files("web1")[provision.MINION_SKIP_SYSV]
    assert provision.MINION_SKIP_SYSV not in files("dns1")


def test_dhcp_minions_start_once_the_node_has_its_address():
    _, model, nodes = topology.load()

    def files(name: str) -> dict[str, str]:
        return provision.files_for(nodes[name], model, "10.0.100.100", {"file_roots": {}, "pillar_roots": {}}, "/srv")

    assert "After=network-online.target" in files("dns1")[provision.MINION_NETWORK]
    assert provision.MINION_NETWORK not in files("master")  # static addresses: network.target suffices


def test_event_lines_are_parsed_whatever_separates_tag_and_data():
    from lab import events

    out = 'salt/beacon/web2/cluster_watch/service\t{"state": "inactive"}\n\nnoise\nsalt/other {"x": 1}\n'
    assert events.parse(out, "salt/beacon/web2/") == [("salt/beacon/web2/cluster_watch/service", {"state": "inactive"})]
    assert events.parse(out) == [
        ("salt/beacon/web2/cluster_watch/service", {"state": "inactive"}),
        ("salt/other", {"x": 1}),
    ]


def test_connected_minions_are_the_publish_port_peers_matched_by_address():
    _, _, nodes = topology.load()
    ss = "\n".join(
        [
            "0      0      169.254.77.2:4505 10.0.100.1:40112",  # master (director), internal address
            "0      0      169.254.77.2:4505 [::ffff:10.0.100.5]:51000",  # dns1 by its static lease, v4-mapped
            "0      0      169.254.77.2:4506 10.0.100.2:40000",  # web1, but on the request port only
            "0      0      169.254.77.2:4505 192.168.1.10:40000",  # the client runs no minion
            "0      0      169.254.77.2:4505 10.9.9.9:40000",  # no lab node
            "garbage",
        ]
    )
    assert provision.connected_minions(ss, nodes) == {"master", "dns1"}
    assert provision.connected_minions("", nodes) == set()


def test_a_highstate_answer_is_summarized_with_the_units_of_failed_service_states():
    from lab.salt_control import summarize

    answer = {
        "standby": {
            "file_|-haproxy-config-file-managed_|-/etc/haproxy/haproxy.cfg_|-managed": {"result": True, "changes": {}},
            "sysctl_|-haproxy-config-nonlocal-bind_|-net.ipv4.ip_nonlocal_bind_|-present": {
                "result": True,
                "changes": {"net.ipv4.ip_nonlocal_bind": 1},
            },
            "service_|-haproxy-service-running_|-haproxy_|-running": {
                "name": "haproxy",
                "result": False,
                "changes": {"haproxy": True},
                "comment": "Service haproxy has been enabled, and is dead",
            },
            "pkg_|-haproxy-package-installed_|-haproxy_|-installed": {"result": False, "changes": {}, "comment": "E"},
        },
        "master": {"service_|-keepalived-service-running_|-keepalived_|-running": {"result": True, "changes": {}}},
        "web1": "Minion did not return. [No response]",
    }
    got = summarize(answer)
    assert got["standby"] == {
        "states": 4,
        "failed": 2,
        "changed": 2,
        "errors": ["Service haproxy has been enabled, and is dead", "E"],
        "units": ["haproxy"],  # the failed pkg state names no unit
    }
    assert got["master"] == {"states": 1, "failed": 0, "changed": 0, "errors": [], "units": []}
    assert got["web1"]["failed"] == 1 and got["web1"]["units"] == []


def test_a_failed_first_highstate_is_applied_once_more_on_the_failed_minions_only(monkeypatch):
    from lab import cli, salt_control

    lab = cli.Lab.__new__(cli.Lab)  # no topology or kernel probing: only the retry's logic
    printed: list[str] = []
    monkeypatch.setattr(salt_control, "log", lambda who, text: printed.append(f"{who} {text}"))
    monkeypatch.setattr(lab, "_log_journal", lambda name, unit: printed.append(f"journal {name} {unit}"))
    calls: list[tuple[str, ...]] = []
    answers = [{"standby": {"states": 27, "failed": 0, "changed": 1, "errors": [], "units": []}}]
    monkeypatch.setattr(lab, "apply_states", lambda *target: calls.append(target) or answers.pop(0))
    first = {
        "master": {"states": 27, "failed": 0, "changed": 20, "errors": [], "units": []},
        "standby": {"states": 27, "failed": 1, "changed": 20, "errors": ["is dead"], "units": ["haproxy"]},
    }
    assert not lab._report(first) and "journal standby haproxy" in printed
    assert lab._apply_failed_again(first)
    assert calls == [("-L", "standby")]
    assert f"salt {salt_control.RETRY_NOTE} on standby" in printed
    # A fault that stays: the second run fails too, and so does the lab.
    answers.append({"standby": first["standby"]})
    assert not lab._apply_failed_again(first)


def test_a_process_that_exits_while_its_state_is_read_is_not_alive(monkeypatch):
    """/proc/PID/stat opened, then the process exits: the read fails with ESRCH
    (seen once while nspawn set a container up; the lab stopped with a traceback)."""
    from lab import util

    class Vanished:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(util, "open", lambda *args, **kwargs: Vanished(), raising=False)
    assert util.alive(12345) is False


def test_a_process_that_is_gone_is_not_alive():
    import subprocess

    from lab import util

    proc = subprocess.Popen(["true"])
    proc.wait()
    assert util.alive(proc.pid) is False
    assert util.alive(1) is True


def test_salt_returns_merges_one_json_object_per_minion():
    from lab.util import salt_returns

    out = (
        '{\n    "dns1": true\n}\n{\n    "web1": {"file_|-a_|-/a_|-managed": {"result": true}}\n}\n'
        '{\n    "nosuch": "Minion did not return. [No response]"\n}\n'
    )
    assert salt_returns(out) == {
        "dns1": True,
        "web1": {"file_|-a_|-/a_|-managed": {"result": True}},
        "nosuch": "Minion did not return. [No response]",
    }
    # Text before the returns (a warning) and no return at all.
    assert salt_returns('[WARNING ] x\n{"dns1": true}') == {"dns1": True}
    assert salt_returns("No minions matched the target.") == {}


def test_the_master_starts_with_the_repos_runners_and_modules(tmp_path):
    files = {
        "_runners/cluster.py": "# runner\n",
        "_modules/cluster.py": "# module\n",
        "_beacons/watch.py": "# beacon\n",  # a minion's
    }
    assert provision.master_extension_modules(custom_modules(tmp_path, files)) == {
        "/var/cache/salt/master/extmods/runners/cluster.py": "# runner\n",
        "/var/cache/salt/master/extmods/modules/cluster.py": "# module\n",
    }


def test_directors_run_realtime_on_the_host_while_its_throttling_holds():
    """A director's user-mode kernel gets a low realtime priority on the host
    (its VRRP adverts keep their pace while the other nodes work), the other
    nodes the default; a host without realtime throttling (-1: a spinning
    guest could hold a core for good) gets niceness instead."""
    director = topology.LabNode("standby", ["director"], [], None)
    web = topology.LabNode("web1", ["web"], [], None)
    assert uml.host_scheduling(director, (80_000, 100_000)) == ("rr", uml.HOST_RR_PRIORITY["director"])
    assert uml.host_scheduling(director, None) == ("nice", uml.FALLBACK_NICE)
    assert uml.host_scheduling(web, (80_000, 100_000)) == ("normal", 0)


def fake_budget(tmp_path, runtime: str, period: str, group: bool = True) -> tuple[Path, Path]:
    """A realtime budget's two files, as the kernel shows them."""
    where = tmp_path / ("cpu" if group else "kernel")
    where.mkdir()
    names = ("cpu.rt_runtime_us", "cpu.rt_period_us") if group else ("sched_rt_runtime_us", "sched_rt_period_us")
    (where / names[0]).write_text(runtime)
    (where / names[1]).write_text(period)
    return where / names[0], where / names[1]


def test_the_budget_moves_with_the_runtime_never_above_the_period():
    """The kernel refuses a runtime above the period at every write: the
    lab's shorter period goes in after its runtime, the host's longer one
    comes back before its runtime."""
    assert uml.rt_budget_writes((950_000, 1_000_000), (80_000, 100_000)) == [(0, 80_000), (1, 100_000)]
    assert uml.rt_budget_writes((80_000, 100_000), (950_000, 1_000_000)) == [(1, 1_000_000), (0, 950_000)]
    assert uml.rt_budget_writes((80_000, 100_000), (80_000, 100_000)) == []
    for current, wanted in [((950_000, 1_000_000), (80_000, 100_000)), ((80_000, 100_000), (950_000, 1_000_000))]:
        budget = list(current)
        for index, value in uml.rt_budget_writes(current, wanted):
            budget[index] = value
            assert budget[0] <= budget[1], (current, wanted, budget)
        assert tuple(budget) == wanted


def test_the_lab_sets_the_realtime_budget_and_gives_the_host_its_own_back(tmp_path):
    """The root cpu group's budget where RT group scheduling has one, else
    the kernel's; the host's own budget comes back on restore, and a budget
    that is not there (-1: no throttling) is left alone."""
    files = fake_budget(tmp_path, "950000\n", "1000000\n")
    assert uml.rt_budget_files(tmp_path / "cpu") == files
    assert uml.rt_budget_files(tmp_path / "none") == (uml.RT_RUNTIME, uml.RT_PERIOD)
    saved = tmp_path / "state" / "saved.json"
    assert uml.set_rt_budget(files, (80_000, 100_000), saved) == (80_000, 100_000)
    assert [f.read_text() for f in files] == ["80000\n", "100000\n"]
    assert uml.set_rt_budget(files, (80_000, 100_000), saved) == (80_000, 100_000)
    uml.restore_rt_budget(saved)
    assert [int(f.read_text()) for f in files] == [950_000, 1_000_000]
    assert not saved.exists()
    unthrottled = fake_budget(tmp_path, "-1\n", "1000000\n", group=False)
    assert uml.set_rt_budget(unthrottled, (80_000, 100_000), saved) is None
    assert unthrottled[0].read_text() == "-1\n" and not saved.exists()


def test_a_ping_whose_cli_hangs_is_asked_again(monkeypatch):
    """A salt CLI that never returns costs one round, not the lab's bring-up."""
    import subprocess

    from lab import cli, salt_control

    lab = cli.Lab.__new__(cli.Lab)
    printed: list[str] = []
    monkeypatch.setattr(salt_control, "log", lambda who, text: printed.append(f"{who} {text}"))
    monkeypatch.setattr(salt_control.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(lab, "_wait_connected", lambda names, deadline: None)
    rounds: list[tuple[str, ...]] = []

    def salt_json(*args, timeout):
        rounds.append(args)
        if len(rounds) == 1:
            raise subprocess.TimeoutExpired(["salt"], timeout)
        return {"master": True, "standby": True}

    monkeypatch.setattr(lab, "salt_json", salt_json)
    assert lab.ping(["master", "standby"], timeout=60) == {"master": True, "standby": True}
    assert len(rounds) == 2 and any("did not return" in line for line in printed)


def test_a_cable_cut_takes_every_cable_of_the_node_at_once():
    """One batch per kind of port (user-mode taps: bridge port state; veths:
    link down), so no cable of the node goes before another."""
    commands = net.link_commands({"hl-master-e0": True, "hl-master-e1": True}, up=False)
    assert commands == [
        (
            ["bridge", "-n", net.SWITCH, "-batch", "-"],
            "link set dev hl-master-e0 state 0\nlink set dev hl-master-e1 state 0\n",
        )
    ]
    commands = net.link_commands({"hl-dns1-e0": False}, up=True)
    assert commands == [(["ip", "-n", net.SWITCH, "-batch", "-"], "link set hl-dns1-e0 up\n")]


def test_a_user_mode_kernel_that_cannot_restore_a_large_xsave_area_is_refused():
    """The trial boot's console (captured): Linux 6.12 on a host whose XSAVE
    area is 11008 bytes (AMX) kills its first process; 7.2 runs it."""
    fixtures = REPO / "tests" / "fixtures"
    failure = umlkernel.trial_failure((fixtures / "uml-trial-6.12-xsave-11008.txt").read_text())
    assert failure is not None and "ptrace set fp regs failed, errno = 14" in failure
    assert "exitcode=0x0000000b" in failure
    assert umlkernel.trial_failure((fixtures / "uml-trial-7.2.txt").read_text()) is None
    assert umlkernel.trial_failure("Kernel panic - not syncing: VFS: Unable to mount root fs") is not None


def test_a_kernel_is_tried_once_per_host_and_one_that_failed_is_not_installed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(umlkernel, "CACHE", tmp_path)
    installs: list[Path] = []
    verdicts = iter(["its kernel cannot run a process here", None])

    def install() -> Path:
        tree = tmp_path / f"{umlkernel.PACKAGE}-{umlkernel.SUITE}-1.{len(installs)}"
        tree.mkdir()
        (tree / ".complete").write_text("1\n")
        installs.append(tree)
        return tree

    monkeypatch.setattr(umlkernel, "install", install)
    monkeypatch.setattr(umlkernel, "trial", lambda tree: next(verdicts))
    assert umlkernel.cached() is None
    assert umlkernel.ensure() is None and len(installs) == 1
    assert "cannot run" in (installs[0] / umlkernel.FAILS).read_text()
    # Remembered: not installed nor tried again (the next verdict is unused).
    assert umlkernel.ensure() is None and len(installs) == 1
    # A tree not yet tried (a cache from before the trial) is tried, not installed again.
    (installs[0] / umlkernel.FAILS).unlink()
    assert umlkernel.ensure() == installs[0] == umlkernel.cached() and len(installs) == 1
    assert not (installs[0] / umlkernel.PRELOAD).exists()


def test_a_lab_started_from_another_checkout_is_named(tmp_path):
    from lab import node

    assert node.other_checkout({}, tmp_path) is None, "no lab runs"
    assert node.other_checkout({"master": "nas", "checkout": str(tmp_path)}, tmp_path) is None
    assert node.other_checkout({"master": "nas", "checkout": "/work/wt"}, tmp_path) == "/work/wt"
    assert node.other_checkout({"master": "nas"}, tmp_path) == "an unrecorded checkout"


def test_up_refuses_a_lab_running_from_another_checkout(tmp_path, monkeypatch, capsys):
    from lab import cli, node

    monkeypatch.setattr(node, "load_state", lambda: {"master": "nas", "bare": False, "checkout": "/elsewhere"})
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lab"])
    assert exit_info.value.code == 2
    assert "the lab runs from /elsewhere: `python -m lab down` first" in capsys.readouterr().err


def test_the_agent_client_waits_for_a_late_listener_and_gives_up_after_its_bound():
    """A node whose agent does not accept yet (a starved user-mode kernel)
    is tried again; a port nobody listens on fails after the bound."""
    import socket
    import threading
    import time

    from lab import agent

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(OSError):
        agent.connect("127.0.0.1", port, within=1.5)
    assert 1.0 <= time.monotonic() - started < 3

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_late() -> None:
        time.sleep(1.2)
        server.bind(("127.0.0.1", port))
        server.listen()

    late = threading.Thread(target=listen_late)
    late.start()
    started = time.monotonic()
    try:
        with agent.connect("127.0.0.1", port, within=5):
            waited = time.monotonic() - started
    finally:
        late.join()
        server.close()
    assert 1.2 <= waited < 5
