"""Benchmarks and failure drills on the running lab (issue 7).

    python -m lab bench [--quick] [--out DIR]

From the `client` node, with the seed's tools (ab from apache2-utils, dnsperf):

- an HTTP sweep over concurrency x page (the date page; the PI page with a
  fixed n) x path: ``direct`` (the web servers themselves, from the lab's
  `operator` node on the internal network; the concurrency is split among
  them), ``l4`` (HAProxy
  :80), ``l7`` (:8000), ``https`` (:443) and ``ipvs`` (.202:80, when the lab
  has IPVS), with the host CPU each director and web server used meanwhile;
- dnsperf through the VIP and direct to one server (from `operator`), with queries generated
  from the zones and the upstream names;
- failure drills, each watched by lab/probe.py (an HTTP and a DNS probe
  through the VIP every 10 ms, retried once on failure), and the
  flow-survival drills (lab/bench/flows.py: a download across a director
  cable cut and the failback) and the nas drill (lab/bench/docroot.py: the
  site through a long nas cut, and a file published meanwhile).

Every point is bounded by a request count and a time limit. Results go to
DIR/results.json (the schema in lab/bench/report.py), then DIR/report.md and the
plots. The quick run takes about 4 minutes; the full one is documented in
docs/operations.md with its duration.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from lab import catalogue, net, node
from lab.bench import docroot, flows, history, report
from lab.checks import servers_seen
from lab.topology import CLIENT_ADDRESS, OPERATOR, REPO, UPSTREAM_NAMES, LabNode
from lab.util import log

CLIENT = "client"
PROBE_INTERVAL = 0.01
# A drill's probe waits PROBE_TIMEOUT_S for an answer (none by then: failed);
# an answer after LATE_S still counts toward the outage, not as an error.
PROBE_TIMEOUT_S = 5.0
LATE_S = 1.0
PAGES = {"date": "/index.php", "pi": "/pi.php?n={n}"}


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    requests: dict[str, int]  # per point, by page
    time_limit: int  # seconds per point at most (ab -t)
    pi_n: int
    dns_clients: tuple[int, ...]
    dns_seconds: int
    drills: tuple[str, ...]
    hold: float  # how long a fault lasts
    settle: float  # how long a drill waits for normal after the heal, at most


DRILLS = (
    "control",
    "director cable cut",
    "keepalived killed",
    "haproxy killed",
    "web node cut",
    "dns node cut",
    docroot.DRILL,
    docroot.DISK_LOSS,
    "salt-master stopped",
    *flows.DRILLS,
)
QUICK = Plan(
    (1, 6),
    {"date": 60, "pi": 12},
    8,
    100_000,
    (1, 4),
    2,
    ("control", "web node cut", "dns node cut", "director cable cut", *flows.DRILLS),
    3,
    30,
)
FULL = Plan((1, 2, 3, 6, 12, 24, 48), {"date": 2000, "pi": 300}, 30, 1_000_000, (1, 4, 16), 10, DRILLS, 10, 90)


# --- pure parsers -------------------------------------------------------------


def parse_ab(text: str) -> dict:
    """ab's report -> requests, rps, p50_ms, p99_ms, failed (failed + non-2xx),
    seconds (how long it ran: ab stops at -n requests or -t seconds)."""

    def number(label: str) -> float | None:
        match = re.search(rf"^{re.escape(label)}:\s+([0-9.]+)", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    def percentile(p: int) -> float | None:
        match = re.search(rf"^\s+{p}%\s+([0-9.]+)", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    complete = number("Complete requests")
    if complete is None:
        raise ValueError(f"not an ab report: {text.strip()[-200:]!r}")
    return {
        "requests": int(complete),
        "rps": number("Requests per second") or 0.0,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "failed": int((number("Failed requests") or 0) + (number("Non-2xx responses") or 0)),
        "seconds": number("Time taken for tests"),
    }


def parse_ab_run(text: str, planned: int) -> dict:
    """parse_ab, or what an aborted ab tells (e.g. no answer within -s): how
    many requests completed; the rest count as failed, throughput unknown."""
    try:
        return parse_ab(text)
    except ValueError:
        match = re.search(r"^Total of (\d+) requests completed", text, re.MULTILINE)
        done = int(match.group(1)) if match else 0
        error = " / ".join(text.strip().splitlines()[-2:])
        return {
            "requests": done,
            "rps": None,
            "p50_ms": None,
            "p99_ms": None,
            "failed": planned - done,
            "seconds": None,
            "error": error,
        }


def combine_ab(parts: list[dict]) -> dict:
    """Concurrent ab runs (one per backend) as one point: summed counts and
    throughput (unknown if a run aborted); p50 weighted by requests, p99 the
    worst (an upper bound), seconds the longest run."""
    total = sum(p["requests"] for p in parts)
    p50 = [(p["p50_ms"], p["requests"]) for p in parts if p["p50_ms"] is not None]
    p99 = [p["p99_ms"] for p in parts if p["p99_ms"] is not None]
    errors = [p["error"] for p in parts if "error" in p]
    return {
        "requests": total,
        "rps": None if errors else sum(p["rps"] for p in parts),
        "p50_ms": sum(v * n for v, n in p50) / max(1, sum(n for _, n in p50)) if p50 else None,
        "p99_ms": max(p99) if p99 else None,
        "failed": sum(p["failed"] for p in parts),
        "seconds": max((p["seconds"] for p in parts if p.get("seconds") is not None), default=None),
        **({"errors": errors} if errors else {}),
    }


def parse_dnsperf(text: str) -> dict:
    """dnsperf's statistics -> sent, completed, lost, qps, avg_ms."""

    def number(label: str) -> float:
        match = re.search(rf"^\s+{re.escape(label)}:\s+([0-9.]+)", text, re.MULTILINE)
        if not match:
            raise ValueError(f"dnsperf output lacks {label!r}: {text.strip()[-200:]!r}")
        return float(match.group(1))

    return {
        "sent": int(number("Queries sent")),
        "completed": int(number("Queries completed")),
        "lost": int(number("Queries lost")),
        "qps": number("Queries per second"),
        "avg_ms": number("Average Latency (s)") * 1000,
    }


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal positive shares (fewer if total < parts)."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def dns_queries(model: dict) -> list[str]:
    """dnsperf's query file: every record of the cluster's zones, and the upstream names."""
    lines = []
    for zone in model["dns"]["zones"]:
        for record in zone["records"]:
            name = zone["name"] if record["name"] == "@" else f"{record['name']}.{zone['name']}"
            lines.append(f"{name} {record['type']}")
    lines += [f"{name} A" for name in sorted(UPSTREAM_NAMES)]
    return lines


def outages(
    probes: Iterable[list], kind: str, interval: float = PROBE_INTERVAL, gap: float = 0.5, late: float = LATE_S
) -> dict:
    """Probes of one kind that failed (an error, or no answer within the
    probe's timeout) or came late (answered after ``late`` seconds), grouped
    into outages (less than ``gap`` apart belong to one). outage_s is their
    summed length: a late answer is an outage for the user, but not an error.
    errors counts the failed ones by what went wrong (the probe's error field)."""
    probes = [p for p in probes if p[0] == kind]
    late_ones = [p for p in probes if p[2] and len(p) > 5 and p[5] > late]
    disrupted = sorted([p[1] for p in probes if not p[2]] + [p[1] for p in late_ones])
    episodes: list[list[float]] = []
    for sent in disrupted:
        if episodes and sent - episodes[-1][1] <= gap:
            episodes[-1][1] = sent
        else:
            episodes.append([sent, sent])
    return {
        "failed": sum(1 for p in probes if not p[2]),
        "failed_retry_once": sum(1 for p in probes if not p[2] and not p[4]),
        "errors": dict(Counter(p[6] if len(p) > 6 else "unknown" for p in probes if not p[2])),
        "late": len(late_ones),
        "outage_s": round(sum(end - start + interval for start, end in episodes), 3),
        "episodes": [[round(s, 3), round(e, 3)] for s, e in episodes],
    }


HAPROXY_DOWN = re.compile(r"^Server (?P<backend>[^/\s]+)/(?P<server>\S+) is DOWN\b")
IPVS_REMOVED = re.compile(
    r"^Removing service \[(?P<server>[^\]]+)\]:\w+:\d+ from VS \[(?P<vip>[^\]]+)\]:(?P<proto>\w+):(?P<port>\d+)"
)


def detections(journal: Iterable[str], server: str, address: str, since: float) -> dict[str, float]:
    """When each balancer took ``server`` out, in seconds after ``since``:
    HAProxy's "Server BACKEND/SERVER is DOWN" (keyed by backend) and
    keepalived's "Removing service [ADDRESS]... from VS [VIP]:PROTO:PORT"
    (keyed "IPVS VIP:PORT/PROTO"), from ``journalctl -o json`` lines of the
    director. The first line of each counts (HAProxy logs each event more
    than once); lines before ``since`` are ignored."""
    found: dict[str, float] = {}
    for line in journal:
        if not line.strip():
            continue
        entry = json.loads(line)
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - since
        message = entry.get("MESSAGE")
        if at < 0 or not isinstance(message, str):
            continue
        message = re.sub(r"^\[\w+\]\s+\(\d+\) : ", "", message)  # HAProxy's own stderr copy
        if (m := HAPROXY_DOWN.match(message)) and m["server"] == server:
            key = m["backend"]
        elif (m := IPVS_REMOVED.match(message)) and m["server"] == address:
            key = f"IPVS {m['vip']}:{m['port']}/{m['proto']}"
        else:
            continue
        found.setdefault(key, round(at, 3))
    return found


# --- the lab side ----------------------------------------------------------------


@dataclass
class Cluster:
    """What the benchmark needs to know of the running lab."""

    model: dict
    nodes: dict[str, LabNode]
    salt_master: str  # the node the salt-master runs in (nas, or the container behind it)
    ipvs: bool  # the lab has IPVS (host or user-mode kernel: Lab.kernel_paths)

    def role(self, role: str) -> list[str]:
        return sorted(n for n, spec in self.model["nodes"].items() if role in spec["roles"])

    @property
    def vip(self) -> str:
        return self.model["vips"]["external"][0]

    @property
    def all_vips(self) -> list[str]:
        """Every VIP of the topology, of every network."""
        return [vip for group in self.model["vips"].values() for vip in group]

    @property
    def internal_cidr(self) -> str:
        return self.model["networks"]["internal"]["cidr"]

    def address(self, name: str) -> str:
        """A topology node's internal address."""
        return next(i["address"] for i in self.model["nodes"][name]["interfaces"].values() if i["address"])

    def cut(self, name: str, up: bool = False) -> None:
        net.set_links(self.nodes[name], up=up)

    def urls(self) -> dict[str, list[str]]:
        """path -> base URLs (several for ``direct``: every web server; ``ipvs``
        only where the lab has IPVS)."""
        haproxy = self.model["haproxy"]
        out: dict[str, list[str]] = {}
        # The web servers' plain HTTP port, where IPVS sends (the layer 4
        # backends' ports take the PROXY protocol only).
        web_vs = [vs for vs in self.model["ipvs"]["virtual_servers"] if vs["protocol"] == "tcp" and vs["role"] == "web"]
        servers = (
            web_vs[0]["real_servers"]
            if web_vs
            else [{"address": self.address(name), "port": 80} for name in self.model["roles"]["web"]]
        )
        out["direct"] = [f"http://{s['address']}:{s['port']}" for s in servers]
        for frontend in haproxy["frontends"].values():
            scheme = "https" if frontend["port"] == 443 else "http"
            path = "https" if scheme == "https" else ("l7" if frontend["mode"] == "http" else "l4")
            out[path] = [f"{scheme}://{frontend['vip']}:{frontend['port']}"]
        if self.ipvs:
            for vs in self.model["ipvs"]["virtual_servers"]:
                if vs["protocol"] == "tcp" and vs["role"] == "web":
                    out["ipvs"] = [f"http://{vs['vip']}:{vs['port']}"]
        return out

    def probed(self, server: str) -> set[str]:
        """The balancer entries a drill's probes go through to ``server``,
        named as detections() names them: for a web server, HAProxy's
        backends behind the VIP's :80 and layer 7 frontends; for a DNS
        server, the IPVS service on the VIP's :53/udp."""
        if "dns" in self.model["nodes"][server]["roles"]:
            return {f"IPVS {self.vip}:53/udp"}
        ports = (80, self.l7_port)
        frontends = self.model["haproxy"]["frontends"].values()
        return {f["backend"] for f in frontends if f["vip"] == self.vip and f["port"] in ports}

    def paths_to(self, server: str) -> set[str]:
        """Every balancer entry that sends to ``server``, named as detections()
        names them: the HAProxy backends and IPVS services of its roles."""
        roles = set(self.model["nodes"][server]["roles"])
        found = {name for name, b in self.model["haproxy"]["backends"].items() if b["role"] in roles}
        if self.ipvs:
            for vs in self.model["ipvs"]["virtual_servers"]:
                if vs["role"] in roles:
                    found.add(f"IPVS {vs['vip']}:{vs['port']}/{vs['protocol']}")
        return found

    @property
    def l7_port(self) -> int:
        """The port of HAProxy's layer 7 frontend."""
        return urllib.parse.urlsplit(self.urls()["l7"][0]).port


def in_client(argv: list[str], timeout: float, where: str = CLIENT) -> str:
    """Run in the external client, or (``direct`` paths) in the lab's operator
    node on the internal network: the firewalls let no one outside reach the
    servers themselves."""
    return node.execute(where, argv, timeout=timeout, check=True).stdout


def vantage(path: str) -> str:
    """Where a path's load comes from."""
    return OPERATOR if path == "direct" else CLIENT


class CpuMeter:
    """Host CPU used by some nodes between start() and stop(), in % of one core."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def start(self) -> None:
        self.began = time.monotonic()
        self.before = {n: node.cpu_seconds(n) for n in self.names}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.began
        return {n: round(100 * (node.cpu_seconds(n) - self.before[n]) / wall, 1) for n in self.names}


def http_point(urls: list[str], page: str, concurrency: int, plan: Plan, cpu: CpuMeter, where: str = CLIENT) -> dict:
    """One ab per URL, concurrently, the concurrency and requests split among them."""
    target = PAGES[page].format(n=plan.pi_n)
    shares = split(concurrency, len(urls))
    requests = split(max(plan.requests[page], concurrency), len(shares))
    # ab gives up the whole run when one request has no answer within -s
    # seconds, losing the point's figures: 30 s lets TCP retransmissions end
    # a rare stall, which then shows in p99 instead.
    runs = [
        f"ab -q -l -r -s 30 -t {plan.time_limit} -n {n} -c {c} '{url}{target}' > /tmp/ab.{i} 2>&1"
        for i, (url, c, n) in enumerate(zip(urls, shares, requests, strict=False))
    ]
    script = " & ".join(runs) + " & wait; for f in /tmp/ab.*; do cat $f; echo '@@@'; done; rm -f /tmp/ab.*"
    cpu.start()
    out = in_client(["sh", "-c", script], timeout=plan.time_limit + 60, where=where)
    usage = cpu.stop()
    chunks = [chunk for chunk in out.split("@@@") if chunk.strip()]
    parts = [parse_ab_run(chunk, n) for chunk, n in zip(chunks, requests, strict=False)]
    return {"page": page, "concurrency": concurrency, **combine_ab(parts), "cpu": usage}


def http_sweep(cluster: Cluster, plan: Plan) -> list[dict]:
    cpu = CpuMeter(cluster.role("director") + cluster.role("web"))
    rows = []
    for path, urls in cluster.urls().items():
        for page in PAGES:
            for c in plan.concurrency:
                row = {"path": path, **http_point(urls, page, c, plan, cpu, where=vantage(path))}
                rps = "aborted" if row["rps"] is None else f"{row['rps']:8.1f} req/s"
                log("bench", f"http {path:6} {page:4} c={c:<2} {rps}, failed {row['failed']}")
                rows.append(row)
    return rows


def dns_sweep(cluster: Cluster, plan: Plan) -> list[dict]:
    queries = "\n".join(dns_queries(cluster.model)) + "\n"
    for where in (CLIENT, OPERATOR):
        node.execute(where, ["sh", "-c", "cat > /tmp/queries.txt"], stdin=queries, timeout=10, check=True)
    server = cluster.address(cluster.role("dns")[0])
    cpu = CpuMeter(cluster.role("director") + cluster.role("dns"))
    rows = []
    for target, address in (("vip", cluster.vip), ("direct", server)):
        for clients in plan.dns_clients:
            argv = ["dnsperf", "-s", address, "-d", "/tmp/queries.txt", "-c", str(clients)]
            argv += ["-l", str(plan.dns_seconds), "-t", "2"]
            cpu.start()
            stats = parse_dnsperf(in_client(argv, timeout=plan.dns_seconds + 30, where=vantage(target)))
            row = {"target": target, "clients": clients, **stats, "cpu": cpu.stop()}
            log("bench", f"dns {target:6} clients={clients:<2} {row['qps']:8.1f} q/s, lost {row['lost']}")
            rows.append(row)
    return rows


# --- drills ------------------------------------------------------------------------


class Probe:
    """lab/probe.py running in the client until stopped."""

    def __init__(
        self, vip: str, l7_port: int, name: str, interval: float = PROBE_INTERVAL, timeout: float = 1.0
    ) -> None:
        script = (REPO / "lab" / "probe.py").read_text()
        argv = ["python3", "-c", script, "3600", str(interval), vip, str(l7_port), name, str(timeout)]
        argv += [catalogue.server_prefix()]
        self.proc = subprocess.Popen(
            node.exec_argv(CLIENT, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def stop(self) -> list[list]:
        """Close its stdin (the probe's signal to stop) and read its results."""
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out)


def answering(cluster: Cluster, requests: int) -> set[str]:
    """The web servers (names) that answered ``requests`` page loads through the VIP."""
    script = f"for i in $(seq {requests}); do curl -s -m 2 http://{cluster.vip}/; done"
    out = node.execute(CLIENT, ["sh", "-c", script], timeout=60).stdout
    seen = set(servers_seen(out))
    return {w for w in cluster.role("web") if cluster.address(w) in seen}


def vips_held(cluster: Cluster) -> dict[str, list[str]]:
    """Which VIPs each director holds (one look at each)."""
    return {name: sorted(held_vips(name, cluster.all_vips)) for name in cluster.role("director")}


def vips_in_place(cluster: Cluster) -> bool:
    """The normal state: the VRRP leader holds every VIP, no other director any."""
    leader = cluster.model["vrrp"]["leader"]
    expected = {name: sorted(cluster.all_vips) if name == leader else [] for name in cluster.role("director")}
    return vips_held(cluster) == expected


def serving(cluster: Cluster) -> bool:
    """Every web server answers through the VIP, and the VIPs are in place."""
    webs = cluster.role("web")
    return answering(cluster, 3 * len(webs)) == set(webs) and vips_in_place(cluster)


def wait_serving(cluster: Cluster, timeout: float = 120) -> None:
    """Start every measurement from a cluster in its normal state."""
    if wait_for(lambda: serving(cluster), timeout) is None:
        raise RuntimeError(
            f"the cluster is not serving normally (every web server through {cluster.vip},"
            f" every VIP on {cluster.model['vrrp']['leader']} only): VIPs held {vips_held(cluster)}"
        )


def held_vips(name: str, vips: Iterable[str]) -> set[str]:
    """Which of `vips` node `name` holds (one look at its addresses)."""
    out = node.execute(name, ["ip", "-4", "-o", "addr", "show"], timeout=20).stdout
    return {vip for vip in vips if f" {vip}/" in out}


def holds_vip(name: str, *vips: str) -> bool:
    """Whether node `name` holds every one of `vips`."""
    return held_vips(name, vips) == set(vips)


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> float | None:
    """Seconds until check() holds, None if it did not within timeout; check()
    is called every ``interval`` seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    return None


@dataclass
class DrillActions:
    inject: Callable[[], None]
    heal: Callable[[], None]
    normal: Callable[[], bool]  # the cluster is back to its normal state
    server: str | None = None  # the node the balancers must take out (a cut web or DNS server)


def drill_actions(cluster: Cluster, name: str) -> DrillActions:
    """What a drill does, and how it tells the cluster is normal again."""
    leader = cluster.model["vrrp"]["leader"]
    backup = next(d for d in cluster.role("director") if d != leader)
    web, dns = cluster.role("web")[1], cluster.role("dns")[1]

    def leader_holds() -> bool:
        return holds_vip(leader, cluster.vip) and not holds_vip(backup, cluster.vip)

    def run(where: str, *argv: str) -> Callable[[], None]:
        def action() -> None:
            node.execute(where, list(argv), timeout=60, check=True)

        return action

    def cut(name: str, up: bool = False) -> Callable[[], None]:
        return lambda: cluster.cut(name, up)

    def dns_in_ipvs() -> bool:
        return f"-> {cluster.address(dns)}:" in node.execute(leader, ["ipvsadm", "-Ln"], timeout=20).stdout

    def web_in_rotation() -> bool:
        return web in answering(cluster, 3)

    def always() -> bool:
        return True

    master = cluster.salt_master
    return {
        "control": DrillActions(lambda: None, lambda: None, always),
        "director cable cut": DrillActions(cut(leader), cut(leader, up=True), leader_holds),
        "keepalived killed": DrillActions(
            run(leader, "systemctl", "kill", "-s", "KILL", "keepalived"),
            run(leader, "systemctl", "start", "keepalived"),
            leader_holds,
        ),
        "haproxy killed": DrillActions(
            run(leader, "systemctl", "kill", "-s", "KILL", "haproxy"),
            run(leader, "systemctl", "start", "haproxy"),
            leader_holds,
        ),
        "web node cut": DrillActions(cut(web), cut(web, up=True), web_in_rotation, server=web),
        "dns node cut": DrillActions(cut(dns), cut(dns, up=True), dns_in_ipvs, server=dns),
        "salt-master stopped": DrillActions(
            run(master, "systemctl", "stop", "salt-master"),
            run(master, "systemctl", "start", "salt-master"),
            always,
        ),
    }[name]


def drill(cluster: Cluster, name: str, plan: Plan) -> dict:
    actions = drill_actions(cluster, name)
    wait_serving(cluster)
    probe_name = f"{cluster.role('web')[0]}.{cluster.model['domain']}"
    probe = Probe(cluster.vip, cluster.l7_port, probe_name, timeout=PROBE_TIMEOUT_S)
    try:
        time.sleep(2)  # a baseline before the fault
        injected = time.time()
        actions.inject()
        time.sleep(plan.hold)
        healed = time.time()
        actions.heal()
        recovery = wait_for(actions.normal, plan.settle)
        time.sleep(2)  # the probe sees the normal state too
    finally:
        probes = probe.stop()
    row = {
        "name": name,
        "hold_s": plan.hold,
        "probes": sum(1 for p in probes if p[0] in ("http", "l7")),
        "recovery_s": None if recovery is None else round(recovery, 2),
    }
    for kind in ("http", "l7", "dns"):
        # The HTTP probes take turns (layer 4, layer 7): each kind every other interval.
        row[kind] = outages(probes, kind, interval=PROBE_INTERVAL if kind == "dns" else 2 * PROBE_INTERVAL)
    row.update({k: row["http"][k] for k in ("outage_s", "failed", "failed_retry_once")})
    for kind in ("l7", "dns"):
        row[f"{kind}_outage_s"] = row[kind]["outage_s"]
        row[f"{kind}_failed"] = row[kind]["failed"]
    row["injected_at"], row["healed_at"] = injected, healed
    # Probes sent after the heal that failed even when retried once, by kind
    # (a failback that costs requests shows here).
    row["after_heal_failed_retry_once"] = {
        kind: sum(1 for p in probes if p[0] == kind and p[1] >= healed and not p[2] and not p[4])
        for kind in ("http", "l7", "dns")
    }
    if server := actions.server:
        # detection_s: when the last balancer entry the probes go through had
        # taken the server out; detection_every_s: the last of every entry
        # that sends to it (None: one had not within the hold).
        row["detected_s"] = found = detected(cluster, server, injected, healed)
        probed, every = cluster.probed(server), cluster.paths_to(server)
        row["detection_s"] = max(found[k] for k in probed) if probed <= found.keys() else None
        row["detection_every_s"] = max(found[k] for k in every) if every <= found.keys() else None
    log(
        "bench",
        f"drill {name}: outage http {row['outage_s']} s ({row['failed']} failed), l7 {row['l7_outage_s']} s"
        f" ({row['l7_failed']} failed), dns {row['dns_outage_s']} s; recovery {row['recovery_s']} s"
        + (f"; detection {row['detection_s']} s, taken out after {row['detected_s']}" if server else ""),
    )
    return row


def detected(cluster: Cluster, server: str, injected: float, healed: float) -> dict[str, float]:
    """When the leader's HAProxy backends and IPVS services took the cut
    ``server`` out (seconds after the cut), from the leader's journal."""
    argv = ["journalctl", "-o", "json", "--no-pager", "-u", "haproxy", "-u", "keepalived"]
    argv += [f"--since=@{int(injected)}", f"--until=@{int(healed) + 1}"]
    out = node.execute(cluster.model["vrrp"]["leader"], argv, timeout=30).stdout
    return detections(out.splitlines(), server, cluster.address(server), injected)


# --- the HAProxy stats page ---------------------------------------------------------------


def chromium_argv(url: str, png: Path, allowed: str) -> list[str]:
    """Headless Chromium taking one screenshot of ``url``: no sandbox (root),
    no background traffic, and no name lookups (every host name resolves to
    nothing; ``allowed``, the page's address, is used as it is)."""
    return [
        shutil.which("chromium") or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {allowed}",
        "--window-size=1400,1000",
        f"--screenshot={png}",
        url,
    ]


def servers_down(director: str, sock: str) -> list[str] | None:
    """backend/server of each server `director`'s HAProxy does not report UP
    (after a drill, the healed node's checks need their `rise` to pass); None
    when HAProxy did not answer. The director runs the repo's own
    haproxy_runtime module (plain python3 is in every node: the minion's)."""
    script = (REPO / "_modules" / "haproxy_runtime.py").read_text()
    script += "\nimport json, sys\nprint(json.dumps(servers(sys.argv[1])))\n"
    result = node.execute(director, ["python3", "-c", script, sock], timeout=20)
    if result.returncode != 0:
        return None
    return [f"{r['backend']}/{r['server']}" for r in json.loads(result.stdout) if not r["up"]]


def stats_screenshot(cluster: Cluster, out_dir: Path) -> Path | None:
    """The master director's HAProxy stats page (on the internal VIP, with the
    pillar's credentials) as a PNG, taken by the host's Debian chromium inside
    the operator node's network namespace (the lab's internal network, no
    other). None, with a note, when chromium is not installed."""
    if not shutil.which("chromium"):
        log("bench", "no stats screenshot: chromium is not installed (apt-get install chromium)")
        return None
    stats = cluster.model["haproxy"]["stats"]
    secrets = yaml.safe_load((REPO / "pillar" / "secrets.sls").read_text())["cluster_secrets"]["haproxy_stats"]
    url = f"http://{secrets['user']}:{secrets['password']}@{stats['vip']}:{stats['port']}/"
    png = out_dir / "haproxy-stats.png"
    png.unlink(missing_ok=True)
    leader_name = cluster.model["vrrp"]["leader"]
    sock = catalogue.runtime("haproxy", "socket")
    down: list[str] | None = None

    def all_up() -> bool:
        nonlocal down
        down = servers_down(leader_name, sock)
        return down == []

    if wait_for(all_up, 60) is None:
        log("bench", f"stats screenshot with servers not UP: {', '.join(down) if down else 'HAProxy did not answer'}")
    # From the internal network, as an operator reaches it (the firewalls
    # keep it from everyone else).
    leader = node.leader_pid(OPERATOR)
    argv = ["nsenter", "-t", str(leader), "-n", "--", *chromium_argv(url, png, stats["vip"])]
    subprocess.run(argv, capture_output=True, timeout=120, check=False)
    if not png.exists():
        log("bench", "no stats screenshot: chromium wrote none")
        return None
    return png


# --- the command ---------------------------------------------------------------------


def run_bench(cluster: Cluster, quick: bool, out_dir: Path, drills: list[str] | None = None) -> dict:
    """The plan's sweeps and drills or, given ``drills``, only those (the
    plan's hold and settle): for tuning failover without the sweeps."""
    plan = QUICK if quick else FULL
    started = time.monotonic()
    results: dict = {
        "meta": {
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "plan": asdict(plan),
            "client": CLIENT_ADDRESS,
            "ipvs": cluster.ipvs,
            "kernels": {n: spec.platform for n, spec in cluster.nodes.items()},
        }
    }
    wait_serving(cluster)
    results["http"] = [] if drills else http_sweep(cluster, plan)
    results["dns"] = [] if drills else dns_sweep(cluster, plan)
    names = drills or plan.drills
    own = (*flows.DRILLS, docroot.DRILL, docroot.DISK_LOSS)
    results["drills"] = [drill(cluster, name, plan) for name in names if name not in own]
    results["nas"] = [docroot.nas_drill(cluster, docroot.HOLD_S)] if docroot.DRILL in names else []
    results["nas"] += [docroot.disk_loss_drill(cluster)] if docroot.DISK_LOSS in names else []
    available = flows.flows(cluster)
    results["flows"] = [
        flows.flow_drill(cluster, name, available[name], plan.hold) for name in names if name in available
    ]
    if cluster.model.get("monitoring"):
        history.add_history(report.drill_rows(results), cluster.model["monitoring"]["server"]["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = None if drills else stats_screenshot(cluster, out_dir)
    results["meta"]["stats_screenshot"] = shot.name if shot else None
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.main([str(out_dir / "results.json"), str(out_dir)])
    log("bench", f"done in {results['meta']['duration_s']} s: {out_dir}/report.md")
    return results
