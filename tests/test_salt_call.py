"""The repo's Salt tree through the real salt-call CLI, one node at a time."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SEED
from topology_cases import CASES


def test_validate_seed_topology(salt_call):
    code, result, stderr = salt_call("cluster.validate")
    assert (code, result) == (0, True), stderr


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_bad_input_exits_nonzero_naming_it(salt_call, topology, case):
    case.mutate(topology)
    pillar = salt_call.pillar(topology)
    before = (pillar / "cluster.sls").read_text()
    code, result, stderr = salt_call("cluster.validate", pillar=pillar)
    assert code != 0
    assert isinstance(result, list) and any(case.expected in line for line in result), (result, stderr)
    assert (pillar / "cluster.sls").read_text() == before


def test_a_yaml_error_is_reported_with_its_line(salt_call):
    pillar = salt_call.pillar()
    text = (pillar / "cluster.sls").read_text().replace("domain: lab.local", "domain: lab.local: x", 1)
    (pillar / "cluster.sls").write_text(text)
    line = 1 + text[: text.index("domain: lab.local: x")].count("\n")
    code, result, stderr = salt_call("cluster.validate", pillar=pillar)
    assert code != 0
    assert isinstance(result, list), (result, stderr)
    reported = [re.search(r"cluster\.sls: line (\d+), column \d+: .* \(not valid YAML\)$", p) for p in result]
    assert any(m and int(m[1]) == line for m in reported), (line, result)


def test_validate_reports_missing_secrets_on_a_director(salt_call):
    pillar = salt_call.pillar(secrets="")
    code, result, _ = salt_call("cluster.validate", node="master", pillar=pillar)
    assert code != 0
    assert any(line.startswith("cluster_secrets: missing") for line in result)
    # A web server needs none: it has none, and its topology is valid.
    assert salt_call("cluster.validate", node="web1", pillar=pillar)[:2] == (0, True)


@pytest.mark.parametrize("node", ["nas", "master", "standby", "web1", "dns2"])
def test_secrets_reach_the_directors_pillar_only(salt_call, node):
    code, result, stderr = salt_call("pillar.items", node=node)
    assert code == 0, stderr
    director = "director" in SEED["nodes"][node]["roles"]
    assert ("cluster_secrets" in result) is director, sorted(result)
    assert "cluster" in result


def test_a_web_minion_claiming_the_director_role_gets_no_secrets(salt_call):
    """The pillar is targeted by minion ID from the topology, not by grains."""
    code, result, stderr = salt_call("pillar.items", node="web1", roles=["director"])
    assert code == 0, stderr
    assert "cluster_secrets" not in result and "beacons" in result
    assert "keepalived" not in str(result["beacons"]), result["beacons"]


def test_invalid_topology_stops_highstate_before_any_state(salt_call, topology):
    """No state runs on any node: the render fails and names the problems.

    test=True keeps the host safe should the gate ever break; the assertion is
    on the shape of the return (render errors, no state results at all).
    """
    CASES[0].mutate(topology)
    CASES[2].mutate(topology)
    pillar = salt_call.pillar(topology)
    for node in ("nas", "master", "web1", "dns3"):
        code, result, _ = salt_call("state.apply", "test=True", node=node, pillar=pillar)
        assert code != 0
        assert isinstance(result, list), f"{node}: states ran: {result}"
        assert all(line.startswith("Rendering SLS") for line in result)
        joined = "\n".join(result)
        assert CASES[0].expected in joined and CASES[2].expected in joined


ROLE_STATES = {
    "nas": ["nfs-server-exports-file", "webcontent-page-index.php", "webcontent-page-pi.php"],
    "director": [
        "gateway-iptables-snat",
        "conntrackd-service-running",
        "dnsmasq-service-running",
        "keepalived-service-running",
        "haproxy-service-running",
        "haproxy-config-nonlocal-bind",
    ],
    "web": ["apache-tls-certificate", "apache-service-running", "apache-config-site-cluster-l7-enabled"],
    "dns": ["bind-service-running", "bind-config-zone-lab.local", "bind-config-zone-100.0.10.in-addr.arpa"],
}
CHECKED_CONFIGS = {
    "nas": ["firewall-config-file-managed"],
    "director": [
        "firewall-config-file-managed",
        "dnsmasq-config-file-managed",
        "keepalived-config-file-managed",
        "haproxy-config-file-managed",
    ],
    "web": [
        "firewall-config-file-managed",
        "apache-config-site-cluster-l7",
        "apache-config-site-cluster-proxy",
        "apache-config-site-000-default",
        "apache-config-site-default-ssl",
    ],
    "dns": ["firewall-config-file-managed", "bind-config-options", "bind-config-local", "bind-config-zone-lab.local"],
}


@pytest.mark.parametrize("node", sorted(SEED["nodes"]))
def test_highstate_renders_for_every_node(salt_call, node):
    code, result, stderr = salt_call("state.show_highstate", node=node)
    assert code == 0, stderr
    assert isinstance(result, dict), result
    assert "common-hosts-file-managed" in result
    assert result["common-hostname-file-managed"]["file"][1] == {"contents": node}
    pkgs = {p for args in state_args(result, "pkg.installed") for p in args.get("pkgs", [])}
    role = SEED["nodes"][node]["roles"][0]
    expected = {"nas": "nfs-kernel-server", "director": "keepalived", "web": "apache2", "dns": "bind9"}[role]
    assert {expected, "iproute2"} <= pkgs
    for state_id in ROLE_STATES[role]:
        assert state_id in result, f"{node}: {state_id} missing"
    # Every managed daemon configuration is checked by the daemon before it goes live.
    for state_id in CHECKED_CONFIGS.get(role, []):
        assert call_args(result[state_id]["file"]).get("check_cmd"), f"{node}: {state_id} has no check_cmd"


def call_args(calls: list) -> dict:
    """A state's arguments, from its module's list in a highstate (its function name aside)."""
    return {k: v for item in calls if isinstance(item, dict) for k, v in item.items()}


def state_args(highstate: dict, function: str) -> list[dict]:
    """The arguments of every ``function`` state (e.g. ``service.running``) of a highstate."""
    module, fun = function.split(".")
    out = []
    for state_id, body in highstate.items():
        calls = body.get(module) if isinstance(body, dict) else None
        if calls and fun in calls:
            out.append({"name": state_id, **call_args(calls)})
    return out


@pytest.mark.parametrize("node", ["nas", "master", "web1", "dns1"])
def test_the_catalogues_services_are_those_the_highstate_runs(salt_call, node):
    """A node's services in the catalogue of roles (what the lab starts enabled
    and the beacon watches) are the daemons its highstate keeps running, apart
    from the units the formulas write themselves and the oneshot firewall."""
    from lab import catalogue

    # A kernel that can serve NFS (the nas's formula leaves nfs-server alone elsewhere).
    code, result, stderr = salt_call("state.show_highstate", node=node, grains={"cluster_kernel": {"nfs_server": True}})
    assert code == 0, stderr
    running = {args["name"] for args in state_args(result, "service.running")}
    written = {
        Path(args["name"]).name.removesuffix(".service")
        for args in state_args(result, "file.managed")
        if str(args["name"]).startswith("/etc/systemd/system/") and str(args["name"]).endswith((".service", ".timer"))
    }
    role = SEED["nodes"][node]["roles"][0]
    exporter = {"prometheus-node-exporter"}
    expected = {"nas": {"nfs-server", "prometheus", "prometheus-alertmanager"}}
    expected |= {
        "director": {"conntrackd", "dnsmasq", "keepalived", "haproxy"},
        "web": {"apache2", "prometheus-apache-exporter"},
    }
    expected |= {"dns": {"named", "prometheus-bind-exporter"}}
    expected = {role: services | exporter for role, services in expected.items()}
    assert set(catalogue.services(role)) == expected[role]
    assert running - written - {"nftables"} == expected[role]


@pytest.mark.parametrize(
    ("node", "watch"),
    [
        (
            "master",
            [
                {"interval": 1},
                {"services": ["conntrackd", "dnsmasq", "keepalived", "haproxy", "prometheus-node-exporter"]},
                {"haproxy": True},
                {"vrrp": True},
            ],
        ),
        (
            "web1",
            [
                {"interval": 1},
                {"services": ["apache2", "prometheus-node-exporter", "prometheus-apache-exporter"]},
                {"backend": True},
            ],
        ),
        (
            "dns1",
            [
                {"interval": 1},
                {"services": ["named", "prometheus-node-exporter", "prometheus-bind-exporter"]},
                {"backend": True},
            ],
        ),
        # The nas's daemons; nfs-server only where its kernel serves NFS.
        ("nas", [{"interval": 1}, {"services": ["prometheus-node-exporter", "prometheus", "prometheus-alertmanager"]}]),
    ],
)
def test_beacons_come_from_the_catalogue_for_the_nodes_roles(salt_call, node, watch):
    code, result, stderr = salt_call("pillar.raw", node=node)
    assert code == 0, stderr
    assert (result.get("beacons") or {}).get("cluster_watch") == watch
    assert ("mine_functions" in result) == (node == "master")
    assert result["catalogue"]["formulas"]["haproxy"]["socket"] == "/run/haproxy/admin.sock"


def test_the_nfs_server_is_watched_where_the_kernel_serves_nfs(salt_call):
    code, result, stderr = salt_call(
        "pillar.raw", "beacons", node="nas", grains={"cluster_kernel": {"nfs_server": True}}
    )
    assert code == 0, stderr
    assert result["cluster_watch"][1]["services"][0] == "nfs-server"
    # A grain that is not plainly true watches nothing more.
    code, result, stderr = salt_call(
        "pillar.raw", "beacons", node="nas", grains={"cluster_kernel": {"nfs_server": "yes"}}
    )
    assert code == 0, stderr
    assert "nfs-server" not in result["cluster_watch"][1]["services"]


def test_a_node_with_two_roles_watches_the_services_of_both(salt_call):
    topology = copy.deepcopy(SEED)
    topology["nodes"]["web1"]["roles"] = ["web", "dns"]
    pillar = salt_call.pillar(topology)
    code, result, stderr = salt_call("pillar.raw", "beacons", node="web1", roles=["web", "dns"], pillar=pillar)
    assert code == 0, stderr
    assert result["cluster_watch"] == [
        {"interval": 1},
        {
            "services": [
                "apache2",
                "prometheus-node-exporter",
                "prometheus-apache-exporter",
                "named",
                "prometheus-bind-exporter",
            ]
        },
        {"backend": True},
    ]


@pytest.mark.parametrize("node", ["web1", "standby"])
def test_hosts_file_renders_from_the_model(salt_call, node, tmp_path: Path):
    target = tmp_path / "hosts"
    code, _, stderr = salt_call("cp.get_template", "salt://common/files/hosts.jinja", str(target), node=node)
    assert code == 0, stderr
    lines = target.read_text().splitlines()
    assert "10.0.100.1\tmaster.lab.local master cluster1 lb1" in lines
    assert "10.0.100.50\tstandby.lab.local standby lb2" in lines
    assert "127.0.0.1\tlocalhost" in lines
    assert sum(1 for line in lines if line.startswith("10.0.100.")) == len(SEED["nodes"])


def test_roles_grain_mismatch_fails_render(salt_call):
    code, result, _ = salt_call("state.show_highstate", node="web1", roles=["dns"])
    assert code != 0
    assert "grain roles ['dns'] differ from the topology's nodes.web1.roles ['web']" in str(result)


def test_minion_outside_topology_fails_render(salt_call):
    code, result, _ = salt_call("state.show_sls", "common", node="web9", roles=["web"])
    assert code != 0
    assert "node 'web9' is not in the cluster topology" in str(result)


def test_repo_local_config_is_the_one_documented():
    """The Saltfile points salt-call at etc/salt, whose roots are the repo's."""
    saltfile = (REPO / "Saltfile").read_text()
    assert "config_dir: etc/salt" in saltfile
    import yaml

    minion = yaml.safe_load((REPO / "etc" / "salt" / "minion").read_text())
    master = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())
    for conf in (minion, master):
        assert conf["file_roots"] == {"base": [".", "salt"]}
    assert minion["pillar_roots"] == {"base": ["pillar"]}
    # A master keeps the secrets outside every file root.
    assert master["pillar_roots"] == {"base": ["pillar", "/etc/salt/cluster-secrets"]}
    assert master["auto_accept"] is False


def test_documented_command_from_repo_root():
    """`salt-call --local cluster.validate` in the repo root finds etc/salt via the Saltfile."""
    import subprocess
    import sys

    from conftest import SALT_CALL

    sys.path.insert(0, str(REPO / "tools"))
    import gen_secrets

    gen_secrets.generate(REPO / "pillar" / "secrets.sls")  # what `make secrets` does; keeps an existing file
    proc = subprocess.run(
        [SALT_CALL, "--local", "--out=json", "cluster.validate"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert '"local": true' in proc.stdout


# One line: salt-call reads key=value arguments up to the end of the line.
HAPROXY_CONFIG = (
    '{%- set tplroot = "haproxy" %}{%- from "haproxy/map.jinja" import haproxy as settings, stats_auth with context %}'
    '{% include "haproxy/files/haproxy.cfg.jinja" %}'
)


def render_on(salt_call, node: str, template: str, pillar_overrides: dict) -> str:
    """A one-line template rendered by salt-call as `node`, with these
    top-level pillar keys added to the topology pillar."""
    pillar = salt_call.pillar()
    if pillar_overrides:
        with (pillar / "cluster.sls").open("a") as handle:
            handle.write(yaml.safe_dump(pillar_overrides))
    code, text, stderr = salt_call(
        "slsutil.renderer", f"string={template}", "default_renderer=jinja", node=node, pillar=pillar
    )
    assert code == 0, stderr
    return text


def render_haproxy(salt_call, overrides: dict, tmp_path: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    """The director's haproxy.cfg with these pillar haproxy: options (merged
    over the formula's defaults by map.jinja), and what `haproxy -c` (the
    formula's check_cmd) says of it."""
    text = render_on(salt_call, "master", HAPROXY_CONFIG, {"haproxy": overrides})
    config = tmp_path / "haproxy.cfg"
    config.write_text(text + "\n")
    check = subprocess.run(
        [shutil.which("haproxy") or "haproxy", "-c", "-f", str(config)], capture_output=True, text=True
    )
    return [line.strip() for line in text.splitlines()], check


@pytest.mark.parametrize(
    ("overrides", "present", "absent"),
    [
        (
            {},
            [
                "option redispatch 1",
                "retry-on conn-failure empty-response response-timeout",
                "option http-server-close",
                "maxconn 20000",  # not sized from the file limit (README, "HAProxy's size")
            ],
            [],
        ),
        ({"maxconn": 5000}, ["maxconn 5000"], ["maxconn 20000"]),
        (
            {"redispatch": -1, "retry_on": ["conn-failure", "503"], "timeouts": {"server": "4s"}},
            ["option redispatch -1", "retry-on conn-failure 503", "timeout server 4s", "timeout connect 500ms"],
            ["option redispatch 1", "timeout server 30s"],
        ),
        ({"retry_on": []}, [], ["retry-on"]),
        ({"server_close": False}, [], ["option http-server-close"]),
    ],
)
def test_haproxy_backend_options_come_from_the_pillar(salt_call, tmp_path: Path, overrides, present, absent):
    lines, check = render_haproxy(salt_call, overrides, tmp_path)
    for line in present:
        assert line in lines
    for fragment in absent:
        assert not any(line.startswith(fragment) for line in lines), fragment
    assert check.returncode == 0, check.stdout + check.stderr


def test_haproxy_config_holds_the_stats_password_only_as_a_hash(salt_call, secrets_pillar: Path, tmp_path: Path):
    """The rendered haproxy.cfg (whose diffs a plan and the job cache show)
    has the SHA-512 crypt hash of the secret, never the secret."""
    import crypt

    secret = yaml.safe_load(secrets_pillar.read_text())["cluster_secrets"]["haproxy_stats"]
    password = secret["password"]
    lines, check = render_haproxy(salt_call, {}, tmp_path)
    assert check.returncode == 0, check.stderr
    assert not any(password in line for line in lines)
    (user_line,) = [line for line in lines if line.startswith(f"user {secret['user']} password ")]
    hashed = user_line.split()[-1]
    assert hashed.startswith("$6$") and crypt.crypt(password, hashed) == hashed
    assert "stats http-request auth realm HAProxy\\ statistics unless { http_auth(stats-users) }" in lines


def test_haproxy_checker_refuses_an_unknown_retry_on_value(salt_call, tmp_path: Path):
    _, check = render_haproxy(salt_call, {"retry_on": ["conn-failure", "on-tuesdays"]}, tmp_path)
    assert check.returncode != 0 and "on-tuesdays" in check.stdout + check.stderr


PREFORK_CONFIG = (
    '{%- set tplroot = "apache" %}{%- from "apache/map.jinja" import apache with context %}'
    "{%- set settings = apache.mpm_prefork %}"
    '{% include "apache/files/mpm_prefork.conf.jinja" %}'
)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, {"StartServers": "16", "MinSpareServers": "16", "MaxSpareServers": "32", "MaxRequestWorkers": "150"}),
        ({"MaxSpareServers": 64}, {"MinSpareServers": "16", "MaxSpareServers": "64"}),
    ],
)
def test_apache_prefork_counts_come_from_the_pillar(salt_call, overrides, expected):
    text = render_on(salt_call, "web1", PREFORK_CONFIG, {"apache": {"mpm_prefork": overrides}} if overrides else {})
    lines = [line.split() for line in text.splitlines() if line.startswith("    ")]
    directives = {words[0]: words[1] for words in lines}
    assert directives.items() >= expected.items(), text
    assert text.splitlines()[1] == "<IfModule mpm_prefork_module>"


WATCH_UNIT = (
    '{%- set tplroot = "keepalived" %}{%- from "keepalived/map.jinja" import keepalived as settings with context %}'
    '{% include "keepalived/files/haproxy-watch.service.jinja" %}'
)


@pytest.mark.parametrize("socket_path", [None, "/run/haproxy/elsewhere.sock"])
def test_keepalived_watcher_asks_haproxy_where_the_haproxy_formula_answers(salt_call, socket_path):
    overrides = {"haproxy": {"health_socket": socket_path}} if socket_path else {}
    text = render_on(salt_call, "master", WATCH_UNIT, overrides)
    start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = start.removeprefix("ExecStart=").split()
    assert argv[:5] == [
        "/usr/bin/python3",
        "/usr/local/sbin/keepalived-haproxy-watch",
        socket_path or "/run/haproxy/health.sock",
        "/run/keepalived-track/haproxy-down",
        "/run/keepalived-track/haproxy-degraded",
    ], start
    assert "--interval 0.25" in start and "Restart=always" in text


KEEPALIVED_CONFIG = (
    '{%- set tplroot = "keepalived" %}{%- from "keepalived/map.jinja" import keepalived as settings with context %}'
    "{%- set ipvs_enabled = True %}{%- set process_events = True %}"
    '{% include "keepalived/files/keepalived.conf.jinja" %}'
)


@pytest.mark.parametrize(("node", "delay"), [("master", "    preempt_delay 5"), ("standby", None)])
def test_only_the_leader_delays_taking_the_vips(salt_call, node, delay):
    """The leader back from a failure waits before it preempts; the standby
    preempts at once, when the leader's checks fail."""
    text = render_on(salt_call, node, KEEPALIVED_CONFIG, {})
    instances = text.split("vrrp_instance ")[1:]
    assert len(instances) == 2, text
    for instance in instances:
        lines = instance.splitlines()
        assert "    state BACKUP" in lines, instance
        assert [line for line in lines if "preempt_delay" in line and not line.lstrip().startswith("#")] == (
            [delay] if delay else []
        ), instance


IPVS_SYNC_UNIT = (
    '{%- set tplroot = "keepalived" %}'
    '{%- from "keepalived/map.jinja" import keepalived as settings, node with context %}'
    "{%- set sync = node.vrrp.state_sync %}"
    '{% include "keepalived/files/ipvs-sync.service.jinja" %}'
)


@pytest.mark.parametrize("shared", [False, True])
def test_ipvs_connection_sync_follows_the_topology(salt_call, topology, shared):
    """vrrp.ipvs_sync runs the kernel's IPVS sync threads (a master and a
    backup one, in a unit that keepalived wants) and opens their port to the
    peer director; off, the unit is stopped and removed and the firewall
    opens only conntrackd's port, which is always in use. keepalived itself
    never starts or stops the threads."""
    topology["vrrp"]["ipvs_sync"] = shared
    pillar = salt_call.pillar(topology)
    grains = {"cluster_kernel": {"ipvs": True}}
    code, states, stderr = salt_call("state.show_sls", "keepalived", node="master", pillar=pillar, grains=grains)
    assert code == 0, stderr
    sync_states = {name.removeprefix("keepalived-") for name in states if "ipvs-sync" in name}
    assert sync_states == (
        {"config-ipvs-sync-unit", "config-ipvs-sync-wanted", "service-ipvs-sync-running"}
        if shared
        else {"config-ipvs-sync-absent", "service-ipvs-sync-dead"}
    )
    rendered = {}
    for name, template in (("keepalived", KEEPALIVED_CONFIG), ("firewall", FIREWALL), ("unit", IPVS_SYNC_UNIT)):
        code, text, stderr = salt_call(
            "slsutil.renderer", f"string={template}", "default_renderer=jinja", node="master", pillar=pillar
        )
        assert code == 0, stderr
        rendered[name] = text
    assert "lvs_sync_daemon" not in rendered["keepalived"]
    if shared:
        starts = [line for line in rendered["unit"].splitlines() if line.startswith("ExecStart=")]
        assert starts == [
            f"ExecStart=/usr/sbin/ipvsadm --start-daemon {role} --mcast-interface eth1 --syncid 52 --mcast-port 8848"
            for role in ("master", "backup")
        ]
    rule = next(line for line in rendered["firewall"].splitlines() if "connection state from the peer" in line)
    assert "ip saddr 10.0.100.50" in rule or "ip saddr { 10.0.100.50 }" in rule, rule
    assert ("udp dport { 3780, 8848 }" if shared else "udp dport { 3780 }") in rule, rule


FIREWALL = (
    '{%- set tplroot = "firewall" %}{%- from "firewall/map.jinja" import firewall as settings with context %}'
    '{% include "firewall/files/nftables.conf.jinja" %}'
)


def nft_check(path: Path) -> subprocess.CompletedProcess:
    """The formula's check_cmd (`nft -c -f`), in a network namespace of its own."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    return subprocess.run(["unshare", "--net", nft, "-c", "-f", str(path)], capture_output=True, text=True)


def render_firewall(salt_call, node: str, tmp_path: Path, topology: dict | None = None) -> tuple[str, str]:
    pillar = salt_call.pillar(topology)
    code, text, stderr = salt_call(
        "slsutil.renderer",
        f"string={FIREWALL}",
        "default_renderer=jinja",
        node=node,
        roles=(topology or SEED)["nodes"][node]["roles"],
        pillar=pillar,
    )
    assert code == 0, stderr
    path = tmp_path / f"{node}.nft"
    path.write_text(text + "\n")
    check = nft_check(path)
    assert check.returncode == 0, f"{node}: nft -c refused the ruleset:\n{check.stderr}\n{text}"
    return text, check.stderr


@pytest.mark.parametrize("node", ["master", "nas", "web1", "dns1"])
def test_firewall_renders_and_nft_accepts_it(salt_call, node, tmp_path: Path):
    text, _ = render_firewall(salt_call, node, tmp_path)
    assert "policy drop;" in text and 'counter drop comment "dropped"' in text
    if node == "master":
        # Published services on the external VIPs, each protocol it has.
        assert 'ip daddr { 192.168.1.200 } udp dport { 53 } counter accept comment "ipvs dns"' in text
        assert 'ip daddr { 192.168.1.200 } tcp dport { 53 } counter accept comment "ipvs dns-tcp"' in text
        assert 'ip daddr { 192.168.1.202 } tcp dport { 80 } counter accept comment "ipvs web"' in text
        # Stats, VRRP and the internal services on the internal side only.
        assert (
            'iifname "eth1" ip saddr { 10.0.100.0/24 } ip daddr { 10.0.100.200 } tcp dport { 7000 } '
            'counter accept comment "haproxy stats"'
        ) in text
        assert 'iifname "eth1" ip saddr { 10.0.100.50 } ip protocol vrrp counter accept' in text
        assert 'iifname "eth1" oifname "eth0" ip saddr { 10.0.100.0/24 } counter accept' in text
    if node == "nas":
        assert "ip saddr { 10.0.100.2, 10.0.100.3, 10.0.100.4 } tcp dport { 2049 }" in text
    if node == "web1":
        assert 'iifname "eth0" tcp dport { 80 } counter accept comment "public service (tcp)"' in text
        assert "ip saddr { 10.0.100.1, 10.0.100.50, 10.0.100.200 } tcp dport { 8080, 8081, 8444 }" in text


def test_firewall_follows_a_changed_topology(salt_call, topology, tmp_path: Path):
    """A new web node and a new published service reach every ruleset that needs them."""
    topology["nodes"]["web4"] = {
        "roles": ["web"],
        "interfaces": {
            "eth0": {"network": "internal", "address": "10.0.100.8", "mac": "08:00:27:01:01:08", "dhcp": True}
        },
    }
    topology["ipvs"]["virtual_servers"]["smtp"] = {"vip": "192.168.1.202", "port": 25, "protocol": "tcp", "role": "web"}
    master, _ = render_firewall(salt_call, "master", tmp_path, topology)
    assert 'ip daddr { 192.168.1.202 } tcp dport { 25 } counter accept comment "ipvs smtp"' in master
    nas, _ = render_firewall(salt_call, "nas", tmp_path, topology)
    assert "10.0.100.4, 10.0.100.8 } tcp dport { 2049 }" in nas
    web4, _ = render_firewall(salt_call, "web4", tmp_path, topology)
    assert 'tcp dport { 25, 80 } counter accept comment "public service (tcp)"' in web4


def test_a_bad_management_interface_is_refused_by_name(salt_call):
    pillar = salt_call.pillar()
    with (pillar / "cluster.sls").open("a") as handle:
        handle.write(yaml.safe_dump({"firewall": {"management": {"interface": 'lab0" accept', "cidr": "10.9.0.0/24"}}}))
    code, result, _ = salt_call("state.show_sls", "firewall", node="web1", pillar=pillar)
    assert code != 0
    assert "pillar firewall:management:interface: " in " ".join(result)
    assert "is not an interface name" in " ".join(result)


IPTABLES = (
    '{%- set tplroot = "firewall" %}{%- from "firewall/map.jinja" import firewall as settings with context %}'
    '{% include "firewall/files/iptables.v4.jinja" %}'
)


@pytest.mark.parametrize("node", ["master", "nas", "web1"])
def test_firewall_iptables_rendering_passes_iptables_restore(salt_call, node, tmp_path: Path):
    """Where nftables cannot filter IP (Debian's user-mode kernel), the same
    rules go through iptables-restore, which must accept them (--test)."""
    text = render_on(salt_call, node, IPTABLES, {})
    path = tmp_path / f"{node}.v4"
    path.write_text(text + "\n")
    restore = shutil.which("iptables-legacy-restore") or "/usr/sbin/iptables-legacy-restore"
    check = subprocess.run(["unshare", "--net", restore, "--test", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, f"{node}: iptables-restore refused the rules:\n{check.stderr}\n{text}"
    assert ":INPUT DROP" in text and ":FORWARD DROP" in text
    if node == "master":
        assert '-A INPUT -d 192.168.1.200 -p tcp -m multiport --dports 53 -m comment --comment "ipvs dns-tcp"' in text
        assert '-A INPUT -i eth1 -s 10.0.100.50 -p 112 -m comment --comment "vrrp from the peer directors"' in text
    if node == "nas":
        assert "-m conntrack --ctstate DNAT" in text


def _parts() -> list[tuple[str, str]]:
    """(node, SLS) for every part of every formula of the highstate (each
    role's formulas in the catalogue), each on one node whose role applies
    it; init and package files aside (those require nothing)."""
    from lab import catalogue

    out: dict[str, str] = {}
    for node in ("master", "nas", "web1", "dns1"):
        role = SEED["nodes"][node]["roles"][0]
        for formula in (item.split(".")[0] for item in catalogue.formulas(role)):
            for path in sorted((REPO / "salt" / formula).glob("*.sls")):
                if path.stem not in ("init", "package"):
                    out.setdefault(f"{formula}.{path.stem}", node)
    return sorted((node, sls) for sls, node in out.items())


@pytest.mark.parametrize(("node", "sls"), _parts())
def test_every_part_of_a_formula_applies_alone(salt_call, node, sls):
    """It includes what it requires: its low data compiles with no missing requisite."""
    code, result, stderr = salt_call("state.show_low_sls", sls, node=node)
    assert code == 0 and isinstance(result, list), (result, stderr)


COPY_UNIT = (
    '{%- set tplroot = "apache" %}'
    '{%- from "apache/map.jinja" import apache as settings, model with context %}'
    "{%- set copy = model.nfs['copy'] %}{%- set source = model.nfs.docroot %}"
    "{%- set mountpoint = model.nfs.mountpoint %}"
    '{%- set marker = salt["cluster.settings"]("webcontent", {}).marker %}'
    '{% include "apache/files/docroot-copy.service.jinja" %}'
)
RSYNCD = (
    '{%- set tplroot = "apache" %}{%- from "apache/map.jinja" import model with context %}'
    "{%- set copy = model.nfs['copy'] %}{%- set rsync = copy.rsync %}{%- set nas = model.nfs.server_address %}"
    '{%- set lock_file = "/run/cluster-docroot-rsync/lock" %}'
    '{% include "apache/files/rsyncd.conf.jinja" %}'
)
SITE_HTTP = '{% set tplroot = "apache" %}{% include "apache/files/site-http.conf.jinja" %}'
SITE_L7 = '{% set tplroot = "apache" %}{% set ports = [8080] %}{% include "apache/files/site-l7.conf.jinja" %}'


@pytest.mark.parametrize("copied", [False, True])
def test_apache_serves_its_copy_of_the_docroot_when_the_topology_asks(salt_call, topology, copied):
    """nfs.copy: Apache's docroot is the copy, refreshed by a timer from the
    mount (and before Apache starts); without it, Apache serves the mount and
    nothing of a copy is left on the node."""
    if not copied:
        del topology["nfs"]["copy"]
        topology["ha"] = False  # ha refuses a docroot without copies
    pillar = salt_call.pillar(topology)
    grains = {"cluster_kernel": {"nfs_client": True}}
    code, states, stderr = salt_call("state.show_sls", "apache", node="web1", pillar=pillar, grains=grains)
    assert code == 0, stderr
    copy_states = {name.removeprefix("apache-copy-") for name in states if name.startswith("apache-copy-")}
    assert copy_states == (
        {
            "script",
            "directory",
            "service-unit",
            "timer-unit",
            "apache-dropin",
            "daemon-reload",
            "refreshed",
            "timer-running",
            "rsyncd-config",
            "rsyncd-unit",
            "rsyncd-running",
        }
        if copied
        else {"timer-dead", "units-absent", "daemon-reload", "rsyncd-dead"}
    )
    code, site, stderr = salt_call(
        "slsutil.renderer", f"string={SITE_HTTP}", "default_renderer=jinja", node="web1", pillar=pillar
    )
    assert code == 0, stderr
    assert ("DocumentRoot /srv/www" if copied else "DocumentRoot /nfs/www") in site
    if copied:
        code, unit, stderr = salt_call(
            "slsutil.renderer", f"string={COPY_UNIT}", "default_renderer=jinja", node="web1", pillar=pillar
        )
        assert code == 0, stderr
        # The mount point last: the script mounts it again when it went stale.
        assert "ExecStart=/usr/local/sbin/cluster-docroot-copy /nfs/www /srv/www .cluster-docroot /nfs\n" in unit
        dropin = states["apache-copy-apache-dropin"]["file"]
        contents = next(arg["contents"] for arg in dropin if isinstance(arg, dict) and "contents" in arg)
        assert "After=cluster-docroot-copy.service" in contents
        # Apache wants the timer and the rsync daemon: they start with it at
        # boot, and the highstate enables neither (an enable reloads systemd).
        wants = next(line for line in contents.splitlines() if line.startswith("Wants="))
        assert set(wants.removeprefix("Wants=").split()) == {
            "cluster-docroot-copy.service",
            "cluster-docroot-copy.timer",
            "cluster-docroot-rsync.service",
        }
        for name in ("apache-copy-timer-running", "apache-copy-rsyncd-running"):
            args = [arg for arg in states[name]["service"] if isinstance(arg, dict)]
            assert not any("enable" in arg for arg in args), (name, args)
        # The copy offered read-only, to the nas alone.
        code, rsyncd, stderr = salt_call(
            "slsutil.renderer", f"string={RSYNCD}", "default_renderer=jinja", node="web1", pillar=pillar
        )
        assert code == 0, stderr
        settings = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition("=") for line in rsyncd.splitlines())
            if value and not key.lstrip().startswith("#")
        )
        assert settings["hosts allow"] == "10.0.100.100" and settings["hosts deny"] == "*", rsyncd
        assert settings["read only"] == "yes" and settings["uid"] == "nobody" and settings["port"] == "873"
        assert "[docroot]" in rsyncd and settings["path"] == "/srv/www", rsyncd


def test_layer4_backends_send_the_proxy_header_to_ports_of_their_own(salt_call, tmp_path: Path):
    """HAProxy's layer 4 servers (and their checks) get the PROXY protocol
    header, on the ports the topology gives them; layer 7 keeps its header."""
    lines, check = render_haproxy(salt_call, {}, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    servers = [line.split() for line in lines if line.startswith("server ")]
    proxied = sorted(words[2] for words in servers if words[-2:] == ["send-proxy", "check-send-proxy"])
    assert proxied == sorted(f"10.0.100.{n}:{port}" for n in (2, 3, 4) for port in (8081, 8444))
    assert not any("send-proxy" in " ".join(words) for words in servers if words[2].endswith(":8080"))


SITE_PROXY = (
    '{% set tplroot = "apache" %}{% set cert = "/c.crt" %}{% set key = "/c.key" %}'
    "{% set proxy_ports = PORTS %}"
    '{% include "apache/files/site-proxy.conf.jinja" %}'
)


def test_apache_takes_the_proxy_header_on_the_layer4_ports_only(salt_call):
    """The web servers' vhosts for the PROXY ports, as the apache formula
    derives them from the topology's backends: TLS where the backend says
    so; the other ports (80 for IPVS and the direct path, 8080 for layer 7)
    take no header."""
    code, states, stderr = salt_call("state.show_sls", "apache.config", node="web1")
    assert code == 0, stderr
    managed = states["apache-config-site-cluster-proxy"]["file"]
    context = next(arg["context"] for arg in managed if isinstance(arg, dict) and "context" in arg)
    assert context["proxy_ports"] == [{"port": 8081, "tls": False}, {"port": 8444, "tls": True}]
    template = SITE_PROXY.replace("PORTS", json.dumps(context["proxy_ports"]))
    code, site, stderr = salt_call("slsutil.renderer", f"string={template}", "default_renderer=jinja", node="web1")
    assert code == 0, stderr
    vhosts = site.split("<VirtualHost ")[1:]
    assert [v.split(">")[0] for v in vhosts] == ["*:8081", "*:8444"]
    assert all("RemoteIPProxyProtocol On" in v for v in vhosts)
    assert ["SSLEngine on" in v for v in vhosts] == [False, True]
    assert "Listen 8081" in site and "Listen 8444" in site
    for other in (SITE_HTTP, SITE_L7):
        code, text, stderr = salt_call("slsutil.renderer", f"string={other}", "default_renderer=jinja", node="web1")
        assert code == 0, stderr
        assert "RemoteIPProxyProtocol" not in text
