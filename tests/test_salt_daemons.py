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
from typing import Any

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
    """A master with the repo's file roots, runners, reactor map and presence
    settings, and the repo's pillar tree with the seed topology and generated
    secrets."""
    repo_conf = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())
    pillar = tmp_path_factory.mktemp("pillar") / "pillar"
    shutil.copytree(REPO / "pillar", pillar, ignore=shutil.ignore_patterns("secrets.sls"))
    shutil.copy(secrets_pillar, pillar / "secrets.sls")
    # The Salt tree this needs (custom modules and reactor files), without
    # the rest of the checkout (.venv ...) for the fileserver to walk.
    roots = tmp_path_factory.mktemp("file_roots")
    for tree in ("_modules", "_beacons", "_states", "reactor"):
        (roots / tree).symlink_to(REPO / tree)
    overrides = {
        "file_roots": {"base": [str(roots)]},
        "pillar_roots": {"base": [str(pillar)]},
        "runner_dirs": [str(REPO / "_runners")],
        **{key: repo_conf[key] for key in ("reactor", "presence_events", "loop_interval")},
    }
    factory = salt_factories.salt_master_daemon("halab-test-master", overrides=overrides)
    with factory.started(start_timeout=120):
        yield factory


class Node:
    """A test minion's systemd and keepalived, as files (tests/stubs/fake_service.py
    and the notify files vip.vrrp_state reads): what the runner asks the node."""

    def __init__(self, root: Path) -> None:
        self.services = root / "services"
        self.vrrp = root / "vrrp"
        self.services.mkdir()
        self.vrrp.mkdir()

    def overrides(self) -> dict:
        return {
            "providers": {"service": "fake_service"},
            "module_dirs": [str(REPO / "tests" / "stubs")],
            "fake_service.dir": str(self.services),
            "vip.state_dir": str(self.vrrp),
        }

    def set_service(self, name: str, state: str) -> None:
        (self.services / name).write_text(state + "\n")

    def service(self, name: str) -> str:
        path = self.services / name
        return path.read_text().strip() if path.exists() else "inactive"

    def set_vrrp(self, name: str, state: str) -> None:
        (self.vrrp / name).write_text(f"{state} {time.time():.3f} 150\n")


@pytest.fixture(scope="module")
def director_node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return Node(tmp_path_factory.mktemp("director-node"))


@pytest.fixture(scope="module")
def web2_node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return Node(tmp_path_factory.mktemp("web2-node"))


@pytest.fixture(scope="module")
def director(salt_master, haproxy: HAProxy, director_node: Node):
    """The minion `master` (roles: director) watching the test's HAProxy."""
    overrides = {
        # Salt's default (salt-factories sets 0.05): beacon intervals count
        # minion loops of this length, though the loop runs once a second.
        "loop_interval": 1,
        "grains": {"roles": ["director"]},
        "haproxy_runtime.socket": haproxy.sock,
        "beacons": {"cluster_watch": [{"interval": 1}, {"haproxy": True}]},
        **director_node.overrides(),
    }
    factory = salt_master.salt_minion_daemon("master", overrides=overrides)
    with factory.started(start_timeout=120):
        sync = salt_master.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt="master")
        assert sync.returncode == 0, sync
        yield factory


@pytest.fixture(scope="module")
def web2(event_listener, salt_master, director, web2_node: Node):
    """The minion `web2` (roles: web; its own loopback address, see the presence
    test). Yielded once the master's presence round has seen it and the presence
    reactor has readied it on the director: that ready would otherwise race with
    the tests' own drains."""
    started = time.time()
    overrides = {
        "loop_interval": 1,
        "source_address": "127.0.0.2",
        "grains": {"roles": ["web"], "ipv4": ["127.0.0.2"], "ipv6": []},
        **web2_node.overrides(),
    }
    factory = salt_master.salt_minion_daemon("web2", overrides=overrides)
    with factory.started(start_timeout=120):
        sync = salt_master.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt="web2")
        assert sync.returncode == 0, sync
        director_answers(event_listener, salt_master, started, "web2")
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


def beacon_event(salt, sender: str, about: str, **data) -> None:
    """What a cluster_watch beacon sends, sent by the minion ``sender`` as
    beacons do (a batch of events, ``preload``): tag, ``id`` and fields are
    the sender's word, claiming to be about ``about``."""
    tag = f"salt/beacon/{about}/cluster_watch/{data['kind']}"
    event = {"id": about, **data}
    preload = {"events": [{"tag": tag, "data": event}]}
    # JSON (a YAML double-quoted string on the command line keeps newlines).
    ret = salt.run("event.send", tag, f"data={json.dumps(event)}", f"preload={json.dumps(preload)}", minion_tgt=sender)
    assert ret.returncode == 0 and ret.data is True, ret


def reactions(
    event_listener,
    salt_master,
    after: float,
    count: int = 1,
    timeout: float = 30,
    name: str | None = None,
    **match: Any,
) -> list[dict]:
    """The returns of the cluster.react runner jobs since ``after`` (the
    positive signal that the reactor received an event and decided); with
    ``name``, only those about events of that service or instance (the test
    minions' own beacons watch the host too); with ``match``, only those
    about events with these values (a reaction that waits for the directors
    can return after the next event was sent)."""
    pattern = [(salt_master.id, "salt/run/*/ret")]
    deadline = time.monotonic() + timeout
    wanted = {**match, **({"name": name} if name is not None else {})}

    def about(event) -> bool:
        data = [a.get("data", {}) for a in event.data.get("fun_args") or [] if isinstance(a, dict)]
        return any(all(d.get(k) == v for k, v in wanted.items()) for d in data)

    while True:
        events = event_listener.get_events(pattern, after_time=after)
        got = [e.data["return"] for e in events if e.data.get("fun") == "runner.cluster.react" and about(e)]
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} of {count} reactions: {got}"
        time.sleep(0.2)


def published(salt_run, since: str) -> list[tuple[str, str, list]]:
    """(function, target, arguments) of the minion jobs published after job
    id ``since``, but the test's own (event.send) and the runners'."""
    jobs = salt_run.run("jobs.list_jobs").data or {}
    return [
        (job["Function"], str(job["Target"]), job["Arguments"])
        for jid, job in sorted(jobs.items())
        if jid > since and job["Function"] != "event.send" and not job["Function"].startswith("runner.")
    ]


def newest_job(salt_run) -> str:
    return max(salt_run.run("jobs.list_jobs").data or {"": None})


APACHE = {"kind": "service", "name": "apache2", "backend": True, "first": False}


def test_reactor_drains_a_failed_backend_starts_it_then_readies_it(
    event_listener, salt, salt_master, web2, web2_node: Node, haproxy: HAProxy
):
    """web2's apache2 fails (its minion says so, web2 confirms): the runner
    starts it on web2 and drains web2 on the director; active again: back in."""
    web2_node.set_service("apache2", "failed")
    start = time.time()
    beacon_event(salt, "web2", "web2", **APACHE, state="failed", previous="active")
    assert haproxy.wait(everywhere("web2", "DRAIN"), timeout=30) == {
        **everywhere("web2", "DRAIN"),
        **everywhere("web1", "UP"),
        **everywhere("web3", "UP"),
    }
    assert set(reactions(event_listener, salt_master, start)[0]) == {"node", "service", "start", "drain"}
    assert web2_node.service("apache2") == "active"  # started by the reactor, through web2's minion
    start = time.time()
    beacon_event(salt, "web2", "web2", **APACHE, state="active", previous="failed")
    assert haproxy.wait(everywhere("web2", "UP"), timeout=30)[("web-http-l7", "web2")] == "UP"
    # Its reaction has returned (it waits for every director): none of it is
    # left for the next test's.
    assert set(reactions(event_listener, salt_master, start, state="active")[0]) == {"node", "service", "ready"}


def test_reactor_leaves_the_balancers_alone_at_a_first_start(
    event_listener, salt, salt_master, web2, web2_node: Node, haproxy: HAProxy
):
    """apache2's first start since its minion started (a node coming up) has no
    drain to undo: a node drained meanwhile stays drained; a later start readies it."""
    web2_node.set_service("apache2", "failed")
    beacon_event(salt, "web2", "web2", **APACHE, state="failed", previous="active")
    assert haproxy.wait(everywhere("web2", "DRAIN"), timeout=30)[("web-http-l7", "web2")] == "DRAIN"
    start = time.time()
    beacon_event(salt, "web2", "web2", **{**APACHE, "first": True}, state="active", previous="inactive")
    # Received, decided: nothing to do.
    assert "ignored" in reactions(event_listener, salt_master, start, first=True)[0]
    assert haproxy.status()[("web-http-l7", "web2")] == "DRAIN"
    start = time.time()
    beacon_event(salt, "web2", "web2", **APACHE, state="active", previous="failed")
    assert haproxy.wait(everywhere("web2", "UP"), timeout=30)[("web-http-l7", "web2")] == "UP"
    # Its reaction has returned (it waits for every director): none of it is
    # left for the next test's.
    assert set(reactions(event_listener, salt_master, start, state="active", first=False)[0]) == {
        "node",
        "service",
        "ready",
    }


def test_a_claim_its_node_does_not_confirm_is_dropped_and_counted(
    event_listener, salt, salt_run, salt_master, web2, web2_node: Node, haproxy: HAProxy
):
    """The director's minion says web2's apache2 failed; web2 says it runs:
    nothing is drained or started, the drop is counted with its reason."""
    web2_node.set_service("apache2", "active")
    before = salt_run.run("cluster.dropped").data["count"]
    since, start = newest_job(salt_run), time.time()
    beacon_event(salt, "master", "web2", **APACHE, state="failed", previous="active")
    (answer,) = reactions(event_listener, salt_master, start, name="apache2")
    assert answer["dropped"].startswith("not confirmed: web2 says apache2 running is True"), answer
    assert [fun for fun, _, _ in published(salt_run, since)] == ["service.status"]  # the question to web2
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}
    dropped = salt_run.run("cluster.dropped").data
    assert dropped["count"] == before + 1 and dropped["last"][-1]["reason"] == answer["dropped"], dropped


def test_a_web_minion_forging_events_runs_nothing_anywhere(
    event_listener, salt, salt_run, salt_master, web2, director_node: Node, haproxy: HAProxy, tmp_path: Path
):
    """web2's minion, compromised: events with YAML injected in their fields,
    as itself and as the director; a VRRP event; a VRRP claim about the
    director that the director does not confirm. Each is dropped with its
    reason; no job but the one question to the director is published."""
    marker = tmp_path / "injected"
    injected = f"apache2\nreactor-injected:\n  local.cmd.run:\n    - tgt: '*'\n    - args:\n      - cmd: touch {marker}"
    director_node.set_vrrp("INSTANCE-VI_E", "BACKUP")
    since, start = newest_job(salt_run), time.time()
    sent = [
        ("web2", {**APACHE, "name": injected, "state": "failed", "previous": "active"}),
        ("master", {**APACHE, "name": injected, "state": "failed", "previous": "active"}),
        ("web2", {"kind": "vrrp", "name": "INSTANCE-VI_E", "state": "MASTER", "previous": "BACKUP"}),
        ("master", {"kind": "vrrp", "name": "INSTANCE-VI_E", "state": "MASTER", "previous": injected}),
        ("master", {"kind": "vrrp", "name": "INSTANCE-VI_E", "state": "MASTER", "previous": "BACKUP"}),
    ]
    for about, data in sent:
        beacon_event(salt, "web2", about, **data)
    answers = reactions(event_listener, salt_master, start, count=len(sent))
    reasons = sorted(a.get("dropped", f"ACTED: {a}") for a in answers)
    assert reasons == sorted(
        [
            "name "
            + repr(injected[:60])
            + " is not a service web2 watches (apache2, prometheus-node-exporter, prometheus-apache-exporter)",
            "name "
            + repr(injected[:60])
            + " is not a service master watches (conntrackd, dnsmasq, keepalived, haproxy, prometheus-node-exporter)",
            "web2 is no director: VRRP events come from directors only",
            "previous " + repr(injected[:60]) + " is not one of MASTER, BACKUP, FAULT, STOP",
            "not confirmed: master says INSTANCE-VI_E is BACKUP, not MASTER",
        ]
    ), reasons
    assert [(fun, target) for fun, target, _ in published(salt_run, since)] == [("vip.vrrp_state", "master")]
    assert not marker.exists()
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}
    log = Path(salt_master.config["log_file"])
    assert "cluster.react: dropped salt/beacon/web2/cluster_watch/vrrp: web2 is no director" in log.read_text()


def test_a_directors_vrrp_transition_it_confirms_is_recorded(
    event_listener, salt, salt_master, director, director_node: Node
):
    """The director's own beacon: re-sent as cluster/director/transition."""
    director_node.set_vrrp("INSTANCE-VI_E", "MASTER")
    start = time.time()
    beacon_event(salt, "master", "master", kind="vrrp", name="INSTANCE-VI_E", state="MASTER", previous="BACKUP")
    pattern = [(salt_master.id, "cluster/director/transition")]
    deadline = time.monotonic() + 30
    while not (sent := list(event_listener.get_events(pattern, after_time=start))):
        assert time.monotonic() < deadline, reactions(event_listener, salt_master, start)
        time.sleep(0.5)
    assert {k: sent[0].data[k] for k in ("director", "instance", "state", "previous")} == {
        "director": "master",
        "instance": "INSTANCE-VI_E",
        "state": "MASTER",
        "previous": "BACKUP",
    }


def test_reactor_restarts_a_directors_daemon_without_draining(
    event_listener, salt, salt_master, director, director_node: Node, haproxy: HAProxy
):
    """A director's haproxy fails: started again there; nothing is drained."""
    director_node.set_service("haproxy", "failed")
    start = time.time()
    beacon_event(salt, "master", "master", kind="service", name="haproxy", state="failed", previous="active")
    (answer,) = reactions(event_listener, salt_master, start, name="haproxy")
    assert set(answer) == {"node", "service", "start"}, answer
    deadline = time.monotonic() + 30
    while director_node.service("haproxy") != "active":
        assert time.monotonic() < deadline, "the director's haproxy was not started"
        time.sleep(0.2)
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}


def director_answers(event_listener, salt_master, after: float, node: str, timeout: float = 60) -> list[dict]:
    """The director's returns of balancer.set_nodes about ``node`` since ``after``."""
    pattern = [(salt_master.id, "salt/job/*/ret/master")]
    deadline = time.monotonic() + timeout
    while True:
        events = event_listener.get_events(pattern, after_time=after)
        got = [
            e.data["return"]
            for e in events
            if e.data.get("fun") == "balancer.set_nodes" and node in (e.data.get("return") or {})
        ]
        if got:
            return got
        assert time.monotonic() < deadline, f"no balancer.set_nodes about {node} since the trigger"
        time.sleep(0.5)


def test_presence_lost_minion_is_drained_and_readied_when_back(event_listener, salt_master, director, haproxy: HAProxy):
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
    gone = time.time()
    # The presence reactor asked the director to drain web3 unless serving:
    # it answered that web3 serves, and left it in rotation.
    assert director_answers(event_listener, salt_master, gone, "web3")[0] == {"web3": {"serving": True}}
    assert haproxy.status() == {(b, w): "UP" for b in BACKENDS for w in WEBS}
    with web3.started(start_timeout=120):
        time.sleep(2 * rounds)
        haproxy.command("disable frontend app-web3")
        assert haproxy.wait(everywhere("web3", "DOWN"), timeout=10)[("web-http-l7", "web3")] == "DOWN"
    stopped, stopped_at = time.monotonic(), time.time()
    # Its minion gone and its server failing its checks: drained.
    drained = director_answers(event_listener, salt_master, stopped_at, "web3")[0]["web3"]
    assert drained["haproxy"] == dict.fromkeys(BACKENDS, "drain"), drained
    haproxy.command("enable frontend app-web3")
    after = haproxy.wait(everywhere("web3", "DRAIN"), timeout=20)
    assert after == {**everywhere("web3", "DRAIN"), **everywhere("web1", "UP"), **everywhere("web2", "UP")}
    print(f"web3 minion stopped -> drained, kept out when its server answered {time.monotonic() - stopped:.1f} s later")
    with web3.started(start_timeout=120):
        assert haproxy.wait(everywhere("web3", "UP"), timeout=40) == {(b, w): "UP" for b in BACKENDS for w in WEBS}
