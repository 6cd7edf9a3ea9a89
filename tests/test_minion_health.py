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


# Salt's failover masters, one step per run of the minion's schedule.
@pytest.mark.parametrize(
    ("current", "connected", "step"),
    [
        ("10.0.100.100", {"10.0.100.100"}, None),  # on the first master, connected
        ("10.0.100.100", set(), "disconnected"),  # the first master's connection gone
        ("10.0.100.5", {"10.0.100.5"}, "failback"),  # on the second: ask the first
        ("10.0.100.5", set(), "disconnected"),  # the second one gone too
    ],
)
def test_each_state_of_the_connection_gives_its_failover_step(current, connected, step):
    assert health.failover_step(current, "10.0.100.100", connected) == step


def test_only_salts_own_master_checks_are_stale_jobs():
    names = ["__master_alive_10.0.100.100", "__master_alive", "__master_failback", "cluster-minion-health", "x"]
    assert health.stale_jobs(names) == ["__master_alive", "__master_alive_10.0.100.100", "__master_failback"]


@pytest.fixture
def failover(monkeypatch):
    """The module with Salt's functions recorded instead of run, and the
    captured table (connected to 10.0.100.100's publish port)."""
    calls: list[tuple] = []
    monkeypatch.setattr(health, "TCP_TABLE", str(TABLE))
    salt = {
        "event.fire": lambda data, tag: calls.append(("event.fire", data, tag)) or True,
        "status.ping_master": lambda master: calls.append(("ping", master)) or True,
        "schedule.delete": lambda name, persist: calls.append(("delete", name, persist)) or {"result": True},
    }
    monkeypatch.setattr(health, "__salt__", salt, raising=False)
    return calls


def opts(current, schedule=None, masters=("10.0.100.100", "10.0.100.5"), master_type="failover"):
    return {
        "master": current,
        "master_list": list(masters),
        "master_type": master_type,
        "publish_port": 4505,
        "ret_port": 4506,
        "schedule": schedule or {},
    }


@pytest.mark.parametrize(("answers", "step"), [(True, "disconnected"), (False, None)])
def test_a_minion_whose_master_went_away_moves_only_to_one_that_answers(failover, monkeypatch, answers, step):
    # The table holds no connection to 10.0.100.5's publish port.
    monkeypatch.setattr(health, "__opts__", opts("10.0.100.5"), raising=False)
    probed = []
    monkeypatch.setattr(health, "_answers", lambda address, port: probed.append((address, port)) or answers)
    assert health._failover() == step
    assert probed == [("10.0.100.100", 4506)]
    assert failover == ([("event.fire", {"master": "10.0.100.5"}, "__master_disconnected")] if answers else [])


def test_a_minion_on_its_first_master_does_nothing_but_drop_salts_stale_checks(failover, monkeypatch):
    schedule = {"__master_alive_10.0.100.5": {}, "cluster-minion-health": {}}
    monkeypatch.setattr(health, "__opts__", opts("10.0.100.100", schedule), raising=False)
    assert health._failover() is None
    assert failover == [("delete", "__master_alive_10.0.100.5", True)]


@pytest.mark.parametrize(("answers", "step"), [(True, "failback"), (False, None)])
def test_a_minion_on_a_later_master_asks_the_first_only_when_it_answers(failover, monkeypatch, answers, step):
    # Connected (per the table) to 10.0.100.100, listed second here.
    monkeypatch.setattr(health, "__opts__", opts("10.0.100.100", masters=("10.0.100.7", "10.0.100.100")), raising=False)
    probed = []
    monkeypatch.setattr(health, "_answers", lambda address, port: probed.append((address, port)) or answers)
    assert health._failover() == step
    assert probed == [("10.0.100.7", 4506)]
    assert failover == ([("ping", "10.0.100.7")] if answers else [])


@pytest.mark.parametrize("settings", [opts("10.0.100.5", master_type="str"), opts("10.0.100.5", masters=["x"])])
def test_a_minion_without_failover_masters_is_left_to_salt(failover, monkeypatch, settings):
    monkeypatch.setattr(health, "__opts__", settings, raising=False)
    assert health._failover() is None
    assert failover == []


def test_a_check_reads_the_connections_once(failover, loaded, monkeypatch):
    # On a later master (10.0.100.100, listed second), connected to it: the
    # metrics and the failover step come from one reading of the table.
    monkeypatch.setattr(health, "__opts__", opts("10.0.100.100", masters=("10.0.100.7", "10.0.100.100")), raising=False)
    salt = {**health.__salt__, "cluster.settings": lambda formula, defaults: {"textfile_dir": str(loaded[0])}}
    monkeypatch.setattr(health, "__salt__", salt, raising=False)
    monkeypatch.setattr(health, "_answers", lambda address, port: False)
    reads = []
    established = health.established
    monkeypatch.setattr(health, "established", lambda table: reads.append(1) or established(table))
    assert health.check() == {"connected": True, "written": str(loaded[0] / "salt_minion.prom"), "failover": None}
    assert len(reads) == 1
