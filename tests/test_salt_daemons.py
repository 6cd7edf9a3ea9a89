"""The custom modules, the beacon and the reactor with a real Salt master and
minions (pytest-salt-factories) and a real HAProxy, all on loopback.

The director minion is called ``master`` (a director of the seed topology)
and watches a HAProxy started here: two backends of the model's web servers,
health-checked against small HAProxy frontends that stand in for the web
servers, with an admin socket in the test's directory
(``haproxy_runtime.socket``). The reactor files are the repo's, mapped by the
repo's etc/salt/master.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import haproxy_runtime  # _modules/, on the path by conftest: the runtime API client and its parser
import pytest
import yaml

from conftest import REPO

WEBS = ("web1", "web2", "web3")
BACKENDS = ("web-http-l7", "web-https-l4")
BEACON = "salt/beacon/master/cluster_watch/backend"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HAProxy:
    """A real HAProxy on loopback: the model's web servers in two backends."""

    def __init__(self, root: Path) -> None:
        self.sock = str(root / "admin.sock")
        self.ports = {web: free_port() for web in WEBS}
        lines = [
            "global",
            f"    stats socket {self.sock} mode 600 level admin",
            "defaults",
            "    mode http",
            "    timeout connect 1s",
            "    timeout client 5s",
            "    timeout server 5s",
        ]
        for web, port in self.ports.items():
            # Stand-ins for the web servers; "disable frontend" makes one fail its check.
            lines += [
                f"frontend app-{web}",
                f"    bind 127.0.0.1:{port}",
                f"    http-request return status 200 content-type text/plain string {web}",
            ]
        for backend in BACKENDS:
            lines += [f"backend {backend}", "    option httpchk GET /"]
            lines.append("    default-server check inter 200 fall 1 rise 1")
            lines += [f"    server {web} 127.0.0.1:{port}" for web, port in self.ports.items()]
        self.config = root / "haproxy.cfg"
        self.config.write_text("\n".join(lines) + "\n")
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], check=True)
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not Path(self.sock).exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)

    def command(self, cmd: str) -> str:
        return haproxy_runtime.command(cmd, self.sock)

    def status(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> the first word of its status (UP, DOWN, DRAIN, MAINT)."""
        rows = haproxy_runtime.parse_stat(self.command("show stat -1 4 -1"))
        return {(r["backend"], r["server"]): r["status"].split()[0] for r in rows if r["server"] in WEBS}

    def wait(self, expected: dict[tuple[str, str], str], timeout: float) -> dict[tuple[str, str], str]:
        deadline = time.monotonic() + timeout
        while True:
            now = self.status()
            if all(now.get(key) == state for key, state in expected.items()) or time.monotonic() > deadline:
                return now
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def everywhere(server: str, state: str) -> dict[tuple[str, str], str]:
    return {(backend, server): state for backend in BACKENDS}


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    if not shutil.which("haproxy"):
        pytest.fail("these tests need HAProxy (Debian package haproxy; .ci/run installs it)")
    proxy = HAProxy(tmp_path_factory.mktemp("haproxy"))
    try:
        up = {(b, w): "UP" for b in BACKENDS for w in WEBS}
        assert proxy.wait(up, timeout=15) == up
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def salt_master(salt_factories, tmp_path_factory: pytest.TempPathFactory, secrets_pillar: Path):
    """A master with the repo's file roots, reactor map and presence settings,
    and a pillar of the seed topology and generated secrets."""
    repo_conf = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())
    pillar = tmp_path_factory.mktemp("pillar")
    shutil.copy(REPO / "pillar" / "cluster.sls", pillar / "cluster.sls")
    shutil.copy(secrets_pillar, pillar / "secrets.sls")
    (pillar / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["cluster", "secrets"]}}))
    # The Salt tree this needs (custom modules and reactor files), without
    # the rest of the checkout (.venv ...) for the fileserver to walk.
    roots = tmp_path_factory.mktemp("file_roots")
    for tree in ("_modules", "_beacons", "_states", "reactor"):
        (roots / tree).symlink_to(REPO / tree)
    overrides = {
        "file_roots": {"base": [str(roots)]},
        "pillar_roots": {"base": [str(pillar)]},
        **{key: repo_conf[key] for key in ("reactor", "presence_events", "loop_interval")},
    }
    factory = salt_factories.salt_master_daemon("halab-test-master", overrides=overrides)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="module")
def director(salt_master, haproxy: HAProxy):
    """The minion `master` (roles: director) watching the test's HAProxy."""
    overrides = {
        # Salt's default (salt-factories sets 0.05): beacon intervals count
        # minion loops of this length, though the loop runs once a second.
        "loop_interval": 1,
        "grains": {"roles": ["director"]},
        "haproxy_runtime.socket": haproxy.sock,
        "beacons": {"cluster_watch": [{"interval": 1}, {"haproxy": True}]},
    }
    factory = salt_master.salt_minion_daemon("master", overrides=overrides)
    with factory.started(start_timeout=120):
        sync = salt_master.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt="master")
        assert sync.returncode == 0, sync
        yield factory


@pytest.fixture(scope="module")
def salt_run(salt_master):
    return salt_master.salt_run_cli(timeout=120)


@pytest.fixture(scope="module")
def salt(salt_master):
    return salt_master.salt_cli(timeout=120)


def test_modules_answer_through_the_master(salt, director, haproxy: HAProxy):
    assert salt.run("cluster.validate", minion_tgt="master").data is True

    rows = salt.run("haproxy_runtime.servers", minion_tgt="master").data
    assert {(r["backend"], r["server"]): r["status"] for r in rows} == {(b, w): "UP" for b in BACKENDS for w in WEBS}

    # The host holds none of the cluster's VIPs (they live only in the lab's namespaces).
    held = salt.run("vip.held", minion_tgt="master").data
    assert held == dict.fromkeys(["192.168.1.200", "192.168.1.202", "10.0.100.200"])


def test_ipvs_module_loads_only_where_the_kernel_has_ipvs(salt, director):
    answer = salt.run("ipvs.services", minion_tgt="master")
    # __virtual__ says why it does not load, and Salt passes the reason on.
    # (.ci/run installs ipvsadm, so CI sees the kernel's answer.)
    if not shutil.which("ipvsadm"):
        assert "ipvsadm is not installed" in answer.stdout, answer
    elif not Path("/proc/net/ip_vs").exists():
        assert "this kernel has no IPVS" in answer.stdout, answer
    else:
        assert isinstance(answer.data, list), answer


def test_balancer_drains_a_node_in_every_backend_and_readies_it(salt, director, haproxy: HAProxy):
    done = salt.run("balancer.set_nodes", "[web1]", "drain", minion_tgt="master").data
    assert done == {"web1": {"haproxy": dict.fromkeys(BACKENDS, "drain")}}
    assert haproxy.wait(everywhere("web1", "DRAIN"), timeout=5) == {
        **everywhere("web1", "DRAIN"),
        **everywhere("web2", "UP"),
        **everywhere("web3", "UP"),
    }
    salt.run("balancer.set_nodes", "[web1]", "ready", minion_tgt="master")
    assert haproxy.wait(everywhere("web1", "UP"), timeout=5)[("web-http-l7", "web1")] == "UP"


def test_bad_admin_state_is_refused_naming_it(salt, director, haproxy: HAProxy):
    answer = salt.run("balancer.set_nodes", "[web1]", "down", minion_tgt="master")
    assert answer.returncode != 0
    assert "admin_state 'down' is not one of ready, drain, maint" in answer.stdout
    assert haproxy.status()[("web-http-l7", "web1")] == "UP"


def test_beacon_fires_once_per_change(event_listener, salt_master, director, haproxy: HAProxy):
    """web2's check fails: one DOWN event per backend, none while it stays down;
    back: one UP event per backend."""
    pattern = [(salt_master.id, BEACON)]
    start = time.time()
    haproxy.command("disable frontend app-web2")
    try:
        assert haproxy.wait(everywhere("web2", "DOWN"), timeout=10) == {
            **everywhere("web2", "DOWN"),
            **everywhere("web1", "UP"),
            **everywhere("web3", "UP"),
        }
        time.sleep(5)  # five beacon intervals with nothing changing
        down = [e.data for e in event_listener.get_events(pattern, after_time=start)]
    finally:
        haproxy.command("enable frontend app-web2")
    assert sorted((e["backend"], e["server"], e["previous"], e["state"]) for e in down) == [
        (backend, "web2", "UP", "DOWN") for backend in BACKENDS
    ]

    back = time.time()
    assert haproxy.wait(everywhere("web2", "UP"), timeout=10)[("web-http-l7", "web2")] == "UP"
    time.sleep(4)
    up = [e.data for e in event_listener.get_events(pattern, after_time=back)]
    assert sorted((e["backend"], e["server"], e["previous"], e["state"]) for e in up) == [
        (backend, "web2", "DOWN", "UP") for backend in BACKENDS
    ]


def send_service_event(salt_run, node: str, state: str, previous: str, first: bool = False) -> None:
    """What the cluster_watch beacon on `node` sends when apache2 changes state."""
    data = {"id": node, "kind": "service", "name": "apache2", "state": state, "previous": previous, "backend": True}
    data |= {"first": first}
    ret = salt_run.run("event.send", f"salt/beacon/{node}/cluster_watch/service", f"data={data}")
    assert ret.returncode == 0, ret


def test_reactor_drains_a_failed_backend_then_readies_it(salt_run, director, haproxy: HAProxy):
    """The repo's reactor/service_changed.sls on a web server's failed apache2:
    the director takes the node out of every backend; active again: back in."""
    send_service_event(salt_run, "web2", "failed", "active")
    assert haproxy.wait(everywhere("web2", "DRAIN"), timeout=30) == {
        **everywhere("web2", "DRAIN"),
        **everywhere("web1", "UP"),
        **everywhere("web3", "UP"),
    }
    send_service_event(salt_run, "web2", "active", "failed")
    assert haproxy.wait(everywhere("web2", "UP"), timeout=30)[("web-http-l7", "web2")] == "UP"


def test_reactor_leaves_the_balancers_alone_at_a_first_start(salt_run, director, haproxy: HAProxy):
    """apache2's first start since its minion started (a node coming up) has no
    drain to undo: a node drained meanwhile stays drained; a later start readies it."""
    send_service_event(salt_run, "web2", "failed", "active")
    assert haproxy.wait(everywhere("web2", "DRAIN"), timeout=30)[("web-http-l7", "web2")] == "DRAIN"
    send_service_event(salt_run, "web2", "active", "inactive", first=True)
    time.sleep(8)
    assert haproxy.status()[("web-http-l7", "web2")] == "DRAIN"
    send_service_event(salt_run, "web2", "active", "failed")
    assert haproxy.wait(everywhere("web2", "UP"), timeout=30)[("web-http-l7", "web2")] == "UP"


def reactor_jobs(salt_run, since: str) -> list[tuple[str, str, list]]:
    """(function, target, arguments) of the jobs published after job id ``since``."""
    jobs = salt_run.run("jobs.list_jobs").data or {}
    return [(job["Function"], str(job["Target"]), job["Arguments"]) for jid, job in sorted(jobs.items()) if jid > since]


def test_reactor_keeps_event_fields_as_data(salt_run, director, haproxy: HAProxy, tmp_path: Path):
    """A service event whose name carries a newline and a YAML state (a
    cmd.run on every minion) must reach the reactor's states as one string:
    the reactor starts a service of exactly that name on the sender (the
    positive signal that the event was rendered and acted on), and publishes
    nothing else."""
    marker = tmp_path / "injected"
    injected = f"apache2\nreactor-injected:\n  local.cmd.run:\n    - tgt: '*'\n    - args:\n      - cmd: touch {marker}"
    since = max(salt_run.run("jobs.list_jobs").data or {"": None})  # the newest job before the event
    data = {"id": "master", "kind": "service", "name": injected, "state": "failed", "previous": "active"}
    # JSON (a YAML double-quoted string on the command line keeps the newlines).
    ret = salt_run.run("event.send", "salt/beacon/master/cluster_watch/service", f"data={json.dumps(data)}")
    assert ret.returncode == 0, ret
    deadline = time.monotonic() + 30
    while not any(fun == "service.start" for fun, _, _ in reactor_jobs(salt_run, since)):
        assert time.monotonic() < deadline, reactor_jobs(salt_run, since)
        time.sleep(1)
    jobs = [(fun, target, args) for fun, target, args in reactor_jobs(salt_run, since) if not fun.startswith("runner.")]
    assert [(fun, target) for fun, target, _ in jobs] == [("service.start", "master")], jobs
    assert json.dumps(injected) in json.dumps(jobs[0][2]), jobs[0][2]
    assert not marker.exists()
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}


def test_vrrp_reactor_passes_the_fields_on_as_data(event_listener, salt_run, salt_master, director):
    """reactor/vrrp_changed.sls re-sends a director's transition as a cluster
    event: a `previous` field holding a newline and a YAML state arrives there
    as the same string, and no job other than the runner's runs."""
    injected = "BACKUP\nreactor-injected:\n  local.cmd.run:\n    - tgt: '*'\n    - args:\n      - cmd: id"
    since = max(salt_run.run("jobs.list_jobs").data or {"": None})
    start = time.time()
    data = {"id": "master", "kind": "vrrp", "name": "INSTANCE-VI_E", "state": "MASTER", "previous": injected}
    ret = salt_run.run("event.send", "salt/beacon/master/cluster_watch/vrrp", f"data={json.dumps(data)}")
    assert ret.returncode == 0, ret
    pattern = [(salt_master.id, "cluster/director/transition")]
    deadline = time.monotonic() + 30
    while not (sent := list(event_listener.get_events(pattern, after_time=start))):
        assert time.monotonic() < deadline, "the reactor sent no cluster/director/transition event"
        time.sleep(0.5)
    assert sent[0].data["previous"] == injected and sent[0].data["instance"] == "INSTANCE-VI_E", sent[0].data
    assert [fun for fun, _, _ in reactor_jobs(salt_run, since) if not fun.startswith("runner.")] == []


def test_reactor_leaves_a_directors_daemon_in_rotation(salt_run, director, haproxy: HAProxy):
    """A service event without backend (a director's haproxy) drains nothing."""
    data = {"id": "web3", "kind": "service", "name": "haproxy", "state": "failed", "previous": "active"}
    salt_run.run("event.send", "salt/beacon/web3/cluster_watch/service", f"data={data}")
    time.sleep(8)
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}


def test_presence_lost_minion_is_drained_and_readied_when_back(salt_master, director, haproxy: HAProxy):
    """The repo's reactor/presence_changed.sls. A minion whose connection is gone
    while its server still passes the checks (a salt-master restart, a
    management network blip) stays in rotation: draining on that took the
    whole web tier out in the lab. web3 dies (its server fails its checks) and
    its minion is gone -> drained; its server answers again -> still out of
    rotation (DRAIN) until its minion is back.

    The master tells connected minions by the source address of their
    connection, matched with their ipv4 grain: web3 connects from its own
    loopback address so that it is told apart from the director's minion."""
    overrides = {"source_address": "127.0.0.3", "grains": {"roles": ["web"], "ipv4": ["127.0.0.3"], "ipv6": []}}
    web3 = salt_master.salt_minion_daemon("web3", overrides=overrides)
    rounds = salt_master.config["loop_interval"]
    with web3.started(start_timeout=120):
        time.sleep(2 * rounds)  # seen present by the master
    time.sleep(3 * rounds)  # three presence rounds without web3, its server up
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}
    with web3.started(start_timeout=120):
        time.sleep(2 * rounds)
        haproxy.command("disable frontend app-web3")
        assert haproxy.wait(everywhere("web3", "DOWN"), timeout=10)[("web-http-l7", "web3")] == "DOWN"
    stopped = time.monotonic()
    time.sleep(3 * rounds)  # the presence reactor has drained it by now
    haproxy.command("enable frontend app-web3")
    after = haproxy.wait(everywhere("web3", "DRAIN"), timeout=20)
    assert after == {**everywhere("web3", "DRAIN"), **everywhere("web1", "UP"), **everywhere("web2", "UP")}
    print(f"web3 minion stopped -> drained, kept out when its server answered {time.monotonic() - stopped:.1f} s later")
    with web3.started(start_timeout=120):
        assert haproxy.wait(everywhere("web3", "UP"), timeout=40) == {(b, w): "UP" for b in BACKENDS for w in WEBS}
