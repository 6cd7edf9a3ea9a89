"""What a director failover keeps for a client (on the shared lab): the layer 7
port's cookie stickiness, through the standby and back. (The bench's drills,
tests/test_lab_bench.py, measure takeover, failed requests and established
flows.)"""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from lab.bench import Cluster, holds_vip, vips_held, vips_in_place, wait_for
from lab.checks import servers_seen
from lab.topology import load
from labtools import LAB_NODES, MASTER_NODE, in_node, salt_json, wait_until_serving

pytestmark = pytest.mark.usefixtures("running_lab")

MODEL = load()[1]
# The nodes as the lab placed them (host or user-mode kernel).
CLUSTER = Cluster(MODEL, LAB_NODES, MASTER_NODE, ipvs=True)
LEADER = MODEL["vrrp"]["leader"]
STANDBY = next(d for d in MODEL["roles"]["director"] if d != LEADER)
JAR = "/tmp/failover-cookies"
SERVERS = [MODEL["nodes"][name]["address"] for name in MODEL["roles"]["web"]]


def fetch(times: int, *curl_args: str) -> list[str]:
    """The servers that answered ``times`` layer 7 requests (with these curl arguments)."""
    url = f"http://{CLUSTER.vip}:{CLUSTER.l7_port}/"
    script = f"for i in $(seq {times}); do curl -s -m 3 {' '.join(curl_args)} {url}; done"
    return servers_seen(in_node("client", "sh", "-c", script).stdout)


def fetch_with_cookie(times: int, save: bool = False) -> list[str]:
    """The servers that answered ``times`` layer 7 requests sent with the jar."""
    return fetch(times, "-b", JAR, *(["-c", JAR] if save else []))


def test_cookie_stickiness_on_the_layer7_port_survives_the_failover():
    """A client's cookie from the leader's HAProxy sends it to the same web
    server through the standby while the leader's cables are cut, and again
    once the healed leader has the VIPs back and sees every server UP: the
    cookie names the server, and every director's HAProxy knows it."""
    wait_until_serving()
    in_node("client", "rm", "-f", JAR)
    first = fetch_with_cookie(1, save=True)
    assert len(first) == 1, first
    server = first[0]
    try:
        CLUSTER.cut(LEADER)
        assert wait_for(lambda: holds_vip(STANDBY, CLUSTER.vip), 30) is not None, "the standby never took the VIP"
        during = fetch_with_cookie(5)
        assert holds_vip(STANDBY, CLUSTER.vip)
    finally:
        CLUSTER.cut(LEADER, up=True)
    # The failback ends in the normal state: every VIP on the leader, none on
    # the standby (two holders is a split brain). A cut shorter than the
    # leader's own detection leaves it MASTER throughout; its HAProxy then
    # sees the servers DOWN for a moment after the heal (their checks failed
    # meanwhile), and ignores a cookie naming one: the cookie is tried once
    # every server is UP there again (a round robin without it reaches all).
    settled = wait_for(lambda: vips_in_place(CLUSTER), 60)
    assert settled is not None, vips_held(CLUSTER)
    everyone = set(SERVERS)
    assert wait_for(lambda: set(fetch(2 * len(everyone))) == everyone, 60) is not None
    after = fetch_with_cookie(5)
    print(f"cookie for {server}: through {STANDBY} {during}, back through {LEADER} {after}")
    assert during == [server] * 5 and after == [server] * 5
    in_node("client", "rm", "-f", JAR)
    wait_until_serving()


# On the leader: a connection to HAProxy's health socket accepted by the
# worker in place, HAProxy reloaded (systemctl returns once the new worker
# runs), then the question asked on that connection, so the worker handing
# over answers it; the reply's status line and body.
HELD_QUESTION = """
import socket, subprocess, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
subprocess.run(["systemctl", "reload", "haproxy"], check=True)
time.sleep(1)
sock.sendall(b"GET /healthy HTTP/1.0\\r\\n\\r\\n")
reply = b""
while chunk := sock.recv(512):
    reply += chunk
head, _, body = reply.partition(b"\\r\\n\\r\\n")
print(head.split(b"\\r\\n")[0].decode(), body.decode())
"""


def test_a_haproxy_reload_leaves_the_vips_where_they_are():
    """A reload's old worker stops its backends before it exits, and so
    counts none of their servers UP: asked then, it says "stopping", which
    keepalived's watcher ignores. Before, it said 503 "none", the leader's
    priority dropped and the VIPs went to the standby and back during a
    topology change (a failed request or two each way)."""
    wait_until_serving()
    since = in_node(LEADER, "date", "+%Y-%m-%d %H:%M:%S.%N").stdout.strip()
    socket_path = yaml.safe_load((REPO / "salt/haproxy/defaults.yaml").read_text())["haproxy"]["health_socket"]
    held = in_node(LEADER, "python3", "-c", HELD_QUESTION, socket_path).stdout.split()
    assert held == ["HTTP/1.1", "503", "Service", "Unavailable", "stopping"], held
    for _ in range(3):
        in_node(LEADER, "systemctl", "reload", "haproxy")
    units = ("-u", "haproxy", "-u", "keepalived")
    journal = in_node(LEADER, "journalctl", "--no-pager", "-o", "cat", "--since", since, *units).stdout
    print(journal[-3000:])
    assert journal.count("Reloaded haproxy.service") >= 4, journal[-3000:]
    assert "Changing effective priority" not in journal and "Entering BACKUP STATE" not in journal, journal[-3000:]
    assert vips_in_place(CLUSTER), vips_held(CLUSTER)


def changed_ids(node: str, sls: str) -> list[str]:
    """The IDs of the states that changed something in a run of ``sls``."""
    ret = salt_json(node, "state.apply", sls, "-t", "300")[node]
    assert all(v["result"] for v in ret.values()), ret
    return sorted(v["__id__"] for v in ret.values() if v["changes"])


def realtime_of(pid: str) -> tuple[str, str]:
    """A process's scheduling policy and priority, as chrt reports them."""
    lines = in_node(LEADER, "chrt", "--pid", pid).stdout.splitlines()
    return lines[0].rsplit(": ", 1)[1], lines[1].rsplit(": ", 1)[1]


def test_keepalived_reloads_keep_its_processes_realtime_and_the_vips():
    """keepalived 2.2.7, left to set its own realtime scheduling, sets its
    RLIMIT_RTTIME to 0 around every reload, and a clock tick then has the
    kernel kill the child: on a user-mode director one reload in 20 to 30
    killed the VRRP process, which came back as BACKUP while the standby
    took the VIPs. With the formula's keepalived-realtime setting it from
    outside, twenty reloads of the leader keep every process; the VRRP and
    checker processes realtime at the formula's priorities and limit, reset
    on fork, the main process and the notify FIFO's reader not; the VIPs
    where they are."""
    wait_until_serving()
    settings = yaml.safe_load((REPO / "salt/keepalived/defaults.yaml").read_text())["keepalived"]
    realtime, limit = settings["realtime"], settings["realtime"]["rlimit_rttime"]
    pid_files = settings["pid_files"]
    cat = f"cat /run/keepalived.pid {pid_files['vrrp']} {pid_files['checker']}"
    before = in_node(LEADER, "sh", "-c", cat).stdout.split()
    assert len(before) == 3, before
    since = in_node(LEADER, "date", "+%Y-%m-%d %H:%M:%S.%N").stdout.strip()
    for _ in range(20):
        in_node(LEADER, settings["reload_script"], "keepalived", "30", timeout=60)
    journal = in_node(LEADER, "journalctl", "--no-pager", "-o", "cat", "-u", "keepalived", "--since", since).stdout
    assert journal.count("Reload complete") >= 20, journal[-3000:]
    assert "exited due to signal" not in journal and "Entering BACKUP STATE" not in journal, journal[-3000:]
    assert in_node(LEADER, "sh", "-c", cat).stdout.split() == before
    main, vrrp, checker = before
    assert realtime_of(main) == ("SCHED_OTHER", "0")
    assert realtime_of(vrrp) == ("SCHED_RR|SCHED_RESET_ON_FORK", str(realtime["vrrp"]))
    assert realtime_of(checker) == ("SCHED_RR|SCHED_RESET_ON_FORK", str(realtime["checker"]))
    for pid in (vrrp, checker):
        limits = in_node(LEADER, "prlimit", "--pid", pid, "--rttime", "--raw", "--noheadings").stdout.split()
        assert limits[-3:-1] == [str(limit // 2), str(limit)], (pid, limits)
    reader = in_node(LEADER, "pgrep", "-f", f"^/bin/bash {settings['notify_script']} ").stdout.split()
    assert len(reader) == 1, reader
    assert realtime_of(reader[0])[0] == "SCHED_OTHER"
    assert vips_in_place(CLUSTER), vips_held(CLUSTER)


def test_a_keepalived_process_that_lost_realtime_gets_it_back_from_salt():
    """A VRRP process keepalived started again (here: one set back to normal
    scheduling by hand) runs without realtime until Salt's next run of the
    keepalived formula, which sets it again without a restart: same PID, and
    a second run changes nothing."""
    wait_until_serving()
    settings = yaml.safe_load((REPO / "salt/keepalived/defaults.yaml").read_text())["keepalived"]
    vrrp = in_node(LEADER, "cat", settings["pid_files"]["vrrp"]).stdout.strip()
    in_node(LEADER, "chrt", "--other", "--pid", "0", vrrp)
    assert realtime_of(vrrp) == ("SCHED_OTHER", "0")
    assert in_node(LEADER, settings["realtime_script"], "--check", check=False).returncode == 1
    try:
        first = changed_ids(LEADER, "keepalived")
        assert first == ["keepalived-service-realtime-applied"], first
        assert realtime_of(vrrp) == ("SCHED_RR|SCHED_RESET_ON_FORK", str(settings["realtime"]["vrrp"]))
        assert changed_ids(LEADER, "keepalived") == []
    finally:
        in_node(LEADER, settings["realtime_script"], check=False)
    assert vips_in_place(CLUSTER), vips_held(CLUSTER)


def test_a_keepalived_that_never_ends_its_reload_is_restarted():
    """keepalived 2.2.7 never reports a reload over when a child process did
    not read the new configuration (one killed mid-reload, here one stopped):
    `systemctl reload` would wait for ever. The formula's keepalived-reload
    gives up after its timeout, cancels the reload and restarts keepalived,
    which then reloads normally; the leader keeps the VIPs meanwhile."""
    wait_until_serving()
    script = "/usr/local/sbin/keepalived-reload"
    before = in_node(STANDBY, "systemctl", "show", "-p", "MainPID", "--value", "keepalived").stdout.strip()
    children = in_node(STANDBY, "pgrep", "-P", before).stdout.split()
    assert children, "keepalived on the standby has no child process"
    in_node(STANDBY, "kill", "-STOP", children[0])
    try:
        out = in_node(STANDBY, script, "keepalived", "5", timeout=120)
    finally:
        in_node(STANDBY, "kill", "-CONT", children[0], check=False)
    print(out.stdout, out.stderr)
    assert "did not finish its reload within 5 s" in out.stderr
    after = in_node(STANDBY, "systemctl", "show", "-p", "MainPID", "--value", "keepalived").stdout.strip()
    assert after not in ("0", before), (before, after)
    assert in_node(STANDBY, "systemctl", "is-active", "keepalived").stdout.strip() == "active"
    again = in_node(STANDBY, script, "keepalived", "30", timeout=120)
    assert "keepalived reloaded" in again.stdout, (again.stdout, again.stderr)
    assert vips_in_place(CLUSTER), vips_held(CLUSTER)
