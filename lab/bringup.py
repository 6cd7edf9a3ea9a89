"""Bringing the lab up and down: the rootfs, the wires, each node's first
boot (files, keys, enabled services), the boot waves with the highstates
that the next wave depends on, DHCP, retiring dropped nodes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from lab import catalogue, kernel, keys, net, node, provision, rootfs, uml, umlkernel
from lab.salt_control import SaltControl
from lab.topology import OPERATOR, REPO, LabNode
from lab.util import log, run

REPO_IN_NAS = node.REPO_IN_NAS
# Files a node keeps readable by root only.
PRIVATE_FILES = frozenset({provision.SSH_HOST_KEY, provision.OPERATOR_KEY, "/root/.ssh/authorized_keys"})


class Bringup(SaltControl):
    """Up and down; the Lab gives it the model, the nodes and the master's config."""

    model: dict
    nas: LabNode
    repo_master: dict
    boot_seconds: dict[str, float]
    kernel_paths: dict
    bare: bool  # nodes without Salt, for tools/bootstrap.py

    # -- up --------------------------------------------------------------
    def _boot(self, lab_node: LabNode, root_fs: Path, master_keys: tuple[str, str] | None) -> bool:
        """Boot the node; False when it was already running."""
        if node.leader_pid(lab_node.name) is not None:
            log(lab_node.name, "already running")
            return False
        root = node.mount(lab_node, root_fs)
        files = provision.files_for(
            lab_node,
            self.model,
            self.nas.address,
            self.repo_master,
            REPO_IN_NAS,
            self.master.address,
            [m.address for m in self.extra_masters],
            bare=self.bare,
        )
        if lab_node.platform == "uml":
            files.update(uml.files_for(lab_node))
        if self.bare:
            files.update(self._bare_files(lab_node))
        for path, text in files.items():
            node.write(root, path, text, 0o600 if path in PRIVATE_FILES else 0o644)
        if lab_node.platform == "uml":
            for path, target in uml.links_for(lab_node).items():
                node.symlink(root, path, target)
        services = sorted({unit for role in lab_node.roles for unit in catalogue.services(role)})
        if services:
            # As apt leaves them: enabled (links per each unit's [Install], offline).
            run(["systemctl", f"--root={root}", "enable", "--quiet", *services])
        wants = root / "etc/systemd/system/multi-user.target.wants"
        units = []
        if self.bare and lab_node.kind == "cluster":
            units.append("ssh.service")
        elif lab_node.minion:
            units.append("salt-minion.service")
            for path, text in provision.extension_modules(REPO).items():
                node.write(root, path, text)
            pem, pub = keys.generate(node.STATE / "keys", lab_node.name)
            node.write(root, "/etc/salt/pki/minion/minion.pem", pem, 0o600)
            node.write(root, "/etc/salt/pki/minion/minion.pub", pub)
            node.write(root, "/etc/salt/pki/minion/minion_master.pub", master_keys[1])
            for master in self._master_roots():
                node.write(master, f"/etc/salt/pki/master/minions/{lab_node.name}", pub)
        if (lab_node.runs_master or lab_node.extra_master) and not self.bare:
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

    def _bare_files(self, lab_node: LabNode) -> dict[str, str]:
        """A bare node's SSH: its own host key, and the operator's login key
        in root's authorized keys; `operator` gets that key and the inventory."""
        operator_private, operator_public = keys.ssh_pair(node.STATE / "ssh", "operator")
        if lab_node.kind == "cluster":
            host_private, host_public = keys.ssh_pair(node.STATE / "ssh", lab_node.name)
            return {
                provision.SSH_HOST_KEY: host_private,
                provision.SSH_HOST_KEY + ".pub": host_public + "\n",
                "/root/.ssh/authorized_keys": operator_public + "\n",
            }
        if lab_node.name != OPERATOR:
            return {}
        return {provision.OPERATOR_KEY: operator_private, provision.OPERATOR_INVENTORY: self.inventory_text()}

    def inventory_text(self) -> str:
        """The lab's inventory; makes every SSH key pair it names and the operator's."""
        keys.ssh_pair(node.STATE / "ssh", "operator")
        cluster = [n for n in self.nodes.values() if n.kind == "cluster"]
        host_keys = {n.name: keys.ssh_pair(node.STATE / "ssh", n.name)[1] for n in cluster}
        return yaml.safe_dump(provision.bare_inventory(self.nodes, host_keys), sort_keys=False)

    def _master_roots(self) -> list[Path]:
        """Every master's tree: each accepts the minions' keys."""
        return [node.merged(m.name) for m in (self.master, *self.extra_masters)]

    @property
    def extra_masters(self) -> list[LabNode]:
        """The topology's further Salt masters (salt_masters beyond the nas)."""
        return [n for n in self.nodes.values() if n.extra_master]

    def _wave(self, nodes: list[LabNode], root_fs: Path, master_keys: tuple[str, str] | None) -> list[str]:
        """Boot these nodes in parallel; the names of those that were not running."""
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futures = {n.name: pool.submit(self._boot, n, root_fs, master_keys) for n in nodes}
            return [name for name, future in futures.items() if future.result()]

    def _host_ready(self) -> Path:
        """The rootfs (and Debian 13's user-mode kernel, fetched meanwhile),
        the switch, every node's wires and the realtime budget: what a node
        needs before it boots. Returns the rootfs."""
        uml_nodes = any(n.platform == "uml" for n in self.nodes.values())
        with ThreadPoolExecutor(max_workers=1) as pool:
            fetch = None
            if uml_nodes and not kernel.package_kernel_forced():
                # Debian 13's user-mode kernel, installed once in the lab's
                # cache (else Debian 12's), while a rootfs builds.
                fetch = pool.submit(umlkernel.ensure)
            root_fs = rootfs.build()
            if fetch is not None:
                fetch.result()
        self.kernel_paths = kernel.paths()
        # The lab's MTUs (clamped where a user-mode node is).
        net.ensure_switch({link.network: link.mtu for n in self.nodes.values() for link in n.links})
        for lab_node in self.nodes.values():
            net.wire(lab_node)
        if uml_nodes:
            uml.set_rt_budget(uml.rt_budget_files())
        return root_fs

    def _save_up_state(self, started: float, root_fs: Path) -> None:
        node.save_state(
            {
                "up_seconds": round(time.monotonic() - started, 1),
                "rootfs": str(root_fs),
                "kernel_paths": {f: p.describe() for f, p in self.kernel_paths.items()},
                "uml_nodes": sorted(n.name for n in self.nodes.values() if n.platform == "uml"),
                "master": self.master.name,
                "bare": self.bare,
                "checkout": str(REPO),
            }
        )

    def up_bare(self) -> None:
        """Boot every node bare: no Salt settings, no keys, Salt's services
        off, sshd on with the node's own host key (`bootstrap` does the rest)."""
        started = time.monotonic()
        root_fs = self._host_ready()
        self.inventory_text()  # every SSH key pair, before the nodes boot in parallel
        first = [n for n in self.nodes.values() if n.order in (0, 1)]
        self._wave(first, root_fs, None)
        self._wave([n for n in self.nodes.values() if n.order == 2], root_fs, None)
        # A node new to the topology joins a running bare lab: the operator's
        # inventory (written at its boot) gains it.
        write = ["sh", "-c", f"umask 077 && cat > {provision.OPERATOR_INVENTORY}"]
        node.execute(OPERATOR, write, check=True, stdin=self.inventory_text())
        self._save_up_state(started, root_fs)
        log(
            "lab",
            f"up, bare: {len(self.nodes)} nodes, {time.monotonic() - started:.1f} s; next: python -m lab bootstrap",
        )

    def bootstrap(self, only: str | None = None) -> int:
        """tools/bootstrap.py from `operator`, as an administrator runs it
        from a machine of the internal network, with the lab's inventory."""
        argv = ["/opt/salt/bin/python", f"{REPO_IN_NAS}/tools/bootstrap.py", "--workdir", provision.OPERATOR_WORKDIR]
        argv += ["--only", only] if only else []
        started = time.monotonic()
        proc = subprocess.run(
            node.exec_argv(OPERATOR, [*argv, provision.OPERATOR_INVENTORY]), check=False, timeout=3600
        )
        log("lab", f"bootstrap: exit {proc.returncode} after {time.monotonic() - started:.0f} s")
        return proc.returncode

    def up(self, apply_servers: bool = False) -> None:
        """Boot every node and highstate the directors and the nas (the servers
        depend on them); with apply_servers, the servers too, as soon as they can."""
        started = time.monotonic()
        root_fs = self._host_ready()
        run([sys.executable, str(REPO / "tools" / "gen_secrets.py"), str(REPO / "pillar" / "secrets.sls")])
        master_keys = keys.generate(node.STATE / "keys", "master")
        for name in self.retired():
            self.retire(name)
        # The masters' nodes first: the minions' keys go into their trees before they boot.
        for master in (self.master, *self.extra_masters):
            node.mount(master, root_fs)
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
        self._save_up_state(started, root_fs)
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
            nas_job = pool.submit(self.apply_states, "-L", ",".join(nas)) if nas else None
            booted_servers = server_wave.result()
            servers_job = None
            server_minions = [n for n in booted_servers if self.nodes[n].minion]
            if apply_servers and server_minions:
                # The servers have their addresses: their highstate need not
                # wait for the directors' or the nas's to end (the web
                # servers' mount waits for the export: nfs_mount_retry).
                self._log_answers(server_minions, timeout=120)
                log("salt", "highstate on " + ", ".join(server_minions) + " (the nas's and the directors' go on)")
                servers_job = pool.submit(self.apply_states, "-L", ",".join(server_minions))
            summary = nas_job.result() if nas_job else {}
            if not (self._report(summary) or self._apply_failed_again(summary)):
                raise RuntimeError("highstate failed on the nas: the web servers mount its export")
            self.applied |= set(summary)
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
            # One director at a time, the backups first, as the topology
            # orchestration goes: restarting dnsmasq on both at once stalled
            # both user-mode directors (realtime on the host, they left the
            # host's two cores to nothing else), and every IPVS check of both
            # timed out together.
            vrrp = self.model["vrrp"]["directors"]
            for director in sorted(self.model["roles"]["director"], key=lambda d: vrrp[d]["priority"]):
                if not self._report(self.apply_states("-L", director, sls="common,dnsmasq")):
                    raise RuntimeError(f"director {director} could not take the new nodes' leases")
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

    def wipe(self, name: str) -> None:
        """Throw a node's disk away, as when a disk or a machine is replaced:
        stop it and delete its tree (and a user-mode node's disk image).
        `up` boots it anew from the rootfs, with its minion key, and
        highstates it (a nas takes its docroot back from a web server's copy)."""
        lab_node = self.nodes[name]
        if lab_node.runs_master or lab_node.extra_master:
            raise ValueError(f"{name} runs a Salt master of the lab: wiping it would take the lab's keys with it")
        node.stop(name)
        node.unmount(name)
        log(name, "stopped, its disk thrown away: `python -m lab up` boots it anew")

    # -- down ------------------------------------------------------------
    def down(self) -> None:
        names = set(self.nodes) | {p.name for p in (node.STATE / "nodes").glob("*") if p.is_dir()}
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(node.stop, names))
        uml.kill_sessions(uml.leftovers(node.STATE))
        if node.kill_leftovers():
            time.sleep(1)  # let the killed processes leave their cgroups
        uml.restore_rt_budget()
        for name in names:
            node.unmount(name)
        for lab_node in self.nodes.values():
            net.unwire(lab_node)
        for ns in net.lab_namespaces():
            run(["ip", "netns", "del", ns], check=False)
        net.remove_switch()
        node.remove_cgroup_root()
        node.state_file().unlink(missing_ok=True)
        node.mode_file().unlink(missing_ok=True)
        log("lab", "down: no lab namespace, mount or process left")
