"""_modules/minion_health.py: the minion's connection to its masters, read
from a /proc/net/tcp table captured on the lab's web1 (its minion connected
to the master at 10.0.100.100, publish port 4505), and the textfile it writes."""

from __future__ import annotations

import pytest

from conftest import REPO, load_module

health = load_module("_modules/minion_health.py", "minion_health")
TABLE = REPO / "tests" / "fixtures" / "proc-net-tcp-web1.txt"


def test_established_connections_are_read_and_listeners_are_not():
    peers = health.established(TABLE.read_text())
    # The minion's publish and request connections to the master.
    assert {("10.0.100.100", 4505), ("10.0.100.100", 4506)} <= peers
    # Listening sockets (state 0A) have no peer: 0.0.0.0:0 never appears.
    assert ("0.0.0.0", 0) not in peers


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    monkeypatch.setattr(health, "TCP_TABLE", str(TABLE))
    settings = {"textfile_dir": str(textfiles)}
    monkeypatch.setattr(health, "__salt__", {"cluster.settings": lambda formula, defaults: settings}, raising=False)
    return textfiles, settings


def samples(path) -> dict[str, float]:
    lines = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in lines}


@pytest.mark.parametrize(("masters", "connected"), [(["10.0.100.100"], True), (["10.0.100.5", "10.0.100.100"], True)])
def test_a_minion_connected_to_one_of_its_masters_says_so(loaded, monkeypatch, masters, connected):
    textfiles, _ = loaded
    monkeypatch.setattr(health, "__opts__", {"master": masters, "publish_port": 4505}, raising=False)
    assert health.write() == {"connected": connected, "written": str(textfiles / "salt_minion.prom")}
    written = samples(textfiles / "salt_minion.prom")
    assert written["salt_minion_master_connected"] == 1.0
    assert written["salt_minion_checked_timestamp_seconds"] > 1.7e9
    assert (textfiles / "salt_minion.prom").stat().st_mode & 0o044 == 0o044, "the exporter's user cannot read it"
    assert sorted(p.name for p in textfiles.iterdir()) == ["salt_minion.prom"]


def test_a_minion_whose_master_is_elsewhere_is_not_connected(loaded, monkeypatch):
    textfiles, _ = loaded
    monkeypatch.setattr(health, "__opts__", {"master": "10.0.100.5", "publish_port": 4505}, raising=False)
    assert health.write()["connected"] is False
    assert samples(textfiles / "salt_minion.prom")["salt_minion_master_connected"] == 0.0


def test_nothing_is_written_without_a_node_exporter(loaded, monkeypatch):
    textfiles, settings = loaded
    settings["textfile_dir"] = str(textfiles / "absent")
    monkeypatch.setattr(health, "__opts__", {"master": "10.0.100.100"}, raising=False)
    assert health.write() == {"connected": True, "written": None}
    assert list(textfiles.iterdir()) == []
