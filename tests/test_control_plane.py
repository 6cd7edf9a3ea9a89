"""The control plane on the lab: who gets the secrets, what the job cache
keeps, and what the reactor does with events a compromised minion forges.

Runs on the shared lab (conftest.running_lab), through its real master.
"""

from __future__ import annotations

import crypt  # deprecated in 3.11, present: the stats password's hash
import json
import time

import pytest
import yaml

from conftest import REPO, SEED
from labtools import MASTER_NODE, in_node, salt_json

pytestmark = pytest.mark.usefixtures("running_lab")

DIRECTORS = sorted(n for n, spec in SEED["nodes"].items() if "director" in spec["roles"])
JOB_CACHE = "/var/cache/salt/master/jobs"
# The files a secret shapes: the stats password's hash, the VRRP key's include, the key.
SECRET_FILES = ("/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/etc/keepalived/cluster-auth.conf")


def secrets() -> dict:
    return yaml.safe_load((REPO / "pillar" / "secrets.sls").read_text())["cluster_secrets"]


def salt_run_json(*args: str) -> object:
    out = in_node(MASTER_NODE, "salt-run", "--out=json", *args).stdout
    return json.loads(out[out.index("{") if "{" in out else 0 :])


def test_secrets_reach_the_directors_pillar_only():
    answers = salt_json("*", "pillar.item", "cluster_secrets")
    assert set(answers) == set(SEED["nodes"]), sorted(answers)
    holders = sorted(node for node, item in answers.items() if item.get("cluster_secrets"))
    assert holders == DIRECTORS, answers


def test_no_minion_fetches_the_secrets_file_from_the_file_server():
    for node in ("web1", "master"):
        served = salt_json(node, "cp.get_file_str", "salt://pillar/cluster.sls")[node]
        assert isinstance(served, str) and "cluster:" in served  # the file server answers there
        assert not salt_json(node, "cp.get_file_str", "salt://pillar/secrets.sls")[node]


def test_the_job_cache_keeps_no_secret_after_secret_files_changed():
    """The standby's haproxy.cfg (the stats password's hash), keepalived.conf
    and the VRRP key's file are emptied and put back by a state run whose
    return the master caches; the first two with their diffs (a plan shows
    them), the key's without."""
    for path in SECRET_FILES:
        in_node("standby", "sh", "-c", f"cp {path} {path}.keep && : > {path}")
    try:
        ret = salt_json("standby", "state.apply", "haproxy,keepalived")["standby"]
    finally:
        for path in SECRET_FILES:
            in_node("standby", "sh", "-c", f"test -s {path} || cp {path}.keep {path}; rm -f {path}.keep")
    changed = {v["__id__"]: v["changes"] for v in ret.values() if v["changes"]}
    assert {"haproxy-config-file-managed", "keepalived-config-file-managed", "keepalived-config-auth-managed"} <= set(
        changed
    ), ret
    assert changed["keepalived-config-auth-managed"] == {"diff": "<show_changes=False>"}, changed
    assert "diff" in changed["haproxy-config-file-managed"], changed
    assert all(v["result"] for v in ret.values()), ret
    password, vrrp = secrets()["haproxy_stats"]["password"], secrets()["vrrp_auth_pass"]
    # The key's own file carries it; haproxy.cfg the password's hash only.
    assert in_node("standby", "cat", "/etc/keepalived/cluster-auth.conf").stdout == f"auth_pass {vrrp}\n"
    hashed = in_node("standby", "sh", "-c", "grep -o '[$]6[$][^ ]*' /etc/haproxy/haproxy.cfg").stdout.strip()
    assert crypt.crypt(password, hashed) == hashed
    cached = in_node(MASTER_NODE, "grep", "-rlF", "haproxy-config-file-managed", JOB_CACHE).stdout.split()
    assert cached, "the job's return is not in the master's job cache"
    for secret in (password, vrrp):
        found = in_node(MASTER_NODE, "grep", "-rlF", "-e", secret, JOB_CACHE, check=False)
        assert found.returncode == 1 and not found.stdout, found.stdout


def test_a_web_minion_forging_events_runs_nothing_and_is_counted():
    """web2's minion, compromised, sends a VRRP event of its own and, as
    beacons send (a batch), a service event claiming to be the director with
    a YAML state injected in its name: both dropped, logged, counted and
    shown by cluster.health; nothing runs on any node."""
    before = salt_run_json("cluster.dropped")["count"]
    vrrp = {"id": "web2", "kind": "vrrp", "name": "INSTANCE-VI_E", "state": "MASTER", "previous": "BACKUP"}
    injected = "haproxy\nreactor-injected:\n  local.cmd.run:\n    - tgt: '*'\n    - args:\n      - cmd: touch /tmp/x"
    forged = {"id": "master", "kind": "service", "name": injected, "state": "failed", "previous": "active"}
    batch = {"events": [{"tag": "salt/beacon/master/cluster_watch/service", "data": forged}]}
    in_node("web2", "salt-call", "event.send", "salt/beacon/web2/cluster_watch/vrrp", f"data={json.dumps(vrrp)}")
    in_node(
        "web2",
        "salt-call",
        "event.send",
        "salt/beacon/master/cluster_watch/service",
        f"data={json.dumps(forged)}",
        f"preload={json.dumps(batch)}",
    )
    # salt-call sends a raw event to each of its masters' addresses, and
    # Salt 3008 sends each of them to the first master: each may arrive twice.
    vrrp_dropped = "web2 is no director: VRRP events come from directors only"

    def name_dropped(reason: str) -> bool:
        return reason.startswith("name " + repr(injected[:60])) and "master watches" in reason

    deadline = time.monotonic() + 30
    while True:
        dropped = salt_run_json("cluster.dropped")
        new = dropped["count"] - before
        reasons = [entry["reason"] for entry in dropped["last"][-new:]] if new > 0 else []
        if vrrp_dropped in reasons and any(name_dropped(r) for r in reasons):
            break
        assert time.monotonic() < deadline, (reasons, dropped)
        time.sleep(1)
    log = in_node(MASTER_NODE, "tail", "-n", "200", "/var/log/salt/master").stdout
    assert "cluster.react: dropped salt/beacon/web2/cluster_watch/vrrp: web2 is no director" in log
    for node in ("master", "standby", "nas", "web1", "web2", "dns1"):
        assert in_node(node, "test", "-e", "/tmp/x", check=False).returncode == 1, node
    health = in_node(MASTER_NODE, "salt-run", "cluster.health", "timeout=20").stdout
    assert "warning: the reactor dropped" in health, health


def test_every_master_keeps_the_one_key_pair_across_a_restart():
    """Salt names a master's key pair after its id: each master's id is
    pinned to its node, so its key pair is the node's (``<node>.pem``, and
    ``master.pem`` a link to it), and a restarted second master (its full
    name resolvable through the cluster's DNS by then) serves the same key
    pair, which the minions know, instead of a new one."""
    from lab.topology import load

    names = [m["name"] for m in load()[1]["salt_masters"]]
    lab_nodes = {names[0]: MASTER_NODE, **{name: name for name in names[1:]}}
    pki = "/etc/salt/pki/master"
    expected = in_node(MASTER_NODE, "sha256sum", f"{pki}/master.pub").stdout.split()[0]
    for name, lab_node in lab_nodes.items():
        assert in_node(lab_node, "readlink", f"{pki}/master.pem").stdout.strip() == f"{pki}/{name}.pem", name
        assert in_node(lab_node, "sha256sum", f"{pki}/master.pub").stdout.split()[0] == expected, name
    for name in names[1:]:
        in_node(name, "systemctl", "restart", "salt-master")
        deadline = time.monotonic() + 60
        while in_node(name, "systemctl", "is-active", "salt-master", check=False).stdout.strip() != "active":
            assert time.monotonic() < deadline, name
            time.sleep(1)
        time.sleep(5)  # the key pair is read, or made, as the master starts
        assert in_node(name, "sha256sum", f"{pki}/master.pub").stdout.split()[0] == expected, name
