"""The files the lab writes into a node before it boots: identity, network,
resolver and Salt. Pure functions of the lab topology, so they are testable."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from pathlib import Path

import yaml

from lab.topology import MGMT_NETWORK, UPSTREAM_NAMES, LabNode, repo_module

# The deployment's own choices (failover masters, keepalives, master roots),
# which the lab's nodes take as a real deployment's do.
BOOTSTRAP = repo_module("tools/bootstrap.py")

MASTER_CONF = "/etc/salt/master.d/lab.conf"
# The lab's own pillar, laid over the repo's (the master's ext_pillar): what
# only the lab has, such as its management network.
LAB_PILLAR = "/etc/salt/lab-pillar.yaml"
MINION_CONF = "/etc/salt/minion.d/lab.conf"
MINION_NICE = "/etc/systemd/system/salt-minion.service.d/lab-nice.conf"
MINION_NETWORK = "/etc/systemd/system/salt-minion.service.d/lab-network.conf"
MINION_SKIP_SYSV = "/etc/systemd/system/salt-minion.service.d/lab-skip-sysv.conf"
# Where a minion keeps the custom modules it synced (Salt's cachedir/extmods),
# and the repo's folders it gets before it starts: see extension_modules().
MINION_EXTMODS = "/var/cache/salt/minion/extmods"
SEEDED_EXTMODS = {"_grains": "grains", "_beacons": "beacons", "_modules": "modules", "_states": "states"}
# The master's: its runners (salt-run cluster.health), and the modules the
# orchestration renders with (cluster.model), where `salt-run saltutil.sync_all`
# would put them.
MASTER_EXTMODS = "/var/cache/salt/master/extmods"
MASTER_SEEDED_EXTMODS = {"_runners": "runners", "_modules": "modules", "_states": "states"}
# A bare node's sshd: its own host key only (written by the lab), keys only.
SSHD_CONF = "/etc/ssh/sshd_config.d/lab.conf"
SSHD_SETTINGS = "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
SSH_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# The lab's inventory for tools/bootstrap.py, and its login key, in `operator`.
OPERATOR_INVENTORY = "/root/inventory.yaml"
OPERATOR_KEY = "/root/.ssh/id_ed25519"
OPERATOR_WORKDIR = "/root/bootstrap"
PUBLISH_PORT = 4505  # the salt-master's publish port: every connected minion holds one connection to it
REQUEST_PORT = 4506  # and its request port (jobs' returns, file server, auth)


def machine_id(name: str) -> str:
    return hashlib.sha256(f"ha-lab/{name}".encode()).hexdigest()[:32]


def network_units(node: LabNode) -> dict[str, str]:
    """systemd-networkd units: static addresses, or DHCP with the MAC as client id."""
    units = {}
    for link in node.links:
        lines = [
            "[Match]",
            f"Name={link.ifname}",
            "",
            "[Link]",
            f"MTUBytes={link.mtu}",
            "",
            "[Network]",
            "LinkLocalAddressing=no",
            "IPv6AcceptRA=no",
        ]
        if link.dhcp:
            lines += [
                "DHCP=ipv4",
                "",
                "[DHCPv4]",
                "ClientIdentifier=mac",
                # The lab sets each network's MTU (MTUBytes above): clamped to 1500
                # where a user-mode node is (lab/topology.py) whatever DHCP offers.
                "UseMTU=no",
                "UseDNS=no",
                "UseHostname=no",
                "SendHostname=yes",
            ]
        else:
            lines.append(f"Address={link.address}/{link.prefixlen}")
            on_gateway_net = node.gateway and link.network == ("external" if "director" in node.roles else "internal")
            if link.gateway:
                lines.append(f"Gateway={link.gateway}")
            elif on_gateway_net:
                lines.append(f"Gateway={node.gateway}")
        units[f"/etc/systemd/network/10-{link.ifname}.network"] = "\n".join(lines) + "\n"
    return units


def resolv_conf(node: LabNode, model: dict) -> str:
    """Cluster nodes ask the internal VIP (the directors' dnsmasq); the lab's nodes ask upstream."""
    if node.kind == "lab":
        server = "127.0.0.1" if node.name == "upstream" or node.runs_master else model["vips"]["external"][0]
    elif "director" in node.roles:
        server = "127.0.0.1"
    else:
        server = model["vips"]["internal"][0]
    return f"search {model['domain']}\nnameserver {server}\noptions timeout:1 attempts:2\n"


def minion_conf(node: LabNode, master_addresses: list[str]) -> str:
    """master_addresses: the masters, the primary first (tools/bootstrap.py's failover_settings)."""
    return yaml.safe_dump(
        {
            "id": node.name,
            **BOOTSTRAP.failover_settings(master_addresses),
            **lab_minion_settings(node),
            "grains": {"roles": node.roles},
        },
        sort_keys=False,
    )


def lab_minion_settings(node: LabNode) -> dict:
    """What the lab's minions run with beyond Salt's defaults (a bare lab's
    inventory gives the same to tools/bootstrap.py)."""
    return {
        "log_level": "warning",
        "acceptance_wait_time": 1,
        "random_reauth_delay": 0,
        "recon_default": 200,
        "recon_max": 2000,
        "master_tries": -1,
        "auth_tries": 30,
        "auth_timeout": 10,
        # User-mode-kernel nodes are slow: give a job's return more time
        # before it is retried (the default 5 s times out under load).
        "return_retry_timer": 15,
        "return_retry_timer_max": 30,
        # Salt's default runs each job in a forked child that exits (the
        # modules a highstate loads do not stay resident). Under a
        # user-mode kernel a fork of the minion costs about a second:
        # there jobs run in threads (measured: test.ping 1.8 -> 0.9 s,
        # a no-change highstate of a web node 21 -> 17 s; +70 MB).
        "multiprocessing": node.platform != "uml",
        # A highstate starts with a saltutil.sync_all: twenty-odd module
        # types, each over a new channel to the master, ~10 s per
        # user-mode node even when nothing changed. Lab minions start with
        # the repo's modules (extension_modules) and `python -m lab apply`
        # syncs before it highstates; after editing _modules & co. in a
        # running lab, `salt '*' saltutil.sync_all` before a bare
        # `salt '*' state.apply` (a real minion keeps Salt's default).
        "autoload_dynamic_modules": False,
        # A minion computes its grains twice as it starts (before it
        # connects, and again when it loads its modules): 2.7 s each on a
        # user-mode node. With the cache the second load reads the first's
        # (measured on an idle web node: answering 14 -> 11 s after the
        # start, 9 -> 6 CPU-s). A refresh (saltutil.refresh_grains,
        # sync_all) still computes them; the cache is trusted for 5 min.
        "grains_cache": True,
        # Salt starts and stops services through `systemd-run --scope
        # systemctl ...` so that the systemctl call survives a restart of
        # the minion; the service itself is always PID 1's, in its own
        # cgroup. Under a user-mode kernel the scope costs 0.6 s of each
        # start (1.5 against 0.9 s for apache2): the self-healing
        # reactor's restart of a service is that much later.
        "systemd.scope": node.platform != "uml",
        # The TCP keepalives a real deployment's minions get too.
        **BOOTSTRAP.MINION_DEFAULTS,
    }


def master_conf(repo_master: dict, repo_path: str, interface: str, node_name: str) -> str:
    """The repo's master settings with the repo's roots made absolute inside
    nas, for the master of topology node ``node_name`` (its id pinned, as
    bootstrap.master does)."""
    extra = {"interface": interface, "id": BOOTSTRAP.master_id(node_name), **lab_master_settings()}
    conf = BOOTSTRAP.master_settings(repo_master, extra, site_pillar=False, checkout=repo_path)
    conf["ext_pillar"] = [{"cmd_yaml": f"cat {LAB_PILLAR}"}]
    return yaml.safe_dump(conf, sort_keys=False)


def lab_master_settings() -> dict:
    """What the lab's masters run with beyond the repository's settings."""
    conf: dict = {"worker_threads": 2, "log_level": "warning", "presence_events": True}
    # While a job runs, the master asks the minion every few seconds whether it
    # still does (saltutil.find_job) and gives the job up as "did not return"
    # when one answer takes longer than this (Salt's default: 10 s). A
    # user-mode director busy with its own highstate under load answered
    # later than that once, and an orchestration failed with the highstate
    # still running fine.
    conf["gather_job_timeout"] = 60
    return conf


def lab_pillar() -> str:
    return yaml.safe_dump(lab_pillar_data())


def lab_pillar_data() -> dict:
    """The management NIC (lab0) of the exec agent and the master's container:
    the host firewalls accept it (firewall formula, ``management``), as a
    data centre's management LAN would be."""
    return {"firewall": {"management": {"interface": "lab0", "cidr": str(MGMT_NETWORK)}}}


def upstream_dns_unit(address: str) -> str:
    """The "Internet" resolver: answers a few public-looking names, nothing else."""
    records = " ".join(f"--address=/{name}/{address}" for name in sorted(UPSTREAM_NAMES))
    return (
        "[Unit]\nDescription=Lab upstream DNS (the cluster's forwarders ask here)\nAfter=network-online.target\n"
        "Wants=network-online.target\n\n[Service]\n"
        f"ExecStart=/usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-dynamic "
        f"--listen-address={address} --listen-address=127.0.0.1 --log-queries=extra {records}\n"
        "Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def salt_forward_unit(nas_address: str, master_address: str) -> str:
    """On a nas whose salt-master runs in a container behind it: forward the
    master's ports (4505 publish, 4506 requests) there. DNAT only, so the master
    sees the minions' own addresses (presence events match them)."""
    match = f"-p tcp -d {nas_address} --dport {PUBLISH_PORT}:{REQUEST_PORT}"
    rules = [
        f"iptables -t nat -A {chain} {match} -j DNAT --to-destination {master_address}"
        for chain in ("PREROUTING", "OUTPUT")
    ]
    start = " && ".join(["sysctl -qw net.ipv4.ip_forward=1", *rules])
    return (
        "[Unit]\nDescription=Lab: forward the Salt master ports to the master container\n"
        "After=network.target\nBefore=salt-minion.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        f"ExecStart=/bin/sh -c '{start}'\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def files_for(
    node: LabNode,
    model: dict,
    nas_address: str,
    repo_master: dict,
    repo_path: str,
    master_address: str | None = None,
    extra_masters: list[str] = (),
    bare: bool = False,
) -> dict[str, str]:
    """master_address: where the salt-master listens (the nas itself unless a
    container behind it); extra_masters: the further masters' addresses
    (topology nodes), which the minions fail over to. A bare node gets no
    Salt settings at all: tools/bootstrap.py gives them over SSH."""
    master_address = master_address or nas_address
    files = {
        "/etc/hostname": node.name + "\n",
        "/etc/machine-id": machine_id(node.name) + "\n",
        "/etc/resolv.conf": resolv_conf(node, model),
        "/etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{node.name}\n",
        **network_units(node),
    }
    if bare and node.kind == "cluster":
        files[SSHD_CONF] = SSHD_SETTINGS
    if node.minion:
        if not bare:
            files[MINION_CONF] = minion_conf(node, [nas_address, *extra_masters])
        # A node runs on one (user-mode) CPU: a highstate at normal priority
        # starved keepalived's check scripts on a director, which then timed
        # out, dropped its priority and handed the VIPs over for nothing.
        files[MINION_NICE] = "[Service]\nNice=10\n"
        if any(link.dhcp for link in node.links):
            # Start the minion once DHCP gave the node its address: its grains
            # (ipv4, which the master's presence check matches connections
            # against) are read at start, and the master is only reachable then.
            files[MINION_NETWORK] = "[Unit]\nWants=network-online.target\nAfter=network-online.target\n"
        if node.platform == "uml":
            # `systemctl enable` of a service that also ships a SysV script runs
            # update-rc.d twice (perl): 8 of the 11 s an enable took under a
            # user-mode kernel, for rc?.d links that a systemd-booted node never
            # reads. The minion's systemctl calls skip that there (the formulas
            # are unchanged; a real server just spends the 0.3 s).
            files[MINION_SKIP_SYSV] = "[Service]\nEnvironment=SYSTEMCTL_SKIP_SYSV=1\n"
    if (node.runs_master or node.extra_master) and not bare:
        interface = master_address if node.runs_master else node.address
        name = model["salt_masters"][0]["name"] if node.runs_master else node.name
        files[MASTER_CONF] = master_conf(repo_master, repo_path, interface, name)
        files[LAB_PILLAR] = lab_pillar()
    if "nas" in node.roles and master_address != nas_address and not bare:
        files["/etc/systemd/system/lab-salt-forward.service"] = salt_forward_unit(nas_address, master_address)
    if node.name == "upstream":
        files["/etc/systemd/system/lab-upstream-dns.service"] = upstream_dns_unit(node.address)
        files["/var/www/html/index.html"] = "upstream: the lab's Internet\n"
    return files


def extension_modules(repo: Path) -> dict[str, str]:
    """The repo's custom grains, beacons, execution and state modules, where
    saltutil.sync_all would put them: a lab minion starts with them, as an
    image with the site's modules baked in would. The formulas render from the
    cluster_kernel grain, the cluster_watch beacon (named in the pillar, so it
    runs from the minion's start) calls the vip and haproxy_runtime modules,
    and the highstate does not sync them itself (minion_conf)."""
    return _seeded(repo, MINION_EXTMODS, SEEDED_EXTMODS)


def master_extension_modules(repo: Path) -> dict[str, str]:
    """The same for the master: it starts with the repo's runners and modules
    (a `salt-run saltutil.sync_all` at bring-up was ~5 CPU-s of a busy lab)."""
    return _seeded(repo, MASTER_EXTMODS, MASTER_SEEDED_EXTMODS)


def _seeded(repo: Path, extmods: str, folders: dict[str, str]) -> dict[str, str]:
    return {
        f"{extmods}/{kind}/{path.name}": path.read_text()
        for folder, kind in folders.items()
        for path in sorted((repo / folder).glob("*.py"))
    }


def connected_minions(ss_established: str, nodes: dict[str, LabNode]) -> set[str]:
    """The minions holding a connection to the master, from `ss -Htn state
    established` on the master (Recv-Q Send-Q Local:Port Peer:Port), peers
    matched to the nodes by their addresses (pure). What Salt's
    manage.present finds, without starting a salt-run."""
    by_address = {link.address: n.name for n in nodes.values() if n.minion for link in n.links if link.address}
    found = set()
    for line in ss_established.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[2].endswith(f":{PUBLISH_PORT}"):
            continue
        with contextlib.suppress(ValueError):
            peer = ipaddress.ip_address(fields[3].rsplit(":", 1)[0].strip("[]"))
            if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
                peer = peer.ipv4_mapped
            if str(peer) in by_address:
                found.add(by_address[str(peer)])
    return found


def bare_inventory(nodes: dict[str, LabNode], host_keys: dict[str, str]) -> dict:
    """The inventory a bare lab gives tools/bootstrap.py (pure): the pinned
    host key of each topology node (reached at its internal address, the
    default), Salt as the image has it, and the lab's own tuning and
    management network, as a site would give its own."""
    settings = {name: lab_minion_settings(n) for name, n in nodes.items() if n.kind == "cluster"}
    first = next(iter(settings.values()))
    common = {k: v for k, v in first.items() if all(s.get(k) == v for s in settings.values())}
    own = {name: {k: v for k, v in s.items() if k not in common} for name, s in settings.items()}
    return {
        "ssh": {"user": "root", "key": OPERATOR_KEY},
        "salt": {"install": "present", "version": "3008"},
        "nodes": {
            name: {"host_key": host_keys[name], **({"minion": own[name]} if own[name] else {})}
            for name in sorted(settings)
        },
        "minion": common,
        "master": lab_master_settings(),
        "pillar": lab_pillar_data(),
    }
