"""From bare Debian machines to the serving cluster with one command (issue 27).

The shared lab comes down and the lab boots every node bare: the same image
with no Salt settings, no keys and Salt's services off, sshd running with a
host key of the node's own. tools/bootstrap.py then runs from `operator`, an
administrator's machine on the internal network, with the inventory the lab
wrote (addresses from the topology, the pinned host keys), and must end with
the lab's `verify` table all ok. It takes half an hour, so it runs apart
from make test: `make test-bootstrap` (it brings a running lab down first,
and takes its bare lab down at the end).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from labtools import in_node, lab, servers
from rollout import DNS4, VIP, WEB4, assert_web4_and_dns4_in_rotation, edit, failed, outage, pillar_kept, under_load

pytestmark = pytest.mark.bootstrap

SAMPLE = ("nas", "master", "web1", "dns1")


@pytest.fixture(scope="module")
def bare_lab() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (namespaces, mounts, containers)")
    lab("down", timeout=300)
    lab("up", "--bare", timeout=900)
    yield
    if os.environ.get("HALAB_KEEP") != "1":
        lab("down", timeout=300, check=False)


@pytest.fixture(scope="module")
def first_run(bare_lab: None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = lab("bootstrap", timeout=2400, check=False)
    return proc, time.monotonic() - started


def test_bare_nodes_have_no_salt_settings_and_only_sshd(bare_lab):
    script = "ls /etc/salt/minion.d /etc/salt/pki 2>&1; systemctl is-active salt-minion salt-master ssh"
    host_keys = set()
    for node in SAMPLE:
        out = in_node(node, "sh", "-c", script, check=False).stdout.split("\n")
        assert out[:2] == [
            "ls: cannot access '/etc/salt/minion.d': No such file or directory",
            "ls: cannot access '/etc/salt/pki': No such file or directory",
        ], (node, out)
        assert out[2:5] == ["inactive", "inactive", "active"], (node, out)
        host_keys.add(in_node(node, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1])
    assert len(host_keys) == len(SAMPLE), "every node has a host key of its own"


def test_one_command_makes_the_verified_cluster(first_run):
    proc, seconds = first_run
    print(f"bare nodes to a bootstrapped cluster: {seconds:.0f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "orchestration" in proc.stdout and "FAILED" not in proc.stdout
    verify = lab("verify", timeout=1200)  # fails on any check not ok
    for row in ("HTTP :80 round robin via 192.168.1.200", "web1 got 10.0.100.2 by DHCP", "0 pending changes"):
        assert row in verify.stdout


def test_the_masters_accept_exactly_the_keys_made_on_the_nodes(first_run):
    for node in ("web1", "dns2", "standby"):
        made = in_node(node, "cat", "/etc/salt/pki/minion/minion.pub").stdout
        accepted = in_node("nas", "cat", f"/etc/salt/pki/master/minions/{node}").stdout
        assert made.strip() == accepted.strip() and "BEGIN PUBLIC KEY" in made
    assert in_node("nas", "ls", "-A", "/etc/salt/pki/master/minions_pre").stdout.strip() == ""
    assert "auto_accept: false" in in_node("nas", "cat", "/etc/salt/master.d/cluster.conf").stdout
    # Each minion pins the master's key: the fingerprint Salt's minion checks
    # it against (salt.utils.crypt.pem_finger of the key file). salt-key
    # 3008 prints another one for the master's own keys (it hashes the PEM
    # headers too).
    pem_finger = "import salt.utils.crypt as c; print(c.pem_finger('/etc/salt/pki/master/master.pub'))"
    finger = in_node("nas", "/opt/salt/bin/python", "-c", pem_finger).stdout.strip()
    assert len(finger.split(":")) == 32, finger
    conf = in_node("web1", "cat", "/etc/salt/minion.d/cluster.conf").stdout
    assert f"master_finger: {finger}" in conf
    # The secrets were made on the master, outside the checkout it serves.
    mode = in_node("nas", "stat", "-c", "%a", "/etc/salt/cluster-secrets/secrets.sls").stdout.strip()
    assert mode == "600"
    assert in_node("nas", "test", "-e", "/srv/cluster/pillar/secrets.sls", check=False).returncode == 1


def test_a_second_run_changes_nothing(first_run):
    started = time.monotonic()
    proc = lab("bootstrap", timeout=2400, check=False)
    print(f"second run: {time.monotonic() - started:.0f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.split()[:1] and line.split()[0] in SAMPLE]
    assert len(rows) == len(SAMPLE), proc.stdout
    assert all(row.split()[1:] == ["ok,", "no", "change"] for row in rows), proc.stdout
    assert "changed" not in proc.stdout


def test_a_node_whose_host_key_differs_from_the_pinned_one_is_refused(first_run):
    """An impostor at web1's address (here: web1 answering with dns1's pinned
    key in the inventory): no session, nothing changed, the node named."""
    dns1_key = "$(awk '/^  dns1:/{getline; print substr($0, index($0, \"ssh-\"))}' /root/inventory.yaml)"
    script = (
        f"key={dns1_key}; "
        'awk -v k="$key" \'/^  web1:/{print; getline; print "    host_key: " k; next} {print}\' '
        "/root/inventory.yaml > /root/impostor.yaml && "
        "/opt/salt/bin/python /srv/cluster/tools/bootstrap.py --workdir /root/impostor --only web1 /root/impostor.yaml"
    )
    before = in_node("web1", "stat", "-c", "%Y", "/etc/salt/minion.d/cluster.conf").stdout
    proc = in_node("operator", "sh", "-c", script, check=False, timeout=900)
    assert proc.returncode != 0
    row = next(line for line in proc.stdout.splitlines() if line.startswith("web1"))
    assert "FAILED" in row and "Host key verification failed" in row, proc.stdout + proc.stderr
    assert in_node("web1", "stat", "-c", "%Y", "/etc/salt/minion.d/cluster.conf").stdout == before


def test_an_unreachable_node_is_named_with_its_ssh_error(first_run):
    lab("cut", "dns3")
    try:
        proc = lab("bootstrap", "--only", "dns3", timeout=900, check=False)
    finally:
        lab("heal", "dns3")
    assert proc.returncode != 0
    row = next(line for line in proc.stdout.splitlines() if line.startswith("dns3"))
    assert "FAILED" in row and "ssh" in row.lower() and "10.0.100.7" in row, proc.stdout


def test_servers_added_to_the_topology_join_through_the_same_command(first_run):
    """web4 and dns4 added to the pillar, booted bare (`lab up --bare` adds
    them to the running lab and to the operator's inventory), then the same
    command: they get their leases, their Salt and their keys, and the
    orchestration puts them into rotation (HAProxy, IPVS's DNS service, the
    monitoring server's targets) while the client's probes see no failed
    request. The other nodes' rows say what the addition changed on them."""
    with pillar_kept():
        edit(lambda nodes: nodes.update(web4=WEB4, dns4=DNS4))
        lab("up", "--bare", timeout=900)
        inventory = in_node("operator", "cat", "/root/inventory.yaml").stdout
        assert "web4:" in inventory and "dns4:" in inventory, inventory
        assert "10.0.100.8" not in servers(f"http://{VIP}/", 12), "web4 serves before it joined"
        runs: list[subprocess.CompletedProcess] = []
        probes = under_load(lambda: runs.append(lab("bootstrap", timeout=2400, check=False)))
        proc = runs[0]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split()[:1]}
        assert "changed" in rows["web4"] and "changed" in rows["dns4"], proc.stdout
        # Nodes the addition does not concern: nothing to do on them.
        for name in ("web1", "dns2"):
            assert rows[name].split()[1:] == ["ok,", "no", "change"], proc.stdout
        assert failed(probes) == [], outage(probes)
        assert_web4_and_dns4_in_rotation()
        accepted = in_node("nas", "salt-key", "-l", "accepted").stdout.split()
        assert {"web4", "dns4"} <= set(accepted), accepted
