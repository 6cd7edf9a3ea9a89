"""Checks against the running lab: what `python -m lab verify` and `status`
print, each check reading its addresses and ports from the model."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from lab import catalogue, net, node
from lab.salt_control import SaltControl
from lab.util import run

# A verify check: what, passed, detail.
Check = tuple[str, bool, str]


def servers_seen(out: str) -> list[str]:
    """The web servers' addresses, in order, in pages fetched from the cluster."""
    return re.findall(re.escape(catalogue.server_prefix()) + r"([0-9.]+)", out)


class Checks(SaltControl):
    """verify and status; the Lab gives it the model and the nodes."""

    model: dict
    kernel_paths: dict

    def capabilities(self) -> dict[str, str]:
        """Per feature, the path the lab took, checked on a running node where there is one."""
        out = {}
        probes = {
            "ipvs": (self.model["roles"]["director"], ["test", "-e", "/proc/net/ip_vs"]),
            "nfs": (self.model["roles"].get("nas", []), ["grep", "-qw", "nfsd", "/proc/filesystems"]),
        }
        for feature, path in self.kernel_paths.items():
            names, probe = probes[feature]
            running = [n for n in names if node.leader_pid(n) is not None]
            text = path.describe()
            if running and path.path != "unavailable":
                ok = node.execute(running[0], probe, timeout=20).returncode == 0
                text += f"; {'present' if ok else 'MISSING'} on {running[0]}"
            out[feature] = text
        return out

    def addresses(self, name: str) -> list[str]:
        if node.leader_pid(name) is None:
            return []
        if self.nodes[name].platform == "uml":
            out = node.execute(name, ["ip", "-4", "-o", "addr", "show"], timeout=20).stdout
        else:
            out = run(["ip", "-n", self.nodes[name].netns, "-4", "-o", "addr", "show"], check=False).stdout
        return [
            f"{line.split()[1]} {line.split()[3]}"
            for line in out.splitlines()
            if " lo " not in line and " lab0 " not in line
        ]

    def verify(self, second_highstate: bool = True) -> bool:
        """The cluster seen from outside; with second_highstate, also a test=True
        highstate everywhere that must show nothing pending (a minute on this
        machine: every user-mode node renders and checks all its states)."""
        names = [n.name for n in self.minions()]
        # The pings first: a master on a user-mode kernel, busy with the
        # test=True highstate of every minion, can leave them unanswered.
        answered = self.ping(names, timeout=60)
        with ThreadPoolExecutor(max_workers=2) as pool:
            # The longest check runs while the others look at the cluster from outside.
            second_apply = pool.submit(self.apply_states, "*", test=True) if second_highstate else None
            capabilities = pool.submit(self.capabilities)
            outside = self._outside_checks()
            summary = second_apply.result() if second_apply else None
        checks = [
            (
                "every minion answers test.ping",
                all(answered.values()),
                ", ".join(n for n, ok in answered.items() if not ok) or f"{len(answered)} minions",
            ),
            *outside,
        ]
        infos: list[tuple[str, str]] = []
        if summary is None:
            infos.append(("second highstate", "not run here: `python -m lab verify` runs it (make test applies twice)"))
        else:
            pending = {m: s["changed"] for m, s in summary.items() if s["changed"] or s["failed"]}
            checks.append(
                (
                    "highstate applied: test=True shows 0 pending changes",
                    not pending and bool(summary),
                    json.dumps(pending) if pending else f"{len(summary)} minions",
                )
            )
        infos += [("capability: " + feature, path) for feature, path in capabilities.result().items()]
        width = max(len(c[0]) for c in checks + infos)
        print(f"\n{'check'.ljust(width)}  result  detail")
        for what, ok, detail in checks:
            print(f"{what.ljust(width)}  {'ok' if ok else 'FAIL':6}  {detail}")
        for what, detail in infos:
            print(f"{what.ljust(width)}  {'info':6}  {detail}")
        return all(ok for _, ok, _ in checks)

    def _outside_checks(self) -> list[Check]:
        """DHCP leases and services (every check but the ping and the second
        highstate), each from its own node at once; listed in a fixed order."""
        prefixlen = self.model["networks"]["internal"]["prefixlen"]

        def got_lease(lease: dict) -> Check:
            have = self.addresses(lease["hostname"])
            ok = any(a.endswith(f" {lease['address']}/{prefixlen}") for a in have)
            return (f"{lease['hostname']} got {lease['address']} by DHCP (MAC {lease['mac']})", ok, "; ".join(have))

        def leases_recorded() -> Check:
            recorded = "".join(
                node.execute(name, ["cat", "/var/lib/misc/dnsmasq.leases"], timeout=10).stdout
                for name in self.model["roles"]["director"]
            )
            missing = [lease["hostname"] for lease in self.model["dhcp"]["leases"] if lease["mac"] not in recorded]
            return (
                "every static lease is recorded by a director's dnsmasq",
                not missing,
                ", ".join(missing) or f"{len(self.model['dhcp']['leases'])} leases",
            )

        probes: list[Callable[[], Check]] = [
            *(partial(got_lease, lease) for lease in self.model["dhcp"]["leases"]),
            leases_recorded,
            *self.service_checks(),
        ]
        with ThreadPoolExecutor(max_workers=len(probes)) as pool:
            return list(pool.map(lambda probe: probe(), probes))

    def service_checks(self) -> list[Callable[[], Check]]:
        """What the cluster serves, seen from the client (and the servers for NAT):
        one callable per check, independent of the others."""
        vip = self.model["vips"]["external"][0]
        web = [self.model["nodes"][n]["address"] for n in self.model["roles"]["web"]]
        dns = [self.model["nodes"][n]["address"] for n in self.model["roles"]["dns"]]

        def one_holder() -> Check:
            holders = [
                n for n in self.model["roles"]["director"] if any(a.endswith(f" {vip}/32") for a in self.addresses(n))
            ]
            return (f"exactly one director holds {vip}", len(holders) == 1, ", ".join(holders) or "none")

        # Each HAProxy frontend on the VIP: a cookie backend is checked for
        # stickiness, the others for round robin (TLS passthrough on 443).
        checks: list[Callable[[], Check]] = []
        for frontend in sorted(self.model["haproxy"]["frontends"].values(), key=lambda f: f["port"]):
            if frontend["vip"] != vip:
                continue
            port = frontend["port"]
            if self.model["haproxy"]["backends"][frontend["backend"]]["cookie"]:
                checks.append(partial(sticky, vip, port))
            else:
                checks.append(partial(round_robin, vip, port, "https" if port == 443 else "http", web))
        if dns and web:
            first = self.model["nodes"][self.model["roles"]["web"][0]]
            upstream = self.model["networks"]["external"]["gateway"]
            asker = self.model["roles"]["nas"][0] if self.model["roles"].get("nas") else first["name"]
            checks += [partial(resolves, asker, dns[0], first), partial(nat, first["name"], upstream)]
        return [*checks, one_holder]

    def status(self) -> None:
        leases = {lease["hostname"] for lease in self.model["dhcp"]["leases"]}
        rows = sorted(self.nodes.items(), key=lambda kv: (kv[1].order, kv[0]))
        with ThreadPoolExecutor(max_workers=len(rows) + 1) as pool:
            # Each node is asked on its own (a user-mode node answers through its agent).
            addresses = {name: pool.submit(self.addresses, name) for name, _ in rows}
            capabilities = pool.submit(self.capabilities)
            print(
                f"{'node':9} {'state':8} {'kernel':6} {'links':6} {'roles':10} {'memory':>8}  "
                f"{'addressing':10} addresses"
            )
            for name, lab_node in rows:
                running = node.leader_pid(name) is not None
                wired = lab_node.platform == "uml" or net.netns_exists(lab_node.netns)
                links = "-" if not wired or not running else ("up" if net.links_up(lab_node) else "CUT")
                kernel_ = "uml" if lab_node.platform == "uml" else "host"
                memory = f"{node.memory_kb(name) / 1024:.0f} MB" if running else "-"
                roles = ",".join(lab_node.roles) or lab_node.kind
                addressing = "dhcp lease" if name in leases else "static"
                print(
                    f"{name:9} {'running' if running else 'stopped':8} {kernel_:6} {links:6} {roles:10} "
                    f"{memory:>8}  {addressing:10} " + "; ".join(addresses[name].result())
                )
            for feature, path in capabilities.result().items():
                print(f"{feature}: {path}")


def fetch(node_name: str, script: str) -> str:
    return node.execute(node_name, ["sh", "-c", script], timeout=60).stdout


def rounds(script: str, good: Callable[[list[str]], bool]) -> list[str]:
    """The servers that answered the client's ``script``, after up to five
    rounds until ``good``: right after a highstate or a director's heal
    HAProxy's checks are still bringing servers up, and its dynamic
    roundrobin may take a while to give a server that came back its full
    share (HAProxy's manual, "balance roundrobin")."""
    for _ in range(5):
        got = servers_seen(fetch("client", script))
        if good(got):
            break
        time.sleep(2)
    return got


def round_robin(vip: str, port: int, scheme: str, web: list[str]) -> Check:
    url, opts = f"{scheme}://{vip}:{port}/", "-k" if scheme == "https" else ""
    got = rounds(
        f"for i in $(seq {2 * len(web)}); do curl -s -m 3 {opts} {url}; done",
        lambda got: sorted(set(got)) == sorted(web),
    )
    return (
        f"{scheme.upper()} :{port} round robin via {vip}",
        sorted(set(got)) == sorted(web),
        " ".join(got) or "no answer",
    )


def sticky(vip: str, port: int) -> Check:
    script = f"jar=$(mktemp); for i in 1 2 3; do curl -s -m 3 -b $jar -c $jar http://{vip}:{port}/; done; rm $jar"
    got = rounds(script, lambda got: len(got) == 3 and len(set(got)) == 1)
    return (f"HTTP :{port} sticky via {vip}", len(got) == 3 and len(set(got)) == 1, " ".join(got) or "no answer")


def resolves(asker: str, server: str, web: dict) -> Check:
    answer = fetch(asker, f"dig +short +time=2 @{server} {web['fqdn']}").split()
    return (f"DNS {server}: {web['fqdn']}", answer == [web["address"]], " ".join(answer))


def nat(name: str, upstream: str) -> Check:
    page = fetch(name, f"curl -s -m 3 http://{upstream}/")
    return (f"{name} reaches {upstream} through the NAT", page.startswith("upstream"), page.strip()[:40])
