"""Helpers for tests that drive the shared lab through its CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO
from lab import catalogue
from lab.checks import servers_seen
from lab.util import salt_returns


def lab(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({proc.returncode}):\\n{proc.stdout}\\n{proc.stderr}")
    return proc


def salt_json(*args: str, check: bool = True) -> dict:
    # Minions on user-mode kernels answer in seconds, not the CLI's default 5.
    timeout = () if "-t" in args else ("-t", "60")
    return salt_returns(lab("salt", "--out=json", *timeout, *args, check=check).stdout)


def in_node(node: str, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return lab("exec", node, "--", *argv, timeout=timeout, check=check)


# What the index page prints before the answering server's address.
PREFIX = catalogue.server_prefix()


def prometheus(path: str, server: str = "nas", **params: str) -> dict:
    """An answer of Prometheus's query API on the monitoring server (it
    listens on that node's loopback); ``params`` go URL-encoded."""
    encoded = [arg for key, value in params.items() for arg in ("--data-urlencode", f"{key}={value}")]
    url = f"http://127.0.0.1:9090/api/v1/{path}"
    out = in_node(server, "curl", "-s", "-m", "10", "-G", *encoded, url).stdout
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]


# The alert log on the monitoring server (alertmanager formula).
ALERT_LOG = "/var/log/cluster-alerts/alerts.jsonl"


def logged(since: int, server: str = "nas") -> list[dict]:
    """The alert log's lines after its first ``since`` (Alertmanager's notifications)."""
    out = in_node(server, "sh", "-c", f"cat {ALERT_LOG} 2>/dev/null || true").stdout
    return [json.loads(line) for line in out.splitlines()[since:]]


def alert_key(labels: dict) -> tuple[str, str]:
    """(alert, the node it is about): a backend's server, else the node its
    numbers came from ("" for an alert about no node)."""
    return labels["alertname"], labels.get("server", labels.get("node", ""))


def in_log(since: int, status: str, server: str = "nas") -> set[tuple[str, str]]:
    """alert_key of the alert log's lines of ``status`` after its first ``since``."""
    return {alert_key(e["labels"]) for e in logged(since, server) if e["status"] == status}


def scraped(server: str = "nas") -> dict[tuple[str, str], str]:
    """(job, node) -> health of every target Prometheus scrapes but itself."""
    labels = [(t["labels"], t["health"]) for t in prometheus("targets", server, state="active")["activeTargets"]]
    return {(lab["job"], lab["node"]): health for lab, health in labels if lab["job"] != "prometheus"}


def servers(url: str, count: int, *extra: str) -> list[str]:
    """The web servers (addresses) that answered ``count`` GETs of ``url`` from the client."""
    out = in_node("client", "sh", "-c", f"for i in $(seq {count}); do curl -s -m 5 {' '.join(extra)} {url}; done")
    return servers_seen(out.stdout)


def wait_until_serving(timeout: float = 90) -> None:
    """Wait for the cluster's normal state: every web server answers through
    the VIP (after a highstate HAProxy needs a few checks to see them up), and
    every VIP is on the VRRP leader, none on another director (after a
    failover, or a director's stall under load, the leader takes them back
    once its own checks pass)."""
    import time

    from lab.bench import Cluster, vips_held, vips_in_place
    from lab.topology import load

    model = load()[1]
    cluster = Cluster(model, LAB_NODES, MASTER_NODE, ipvs=True)
    vip = model["vips"]["external"][0]
    web = [model["nodes"][name]["address"] for name in model["roles"]["web"]]
    deadline = time.monotonic() + timeout
    while True:
        script = f"for i in $(seq {2 * len(web)}); do curl -s -m 2 http://{vip}/; done"
        out = in_node("client", "sh", "-c", script, check=False).stdout
        if all(f"{PREFIX}{address}<" in out for address in web) and vips_in_place(cluster):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not in the normal state: VIPs held {vips_held(cluster)}; through {vip}:\n{out}")
        time.sleep(1)


def _lab_nodes() -> dict:
    """The lab's nodes as `python -m lab` places them (host or user-mode kernel)."""
    from lab import kernel
    from lab.topology import load, place_on_kernels

    _, _, nodes = load()
    return place_on_kernels(nodes, kernel.uml_roles(kernel.paths()))


LAB_NODES = _lab_nodes()
# Where the salt-master runs: nas, or the container behind a user-mode nas.
MASTER_NODE = next(n.name for n in LAB_NODES.values() if n.runs_master)
