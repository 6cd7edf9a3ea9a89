"""The apache_conf state's own logic, without Salt: which link says a module,
site or conf is enabled, and what a run reports when that link is there, in
test mode, or with a bad kind (a2enmod itself runs in the lab: test_formulas)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import load_module

apache_conf = load_module("_states/apache_conf.py", "apache_conf")


@pytest.fixture
def state(tmp_path: Path):
    """The module with Salt's dunders set; no __salt__ functions: a test that
    reached a2enmod would fail on the missing cmd.run_all."""
    apache_conf.__opts__ = {"test": False}
    apache_conf.__salt__ = {}
    apache_conf.__grains__ = {"os_family": "Debian"}
    for sub in ("mods-enabled", "sites-enabled", "conf-enabled"):
        (tmp_path / sub).mkdir()
    return apache_conf


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("module", "mods-enabled/ssl.load"), ("site", "sites-enabled/ssl.conf"), ("conf", "conf-enabled/ssl.conf")],
)
def test_the_link_that_says_enabled(kind, expected):
    assert apache_conf.enabled_path("ssl", kind, "/etc/apache2") == f"/etc/apache2/{expected}"


def test_a_bad_kind_is_refused_naming_the_field_and_value(state, tmp_path: Path):
    ret = state.enabled("ssl", kind="modules", confdir=str(tmp_path))
    assert ret["result"] is False and ret["changes"] == {}
    assert "kind" in ret["comment"] and "'modules'" in ret["comment"] and "module, site, conf" in ret["comment"]


def test_an_enabled_module_is_left_alone(state, tmp_path: Path):
    (tmp_path / "mods-available").mkdir()
    (tmp_path / "mods-available" / "ssl.load").write_text("LoadModule ssl_module x\n")
    (tmp_path / "mods-enabled" / "ssl.load").symlink_to("../mods-available/ssl.load")
    ret = state.enabled("ssl", kind="module", confdir=str(tmp_path))
    assert ret == {"name": "ssl", "changes": {}, "result": True, "comment": "Apache module ssl is already enabled"}


def test_test_mode_reports_the_pending_change_and_runs_nothing(state, tmp_path: Path):
    state.__opts__["test"] = True
    ret = state.enabled("default-ssl", kind="site", confdir=str(tmp_path))
    assert ret["result"] is None and ret["changes"] == {"enabled": "default-ssl"}
    assert not (tmp_path / "sites-enabled" / "default-ssl.conf").exists()


def test_a_dangling_link_is_not_taken_for_enabled(state, tmp_path: Path):
    (tmp_path / "mods-enabled" / "gone.load").symlink_to("../mods-available/gone.load")
    state.__opts__["test"] = True
    assert state.enabled("gone", kind="module", confdir=str(tmp_path))["result"] is None
