"""Prometheus on the nas scrapes every node's numbers (issue 28), on the shared lab.

The targets expected are read from the topology pillar as a user reads it
(every node; HAProxy's exporter on each director), not from the model the
formulas render. The exporters answer the monitoring server only: the
external client (an attacker on the Internet) and `operator` (an internal
machine that is no monitoring server) are refused, the nas is answered.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from conftest import REPO
from lab.topology import OPERATOR
from labtools import (
    ALERT_LOG,
    alert_key,
    in_log,
    in_node,
    lab,
    logged,
    prometheus,
    salt_json,
    scraped,
    wait_until_serving,
)

pytestmark = pytest.mark.usefixtures("running_lab")

TOPOLOGY = yaml.safe_load((REPO / "pillar" / "cluster.sls").read_text())["cluster"]
NODES = TOPOLOGY["nodes"]
DIRECTORS = sorted(name for name, spec in NODES.items() if "director" in spec["roles"])
SERVER = "nas"
# An alert fires within a scrape, the rule's 30 s and an evaluation of the
# failure (15 s scrapes and evaluations, prometheus/defaults.yaml), and
# resolves within a scrape and an evaluation of the heal.
ALERT_BOUND_S = 90
# Alertmanager notifies an alert within its group_wait (10 s), its
# resolution within its group_interval (30 s; alertmanager/defaults.yaml).
NOTIFIED_BOUND_S = 45
# A stopped minion's metrics are old after 90 s (prometheus/defaults.yaml),
# then the rule's 30 s, a scrape and an evaluation.
MINION_BOUND_S = 180
CUT_WEB1 = {("NodeDown", "web1"), ("BackendServerDown", "web1"), ("IPVSRealServerOut", "web1")}
RULES = "/etc/prometheus/cluster-rules.yml"
CUT_OFF = "the monitoring server reaches fewer than half of the nodes: it is cut off, or most of the cluster is down"
MINION_STOPPED = "web2's salt-minion has not run its schedule for over 90 s"
INSTANCES = sorted(TOPOLOGY["vrrp"]["instances"])


def role_nodes(role: str) -> list[str]:
    return sorted(name for name, spec in NODES.items() if role in spec["roles"])


def internal_address(name: str) -> str:
    return next(i["address"] for i in NODES[name]["interfaces"].values() if i["network"] == "internal")


def external_address(name: str) -> str:
    return next(i["address"] for i in NODES[name]["interfaces"].values() if i["network"] == "external")


def test_every_node_and_every_director_haproxy_is_scraped_and_up():
    expected = {("node", name) for name in NODES} | {("haproxy", name) for name in DIRECTORS}
    expected |= {("bind", name) for name in role_nodes("dns")} | {("apache", name) for name in role_nodes("web")}
    expected.add(("alertmanager", SERVER))
    deadline = time.monotonic() + 90
    while True:
        targets = scraped()
        if set(targets) == expected and set(targets.values()) == {"up"}:
            break
        assert time.monotonic() < deadline, f"targets not all up: {targets}"
        time.sleep(3)
    # The numbers are the cluster's: the node exporter's view of each
    # node's name, and HAProxy's count of the web servers it sees UP.
    names = prometheus("query", query="node_uname_info")["result"]
    # (A Prometheus restarted in the last 5 minutes may still show a series
    # of its previous run beside the new one: names, not series, count.)
    assert {r["metric"]["nodename"] for r in names} == set(NODES)
    web = [name for name, spec in NODES.items() if "web" in spec["roles"]]
    backends = sorted(name for name, b in TOPOLOGY["haproxy"]["backends"].items() if b["role"] == "web")
    active = prometheus("query", query="haproxy_backend_active_servers")["result"]
    counts = {(r["metric"]["node"], r["metric"]["proxy"]): int(float(r["value"][1])) for r in active}
    assert {key: n for key, n in counts.items() if key[1] in backends} == {
        (director, backend): len(web) for director in DIRECTORS for backend in backends
    }, counts


# Every URL fetched at once, each within 3 s; those that answered printed.
ANSWERING = 'for url in "$@"; do (curl -s -o /dev/null -m 3 "$url" && echo "$url") & done; wait'


def answering(source: str, urls: list[str]) -> set[str]:
    """Which of ``urls`` answer from ``source`` within 3 s (tried together)."""
    return set(in_node(source, "sh", "-c", ANSWERING, "sh", *urls).stdout.split())


def test_the_exporters_answer_the_monitoring_server_only():
    director, web1 = DIRECTORS[0], "web1"
    dns1 = role_nodes("dns")[0]
    # The nas is answered (what Prometheus does every few seconds), the web
    # and DNS servers' own exporters included.
    allowed = [
        f"http://{internal_address(web1)}:9100/metrics",
        f"http://{internal_address(web1)}:9117/metrics",
        f"http://{internal_address(dns1)}:9119/metrics",
    ]
    assert answering(SERVER, allowed) == set(allowed)
    # An attacker on the Internet: not on the director's own address, nor on a VIP.
    vips = [str(v) for v in TOPOLOGY["vips"]["external"]]
    before = salt_json(director, "firewall.dropped")[director]["input"]
    hosts = [external_address(director), *vips]
    internet = [f"http://{host}:{port}/metrics" for host in hosts for port in (9100, 8405)]
    assert answering("client", internet) == set()
    # An internal machine that is no monitoring server: no exporter, and
    # neither Prometheus, Alertmanager (its API and its cluster port) nor the
    # alert log, which listen on the nas's loopback only.
    internal = [
        *[f"http://{internal_address(director)}:{port}/metrics" for port in (9100, 8405)],
        *allowed,
        *[f"http://{internal_address(SERVER)}:{port}/" for port in (9090, 9093, 9094, 9095)],
    ]
    assert answering(OPERATOR, internal) == set()
    assert salt_json(director, "firewall.dropped")[director]["input"] > before, "the attempts did not reach it"
    listening = in_node(SERVER, "ss", "-Htln").stdout.split("\n")
    local = {line.split()[3] for line in listening if line.strip()}
    assert {"127.0.0.1:9090", "127.0.0.1:9093", "127.0.0.1:9095"} <= local, local
    assert not any(address.endswith(":9094") for address in local), local


def firing(server: str = SERVER) -> set[tuple[str, str]]:
    """alert_key of every alert Prometheus has firing (not pending)."""
    return {alert_key(a["labels"]) for a in prometheus("alerts", server)["alerts"] if a["state"] == "firing"}


def test_the_alert_rules_are_loaded_and_the_vrrp_states_are_metrics():
    groups = prometheus("rules", type="alert")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["name"] for rule in rules}
    assert {"NodeDown", "VIPHeldByNone", "VIPSplitBrain", "IPVSRealServerOut", "NFSUnreachable"} <= names, names
    assert {rule["health"] for rule in rules} == {"ok"}, [r for r in rules if r["health"] != "ok"]
    # One MASTER per VRRP instance, among the directors the topology has.
    instances = salt_json("-L", ",".join(DIRECTORS), "vip.vrrp_state")
    recorded = {name for states in instances.values() for name in states}
    expected = {name.split("-", 1)[1] for name in recorded if name.startswith("INSTANCE-")}
    deadline = time.monotonic() + 60
    while True:
        held = prometheus("query", query='sum by (name) (keepalived_vrrp_master{type="instance"})')["result"]
        sums = {r["metric"]["name"]: float(r["value"][1]) for r in held}
        if sums == dict.fromkeys(expected, 1.0):
            break
        assert time.monotonic() < deadline, (sums, instances)
        time.sleep(3)
    assert firing() == set(), "alerts fire on a cluster in its normal state"


def vrrp_series(states: dict[str, str]) -> list[dict]:
    """Every VRRP instance of the topology as each director reports it (``states``: director -> state)."""
    return [
        {
            "series": f'keepalived_vrrp_master{{type="instance",name="{name}",node="{director}",state="{state}"}}',
            "values": f"{int(state == 'MASTER')}x40",
        }
        for name in INSTANCES
        for director, state in states.items()
    ]


def node_up(down: int, up: int) -> list[dict]:
    """``down`` nodes whose exporter does not answer, ``up`` that do."""
    return [{"series": f'up{{job="node",node="n{i}"}}', "values": f"{int(i >= down)}x40"} for i in range(down + up)]


def rule_case(series: list[dict], alert: str, expected: list[dict], at: str = "2m") -> dict:
    return {
        "interval": "15s",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}],
    }


def test_the_rules_that_no_drill_breaks_fire_on_series_that_break_them():
    """promtool's rule tests on the nas, against the live rules file: series
    written here (no director MASTER, two MASTERs, an NFS mount in error, a
    disk nearly full, a server drained past its time) and the alerts a user
    should get from them, labels and summary; none from the normal state."""
    master, standby = DIRECTORS
    web_mount = {"device": "10.0.100.100:/srv/nfs/www", "fstype": "nfs4", "mountpoint": "/srv/www", "node": "web1"}
    labels = ",".join(f'{key}="{value}"' for key, value in web_mount.items())
    none_master = [
        {
            "exp_labels": {"name": name},
            "exp_annotations": {"summary": f"no director is MASTER of VRRP instance {name}"},
        }
        for name in INSTANCES
    ]
    two_masters = [
        {
            "exp_labels": {"name": name},
            "exp_annotations": {"summary": f"more than one director is MASTER of VRRP instance {name}"},
        }
        for name in INSTANCES
    ]
    drained = 'haproxy_server_status{node="master",proxy="web-http-l7",server="web2",state="DRAIN"}'
    cases = [
        rule_case(vrrp_series({master: "BACKUP", standby: "FAULT"}), "VIPHeldByNone", none_master),
        rule_case([], "VIPHeldByNone", none_master),  # no director's numbers at all
        rule_case(vrrp_series({master: "MASTER", standby: "MASTER"}), "VIPSplitBrain", two_masters),
        rule_case(vrrp_series({master: "MASTER", standby: "BACKUP"}), "VIPHeldByNone", []),
        rule_case(vrrp_series({master: "MASTER", standby: "BACKUP"}), "VIPSplitBrain", []),
        rule_case(
            [{"series": f"node_filesystem_device_error{{{labels}}}", "values": "1x40"}],
            "NFSUnreachable",
            [
                {
                    "exp_labels": web_mount,
                    "exp_annotations": {"summary": f"web1 cannot reach the NFS export {web_mount['device']}"},
                }
            ],
        ),
        rule_case(
            [
                {"series": 'node_filesystem_avail_bytes{fstype="ext4",mountpoint="/",node="nas"}', "values": "5x40"},
                {"series": 'node_filesystem_size_bytes{fstype="ext4",mountpoint="/",node="nas"}', "values": "100x40"},
            ],
            "DiskNearFull",
            [
                {
                    "exp_labels": {"fstype": "ext4", "mountpoint": "/", "node": "nas"},
                    "exp_annotations": {"summary": "nas: / is nearly full"},
                }
            ],
            at="8m",
        ),
        rule_case([{"series": drained, "values": "1x80"}], "BackendServerDrained", [], at="10m"),
        # bind stopped under a running exporter; Apache answering.
        rule_case(
            [
                {"series": 'bind_up{job="bind",node="dns1"}', "values": "0x40"},
                {"series": 'apache_up{job="apache",node="web1"}', "values": "1x40"},
            ],
            "ServiceDown",
            [
                {
                    "exp_labels": {"job": "bind", "node": "dns1"},
                    "exp_annotations": {"summary": "dns1: bind does not answer its exporter"},
                }
            ],
        ),
        # A node down: NodeDown names it; its other exporters add nothing.
        rule_case(
            [
                {"series": 'up{job="node",node="dns1"}', "values": "0x40"},
                {"series": 'up{job="bind",node="dns1"}', "values": "0x40"},
            ],
            "ExporterDown",
            [],
        ),
        rule_case(
            [
                {"series": 'up{job="node",node="dns1"}', "values": "1x40"},
                {"series": 'up{job="bind",node="dns1"}', "values": "0x40"},
            ],
            "ExporterDown",
            [
                {
                    "exp_labels": {"job": "bind", "node": "dns1"},
                    "exp_annotations": {"summary": "dns1: the bind exporter does not answer"},
                }
            ],
        ),
        # Five of nine nodes silent: the monitoring server is the one cut off; four: not.
        rule_case(node_up(5, 4), "MonitoringCutOff", [{"exp_labels": {}, "exp_annotations": {"summary": CUT_OFF}}]),
        rule_case(node_up(4, 5), "MonitoringCutOff", []),
        # web2's minion: connected but its metrics written at time 0 (the
        # series stops: what the textfile keeps is scraped unchanged) ...
        rule_case(
            [
                {"series": 'salt_minion_checked_timestamp_seconds{node="web2"}', "values": "0x40"},
                # What Debian's own first configuration scraped (no node): not ours.
                {"series": 'salt_minion_checked_timestamp_seconds{instance="localhost:9100"}', "values": "0x40"},
            ],
            "SaltMinionStopped",
            [{"exp_labels": {"node": "web2"}, "exp_annotations": {"summary": MINION_STOPPED}}],
            at="3m",
        ),
        # ... and one that writes on time but reaches no master.
        rule_case(
            [{"series": 'salt_minion_master_connected{node="web2"}', "values": "0x40"}],
            "SaltMinionDisconnected",
            [
                {
                    "exp_labels": {"node": "web2"},
                    "exp_annotations": {"summary": "web2's salt-minion reaches no Salt master"},
                }
            ],
        ),
        rule_case(
            [{"series": drained, "values": "1x80"}],
            "BackendServerDrained",
            [
                {
                    "exp_labels": {"node": "master", "proxy": "web-http-l7", "server": "web2", "state": "DRAIN"},
                    "exp_annotations": {"summary": "web2 is drained in web-http-l7 on master"},
                }
            ],
            at="17m",
        ),
    ]
    document = json.dumps({"rule_files": [RULES], "evaluation_interval": "15s", "tests": cases})
    script = 'printf %s "$1" > /tmp/rule-tests.yml && exec promtool test rules /tmp/rule-tests.yml'
    proc = in_node(SERVER, "sh", "-c", script, "sh", document, check=False)
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr


def wait_logged(since: int, status: str, expected: set, started: float) -> float:
    while not (now := in_log(since, status)) >= expected:
        assert time.monotonic() - started < NOTIFIED_BOUND_S, f"not {status} in {ALERT_LOG}: {now}"
        time.sleep(2)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        # A web and a DNS server together: each is silent to Prometheus,
        # HAProxy takes web1 out, keepalived takes both out of IPVS.
        (("web1", "dns1"), CUT_WEB1 | {("NodeDown", "dns1"), ("IPVSRealServerOut", "dns1")}),
        # The VRRP leader: silent (NodeDown only: its other exporters are
        # not named apart), the standby takes the VIPs (no VIPHeldByNone,
        # which would also fire).
        (("master",), {("NodeDown", "master")}),
    ],
    ids=["web-and-dns-node-cut", "director-cable-cut"],
)
def test_a_drill_raises_its_alerts_to_the_alert_log_and_the_heal_resolves_them(cut, expected):
    """The nodes' cables cut: their alerts fire, and only those, and
    Alertmanager writes them to the alert log; healed, all resolve, and the
    log says so. The times are printed: the bound a user can expect."""
    assert firing() == set()
    since = len(logged(0))
    started = time.monotonic()
    for name in cut:
        lab("cut", name)
    try:
        while not (now := firing()) >= expected:
            assert time.monotonic() - started < ALERT_BOUND_S, f"not firing after {ALERT_BOUND_S} s: {now}"
            time.sleep(2)
        fired = time.monotonic() - started
        notified = wait_logged(since, "firing", expected, time.monotonic())
        assert firing() == expected, "more alerts than the cut explains"
    finally:
        for name in cut:
            lab("heal", name)
    healed = time.monotonic()
    while now := firing():
        assert time.monotonic() - healed < ALERT_BOUND_S, f"still firing {ALERT_BOUND_S} s after the heal: {now}"
        time.sleep(2)
    resolved = time.monotonic() - healed
    resolved_notified = wait_logged(since, "resolved", expected, time.monotonic())
    print(
        f"{'+'.join(cut)} cut: alerts firing after {fired:.0f} s, in the alert log {notified:.0f} s later;"
        f" resolved {resolved:.0f} s after the heal, in the log {resolved_notified:.0f} s later"
    )
    wait_until_serving()


def test_a_stopped_salt_minion_raises_its_alert_and_a_restart_resolves_it():
    """web2's salt-minion stopped (its node still up and scraped): its last
    metrics grow old and SaltMinionStopped fires for web2; started again,
    its schedule writes them at once and the alert resolves."""
    assert firing() == set()
    started = time.monotonic()
    try:
        # Longer than systemd's stop timeout (90 s), after which systemd kills
        # a minion that ignored SIGTERM.
        in_node("web2", "systemctl", "stop", "salt-minion", timeout=120)
        while ("SaltMinionStopped", "web2") not in (now := firing()):
            assert time.monotonic() - started < MINION_BOUND_S, f"not firing after {MINION_BOUND_S} s: {now}"
            time.sleep(3)
        fired = time.monotonic() - started
        assert now == {("SaltMinionStopped", "web2")}, now
    finally:
        in_node("web2", "systemctl", "start", "salt-minion")
    restarted = time.monotonic()
    while now := firing():
        assert time.monotonic() - restarted < ALERT_BOUND_S, f"still firing {ALERT_BOUND_S} s after the start: {now}"
        time.sleep(3)
    print(f"web2's minion stopped: firing after {fired:.0f} s; resolved {time.monotonic() - restarted:.0f} s after")


def test_the_status_pages_the_exporters_read_stay_on_the_loopback():
    """Apache's status page (it names clients and URLs) and bind's
    statistics channel listen on their node's loopback; from the Internet,
    /server-status is refused on every path to the web servers."""
    web1, dns1 = role_nodes("web")[0], role_nodes("dns")[0]
    for name, port in ((web1, 8079), (dns1, 8053)):
        listening = in_node(name, "ss", "-Htln", f"sport = :{port}").stdout.split()
        assert listening and listening[3] == f"127.0.0.1:{port}", (name, listening)
    # Seen working where it may be read: the exporter's view of it.
    status = in_node(web1, "curl", "-s", "-m", "3", "http://127.0.0.1:8079/server-status?auto").stdout
    assert "BusyWorkers:" in status, status[:500]
    vip = TOPOLOGY["vips"]["external"][0]
    ipvs_web = next(
        vs for vs in TOPOLOGY["ipvs"]["virtual_servers"].values() if vs["role"] == "web" and vs["protocol"] == "tcp"
    )
    paths = [f"http://{vip}", f"https://{vip}", f"http://{vip}:8000", f"http://{ipvs_web['vip']}:{ipvs_web['port']}"]
    for base in paths:
        proc = in_node(
            "client", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", f"{base}/server-status"
        )
        assert proc.stdout == "403", (base, proc.stdout)
