"""What a director failover keeps for a client (on the shared lab): the layer 7
port's cookie stickiness, through the standby and back. (The bench's drills,
tests/test_lab_bench.py, measure takeover, failed requests and established
flows.)"""

from __future__ import annotations

import pytest

from lab.bench import Cluster, holds_vip, vips_held, vips_in_place, wait_for
from lab.checks import servers_seen
from lab.topology import load
from labtools import LAB_NODES, MASTER_NODE, in_node, wait_until_serving

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
