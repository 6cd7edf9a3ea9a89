"""Introspection and self-healing on the lab: beacons, reactor, the health runner."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from lab import events
from lab.bench import held_vips, holds_vip, wait_for
from lab.topology import load
from labtools import MASTER_NODE, PREFIX, in_node, lab, salt_json

pytestmark = pytest.mark.usefixtures("running_lab")

VIPS = [vip for vips in load()[1]["vips"].values() for vip in vips]


def health() -> dict:
    # Directors on user-mode kernels take seconds to answer: more than the default 5.
    out = in_node(MASTER_NODE, "salt-run", "cluster.health", "timeout=20", "--out=json").stdout
    return json.loads(out[out.index("{") :])


def in_rotation(address: str) -> bool:
    out = in_node("client", "sh", "-c", "for i in 1 2 3; do curl -s -m 2 http://192.168.1.200/; done").stdout
    return f"{PREFIX}{address}<" in out


def test_health_runner_table_and_json():
    table = in_node(MASTER_NODE, "salt-run", "cluster.health", "timeout=20").stdout
    assert "192.168.1.200    master" in table and "\nhealthy" in table
    report = health()
    assert report["healthy"] and report["errors"] == []
    assert report["vips"] == {"192.168.1.200": ["master"], "192.168.1.202": ["master"], "10.0.100.200": ["master"]}
    assert report["vrrp"]["standby"]["INSTANCE-VI_E"] == "BACKUP"


def test_stopped_apache_is_restarted_and_back_in_rotation():
    # The listener outlasts the 40 s the recovery may take below (plus the 4 s
    # settle and a beacon interval), or a slow recovery loses its last event.
    watcher = events.listen("salt/beacon/web2/cluster_watch/service", timeout=50)
    time.sleep(4)  # the listener is connected
    started = time.monotonic()
    in_node("web2", "systemctl", "stop", "apache2")
    while not (
        in_node("web2", "systemctl", "is-active", "apache2", check=False).stdout.strip() == "active"
        and in_rotation("10.0.100.3")
    ):
        assert time.monotonic() - started < 40, "apache on web2 was not restarted and put back in rotation"
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    print(f"kill -> back in rotation: {elapsed:.1f} s")
    seen = [data for _, data in events.parse(watcher.communicate(timeout=60)[0], "salt/beacon/web2/")]
    states = [e["state"] for e in seen]
    # Transitional states (deactivating, activating) are changes too; what
    # must not happen is an event without a change.
    assert {"inactive", "failed"} & set(states) and states[-1] == "active", states
    assert seen[0]["previous"] == "active"
    for before, after in itertools.pairwise(seen):
        assert after["previous"] == before["state"] != after["state"], f"an event without a change: {states}"


def test_a_stopped_alertmanager_on_the_nas_is_started_again():
    """The nas's own daemons are watched too: Alertmanager stopped cleanly
    (systemd's Restart= leaves a clean stop alone) is started by the reactor
    on its beacon's event."""
    watcher = events.listen("salt/beacon/nas/cluster_watch/service", timeout=40)
    time.sleep(4)  # the listener is connected
    started = time.monotonic()
    in_node("nas", "systemctl", "stop", "prometheus-alertmanager")
    while in_node("nas", "systemctl", "is-active", "prometheus-alertmanager", check=False).stdout.strip() != "active":
        assert time.monotonic() - started < 30, "Alertmanager on the nas was not started again"
        time.sleep(0.5)
    print(f"stop -> active again: {time.monotonic() - started:.1f} s")
    seen = [data for _, data in events.parse(watcher.communicate(timeout=60)[0], "salt/beacon/nas/")]
    states = [(e["name"], e["state"]) for e in seen]
    assert ("prometheus-alertmanager", "inactive") in states and states[-1] == ("prometheus-alertmanager", "active")


def test_a_service_stopped_while_no_master_hears_is_started_by_the_periodic_check():
    """web2 cut off (its minion reaches no master), apache stopped there: the
    beacon's event is lost. Still down when the cable is back (nothing heard
    it); the masters' periodic check (cluster.reconcile, every 60 s) finds it
    and starts it, and the directors put web2 back in rotation."""
    lab("cut", "web2")
    try:
        in_node("web2", "systemctl", "stop", "apache2")
        time.sleep(5)  # the beacon has seen it (every second) and fired into the void
        # Nothing heard it: still down.
        assert in_node("web2", "systemctl", "is-active", "apache2", check=False).stdout.strip() != "active"
    finally:
        lab("heal", "web2")
    healed = time.monotonic()
    back = wait_for(
        lambda: (
            in_node("web2", "systemctl", "is-active", "apache2", check=False).stdout.strip() == "active"
            and in_rotation("10.0.100.3")
        ),
        100,
    )
    assert back is not None, "apache on web2 stayed down after the heal"
    print(f"heal -> back in rotation: {time.monotonic() - healed:.1f} s")


def test_a_service_drain_is_readied_by_either_masters_periodic_check():
    """A drain for a stopped service is kept on the directors, not by the
    master that made it: web2 drained as the other master's reactor or
    check drains (``for_service``), every service of web2 running, is
    readied by the periodic check of the master it answers (a minion back
    on the nas after a nas cut answers only the nas)."""
    answers = salt_json("-G", "roles:director", "balancer.set_nodes", "[web2]", "drain", "for_service=True")
    assert set(answers) == {"master", "standby"}, answers
    drained = time.monotonic()
    for director in answers:
        assert salt_json(director, "balancer.service_drained")[director] == ["web2"]
    assert not in_rotation("10.0.100.3")
    # The check runs every 60 s and waits up to 20 s for silent nodes.
    back = wait_for(lambda: in_rotation("10.0.100.3"), 150)
    assert back is not None, "web2 stayed drained"
    for director in answers:
        assert salt_json(director, "balancer.service_drained")[director] == []
    print(f"service drain -> readied by the periodic check: {time.monotonic() - drained:.1f} s")


def holds_every_vip(name: str) -> bool:
    return holds_vip(name, *VIPS)


def test_cut_master_the_runner_shows_standby_holding_every_vip():
    lab("cut", "master")
    try:
        # The addresses first (cheap to look at): a health() call waits its
        # whole timeout (20 s) for the cut director.
        assert wait_for(lambda: holds_every_vip("standby"), 60) is not None, "standby did not take the VIPs"
        deadline = time.monotonic() + 90
        while True:
            report = health()
            if all(who == ["standby"] for who in report["vips"].values()):
                break
            assert time.monotonic() < deadline, report
            time.sleep(1)
        # What the runner can really see with the master silent: the nas
        # looks at the internal segment (only the standby answers ARP for the
        # VIP there); nothing but the directors is on the external one, where
        # the cut master may well still hold the VIPs: unknown, not "no".
        internal = [vip for vip in VIPS if vip.startswith("10.")]
        assert report["split_brain"] == {vip: "no" if vip in internal else "unknown" for vip in VIPS}, report
        assert all(report["seen"][vip] == {"from": "nas", "directors": ["standby"]} for vip in internal), report
        assert any(e.startswith("master: no answer") for e in report["errors"]), report
    finally:
        lab("heal", "master")
    # Cut off, the master saw no adverts and, once it reached no server at
    # all, went to FAULT and gave its VIPs up. Healed, it waits as BACKUP
    # until its HAProxy has a server up in each backend (its checks' rise)
    # and its preempt_delay has passed, then preempts: the VIPs leave the
    # standby.
    moved_back = wait_for(lambda: holds_every_vip("master") and not held_vips("standby", VIPS), 120)
    assert moved_back is not None, "master did not take the VIPs back"
    deadline = time.monotonic() + 90
    while True:
        report = health()
        # (The reactor's count of dropped events is no concern of this test.)
        warnings = [w for w in report["warnings"] if not w.startswith("the reactor dropped")]
        if report["healthy"] and not warnings and all(w == ["master"] for w in report["vips"].values()):
            assert set(report["split_brain"].values()) == {"no"}, report
            break
        assert time.monotonic() < deadline, report
        time.sleep(1)


def state_single(target: str, *args: str) -> dict:
    # A failed state makes the salt CLI exit non-zero: the callers look at the result.
    return salt_json(target, "state.single", *args, "-t", "60", check=False)[target]


@pytest.mark.usefixtures("normal_state")
def test_drain_state_changes_once_and_takes_the_node_out():
    first = state_single("master", "cluster_lb.server_state", "name=web3", "admin_state=drain")
    (result,) = first.values()
    haproxy = {"web-http-l4", "web-http-l7", "web-https-l4"}
    ipvs = {"ipvs tcp 192.168.1.202:80 -> 10.0.100.4:80"}
    grains = salt_json("master", "grains.get", "cluster_kernel")["master"]
    assert result["result"] is True and set(result["changes"]) == (haproxy | ipvs if grains["ipvs"] else haproxy)
    if grains["ipvs"]:
        weights = {
            r["address"]: r["weight"]
            for r in next(
                s for s in salt_json("master", "ipvs.services")["master"] if s["key"] == "tcp 192.168.1.202:80"
            )["real_servers"]
        }
        assert weights == {"10.0.100.2": 1, "10.0.100.3": 1, "10.0.100.4": 0}
    (again,) = state_single("master", "cluster_lb.server_state", "name=web3", "admin_state=drain").values()
    assert again["result"] is True and again["changes"] == {}
    # A reload (a pillar edit, a package update) keeps it drained.
    in_node("master", "systemctl", "reload", "haproxy")
    try:
        out = in_node("client", "sh", "-c", "for i in 1 2 3 4 5 6; do curl -s -m 2 http://192.168.1.200/; done").stdout
        assert "10.0.100.4<" not in out and "10.0.100.2<" in out
    finally:
        (back,) = state_single("master", "cluster_lb.server_state", "name=web3", "admin_state=ready").values()
    assert back["result"] is True and back["changes"]


@pytest.mark.usefixtures("normal_state")
def test_vip_held_state_asserts_the_holder():
    (ok,) = state_single("master", "cluster_lb.vip_held", "name=192.168.1.200", "holder=master").values()
    assert ok["result"] is True
    (wrong,) = state_single("standby", "cluster_lb.vip_held", "name=192.168.1.200", "holder=standby").values()
    assert wrong["result"] is False and "standby should hold it" in wrong["comment"]
