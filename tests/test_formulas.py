"""The formulas on the lab: the cluster serves web and DNS through its VIPs.

Runs on the shared lab (conftest.running_lab), from the client node unless a
test says otherwise.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest
import yaml

from conftest import REPO
from lab.topology import load
from labtools import LAB_NODES, in_node, lab, salt_json, servers, servers_seen, wait_until_serving

pytestmark = pytest.mark.usefixtures("running_lab")

WEB = ["10.0.100.2", "10.0.100.3", "10.0.100.4"]


def curl(url: str, *extra: str, node: str = "client") -> str:
    return in_node(node, "curl", "-s", "-m", "5", *extra, url).stdout


def stats_credentials() -> tuple[str, str]:
    """The HAProxy statistics login the lab's pillar holds (as the benchmark reads it)."""
    stats = yaml.safe_load((REPO / "pillar" / "secrets.sls").read_text())["cluster_secrets"]["haproxy_stats"]
    return stats["user"], stats["password"]


@pytest.mark.usefixtures("normal_state")
def test_round_robin_over_layer4_http():
    answered = servers("http://192.168.1.200/", 6)
    assert sorted(answered) == sorted(WEB * 2), answered
    assert answered[:3] == answered[3:], "not a round robin"


@pytest.mark.usefixtures("normal_state")
def test_https_passes_through_to_every_server_tls12_or_later():
    answered = servers("https://192.168.1.200/", 3, "-k")
    assert sorted(answered) == WEB
    old = in_node("client", "curl", "-sk", "-m", "5", "--tls-max", "1.1", "https://192.168.1.200/", check=False)
    assert old.returncode != 0, "TLS 1.1 must be refused"
    cert = in_node(
        "client",
        "sh",
        "-c",
        "echo | openssl s_client -connect 192.168.1.200:443 2>/dev/null | openssl x509 -noout -text",
    )
    # At least 112 bits of security (NIST SP 800-57): RSA 2048, EC 224.
    algorithm = re.search(r"Public Key Algorithm: (\S+)", cert.stdout)[1]
    bits = int(re.search(r"Public-Key: \((\d+) bit\)", cert.stdout)[1])
    assert bits >= {"rsaEncryption": 2048, "id-ecPublicKey": 224}[algorithm], (algorithm, bits)


@pytest.mark.usefixtures("normal_state")
def test_layer7_sticks_to_one_server_and_shows_the_client():
    out = in_node(
        "client",
        "sh",
        "-c",
        "rm -f /tmp/jar; for i in 1 2 3 4; do curl -s -m 5 -b /tmp/jar -c /tmp/jar http://192.168.1.200:8000/; done",
    ).stdout
    assert len(set(servers_seen(out))) == 1 and len(servers_seen(out)) == 4
    assert "Forwarded-For: 192.168.1.10" in out and "Cliente IP: 192.168.1.10" in out
    assert "[SERVERID] =&gt; web" in out


def test_no_client_can_claim_an_address():
    """A client's own X-Client-IP header names nobody: layer 4 (:80, :443)
    takes the client's address from HAProxy's PROXY header, layer 7 from
    the header HAProxy sets over the client's."""
    for url in ("http://192.168.1.200/", "https://192.168.1.200/", "http://192.168.1.200:8000/"):
        page = curl(url, "-k", "-H", "X-Client-IP: 203.0.113.9")
        assert "Cliente IP: 192.168.1.10<" in page, (url, page[-400:])


def test_the_layer7_access_log_names_clients_and_leaves_health_checks_out():
    """On the layer 7 port a web server logs each client's request under the
    client's address, and none of the directors' health checks (several a
    second from each): the firewall's counter for the directors' ports shows
    the checks arrived meanwhile."""
    log = "/var/log/apache2/access.log"
    rule = "haproxy backends, from the directors"

    def checked() -> int:
        return salt_json("web1", "firewall.counters")["web1"]["chains"]["input"][rule]["packets"]

    lines = int(in_node("web1", "wc", "-l", log).stdout.split()[0])
    before = checked()
    marker = f"l7-log-{time.time_ns()}"
    seen = [curl(f"http://192.168.1.200:8000/?{marker}") for _ in range(6)]
    assert all("Soy el servidor" in page for page in seen)
    time.sleep(3)  # a few checks' worth (every 500 ms from each director)
    assert checked() - before >= 10, "no health check reached web1 meanwhile"
    new = in_node("web1", "tail", "-n", f"+{lines + 1}", log).stdout.splitlines()
    model = load()[1]
    directors = [model["nodes"][d]["address"] for d in model["roles"]["director"]] + model["vips"]["internal"]
    assert not [line for line in new if line.split(" ", 1)[0] in directors], new[:5]
    mine = [line for line in new if marker in line]
    # Round robin over three servers: web1 served some of the six.
    assert mine and all(line.startswith("192.168.1.10 ") for line in mine), new[:5]


@pytest.mark.usefixtures("normal_state")
def test_stats_need_the_pillar_credentials():
    user, password = stats_credentials()
    assert curl("http://10.0.100.200:7000/", "-o", "/dev/null", "-w", "%{http_code}", node="nas") == "401"
    bad = curl("http://10.0.100.200:7000/", "-u", "admin:123", "-o", "/dev/null", "-w", "%{http_code}", node="nas")
    assert bad == "401"
    page = curl("http://10.0.100.200:7000/", "-u", f"{user}:{password}", node="nas")
    assert "Master director master" in page and "web-http-l7" in page


def test_pi_page_computes_and_bounds_n():
    page = curl("http://192.168.1.200/pi.php?n=100000")
    assert "La cte. PI con n= 100000 es igual a 3.14159" in page
    assert curl("http://192.168.1.200/pi.php?n=-1", "-o", "/dev/null", "-w", "%{http_code}") == "400"


def test_dns_forward_reverse_aliases_and_forwarders():
    assert in_node("nas", "dig", "+short", "@10.0.100.5", "web1.lab.local").stdout.split() == ["10.0.100.2"]
    assert in_node("nas", "dig", "+short", "@10.0.100.6", "-x", "10.0.100.2").stdout.split() == ["web1.lab.local."]
    alias = in_node("nas", "dig", "+short", "@10.0.100.7", "lb1.lab.local").stdout.split()
    assert alias == ["master.lab.local.", "10.0.100.1"]
    assert in_node("nas", "dig", "+short", "@10.0.100.5", "www.example.org").stdout.split() == ["192.168.1.1"]
    for server, name in (("10.0.100.5", "dns1"), ("10.0.100.6", "dns2"), ("10.0.100.7", "dns3")):
        assert in_node("nas", "dig", "+short", f"@{server}", "CH", "TXT", "id.server").stdout.strip() == f'"{name}"'


def test_recursion_is_refused_to_a_network_not_listed():
    """nas borrows an address outside the listed networks; dns1 routes the answer back."""
    in_node("nas", "ip", "addr", "add", "172.31.0.1/32", "dev", "eth0")
    in_node("dns1", "ip", "route", "add", "172.31.0.1/32", "via", "10.0.100.100")
    try:
        refused = in_node("nas", "dig", "+time=2", "-b", "172.31.0.1", "@10.0.100.5", "www.example.org").stdout
        own_zone = in_node(
            "nas", "dig", "+short", "+time=2", "-b", "172.31.0.1", "@10.0.100.5", "web2.lab.local"
        ).stdout
    finally:
        in_node("dns1", "ip", "route", "del", "172.31.0.1/32", "via", "10.0.100.100", check=False)
        in_node("nas", "ip", "addr", "del", "172.31.0.1/32", "dev", "eth0", check=False)
    assert "status: REFUSED" in refused
    assert own_zone.split() == ["10.0.100.3"]
    allowed = in_node("nas", "dig", "+time=2", "@10.0.100.5", "www.example.org").stdout
    assert "status: NOERROR" in allowed


def test_servers_route_through_the_directors_nat():
    assert curl("http://192.168.1.1/", node="web2").startswith("upstream")
    assert in_node("dns2", "dig", "+short", "www.example.org").stdout.split() == ["192.168.1.1"]


@pytest.mark.parametrize(
    ("node", "sls", "pillar", "config", "probe"),
    [
        (
            "master",
            "haproxy",
            '{"haproxy": {"timeouts": {"connect": "5 parsecs"}}}',
            "/etc/haproxy/haproxy.cfg",
            ("client", "curl", "-s", "-m", "5", "http://192.168.1.200/"),
        ),
        (
            # check_cmd: iptables-restore --test on a user-mode web node, nft -c elsewhere.
            "web1",
            "firewall",
            '{"firewall": {"management": {"interface": "lab0", "cidr": "169.254.77.0/33"}}}',
            "/etc/iptables/cluster.v4" if LAB_NODES["web1"].platform == "uml" else "/etc/nftables.conf",
            ("operator", "curl", "-s", "-m", "5", "http://10.0.100.2/"),
        ),
        (
            "dns2",
            "firewall",
            '{"firewall": {"management": {"interface": "lab0", "cidr": "169.254.77.0/33"}}}',
            "/etc/nftables.conf" if LAB_NODES["dns2"].platform != "uml" else "/etc/iptables/cluster.v4",
            ("operator", "dig", "+short", "@10.0.100.6", "web3.lab.local"),
        ),
        (
            "dns1",
            "bind",
            '{"bind": {"dnssec_validation": "sometimes"}}',
            "/etc/bind/named.conf.options",
            ("nas", "dig", "+short", "@10.0.100.5", "web3.lab.local"),
        ),
    ],
)
def test_a_broken_value_fails_the_state_and_the_daemon_keeps_serving(node, sls, pillar, config, probe):
    before = hashlib.sha256(in_node(node, "cat", config).stdout.encode()).hexdigest()
    result = salt_json(node, "state.apply", sls, f"pillar={pillar}", "-t", "300", check=False)[node]
    failed = {k: v["comment"] for k, v in result.items() if not v["result"]}
    assert failed, f"{sls}: the broken value was accepted"
    assert any("check_cmd" in comment or "failed" in comment.lower() for comment in failed.values()), failed
    after = hashlib.sha256(in_node(node, "cat", config).stdout.encode()).hexdigest()
    assert after == before, "the live configuration was replaced"
    assert in_node(*probe).stdout.strip(), "the daemon stopped serving"


def test_cut_master_moves_the_vips_and_service_continues():
    lab("cut", "master")
    try:
        deadline = time.monotonic() + 20
        while "192.168.1.200/32" not in in_node("standby", "ip", "-br", "addr").stdout:
            assert time.monotonic() < deadline, "standby did not take the VIPs"
            time.sleep(0.5)
        held = in_node("standby", "ip", "-br", "addr").stdout
        assert "192.168.1.202/32" in held and "10.0.100.200/32" in held
        assert sorted(set(servers("http://192.168.1.200/", 3))) == WEB
        assert curl("http://192.168.1.1/", node="web1").startswith("upstream"), "NAT did not fail over"
    finally:
        lab("heal", "master")
    # Cut off, the master kept its VIPs (it hears no peer); healed, it first
    # yields to the standby (its backends check failed while cut), then
    # preempts once its HAProxy sees the servers again: seconds on the host
    # kernel, more in user mode. Wait for that final state: master only.
    deadline = time.monotonic() + 90
    while (
        "192.168.1.200/32" not in in_node("master", "ip", "-br", "addr").stdout
        or "192.168.1.200/32" in in_node("standby", "ip", "-br", "addr").stdout
    ):
        assert time.monotonic() < deadline, "master did not take the VIPs back from the standby"
        time.sleep(0.5)
    wait_until_serving()


def test_cut_web2_the_rotation_continues_on_web1_and_web3():
    lab("cut", "web2")
    try:
        # Layer 7 retries elsewhere at once: no request fails, even before detection.
        l7 = servers("http://192.168.1.200:8000/", 4)
        assert len(l7) == 4 and "10.0.100.3" not in l7
        deadline = time.monotonic() + 10  # detection: two failed checks, one second apart
        while True:
            answered = servers("http://192.168.1.200/", 6)
            if sorted(answered) == ["10.0.100.2"] * 3 + ["10.0.100.4"] * 3:
                break
            assert time.monotonic() < deadline, f"layer 4 rotation did not settle on web1 and web3: {answered}"
    finally:
        lab("heal", "web2")
    deadline = time.monotonic() + 30
    while "10.0.100.3" not in servers("http://192.168.1.200/", 3):
        assert time.monotonic() < deadline, "web2 did not return to the rotation"
        time.sleep(1)


def test_ipvs_and_nfs_capability_is_stated():
    grains = salt_json("master", "grains.get", "cluster_kernel")["master"]
    notes = salt_json("master", "state.apply", "keepalived", "test=True", "-t", "300")["master"]
    conf = in_node("master", "cat", "/etc/keepalived/keepalived.conf").stdout
    assert "vrrp_sync_group VG1" in conf
    if grains["ipvs"]:
        # A kernel with IPVS (the host's or a user-mode one): the virtual servers are configured.
        assert not any("no IPVS" in v["comment"] for v in notes.values())
        assert "virtual_server 192.168.1.200 53" in conf and "virtual_server 192.168.1.202 80" in conf
    else:
        assert any("no IPVS" in v["comment"] for v in notes.values())
        assert "virtual_server" not in conf


def test_apache_conf_enables_a_module_once_and_refuses_a_bad_kind():
    # headers: shipped by Debian's apache2, not enabled by it nor by the formula.
    link = "/etc/apache2/mods-enabled/headers.load"

    def enable(kind: str, check: bool = True) -> dict:
        answer = salt_json("web1", "state.single", "apache_conf.enabled", "name=headers", f"kind={kind}", check=check)
        return next(iter(answer["web1"].values()))

    assert in_node("web1", "test", "-e", link, check=False).returncode == 1
    try:
        first = enable("module")
        assert first["result"] is True and first["changes"] == {"enabled": "headers"}, first
        assert in_node("web1", "test", "-e", link, check=False).returncode == 0
        second = enable("module")
        assert second["result"] is True and second["changes"] == {}, second
    finally:
        in_node("web1", "a2dismod", "-q", "headers", check=False)
    bad = enable("modul", check=False)
    assert bad["result"] is False and "kind: 'modul'" in bad["comment"], bad
    assert in_node("web1", "test", "-e", link, check=False).returncode == 1
