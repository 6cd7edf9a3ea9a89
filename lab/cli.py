"""The one-host lab: `python -m lab up|apply|verify|status|exec|salt|cut|heal|bench|down`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import yaml

from lab import bench, catalogue, events, kernel, keys, net, node, provision, rootfs, uml, umlkernel
from lab.topology import REPO, LabNode, load, place_on_kernels
from lab.util import log, run, salt_returns

REPO_IN_NAS = node.REPO_IN_NAS
# What the lab prints when a first highstate failed and it applies it once more.
RETRY_NOTE = "highstate again, once, after the failure above"
# A verify check: what, passed, detail.
Check = tuple[str, bool, str]


class Lab:
    def __init__(self) -> None:
        self.topology, self.model, nodes = load()
        # IPVS and NFS: the host kernel's, or the nodes that need them boot a user-mode kernel.
        self.kernel_paths = kernel.paths()
        self.nodes = place_on_kernels(nodes, kernel.uml_roles(self.kernel_paths))
        self.nas = next(n for n in self.nodes.values() if "nas" in n.roles)
        self.master = next(n for n in self.nodes.values() if n.runs_master)
        self.boot_seconds: dict[str, float] = {}
        # Minions highstated without failure by this process (up's first wave).
        self.applied: set[str] = set()
        # Minions that returned a job to this process: they answer.
        self.heard: set[str] = set()
        self.repo_master = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())

    # -- helpers ---------------------------------------------------------
    def minions(self) -> list[LabNode]:
        return [n for n in self.nodes.values() if n.minion]

    def salt_json(self, *args: str, timeout: float = 300) -> dict:
        """The salt CLI where the master runs: the minions' returns (lab.util.salt_returns)."""
        proc = node.execute(self.master.name, ["salt", "--out=json", *args], timeout=timeout)
        return salt_returns(proc.stdout)

    def ping(self, names: list[str], timeout: float = 90) -> dict[str, bool]:
        """Wait until every named minion answers test.ping (or the timeout).

        Each round asks only the minions still silent, and gives them time to
        answer: every ping is a job, and a busy user-mode node flooded with
        jobs answers none of them."""
        deadline = time.monotonic() + timeout
        # At most half the time: should a minion's connection never match
        # its addresses (a route through another source address), the pings
        # still go out.
        self._wait_connected(names, time.monotonic() + timeout / 2)
        answered = dict.fromkeys(names, False)
        while time.monotonic() < deadline:
            silent = [n for n, ok in answered.items() if not ok]
            if not silent:
                break
            wait = max(5, min(20, int(deadline - time.monotonic())))
            result = self.salt_json("-L", ",".join(silent), "test.ping", "-t", str(wait), timeout=wait + 60)
            answered.update({n: True for n in silent if result.get(n) is True})
            if not all(answered.values()):
                time.sleep(1)
        return answered

    def _wait_connected(self, names: list[str], deadline: float) -> None:
        """Until these minions hold a connection to the master's publish port
        (no job). A ping published before a minion is connected is lost, and
        its round waits out the whole timeout. Read with `ss` where the master
        runs: a `salt-run manage.present` every 2 s cost the master's node
        a second of CPU each, while the minions it waited for were starting."""
        argv = ["ss", "-Htn", "state", "established", f"( sport = :{provision.PUBLISH_PORT} )"]
        while time.monotonic() < deadline:
            proc = node.execute(self.master.name, argv, timeout=30)
            if provision.connected_minions(proc.stdout, self.nodes) >= set(names):
                return
            time.sleep(1)

    def _log_answers(self, names: list[str], timeout: float = 90) -> None:
        """Wait for these minions to answer (or fail naming the silent ones), and say so."""
        if names:
            log("salt", "minions answering: " + ", ".join(self._require_answers(names, timeout)))

    def _require_answers(self, names: list[str], timeout: float) -> dict[str, bool]:
        """ping, and fail naming the minions that did not answer."""
        answered = self.ping(names, timeout=timeout)
        missing = [n for n, ok in answered.items() if not ok]
        if missing:
            raise RuntimeError(f"minions did not answer: {', '.join(missing)}")
        return answered

    # -- up --------------------------------------------------------------
    def _boot(self, lab_node: LabNode, root_fs: Path, master_keys: tuple[str, str]) -> bool:
        """Boot the node; False when it was already running."""
        if node.leader_pid(lab_node.name) is not None:
            log(lab_node.name, "already running")
            return False
        root = node.mount(lab_node, root_fs)
        files = provision.files_for(
            lab_node, self.model, self.nas.address, self.repo_master, REPO_IN_NAS, self.master.address
        )
        if lab_node.platform == "uml":
            files.update(uml.files_for(lab_node))
        for path, text in files.items():
            node.write(root, path, text)
        if lab_node.platform == "uml":
            for path, target in uml.links_for(lab_node).items():
                node.symlink(root, path, target)
        services = sorted({unit for role in lab_node.roles for unit in catalogue.services(role)})
        if services:
            # As apt leaves them: enabled (links per each unit's [Install], offline).
            run(["systemctl", f"--root={root}", "enable", "--quiet", *services])
        wants = root / "etc/systemd/system/multi-user.target.wants"
        units = []
        if lab_node.minion:
            units.append("salt-minion.service")
            for path, text in provision.extension_modules(REPO).items():
                node.write(root, path, text)
            pem, pub = keys.generate(node.STATE / "keys", lab_node.name)
            node.write(root, "/etc/salt/pki/minion/minion.pem", pem, 0o600)
            node.write(root, "/etc/salt/pki/minion/minion.pub", pub)
            node.write(root, "/etc/salt/pki/minion/minion_master.pub", master_keys[1])
            node.write(self._master_root(), f"/etc/salt/pki/master/minions/{lab_node.name}", pub)
        if lab_node.runs_master:
            units.append("salt-master.service")
            for path, text in provision.master_extension_modules(REPO).items():
                node.write(root, path, text)
            node.write(root, "/etc/salt/pki/master/master.pem", master_keys[0], 0o600)
            node.write(root, "/etc/salt/pki/master/master.pub", master_keys[1])
        if lab_node.name == "upstream":
            units += ["lab-upstream-dns.service", "apache2.service"]
        if lab_node.platform == "uml":
            units.append("lab-agent.service")
        if "/etc/systemd/system/lab-salt-forward.service" in files:
            units.append("lab-salt-forward.service")
        for unit in units:
            link = wants / unit
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                target = (
                    "/etc/systemd/system/" + unit
                    if (root / "etc/systemd/system" / unit).exists()
                    else ("/lib/systemd/system/" + unit)
                )
                link.symlink_to(target)
        log(lab_node.name, "booting" + (" a user-mode kernel" if lab_node.platform == "uml" else ""))
        started = time.monotonic()
        node.start(lab_node, root_fs, node.STATE / "logs" / f"{lab_node.name}.log")
        state = node.wait_booted(lab_node.name, timeout=180 if lab_node.platform == "uml" else 120)
        self.boot_seconds[lab_node.name] = time.monotonic() - started
        log(lab_node.name, f"systemd {state} after {self.boot_seconds[lab_node.name]:.1f} s")
        return True

    def _master_root(self) -> Path:
        return node.merged(self.master.name)

    def _wave(self, nodes: list[LabNode], root_fs: Path, master_keys: tuple[str, str]) -> list[str]:
        """Boot these nodes in parallel; the names of those that were not running."""
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futures = {n.name: pool.submit(self._boot, n, root_fs, master_keys) for n in nodes}
            return [name for name, future in futures.items() if future.result()]

    def up(self, apply_servers: bool = False) -> None:
        """Boot every node and highstate the directors and the nas (the servers
        depend on them); with apply_servers, the servers too, as soon as they can."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1) as pool:
            fetch = None
            if any(n.platform == "uml" for n in self.nodes.values()) and not kernel.package_kernel_forced():
                # Debian 13's user-mode kernel, fetched once (else Debian 12's), while a rootfs builds.
                fetch = pool.submit(umlkernel.ensure)
            root_fs = rootfs.build()
            if fetch is not None:
                fetch.result()
        self.kernel_paths = kernel.paths()
        run([sys.executable, str(REPO / "tools" / "gen_secrets.py"), str(REPO / "pillar" / "secrets.sls")])
        mtus: dict[str, int] = {}
        for lab_node in self.nodes.values():  # the lab's MTUs (clamped where a user-mode node is)
            for link in lab_node.links:
                mtus[link.network] = link.mtu
        net.ensure_switch(mtus)
        for lab_node in self.nodes.values():
            net.wire(lab_node)
        master_keys = keys.generate(node.STATE / "keys", "master")
        for name in self.retired():
            self.retire(name)
        # The master's node first: the minions' keys go into its tree before it boots.
        node.mount(self.master, root_fs)
        first = [n for n in self.nodes.values() if n.order in (0, 1)]
        servers = [n for n in self.nodes.values() if n.order == 2]
        if self._wave(first, root_fs, master_keys):
            self._highstate_while_servers_boot(first, servers, root_fs, master_keys, apply_servers)
        else:
            self._log_answers([n.name for n in first if n.minion])
            self._boot_servers(servers, root_fs, master_keys)
        # A minion that just returned its highstate answers: no ping for it.
        silent = [n.name for n in self.minions() if n.name not in self.heard]
        answered = self._require_answers(silent, timeout=120) if silent else {}
        answered |= {n.name: True for n in self.minions() if n.name in self.heard}
        node.save_state(
            {
                "up_seconds": round(time.monotonic() - started, 1),
                "rootfs": str(root_fs),
                "kernel_paths": {f: p.describe() for f, p in self.kernel_paths.items()},
                "uml_nodes": sorted(n.name for n in self.nodes.values() if n.platform == "uml"),
                "master": self.master.name,
            }
        )
        log(
            "lab", f"up: {len(self.nodes)} nodes, {len(answered)} minions answering, {time.monotonic() - started:.1f} s"
        )

    def _highstate_while_servers_boot(
        self,
        first: list[LabNode],
        servers: list[LabNode],
        root_fs: Path,
        master_keys: tuple[str, str],
        apply_servers: bool,
    ) -> None:
        """A new lab: highstate the first wave while the servers boot, and
        (apply_servers) highstate the servers as soon as they can."""
        with ThreadPoolExecutor(max_workers=5) as pool:
            # The master and the minions started with the repo's custom
            # modules (seeded at boot: provision.extension_modules). The
            # servers' minions start once the directors' dnsmasq gave them an
            # address (network-online); they boot meanwhile.
            server_wave = pool.submit(self._wave, servers, root_fs, master_keys)
            pool.submit(self._ask_dhcp_once_served, [n.name for n in servers], server_wave.done)
            nas = [n.name for n in first if n.minion and "nas" in n.roles]
            directors = [n.name for n in first if n.minion and "director" in n.roles and n.name not in nas]
            # The directors' minions started first (the nas boots from a disk
            # image, later): their highstate need not wait for the nas's minion.
            self._log_answers(directors)
            log("salt", "highstate on the directors (DHCP for the servers)")
            directors_job = pool.submit(self.apply_states, "-L", ",".join(directors))
            self._log_answers([n.name for n in first if n.minion and n.name not in directors])
            log("salt", "highstate on the nas (the web servers' NFS docroot)")
            summary = self.apply_states("-L", ",".join(nas)) if nas else {}
            if not (self._report(summary) or self._apply_failed_again(summary)):
                raise RuntimeError("highstate failed on the nas: the web servers mount its export")
            self.applied |= set(summary)
            booted_servers = server_wave.result()
            servers_job = None
            server_minions = [n for n in booted_servers if self.nodes[n].minion]
            if apply_servers and server_minions:
                # The nas exports and the servers have their addresses: their
                # highstate need not wait for the directors' to end.
                self._log_answers(server_minions, timeout=120)
                log("salt", "highstate on " + ", ".join(server_minions) + " (the directors' goes on)")
                servers_job = pool.submit(self.apply_states, "-L", ",".join(server_minions))
            summary = directors_job.result()
            if not (self._report(summary) or self._apply_failed_again(summary)):
                raise RuntimeError("highstate failed on the directors: the servers depend on them")
            self.applied |= set(summary)
            if servers_job is not None:
                summary = servers_job.result()
                self._report(summary)
                # A server that failed is highstated again by apply().
                self.applied |= {m for m, s in summary.items() if not s["failed"]}

    def _boot_servers(self, servers: list[LabNode], root_fs: Path, master_keys: tuple[str, str]) -> None:
        """The directors already run: boot the servers not running (new ones
        get their hosts entries and static leases on the directors first)."""
        new_servers = [n for n in servers if node.leader_pid(n.name) is None]
        if new_servers:
            # Teach the directors the new nodes' MACs before those boot and ask DHCP.
            log("salt", "hosts and DHCP leases on the directors for " + ", ".join(n.name for n in new_servers))
            if not self._report(self.apply_states("-C", "G@roles:director", sls="common,dnsmasq")):
                raise RuntimeError("the directors could not take the new nodes' leases")
            # The nas's firewall lets only the topology's minions reach the master.
            log("salt", "the nas's firewall for " + ", ".join(n.name for n in new_servers))
            if not self._report(self.apply_states("-C", "G@roles:nas", sls="firewall")):
                raise RuntimeError("the nas's firewall could not take the new nodes")
        self._wave(servers, root_fs, master_keys)

    def _ask_dhcp_once_served(self, names: list[str], done: Callable[[], bool], timeout: float = 600) -> None:
        """Once a director serves DHCP, have these nodes ask again (unless
        done() first): they booted before it did, and networkd's DHCP client
        backs off, 30 s and more between tries after a minute. Served: the
        DHCP port is open (dnsmasq runs from the boot, with DHCP once the
        highstate configured it)."""
        director = self.model["roles"]["director"][0]
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if node.execute(director, ["ss", "-Hlun", "sport = :67"], timeout=30).stdout.strip():
                log("lab", f"{director} serves DHCP: " + ", ".join(names) + " ask now")
                self._ask_dhcp(names)
                return
            time.sleep(3)

    def _ask_dhcp(self, names: list[str]) -> None:
        """Have these nodes ask DHCP now on every link still without an address."""

        def ask(lab_node: LabNode) -> None:
            for link in (link for link in lab_node.links if link.dhcp):
                script = f"ip -4 -o addr show dev {link.ifname} | grep -q inet || networkctl reconfigure {link.ifname}"
                # A node still booting asks on its own when its networkd starts.
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    node.execute(lab_node.name, ["sh", "-c", script], timeout=60)

        nodes = [self.nodes[n] for n in names]
        if nodes:
            with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
                list(pool.map(ask, nodes))

    def retired(self) -> list[str]:
        """Nodes the lab runs that the topology no longer has."""
        return sorted(
            p.name
            for p in (node.STATE / "nodes").glob("*")
            if p.is_dir() and p.name not in self.nodes and node.leader_pid(p.name) is not None
        )

    def retire(self, name: str) -> None:
        """Stop a node the topology dropped, unwire it and forget its minion key.
        (Roll the change out first, salt-run state.orchestrate orch.topology, so
        that the directors drained it: stopped here, it simply vanishes.)"""
        log(name, "no longer in the topology: stopping it and deleting its minion key")
        node.stop(name)
        node.unmount(name)
        net.unwire_retired(name)
        node.execute(self.master.name, ["salt-key", "-y", "-d", name], timeout=60)

    # -- apply / verify ---------------------------------------------------
    def apply_states(self, *target: str, test: bool = False, sls: str | None = None) -> dict[str, dict]:
        """Highstate (or these sls) through the master; per minion: states, failed, changed (or pending, with test)."""
        target = target or ("*",)
        extra = ([sls] if sls else []) + (["test=True"] if test else [])
        result = self.salt_json(*target, "state.apply", *extra, "-t", "600", timeout=900)
        self.heard |= {minion for minion, states in result.items() if isinstance(states, dict)}
        self._keep_answer(result, target, sls, test)
        return summarize(result)

    @staticmethod
    def _keep_answer(result: dict, target: tuple[str, ...], sls: str | None, test: bool, keep: int = 20) -> None:
        """The whole answer (every state's comment and duration) in the lab's
        logs, state.apply-*.json, the last `keep` of them."""
        logs = node.STATE / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(seconds)) + f".{nanoseconds:09d}"
        (logs / f"state.apply-{stamp}-{'test' if test else 'run'}.json").write_text(
            json.dumps({"target": list(target), "sls": sls, "test": test, "result": result}, indent=1)
        )
        for old in sorted(logs.glob("state.apply-*.json"))[:-keep]:
            old.unlink(missing_ok=True)

    def _report(self, summary: dict[str, dict]) -> bool:
        ok = True
        for minion, s in sorted(summary.items()):
            log(minion, f"{s['states']} states, {s['changed']} changed, {s['failed']} failed")
            for error in s["errors"] or []:
                log(minion, f"  {str(error)[:400]}")
            for unit in s.get("units", []):
                self._log_journal(minion, unit)
            ok = ok and s["failed"] == 0
        return ok

    def _apply_failed_again(self, summary: dict[str, dict]) -> bool:
        """Once more on the minions whose first highstate failed (reported above,
        with the failed units' journals). A unit that died at its very first
        start starts again (the project's CI once saw HAProxy do so on the
        standby: its watchdog, docs/lab.md "HAProxy's size"); a real fault fails
        again, and the lab stops. The line it prints is what the test session
        warns about."""
        failed = sorted(m for m, s in summary.items() if s["failed"])
        log("salt", f"{RETRY_NOTE} on {', '.join(failed)}")
        return self._report(self.apply_states("-L", ",".join(failed)))

    def _log_journal(self, name: str, unit: str, lines: int = 15) -> None:
        """A failed service state's unit: its last journal lines from the node
        (why it failed or exited: the state's comment does not say)."""
        argv = ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-monotonic"]
        try:
            proc = node.execute(name, argv, timeout=30)
        except (RuntimeError, subprocess.SubprocessError) as err:
            log(name, f"  journal of {unit}: not read ({err})")
            return
        log(name, f"  journal of {unit} (last {lines} lines):")
        for line in proc.stdout.splitlines():
            log(name, f"    {line}")

    def apply(self, skip_applied: bool = False) -> bool:
        """Highstate every minion (with skip_applied: those up did not just apply)."""
        skip = self.applied if skip_applied else set()
        names = sorted(n.name for n in self.minions() if n.name not in skip)
        if not names:
            log("salt", "every minion was highstated while coming up")
            return True
        # Lab minions do not sync at each highstate (provision.minion_conf):
        # the repo's custom modules may have changed since they booted.
        log("salt", "saltutil.sync_all on " + ", ".join(names))
        self.salt_json("-L", ",".join(names), "saltutil.sync_all", "-t", "240", timeout=300)
        if skip:
            log("salt", "highstate on " + ", ".join(names) + " (the others were applied while coming up)")
            summary = self.apply_states("-L", ",".join(names))
        else:
            summary = self.apply_states()
        missing = sorted(set(names) - set(summary))
        for name in missing:
            log(name, "no answer to state.apply")
        return self._report(summary) and not missing

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
        with ThreadPoolExecutor(max_workers=3) as pool:
            # The longest check runs while the others look at the cluster from outside.
            second_apply = pool.submit(self.apply_states, "*", test=True) if second_highstate else None
            pinged = pool.submit(self.ping, names, timeout=30)
            capabilities = pool.submit(self.capabilities)
            outside = self._outside_checks()
            answered = pinged.result()
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

        def fetch(node_name: str, script: str) -> str:
            return node.execute(node_name, ["sh", "-c", script], timeout=60).stdout

        def seen(out: str) -> list[str]:
            return re.findall(re.escape(catalogue.server_prefix()) + r"([0-9.]+)", out)

        def round_robin(label: str, url: str, opts: str) -> Check:
            # HAProxy's dynamic roundrobin may take a while to give a server
            # that came back (after a director's cut, say) its full share
            # (HAProxy's manual, "balance roundrobin"): a few rounds to see it.
            for _ in range(5):
                got = seen(fetch("client", f"for i in $(seq {2 * len(web)}); do curl -s -m 3 {opts} {url}; done"))
                if sorted(set(got)) == sorted(web):
                    break
                time.sleep(2)
            return (f"{label} via {vip}", sorted(set(got)) == sorted(web), " ".join(got) or "no answer")

        def sticky() -> Check:
            got = seen(
                fetch(
                    "client",
                    "jar=$(mktemp); for i in 1 2 3; do curl -s -m 3 -b $jar -c $jar "
                    f"http://{vip}:8000/; done; rm -f $jar",
                )
            )
            return (f"HTTP :8000 sticky via {vip}", len(got) == 3 and len(set(got)) == 1, " ".join(got))

        def one_holder() -> Check:
            holders = [
                n for n in self.model["roles"]["director"] if any(a.endswith(f" {vip}/32") for a in self.addresses(n))
            ]
            return (f"exactly one director holds {vip}", len(holders) == 1, ", ".join(holders) or "none")

        checks: list[Callable[[], Check]] = [
            partial(round_robin, "HTTP :80 round robin", f"http://{vip}/", ""),
            partial(round_robin, "HTTPS :443 round robin", f"https://{vip}/", "-k"),
            sticky,
        ]
        if dns and web:
            first = self.model["nodes"][self.model["roles"]["web"][0]]
            upstream = self.model["networks"]["external"]["gateway"]

            def resolves() -> Check:
                answer = fetch("nas", f"dig +short +time=2 @{dns[0]} {first['fqdn']}").split()
                return (f"DNS {dns[0]}: {first['fqdn']}", answer == [first["address"]], " ".join(answer))

            def nat() -> Check:
                page = fetch(first["name"], f"curl -s -m 3 http://{upstream}/")
                return (
                    f"{first['name']} reaches {upstream} through the NAT",
                    page.startswith("upstream"),
                    page.strip()[:40],
                )

            checks += [resolves, nat]
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

    # -- down ------------------------------------------------------------
    def down(self) -> None:
        names = set(self.nodes) | {p.name for p in (node.STATE / "nodes").glob("*") if p.is_dir()}
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(node.stop, names))
        uml.kill_sessions(uml.leftovers(node.STATE))
        if node.kill_leftovers():
            time.sleep(1)  # let the killed processes leave their cgroups
        for name in names:
            node.unmount(name)
        for lab_node in self.nodes.values():
            net.unwire(lab_node)
        for ns in net.lab_namespaces():
            run(["ip", "netns", "del", ns], check=False)
        net.remove_switch()
        node.remove_cgroup_root()
        node.state_file().unlink(missing_ok=True)
        log("lab", "down: no lab namespace, mount or process left")


def summarize(result: dict) -> dict[str, dict]:
    """Per minion of a state.apply answer: how many states, failed, changed (or
    pending, with test=True), the failed ones' comments, and the units of the
    failed service states (pure)."""
    summary: dict[str, dict] = {}
    for minion, states in result.items():
        if not isinstance(states, dict):
            summary[minion] = {"states": 0, "failed": 1, "changed": 0, "errors": states, "units": []}
            continue
        failed = {k: v for k, v in states.items() if v.get("result") is False}
        summary[minion] = {
            "states": len(states),
            "failed": len(failed),
            "changed": sum(1 for v in states.values() if v.get("changes") or v.get("result") is None),
            "errors": [v.get("comment") for v in failed.values()],
            # A state's key: module_|-id_|-name_|-function.
            "units": [v.get("name") or k.split("_|-")[2] for k, v in failed.items() if k.startswith("service_|-")],
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "apply", "verify", "status", "down", "lab"):
        sub.add_parser(name)
    p_exec = sub.add_parser("exec", help="run a command in a node: exec NODE -- CMD...")
    p_exec.add_argument("node")
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    p_salt = sub.add_parser("salt", help="the salt CLI where the master runs")
    p_salt.add_argument("argv", nargs=argparse.REMAINDER)
    for name in ("cut", "heal"):
        p = sub.add_parser(name)
        p.add_argument("node")
    p_bench = sub.add_parser("bench", help="benchmarks and failure drills from the client node (lab/bench.py)")
    p_bench.add_argument("--quick", action="store_true", help="a short bounded run (about a minute)")
    p_bench.add_argument("--out", type=Path, default=REPO / "build" / "bench", help="results, plots and report")
    p_bench.add_argument(
        "--drills",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="only these drills, comma-separated (no sweeps), e.g. 'director cable cut'",
    )
    p_events = sub.add_parser("events", help="print the master's events matching a tag (salt-run state.event)")
    p_events.add_argument("tagmatch")
    p_events.add_argument("--count", type=int)
    p_events.add_argument("--timeout", type=float, default=30)
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `salt` belongs to the salt CLI, its options included.
    salt_cli = argv[:1] == ["salt"]
    args = argparse.Namespace(command="salt", argv=argv[1:]) if salt_cli else parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (namespaces, mounts, containers)", file=sys.stderr)
        return 2
    try:
        return run_command(parser, args)
    except (RuntimeError, TimeoutError, ValueError) as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 1


def _exec(target: str, argv: list[str]) -> int:
    """Run ``argv`` in the node ``target``, its output and exit code passed through."""
    if node.uml_address(target):
        # Another kernel: no nsenter; the node's exec agent runs it (stdin is passed along).
        stdin = "" if sys.stdin.isatty() else sys.stdin.read()
        proc = node.execute(target, argv, timeout=float(os.environ.get("LAB_EXEC_TIMEOUT", 600)), stdin=stdin)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    os.execvp("nsenter", node.exec_argv(target, argv))


def _exec_command(parser: argparse.ArgumentParser, args: argparse.Namespace, master: str) -> int:
    """`exec NODE -- CMD...` in that node, or `salt ...` where the master runs."""
    if args.command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        target = args.node
    else:
        argv = ["salt", *[a for a in args.argv if a != "--"]]
        target = master
    if not argv:
        parser.error("nothing to run")
    return _exec(target, argv)


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        lab = Lab()
    except ValueError as err:
        # An invalid topology: the running lab still takes commands (to see
        # Salt refuse the edit, say), its nodes found by name.
        running = node.load_state().get("master")
        if args.command not in ("exec", "salt") or not running:
            raise
        log("lab", f"the topology is invalid, the running lab is used as it is: {str(err).splitlines()[0]}")
        return _exec_command(parser, args, running)
    if args.command == "up":
        lab.up()
    elif args.command == "apply":
        return 0 if lab.apply() else 1
    elif args.command == "verify":
        return 0 if lab.verify() else 1
    elif args.command == "status":
        lab.status()
    elif args.command == "down":
        lab.down()
    elif args.command == "lab":
        lab.up(apply_servers=True)
        applied = lab.apply(skip_applied=True)
        # Each minion's highstate result was just reported; a second one
        # (idempotence) is `verify`'s and make test's, not the build's.
        verified = lab.verify(second_highstate=False)
        print()
        lab.status()
        return 0 if applied and verified else 1
    elif args.command == "bench":
        unknown = sorted(set(args.drills or ()) - set(bench.DRILLS))
        if unknown:
            parser.error(f"--drills: unknown {', '.join(map(repr, unknown))} (drills: {', '.join(bench.DRILLS)})")
        ipvs = lab.kernel_paths["ipvs"].path != "unavailable"
        cluster = bench.Cluster(lab.model, lab.nodes, lab.master.name, ipvs)
        bench.run_bench(cluster, args.quick, args.out, args.drills)
    elif args.command == "events":
        argv = events.salt_run_argv(args.tagmatch, args.count, args.timeout)
        proc = node.execute(lab.master.name, argv, timeout=args.timeout + 10)
        sys.stdout.write(proc.stdout)
        return 0 if proc.returncode in (0, 124) else proc.returncode
    elif args.command in ("exec", "salt"):
        return _exec_command(parser, args, lab.master.name)
    elif args.command in ("cut", "heal"):
        if args.node not in lab.nodes:
            parser.error(f"unknown node {args.node!r} (nodes: {', '.join(sorted(lab.nodes))})")
        net.set_links(lab.nodes[args.node], up=args.command == "heal")
        log(args.node, "links " + ("up" if args.command == "heal" else "down (cut)"))
    return 0
