"""Shared fixtures: the seed topology and a real `salt-call --local` per node."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def load_module(path: str, name: str) -> types.ModuleType:
    """A repo file (a Salt module, grain, formula script) imported on its own, for its pure parts."""
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(REPO / "_modules"))
sys.path.insert(0, str(REPO))

SALT_CALL = str(Path(sys.executable).with_name("salt-call"))


def load_seed() -> dict:
    with open(REPO / "pillar" / "cluster.sls", encoding="utf-8") as handle:
        return yaml.safe_load(handle)["cluster"]


SEED = load_seed()


@pytest.fixture
def topology() -> dict:
    """A fresh copy of the seed topology, free to mutate."""
    return copy.deepcopy(SEED)


@pytest.fixture(scope="session")
def secrets_pillar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A secrets pillar file made by the project's own generator."""
    sys.path.insert(0, str(REPO / "tools"))
    import gen_secrets

    path = tmp_path_factory.mktemp("secrets") / "secrets.sls"
    gen_secrets.generate(path)
    return path


class SaltCall:
    """Runs the real salt-call CLI with the repo's config, as one node."""

    def __init__(self, root: Path, secrets: Path) -> None:
        self.root = root
        self.secrets = secrets
        self.count = 0

    def pillar(self, topology: dict | None = None, secrets: str | None = None) -> Path:
        """A pillar root holding the repo's top.sls, a topology and secrets."""
        self.count += 1
        path = self.root / f"pillar{self.count}"
        # The repo's pillar tree (top, beacons ...), then this test's topology and secrets.
        shutil.copytree(REPO / "pillar", path, ignore=shutil.ignore_patterns("secrets.sls"))
        if topology is None:
            (path / "cluster.sls").write_text((REPO / "pillar" / "cluster.sls").read_text())
        else:
            (path / "cluster.sls").write_text(yaml.safe_dump({"cluster": topology}))
        (path / "secrets.sls").write_text(secrets if secrets is not None else self.secrets.read_text())
        return path

    def config(
        self,
        node: str | None = None,
        roles: list[str] | None = None,
        pillar: Path | None = None,
        grains: dict | None = None,
    ) -> Path:
        """A salt-call configuration directory: the repo's, as ``node``."""
        self.count += 1
        conf = self.root / f"conf{self.count}"
        (conf / "minion.d").mkdir(parents=True)
        (conf / "minion").write_text((REPO / "etc" / "salt" / "minion").read_text())
        # __fs_update: the flag Salt's local file client sets once it has
        # walked every file root (the repo root holds .venv: about a second
        # of each call); a fresh root_dir has no file cache to refresh.
        override: dict = {"root_dir": str(conf / "root"), "__fs_update": True}
        if node is not None:
            override["id"] = node
            override["grains"] = {
                "roles": roles if roles is not None else SEED["nodes"][node]["roles"],
                **(grains or {}),
            }
        override["pillar_roots"] = {"base": [str(pillar or self.pillar())]}
        (conf / "minion.d" / "test.conf").write_text(yaml.safe_dump(override))
        return conf

    def __call__(
        self,
        *args: str,
        node: str | None = None,
        roles: list[str] | None = None,
        pillar: Path | None = None,
        grains: dict | None = None,
    ) -> tuple[int, object, str]:
        """Run salt-call; return (exit code, the parsed 'local' return, stderr)."""
        conf = self.config(node, roles, pillar, grains)
        proc = subprocess.run(
            [SALT_CALL, "-c", str(conf), "--local", "--out=json", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        try:
            result = json.loads(proc.stdout)["local"] if proc.stdout.strip() else None
        except (json.JSONDecodeError, KeyError):
            result = proc.stdout
        return proc.returncode, result, proc.stderr


@pytest.fixture
def salt_call(tmp_path: Path, secrets_pillar: Path) -> Callable[..., tuple[int, object, str]]:
    return SaltCall(tmp_path, secrets_pillar)


@pytest.fixture(scope="session")
def running_lab() -> Iterator[subprocess.CompletedProcess]:
    """One lab for every integration test of the session (built once, cold or warm),
    by `make lab`'s own job (`python -m lab lab`: up, highstate, verify, status),
    which must succeed; its output is the fixture's value, for the tests of
    what it reports.

    tests/test_zz_lab_down.py takes it down last and checks nothing is left;
    this teardown only makes sure, should that test not run. HALAB_KEEP=1
    leaves it up (when working on one test file against a running lab).
    """
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (namespaces, mounts, containers)")
    from lab import node
    from lab.salt_control import RETRY_NOTE
    from lab.topology import REPO
    from labtools import lab, wait_until_serving

    other = node.other_checkout(node.load_state(), REPO)
    if other:
        # make test owns the host's one lab and takes it down at the end
        # anyway: one started from elsewhere would test that tree's states.
        warnings.warn(f"a lab from {other} was running: taken down first", stacklevel=2)
        lab("down", timeout=300)
    built = lab("lab", timeout=2400)
    retried = [line for line in built.stdout.splitlines() if RETRY_NOTE in line]
    if retried:
        # The lab came up, so the tests run; but a first highstate failed and
        # passed only when applied again: shown in the session's warnings.
        note = f"make lab applied a failed highstate again: {retried}; its output:\n{built.stdout}"
        warnings.warn(note, stacklevel=2)
    wait_until_serving(timeout=120)
    yield built
    if os.environ.get("HALAB_KEEP") != "1":
        lab("down", timeout=300, check=False)


@pytest.fixture
def normal_state(running_lab: subprocess.CompletedProcess) -> None:
    """A test that asserts through the VIPs which director or server answers
    starts from the cluster's normal state (labtools.wait_until_serving)."""
    from labtools import wait_until_serving

    wait_until_serving()


@pytest.fixture(scope="session")
def salt_factories_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """pytest-salt-factories' daemons keep their trees under pytest's tmp, not /tmp."""
    return {"root_dir": tmp_path_factory.mktemp("salt-factories")}


# --- what the directors were doing when a lab test failed ------------------------

# Shown at the end of the session (the part of a CI log that is kept): each
# director's VRRP states, the addresses it holds, keepalived's processes (a
# blocked one shows its kernel wait channel) and its last journal lines.
DIRECTOR_SNAPSHOT = r"""
cat /run/keepalived-cluster/GROUP-* /run/keepalived-cluster/INSTANCE-* 2>/dev/null | tr '\n' ' '; echo
ip -br -4 addr show | grep -v '^lo '
for p in $(pgrep -x keepalived); do echo "pid $p $(cat /proc/$p/wchan) $(cut -d' ' -f3 /proc/$p/stat)"; done
journalctl -u keepalived -n 25 -o short-precise --no-pager | cut -c8-180
"""
SNAPSHOTS: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or "running_lab" not in getattr(item, "fixturenames", ()) or len(SNAPSHOTS) >= 3:
        return
    from lab.topology import load
    from labtools import in_node

    lines = [f"--- directors when {item.nodeid} failed ({report.when})"]
    for director in load()[1]["roles"]["director"]:
        try:
            out = in_node(director, "sh", "-c", DIRECTOR_SNAPSHOT, check=False, timeout=30).stdout
        except Exception as exc:  # a snapshot must not hide the failure
            out = f"no snapshot: {exc}"
        lines += [f"[{director}]", out.rstrip()]
    SNAPSHOTS.append("\n".join(lines))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for snapshot in SNAPSHOTS:
        terminalreporter.write_line(snapshot)
