"""The web servers log who asked, on every path through the directors: the
client's own address for HAProxy's layer 4 (:80, and :443 with TLS through
to the web server: the PROXY protocol header), layer 7 (:8000: the
X-Client-IP header) and IPVS (.202:80: NAT keeps it). The directors' health
checks, several a second per server, are not logged."""

from __future__ import annotations

import time
import uuid

import pytest

from lab.topology import load
from labtools import in_node, salt_json, wait_until_serving

pytestmark = pytest.mark.usefixtures("running_lab")

_, MODEL, _ = load()
CLIENT = "192.168.1.10"
VIP = MODEL["vips"]["external"][0]
IPVS_WEB = next(vs for vs in MODEL["ipvs"]["virtual_servers"] if vs["role"] == "web" and vs["protocol"] == "tcp")
WEBS = MODEL["roles"]["web"]
ACCESS_LOG = "/var/log/apache2/access.log"
ERROR_LOG = "/var/log/apache2/error.log"
PATHS = {
    "haproxy layer 4": f"http://{VIP}/",
    "haproxy https": f"https://{VIP}/",
    "haproxy layer 7": f"http://{VIP}:8000/",
    "ipvs": f"http://{IPVS_WEB['vip']}:{IPVS_WEB['port']}/",
}


def logged(marker: str) -> list[tuple[str, str]]:
    """(web node, access log line) for every line holding marker."""
    found = []
    for web in WEBS:
        lines = in_node(web, "grep", "-F", marker, ACCESS_LOG, check=False).stdout.splitlines()
        found += [(web, line) for line in lines]
    return found


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_serving_web_server_logs_the_clients_own_address(path):
    wait_until_serving()
    marker = f"who-{uuid.uuid4().hex}"
    status = in_node("client", "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"{PATHS[path]}?{marker}")
    assert status.stdout == "200", status
    deadline = time.monotonic() + 5  # Apache writes the line when the request ends
    while not (lines := logged(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(lines) == 1, lines
    web, line = lines[0]
    print(f"{path}: {web}: {line}")
    assert line.split()[0] == CLIENT, line


def test_health_checks_stay_out_of_the_access_logs():
    """Seen arriving first: the web server's firewall counts the directors'
    new connections to HAProxy's backend ports (the checks of every layer 4
    and layer 7 backend); meanwhile its access log gains no line."""

    def checks() -> int:
        chains = salt_json("web1", "firewall.counters")["web1"]["chains"]
        return chains["input"]["haproxy backends, from the directors"]["packets"]

    size = int(in_node("web1", "stat", "-c", "%s", ACCESS_LOG).stdout)
    errors = int(in_node("web1", "stat", "-c", "%s", ERROR_LOG).stdout)
    before = checks()
    time.sleep(3)
    arrived = checks() - before
    # Three backends, two directors, a check every 250 ms: about 70 in 3 s.
    assert arrived >= 20, f"only {arrived} check connections reached web1: the test would prove nothing"
    new = in_node("web1", "tail", "-c", f"+{size + 1}", ACCESS_LOG).stdout
    assert new == "", f"{arrived} checks arrived; logged meanwhile:\n{new}"
    # Nor do they fill the error log (a header Apache cannot take would).
    complaints = in_node("web1", "tail", "-c", f"+{errors + 1}", ERROR_LOG).stdout
    assert "RemoteIP" not in complaints, complaints[-2000:]
