"""IPVS and NFS on the lab: real kernel features, from the host kernel or a user-mode one.

The seed's two kernel paths, shown from the `client` node as the seed did:
DNS through IPVS (UDP, .200:53) answered by every DNS server in turn, HTTP
through IPVS NAT (.202:80) that shows the client's own address, a DNS server
leaving and rejoining the IPVS table, and the docroot served from a real NFS
mount with root squashed.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import time
from pathlib import Path

import pytest

from conftest import SEED
from lab import kernel, node, uml, umlkernel
from lab.topology import CLIENT_ADDRESS as CLIENT
from labtools import MASTER_NODE, in_node, lab, salt_json, servers_seen

pytestmark = pytest.mark.usefixtures("running_lab")

DNS = {"dns1": "10.0.100.5", "dns2": "10.0.100.6", "dns3": "10.0.100.7"}
WEB = ["web1", "web2", "web3"]
DNS_SERVICE = "udp 192.168.1.200:53"


def ask_id(port: int, tries: int = 1) -> str:
    """The client's `dig CH TXT id.server` through the VIP from source ``port``."""
    return f"dig +short +time=2 +tries={tries} @192.168.1.200 CH TXT id.server -b {CLIENT}#{port}"


def ask_from(port: int, tries: int = 1) -> str:
    """Which DNS server answers a query through the VIP sent from ``port``."""
    return in_node("client", "sh", "-c", ask_id(port, tries)).stdout.strip().strip('"')


def answered_by(count: int) -> list[str]:
    """Which server answers `dig CH TXT id.server` through the VIP, query after query.

    IPVS keeps a UDP connection entry per client address and port for its UDP
    timeout (300 s): a query that happened to reuse the source port of an
    earlier one would go to that earlier server instead of the next in turn.
    So each query binds a source port outside the kernel's ephemeral range
    that has no live entry on the master.
    """
    busy = {int(m) for m in re.findall(rf"{re.escape(CLIENT)}:(\d+)", in_node("master", "ipvsadm", "-Lnc").stdout)}
    ports = [p for p in random.sample(range(20000, 30000), count + len(busy)) if p not in busy][:count]
    script = "; ".join(ask_id(port) for port in ports)
    return [line.strip('"') for line in in_node("client", "sh", "-c", script).stdout.split()]


def ipvs_diagnosis() -> str:
    """What to look at when the turn order breaks: live entries and keepalived's checker log."""
    table = in_node("master", "ipvsadm", "-Lnc", check=False).stdout
    log = in_node("master", "journalctl", "-u", "keepalived", "--since", "-3min", "--no-pager", check=False).stdout
    return f"\n{table}\n{log[-3000:]}"


def ipvs_table(stats: bool = False) -> dict[str, dict]:
    services = salt_json("master", "ipvs.services", f"stats={stats}")["master"]
    assert isinstance(services, list), services
    return {s["key"]: s for s in services}


def real_servers(service: dict) -> dict[str, dict]:
    return {r["address"]: r for r in service["real_servers"]}


def test_status_states_the_path_each_feature_took():
    out = lab("status").stdout
    for feature in ("ipvs", "nfs"):
        line = next(x for x in out.splitlines() if x.startswith(f"{feature}: "))
        assert "unavailable" not in line and " present on " in line, line
    lines = {x.split()[0]: x for x in out.splitlines() if x and x.split()[0] in SEED["nodes"]}
    if "user-mode kernel" in out:
        assert " uml " in lines["master"] and " uml " in lines["web1"] and " host " in lines["dns1"]
        # They run the kernel the lab chose (Debian 13's when it could fetch it: lab/umlkernel.py).
        chosen = kernel.uml_version()
        assert f"Linux {chosen} in user mode" in out
        assert {in_node(name, "uname", "-r").stdout.strip() for name in ("master", "nas", "web1")} == {chosen}


def test_a_user_mode_kernel_runs_on_its_own_trees_c_library():
    """Debian 13's kernel runs inside its Debian 13 tree (lab/umlkernel.py):
    the libc its process has mapped is the tree's file, not the host's."""
    tree = umlkernel.cached()
    pid = uml.pid(node.node_dir("master"))
    if tree is None or kernel.package_kernel_forced() or pid is None:
        pytest.fail("the lab runs no Debian 13 user-mode kernel here (LAB_UML=package, or it could not install it)")
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    mapped = {int(line.split()[4]) for line in maps if line.endswith("/libc.so.6")}
    assert mapped == {os.stat(tree / umlkernel.LIBRARIES / "libc.so.6").st_ino}, maps
    assert os.stat("/usr/lib/x86_64-linux-gnu/libc.so.6").st_ino not in mapped


def test_dns_through_the_vip_is_answered_by_each_server_in_turn():
    before = real_servers(ipvs_table(stats=True)[DNS_SERVICE])
    ids = answered_by(6)
    assert sorted(ids[:3]) == sorted(DNS) and ids[3:] == ids[:3], f"{ids}{ipvs_diagnosis()}"
    # The kernel folds its per-CPU counters into the figures ipvsadm reads
    # only every estimator round (2 s): the answers above came first.
    deadline = time.monotonic() + 10
    while True:
        after = real_servers(ipvs_table(stats=True)[DNS_SERVICE])
        assert set(after) == set(DNS.values())
        counted = all(after[a]["stats"]["conns"] >= before[a]["stats"]["conns"] + 2 for a in DNS.values())
        if counted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert counted, (before, after)


def test_the_live_ipvs_table_matches_the_topology():
    check = salt_json("master", "ipvs.check")["master"]
    assert check["matches"] is True, check
    out = in_node(MASTER_NODE, "salt-run", "cluster.health", "timeout=20", "--out=json").stdout
    assert json.loads(out[out.index("{") :])["ipvs"] == {"master": "matches the topology"}


def test_http_through_ipvs_nat_shows_the_clients_own_address():
    script = "for i in 1 2 3 4 5 6; do curl -s -m 5 http://192.168.1.202/; done"
    pages = in_node("client", "sh", "-c", script).stdout
    assert pages.count("Cliente IP: 192.168.1.10<") == 6, pages
    served = set(servers_seen(pages))
    assert served == {"10.0.100.2", "10.0.100.3", "10.0.100.4"}


def dns_real_servers() -> set[str]:
    """The real servers of the DNS virtual service, straight from the kernel (fast)."""
    out = in_node("master", "ipvsadm", "-Ln", "-u", "192.168.1.200:53").stdout
    return {line.split()[1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip().startswith("->")}


def wait_dns2_in_table(present: bool, timeout: float) -> None:
    """Until dns2 has left (or rejoined) the DNS virtual service."""
    deadline = time.monotonic() + timeout
    while (DNS["dns2"] in dns_real_servers()) != present:
        assert time.monotonic() < deadline, (
            "dns2 did not return to the IPVS table" if present else "dns2 stayed in the IPVS table"
        )
        time.sleep(0.5)


def test_a_stopped_dns_server_leaves_the_ipvs_table_and_returns():
    # Self-healing would start bind again at once (beacon -> reactor); mask it
    # for this boot so keepalived's own health check is what we watch.
    in_node("dns2", "systemctl", "mask", "--runtime", "named")
    try:
        in_node("dns2", "systemctl", "stop", "named")
        wait_dns2_in_table(present=False, timeout=20)
        ids = answered_by(4)
        assert len(ids) == 4 and set(ids) == {"dns1", "dns3"}, ids
        in_node("dns2", "systemctl", "unmask", "--runtime", "named")
        in_node("dns2", "systemctl", "start", "named")
        wait_dns2_in_table(present=True, timeout=30)
        assert "dns2" in answered_by(3)
    finally:
        in_node("dns2", "systemctl", "unmask", "--runtime", "named", check=False)
        in_node("dns2", "systemctl", "start", "named", check=False)


def test_a_cut_dns_servers_client_ports_move_to_the_others():
    """IPVS keeps a client port on its server for 5 minutes (the UDP entry).
    When a cut server leaves the table, expire_nodest_conn ends that entry at
    its next packet: the port's next query (a retry at most) is answered by
    another server instead of being dropped until the entry times out. (A
    stopped bind answers with an ICMP error instead, which ends the entry
    anyway: only a cut shows this.)"""
    port = next(p for p in random.sample(range(30000, 32000), 30) if ask_from(p) == "dns2")
    assert ask_from(port) == "dns2", "IPVS keeps a client port on its server"
    lab("cut", "dns2")
    try:
        wait_dns2_in_table(present=False, timeout=20)
        assert ask_from(port, tries=2) in {"dns1", "dns3"}, ipvs_diagnosis()
    finally:
        lab("heal", "dns2")
    wait_dns2_in_table(present=True, timeout=30)


def test_every_web_server_serves_the_docroot_from_the_nas_over_nfs():
    nfs = SEED["nfs"]
    nas = SEED["nodes"]["nas"]["interfaces"]["eth0"]["address"]
    for web in WEB:
        source = in_node(web, "findmnt", "-n", "-t", "nfs,nfs4", "-o", "SOURCE", nfs["mountpoint"]).stdout.strip()
        assert source == f"{nas}:{nfs['export']}", (web, source)
    name, token = f"probe-{secrets.token_hex(4)}.txt", secrets.token_hex(8)
    docroot_on_nas = nfs["export"] + nfs["docroot"][len(nfs["mountpoint"]) :]
    in_node("nas", "sh", "-c", f"echo {token} > {docroot_on_nas}/{name}")
    try:
        for web in WEB:
            assert in_node(web, "cat", f"{nfs['docroot']}/{name}").stdout.strip() == token, web
        # Through the VIP it is served from the web servers' copies of the
        # export, refreshed every few seconds (nfs.copy): poll for a bound.
        deadline, served = time.monotonic() + 30, ""
        while served != token and time.monotonic() < deadline:
            served = in_node("client", "curl", "-s", "-m", "5", f"http://192.168.1.200/{name}").stdout.strip()
            if served != token:
                time.sleep(1)
        assert served == token
    finally:
        in_node("nas", "rm", "-f", f"{docroot_on_nas}/{name}")


def test_a_web_servers_root_cannot_write_the_shared_docroot():
    denied = in_node("web1", "touch", f"{SEED['nfs']['docroot']}/root-was-here", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied
