"""Pure parts of the introspection modules, beacon and runner, on captured output."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures"


def load(path: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


haproxy_runtime = load("_modules/haproxy_runtime.py", "haproxy_runtime")
vip = load("_modules/vip.py", "vip")
cluster_watch = load("_beacons/cluster_watch.py", "cluster_watch")
runner = load("_runners/cluster.py", "cluster_runner")


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


def test_runner_reports_servers_that_are_not_up():
    held = {"standby": dict.fromkeys(VIPS, "eth0")}
    health = runner.report(VIPS, held, {}, {"standby": _rows("haproxy-show-stat-drain-maint.csv")})
    assert health["healthy"]
    assert "web-http-l4/web1 is MAINT on standby" in health["warnings"]


cluster_lb = load("_states/cluster_lb.py", "cluster_lb")


def test_server_state_plan_is_idempotent():
    rows = _rows("haproxy-show-stat-drain-maint.csv")
    assert cluster_lb.plan(rows, "web3", "drain") == {"web-http-l4": "UP", "web-https-l4": "UP"}
    assert cluster_lb.plan(rows, "web3", "ready") == {"web-http-l7": "DRAIN"}
    assert cluster_lb.plan(rows, "web1", "ready") == {"web-http-l4": "MAINT"}
    assert cluster_lb.plan(rows, "web2", "ready") == {}
