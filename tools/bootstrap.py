"""Bare Debian machines to a joined, highstated cluster, with salt-ssh.

    python3 tools/bootstrap.py INVENTORY [--only NODE,...]

The topology (pillar/cluster.sls) says what each node is; the inventory says
only how to reach it over SSH (address, user, key, and its pinned host key).
From them this generates salt-ssh's roster and known_hosts (in
.salt/bootstrap/, never written by hand) and then, in rounds:

1. the Salt masters of the topology (``salt_masters``): Salt installed and
   pinned, the repository's formulas and pillar, secrets made on the master,
   the master's settings; salt-master running (``bootstrap.master``);
2. every node: its minion key pair made on the node, its settings (id, roles
   grain, masters, the master key's fingerprint) and salt-minion running
   (``bootstrap.minion``);
3. the masters accept exactly the minion keys read from the nodes over SSH
   (``bootstrap.accept``): no auto-accept, and no key crosses the wire in clear;
4. once the minions answer: the directors and the nas first (the DHCP server
   and the export), then nodes that could not be reached before (their
   address comes from the directors' DHCP) get rounds 2-3, and finally the
   topology orchestration (orch.topology) when every node answers.

Idempotent: a second run changes nothing. A node that cannot be reached is
reported by name with its SSH error; the others are still brought up.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKDIR = REPO / ".salt" / "bootstrap"
# The paths the formula (salt/bootstrap) writes, from its defaults.
FORMULA = yaml.safe_load((REPO / "salt" / "bootstrap" / "defaults.yaml").read_text())["bootstrap"]
CHECKOUT = FORMULA["master"]["checkout"]
SITE_PILLAR = FORMULA["master"]["site_pillar"]
MASTER_PUB = f"{FORMULA['master']['pki']}/master.pub"
MINION_PUB = f"{FORMULA['minion']['pki']}/minion.pub"
# A state run through the master: a minion on a busy master's own node (the
# nas) may take longer than the CLI's default wait to say it is still at it.
STATE_RUN = ("--out=json", "--static", "-t", "120")
LEASE_FILE = yaml.safe_load((REPO / "salt" / "dnsmasq" / "defaults.yaml").read_text())["dnsmasq"]["lease_file"]
# What every master must hold the same of: one key pair, one set of secrets.
SHARED = (f"{FORMULA['master']['pki']}/master.pem", MASTER_PUB, FORMULA["master"]["secrets"])
SSH_TIMEOUT = 10
NODE_KEYS = {"host", "user", "key", "port", "host_key", "minion"}
TOP_KEYS = {"topology", "ssh", "nodes", "salt", "minion", "master", "pillar"}
SSH_KEYS = {"user", "key", "port"}
SALT_KEYS = {"install", "version"}
HOST_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# The minion settings the docs recommend. Find a dead connection to the
# master in seconds, not Salt's 300: the master drops a silent minion's
# publish connection after 30 s (ZeroMQ heartbeats); the minion, which only
# listens there, would otherwise wait for its first keepalive probe (5 min
# idle) to learn that, and miss every job meanwhile: after a cable cut
# longer than 30 s it answered again only 185 s after the heal (measured on
# the lab).
MINION_DEFAULTS = {"tcp_keepalive": True, "tcp_keepalive_idle": 10, "tcp_keepalive_intvl": 5, "tcp_keepalive_cnt": 3}


class InventoryError(ValueError):
    """Every problem of an inventory, each naming its field and value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Target:
    """How to reach one node over SSH."""

    name: str
    host: str
    user: str
    key: str
    port: int
    host_key: str | None
    minion: dict = field(default_factory=dict)


# -- the inventory -----------------------------------------------------------


def check_inventory(inventory: Any, nodes: Mapping[str, Mapping]) -> list[str]:
    """Problems of an inventory (parsed YAML) against the topology's nodes."""
    if not isinstance(inventory, Mapping):
        return [f"inventory: {inventory!r} is not a mapping"]
    problems = [f"{key}: unknown key" for key in sorted(set(inventory) - TOP_KEYS, key=str)]
    ssh = inventory.get("ssh", {})
    if not isinstance(ssh, Mapping):
        problems.append(f"ssh: {ssh!r} is not a mapping")
        ssh = {}
    problems += [f"ssh.{key}: unknown key" for key in sorted(set(ssh) - SSH_KEYS, key=str)]
    problems += _check_reach("ssh", ssh)
    salt = inventory.get("salt", {})
    if not isinstance(salt, Mapping):
        problems.append(f"salt: {salt!r} is not a mapping")
        salt = {}
    problems += [f"salt.{key}: unknown key" for key in sorted(set(salt) - SALT_KEYS, key=str)]
    if salt.get("install", "repository") not in ("repository", "present"):
        problems.append(f"salt.install: {salt['install']!r} is neither 'repository' nor 'present'")
    if not re.fullmatch(r"\d{4}(\.\d+)?", str(salt.get("version", "3008"))):
        problems.append(f"salt.version: {salt['version']!r} is not a Salt release such as 3008")
    for key in ("minion", "master", "pillar"):
        if not isinstance(inventory.get(key, {}), Mapping):
            problems.append(f"{key}: {inventory[key]!r} is not a mapping")
    given = inventory.get("nodes", {})
    if not isinstance(given, Mapping):
        return [*problems, f"nodes: {given!r} is not a mapping"]
    for name in sorted(set(given) - set(nodes), key=str):
        problems.append(f"nodes.{name}: not a node of the topology")
    for name, spec in given.items():
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"nodes.{name}: {spec!r} is not a mapping")
            continue
        problems += [f"nodes.{name}.{key}: unknown key" for key in sorted(set(spec) - NODE_KEYS, key=str)]
        problems += _check_reach(f"nodes.{name}", spec)
        if "host" in spec and not _host_ok(spec["host"]):
            problems.append(f"nodes.{name}.host: {spec['host']!r} is not an address or host name")
        if spec.get("host_key") is not None and not HOST_KEY.match(str(spec["host_key"])):
            problems.append(
                f"nodes.{name}.host_key: {spec['host_key']!r} is not an SSH public key line ('TYPE BASE64')"
            )
        if not isinstance(spec.get("minion", {}), Mapping):
            problems.append(f"nodes.{name}.minion: {spec['minion']!r} is not a mapping")
    return problems


def _check_reach(where: str, spec: Mapping) -> list[str]:
    problems = []
    if "user" in spec and not (isinstance(spec["user"], str) and USER.match(spec["user"])):
        problems.append(f"{where}.user: {spec['user']!r} is not a user name")
    if "key" in spec and not (isinstance(spec["key"], str) and spec["key"].strip()):
        problems.append(f"{where}.key: {spec['key']!r} is not a path to a private key")
    port = spec.get("port", 22)
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        problems.append(f"{where}.port: {port!r} is not a TCP port")
    return problems


def _host_ok(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(re.fullmatch(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?)+", host, re.IGNORECASE))


def targets(inventory: Mapping, model: Mapping) -> dict[str, Target]:
    """Each topology node's SSH target: the inventory's word, else its internal address."""
    ssh = inventory.get("ssh", {})
    given = inventory.get("nodes") or {}
    out = {}
    for name, node in model["nodes"].items():
        spec = given.get(name) or {}
        internal = next(i["address"] for i in node["interfaces"].values() if i["network"] == "internal")
        out[name] = Target(
            name=name,
            host=spec.get("host", internal),
            user=spec.get("user", ssh.get("user", "root")),
            key=os.path.expanduser(spec.get("key", ssh.get("key", "~/.ssh/id_ed25519"))),
            port=spec.get("port", ssh.get("port", 22)),
            host_key=spec.get("host_key"),
            minion=dict(spec.get("minion") or {}),
        )
    return out


# -- what the bootstrap writes for salt-ssh and the formula -------------------


def roster(nodes: Mapping[str, Target]) -> dict:
    """salt-ssh's roster: every node whose host key is pinned."""
    out = {}
    for name, target in sorted(nodes.items()):
        if not target.host_key:
            continue
        entry = {"host": target.host, "user": target.user, "priv": target.key, "port": target.port}
        entry |= {"timeout": SSH_TIMEOUT, "tty": False, "ssh_options": ["StrictHostKeyChecking=yes"]}
        if target.user != "root":
            entry["sudo"] = True
        out[name] = entry
    return out


def known_hosts(nodes: Mapping[str, Target]) -> str:
    """The pinned host keys, in OpenSSH's known_hosts format: by address, and
    by node name (HostKeyAlias: a node reached at another address)."""
    lines = []
    for name, target in sorted(nodes.items()):
        if target.host_key:
            host = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
            lines += [f"{host} {target.host_key}", f"{name} {target.host_key}"]
    return "".join(line + "\n" for line in lines)


def pool_addresses(leases: str, macs: Iterable[str]) -> dict[str, str]:
    """The addresses dnsmasq's lease file (``expiry mac address name id``
    lines) gives these MACs (pure)."""
    wanted = {mac.lower() for mac in macs}
    out = {}
    for line in leases.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].lower() in wanted:
            with contextlib.suppress(ValueError):
                out[fields[1].lower()] = str(ipaddress.IPv4Address(fields[2]))
    return out


def salt_ssh_config(workdir: Path, repo: Path) -> dict:
    """salt-ssh's own (operator-side) settings: the repository's formulas,
    an empty pillar of its own (the data goes on the command line), host
    keys checked against the pinned ones, and the repository's own secrets
    never packed for a node."""
    repo_master = yaml.safe_load((repo / "etc/salt/master").read_text())
    return {
        "root_dir": str(workdir),
        "roster_file": str(workdir / "roster"),
        "known_hosts_file": str(workdir / "known_hosts"),
        "file_roots": {"base": [str(repo), str(repo / "salt")]},
        "pillar_roots": {"base": [str(workdir / "pillar")]},
        "file_ignore_regex": repo_master["file_ignore_regex"],
        "ssh_timeout": SSH_TIMEOUT,
        "log_file": str(workdir / "salt-ssh.log"),
        "ssh_log_file": str(workdir / "ssh.log"),
    }


def master_settings(repo_master: Mapping, extra: Mapping, site_pillar: bool, checkout: str = CHECKOUT) -> dict:
    """The master's settings: the repository's (etc/salt/master) with its roots
    in the checkout (the secrets' root is absolute there, outside it), and
    the inventory's additions."""
    conf = {k: v for k, v in repo_master.items() if k != "root_dir"}

    def absolute(paths: list[str]) -> list[str]:
        return [p if p.startswith("/") else checkout if p == "." else f"{checkout}/{p}" for p in paths]

    conf["file_roots"] = {env: absolute(p) for env, p in repo_master["file_roots"].items()}
    conf["pillar_roots"] = {env: absolute(p) for env, p in repo_master["pillar_roots"].items()}
    if site_pillar:
        conf["ext_pillar"] = [{"cmd_yaml": f"cat {SITE_PILLAR}"}]
    conf.update(extra)
    return conf


def master_id(node: str) -> str:
    """A master's Salt id, pinned to its node's (bootstrap.master writes it):
    Salt names the master's key pair after it."""
    return f"{node}{FORMULA['master']['id_suffix']}"


def failover_settings(master_addresses: list[str]) -> dict:
    """The minion's masters. Several: Salt's failover masters, one at a time.
    Hot multi-master (a connection to each) runs a minion per master in each
    node, beacons and schedule included, and each master's reactor acts on
    every event: on the lab's two cores that doubled work slowed the
    directors enough to fail the director cable cut drill (measured,
    docs/operations.md). The minion's schedule checks its master's publish
    connection (minion_health.check, every 30 s; the keepalives of
    MINION_DEFAULTS end a dead one), moves to the next master when it is
    gone, and goes back to the first once that answers again. Salt's own
    per-master check stays off (master_alive_interval 0): Salt 3008 never
    deletes it (saltstack/salt#67967), and the minions kept switching."""
    if len(master_addresses) == 1:
        return {"master": master_addresses[0]}
    return {
        "master": list(master_addresses),
        "master_type": "failover",
        "master_alive_interval": 0,
        "master_failback": True,
        "retry_dns": 0,
    }


def minion_settings(model: Mapping, name: str, finger: str, extra: Mapping) -> dict:
    """One node's minion settings: who it is, what it is, whom it trusts."""
    conf: dict[str, Any] = {"id": name, **failover_settings([m["address"] for m in model["salt_masters"]])}
    conf |= {"master_finger": finger, "grains": {"roles": list(model["nodes"][name]["roles"])}, **MINION_DEFAULTS}
    conf.update(extra)
    return conf


def pem_body(pem: str) -> str:
    """The base64 lines of a PEM block, as Salt's fingerprint reads them."""
    lines = [line for line in pem.replace("\r\n", "\n").splitlines(keepends=True) if line.strip()]
    return "".join(lines[1:-1])


def finger(pem: str) -> str:
    """Salt's fingerprint of a public key (``salt-key -F``; master_finger)."""
    digest = hashlib.sha256(pem_body(pem).encode()).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def public_key_problem(name: str, pem: Any) -> str | None:
    """Why a node's minion.pub is not one Salt would accept, or None."""
    if not isinstance(pem, str) or not pem.startswith("-----BEGIN PUBLIC KEY-----"):
        return f"{name}: {MINION_PUB} is not a PEM public key: {str(pem)[:60]!r}"
    lines = [line for line in pem.strip().splitlines() if line.strip()]
    if lines[-1] != "-----END PUBLIC KEY-----":
        return f"{name}: {MINION_PUB} does not end its PEM block"
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return f"{name}: {MINION_PUB} is not base64 inside its PEM block"
    if len(der) < 270:  # a 2048-bit RSA key's SubjectPublicKeyInfo is 294 bytes
        return f"{name}: {MINION_PUB} holds a key of {len(der)} bytes, shorter than RSA 2048"
    return None


# -- salt-ssh's answers ------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    changes: list[str] = field(default_factory=list)  # state ids that changed something
    error: str = ""
    value: Any = None  # an execution function's return


def outcomes(stdout: str, names: list[str]) -> dict[str, Outcome]:
    """salt-ssh --out=json --static: each node's result, a failure read as
    its SSH or state error (pure). A node salt-ssh did not answer for is
    reported as such."""
    try:
        data = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        data = {}
    out = {}
    for name in names:
        ret = data.get(name)
        if ret is None:
            out[name] = Outcome(False, error="no answer from salt-ssh")
        elif isinstance(ret, str):
            out[name] = Outcome(False, error=ssh_message(ret))  # SSH's own error
        elif isinstance(ret, Mapping) and ("stderr" in ret or "_error" in ret) and "retcode" in ret:
            out[name] = Outcome(False, error=_ssh_error(ret))
        elif isinstance(ret, Mapping) and ret and all("_|-" in str(k) for k in ret):
            failed = [f"{k.split('_|-')[1]}: {v.get('comment', '')}" for k, v in ret.items() if not v.get("result")]
            changed = sorted(k.split("_|-")[1] for k, v in ret.items() if v.get("changes"))
            out[name] = Outcome(not failed, changed, "; ".join(failed))
        elif isinstance(ret, list) and ret and all(isinstance(r, str) for r in ret):
            out[name] = Outcome(False, error="; ".join(ret))  # render errors
        else:
            out[name] = Outcome(True, value=ret)
    return out


def _ssh_error(ret: Mapping) -> str:
    text = "\n".join(str(ret.get(k) or "") for k in ("stderr", "_error", "stdout")).strip()
    return ssh_message(text) or f"exit {ret.get('retcode')}"


def ssh_message(text: str) -> str:
    """SSH's error in one line; a host key that is not the pinned one first."""
    if "Host key verification failed" in text:
        return "Host key verification failed: the node's host key is not the one in the inventory"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Warning: Permanently" not in line]
    return " ".join(lines)[:300]


# -- running it ---------------------------------------------------------------


class Bootstrap:
    def __init__(self, inventory_path: Path, repo: Path = REPO, workdir: Path = WORKDIR) -> None:
        self.repo, self.workdir = repo, workdir
        inventory = yaml.safe_load(inventory_path.read_text()) or {}
        given = inventory.get("topology") if isinstance(inventory, Mapping) else None
        topology_path = repo / str(given or "pillar/cluster.sls")
        cluster = _cluster_module(repo)
        topology = yaml.safe_load(topology_path.read_text())["cluster"]
        problems = cluster.check(topology)
        if problems:
            raise InventoryError([f"{topology_path}: {p}" for p in problems])
        self.model = cluster.derive(topology)
        problems = check_inventory(inventory, self.model["nodes"])
        if problems:
            raise InventoryError([f"{inventory_path}: {p}" for p in problems])
        self.inventory = inventory
        self.nodes = targets(inventory, self.model)
        self.masters = [m["name"] for m in self.model["salt_masters"]]
        self.errors: dict[str, str] = {}
        self.changes: dict[str, list[str]] = {}
        self.done: set[str] = set()  # nodes some step reached
        self.answers = 0
        self.masters_up_: list[str] = []  # masters that run with the repository's settings

    # salt-ssh and ssh, with the pinned host keys
    def prepare(self) -> None:
        (self.workdir / "pillar").mkdir(parents=True, exist_ok=True)
        for old in (self.workdir / "answers").glob("*.json"):
            old.unlink()
        (self.workdir / "pillar" / "top.sls").write_text("base: {}\n")
        (self.workdir / "master").write_text(yaml.safe_dump(salt_ssh_config(self.workdir, self.repo)))
        (self.workdir / "roster").write_text(yaml.safe_dump(roster(self.nodes)))
        (self.workdir / "known_hosts").write_text(known_hosts(self.nodes))
        for name, target in sorted(self.nodes.items()):
            if not target.host_key:
                scanned = subprocess.run(
                    ["ssh-keyscan", "-T", "5", "-p", str(target.port), target.host],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                offers = sorted({" ".join(line.split()[1:3]) for line in scanned.stdout.splitlines() if line.strip()})
                hint = "; it offers: " + " | ".join(offers) if offers else f": {scanned.stderr.strip()[:200]}"
                self._fail(name, f"no host_key in the inventory (check one and add it){hint}")

    def salt_ssh(self, names: list[str], *args: str, pillar: Mapping | None = None) -> dict[str, Outcome]:
        salt_ssh = str(Path(sys.executable).with_name("salt-ssh"))
        argv = [salt_ssh, "-c", str(self.workdir), "--out=json", "--static", "--no-color", "-L", ",".join(names)]
        argv += ["--log-level=quiet", *args]
        if pillar is not None:
            argv.append("pillar=" + json.dumps(pillar))
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.workdir)
        # Each whole answer is kept for the operator (what failed, and why).
        self.answers += 1
        answer = self.workdir / "answers" / f"{self.answers:02d}-{'-'.join(args[:2])}.json"
        answer.parent.mkdir(exist_ok=True)
        answer.write_text(proc.stdout + proc.stderr)
        return outcomes(proc.stdout, names)

    def ssh(
        self, name: str, argv: list[str], timeout: float = 900, stdin: str = "", host: str | None = None
    ) -> subprocess.CompletedProcess:
        """``argv`` on the node, over SSH with its pinned host key; ``host``:
        at another address than its own (the key is looked up by its name)."""
        target = self.nodes[name]
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        options += ["-o", f"UserKnownHostsFile={self.workdir / 'known_hosts'}", "-o", f"ConnectTimeout={SSH_TIMEOUT}"]
        if host is not None:
            options += ["-o", f"HostKeyAlias={name}"]
        command = shlex.join(argv if target.user == "root" else ["sudo", "-n", *argv])
        ssh_argv = ["ssh", *options, "-i", target.key, "-p", str(target.port), f"{target.user}@{host or target.host}"]
        return subprocess.run(
            [*ssh_argv, command], input=stdin, capture_output=True, text=True, check=False, timeout=timeout
        )

    def _record(self, step: str, results: dict[str, Outcome]) -> list[str]:
        ok = []
        for name, result in results.items():
            if result.ok:
                ok.append(name)
                self.done.add(name)
                if result.changes:
                    self.changes.setdefault(name, []).extend(f"{step}: {c}" for c in result.changes)
            else:
                self._fail(name, f"{step}: {result.error}")
        return ok

    def _fail(self, name: str, error: str) -> None:
        self.errors[name] = error
        log(f"{name}: {error}")

    def _pillar(self, **data: Any) -> dict:
        salt = self.inventory.get("salt", {})
        settings = {k: str(v) if k == "version" else v for k, v in salt.items()}
        return {"bootstrap": {**settings, "masters": self.masters, **data}}

    # the rounds
    def masters_up(self) -> str | None:
        """The masters' Salt, checkout and service; the master key's fingerprint."""
        names = [m for m in self.masters if m not in self.errors]
        if not names:
            return None
        site = dict(self.inventory.get("pillar") or {})
        repo_master = yaml.safe_load((self.repo / "etc/salt/master").read_text())
        settings = master_settings(repo_master, self.inventory.get("master") or {}, bool(site))
        pillar = self._pillar(master_settings=settings, site_pillar=site)
        log(f"master {names[0]}: Salt, the checkout, salt-master")
        done = self._record("master", self.salt_ssh(names[:1], "state.apply", "bootstrap.master", pillar=pillar))
        # Further masters share the first one's key pair and secrets, in place
        # before their salt-master first starts.
        others = [m for m in names[1:] if done and all(self.share(done[0], m, path) for path in SHARED)]
        if others:
            log(f"masters {', '.join(others)}: Salt, the checkout, salt-master")
            done += self._record("master", self.salt_ssh(others, "state.apply", "bootstrap.master", pillar=pillar))
        self.masters_up_ = done
        fingers = set()
        for name in done:
            pub = self._read(name, MASTER_PUB)
            if pub:
                fingers.add(finger(pub))
        if len(fingers) > 1:
            raise SystemExit(f"the masters {', '.join(done)} hold different key pairs: they must share one")
        return fingers.pop() if fingers else None

    def share(self, source: str, target: str, path: str) -> bool:
        """Copy a file the masters must share from one to another, unless the
        target has it already; it travels inside the two SSH sessions only.
        False (and the target failed) when the target's differs."""
        sums = {n: self.ssh(n, ["sha256sum", path], timeout=60) for n in (source, target)}
        if sums[source].returncode != 0:
            self._fail(target, f"{source} has no {path} to share")
            return False
        if sums[target].returncode == 0:
            if sums[target].stdout.split()[:1] == sums[source].stdout.split()[:1]:
                return True
            self._fail(target, f"its {path} differs from {source}'s: the masters must share one")
            return False
        content = self.ssh(source, ["cat", path], timeout=60).stdout
        folder = path.rsplit("/", 1)[0]
        write = ["sh", "-c", 'umask 077 && mkdir -p "$1" && cat > "$2"', "share", folder, path]
        proc = self.ssh(target, write, timeout=60, stdin=content)
        if proc.returncode != 0:
            self._fail(target, f"could not receive {path}: {proc.stderr.strip()[:200]}")
        return proc.returncode == 0

    def _read(self, name: str, path: str, tries: int = 20) -> str | None:
        for _ in range(tries):
            proc = self.ssh(name, ["cat", path], timeout=60)
            if proc.returncode == 0 and proc.stdout.strip():
                return proc.stdout
            if proc.returncode == 255:  # ssh itself failed: no use asking again
                break
            time.sleep(2)
        self._fail(name, f"could not read {path}: {proc.stderr.strip()[:200]}")
        return None

    def minions_up(self, names: list[str], master_finger: str) -> list[str]:
        """Salt, key pair, settings and salt-minion on these nodes; the masters
        accept the keys read back over SSH. Returns the nodes accepted."""
        names = [n for n in names if n not in self.errors]
        if not names:
            return []
        extra = self.inventory.get("minion") or {}
        settings = {n: minion_settings(self.model, n, master_finger, {**extra, **self.nodes[n].minion}) for n in names}
        log(f"minions {', '.join(names)}: Salt, key pair, settings, salt-minion")
        done = self._record(
            "minion", self.salt_ssh(names, "state.apply", "bootstrap.minion", pillar=self._pillar(nodes=settings))
        )
        keys = {}
        for name in done:
            pub = self._read(name, MINION_PUB)
            problem = public_key_problem(name, pub) if pub is not None else None
            if problem:
                self._fail(name, problem)
            elif pub is not None:
                keys[name] = pub
        if not keys:
            return []
        masters = self.masters_up_
        log(f"masters {', '.join(masters)}: accepting the keys of {', '.join(sorted(keys))}")
        accepted = self._record(
            "accept", self.salt_ssh(masters, "state.apply", "bootstrap.accept", pillar=self._pillar(minion_keys=keys))
        )
        return sorted(keys) if set(accepted) == set(masters) else []

    def master_salt(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return self.ssh(self.masters[0], list(args), timeout=timeout)

    def wait_answering(self, names: list[str], timeout: float = 300) -> list[str]:
        if not names:
            return []
        deadline = time.monotonic() + timeout
        answered: set[str] = set()
        while time.monotonic() < deadline and set(names) - answered:
            silent = sorted(set(names) - answered)
            proc = self.master_salt("salt", "--out=json", "--static", "-t", "15", "-L", ",".join(silent), "test.ping")
            with contextlib.suppress(json.JSONDecodeError):
                answered |= {n for n, v in json.loads(proc.stdout or "{}").items() if v is True}
            if set(names) - answered:
                time.sleep(5)
        for name in set(names) - answered:
            self._fail(name, f"minion does not answer its master within {timeout:.0f} s")
        return sorted(answered)

    def highstate(self, names: list[str]) -> None:
        log(f"highstate of {', '.join(names)}")
        proc = self.master_salt("salt", *STATE_RUN, "-L", ",".join(names), "state.apply")
        self._record("highstate", outcomes(proc.stdout, names))

    def orchestrate(self) -> None:
        log("orchestration (orch.topology)")
        proc = self.master_salt("salt-run", "--out=json", "state.orchestrate", "orch.topology")
        try:
            result = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError:
            result = {}
        data = result.get("data", {}) if isinstance(result, Mapping) else {}
        runs = next(iter(data.values()), {}) if isinstance(data, Mapping) and data else {}
        failed = [k.split("_|-")[1] for k, v in runs.items() if isinstance(v, Mapping) and not v.get("result")]
        # salt.function steps always report their return as changes; a
        # salt.state step reports the states that changed something.
        changed = [
            k.split("_|-")[1]
            for k, v in runs.items()
            if k.endswith("_|-state") and isinstance(v, Mapping) and v.get("changes")
        ]
        if proc.returncode != 0 or failed or not runs:
            self._fail("orchestration", "failed: " + (", ".join(failed) or proc.stderr.strip()[:300]))
        else:
            self.done.add("orchestration")
            if changed:
                self.changes.setdefault("orchestration", []).extend(changed)

    def run(self, only: list[str] | None = None) -> int:
        self.prepare()
        wanted = [n for n in self.nodes if not only or n in only]
        finger_ = self.masters_up()
        if finger_ is None:
            return self.report(wanted)
        self.master_salt("salt-run", "saltutil.sync_all", "--out=quiet")
        first = [n for n in wanted if set(self.model["nodes"][n]["roles"]) & {"nas", "director"} or n in self.masters]
        rest = [n for n in wanted if n not in first]
        accepted = self.join(first, finger_)
        accepted += self.join(rest, finger_)
        # A server whose address comes from the directors' DHCP is reached
        # once they serve it its lease (a new cluster, or a node new to the
        # topology): their DHCP and the masters' firewall first, then again.
        unreached = [n for n in rest if self.errors.get(n, "").startswith("minion:")]
        directors = [n for n in self.model["roles"]["director"] if n in accepted]
        if unreached and directors:
            self.serve_leases(directors, [m for m in self.masters if m in accepted])
            self.renew_pool_leases(unreached, directors)
            for name in unreached:
                self.errors.pop(name)
            accepted += self.join(self.wait_reachable(unreached), finger_)
        if set(accepted) == set(self.nodes):
            self.orchestrate()
        elif accepted:
            self.highstate(accepted)
        return self.report(wanted)

    def join(self, names: list[str], finger_: str) -> list[str]:
        """Minions up, keys accepted, answering, with the repository's modules."""
        answering = self.wait_answering(self.minions_up(names, finger_))
        if answering:
            self.master_salt("salt", "-L", ",".join(answering), "saltutil.sync_all", "--out=quiet")
        return answering

    def serve_leases(self, directors: list[str], masters: list[str]) -> None:
        """The directors' hosts and DHCP leases, one at a time, the standby
        first (as orch.topology goes); the masters' firewall, which lets only
        the topology's nodes reach them."""
        priority = self.model["vrrp"]["directors"]
        for director in sorted(directors, key=lambda d: priority[d]["priority"]):
            log(f"{director}: hosts and DHCP leases (common, dnsmasq)")
            proc = self.master_salt("salt", *STATE_RUN, director, "state.apply", "common,dnsmasq")
            self._record("leases", outcomes(proc.stdout, [director]))
        if masters:
            log(f"{', '.join(masters)}: firewall")
            proc = self.master_salt("salt", *STATE_RUN, "-L", ",".join(masters), "state.apply", "firewall")
            self._record("firewall", outcomes(proc.stdout, masters))

    def renew_pool_leases(self, names: list[str], directors: list[str]) -> None:
        """A node that booted before the directors knew its lease holds an
        address of their pool: found in their lease tables by its MAC, it is
        asked over SSH (its pinned host key) to ask again; the directors
        refuse the pool address and it gets its own."""
        macs = {
            iface["mac"]: (name, ifname)
            for name in names
            for ifname, iface in self.model["nodes"][name]["interfaces"].items()
            if iface["dhcp"] and iface["mac"]
        }
        if not macs:
            return
        found: dict[str, str] = {}
        for director in directors:
            found |= pool_addresses(self.ssh(director, ["cat", LEASE_FILE], timeout=60).stdout, macs)
        for mac, address in sorted(found.items()):
            name, ifname = macs[mac]
            if address == self.model["nodes"][name]["interfaces"][ifname]["address"]:
                continue
            log(f"{name}: holds {address} from the DHCP pool; its DHCP client starts over")
            # Its DHCP client starts over (a renewal of the pool address is
            # refused, and systemd-networkd 252 keeps the address on that
            # refusal): networkd reconfigures the link, ifupdown takes it down
            # and up; either cuts this session.
            script = (
                'if systemctl -q is-active systemd-networkd; then networkctl reconfigure "$1"; '
                'else (ifdown "$1"; ifup "$1") </dev/null >/dev/null 2>&1 & fi'
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.ssh(name, ["sh", "-c", script, "renew", ifname], timeout=30, host=address)

    def wait_reachable(self, names: list[str], timeout: float = 240) -> list[str]:
        """These nodes, once each answers on SSH (its DHCP client retries on
        its own schedule), or the timeout; the others as they are."""
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=len(pending)) as pool:
                answers = {n: pool.submit(self.ssh, n, ["true"], timeout=30) for n in pending}
            pending -= {n for n, answer in answers.items() if answer.result().returncode == 0}
            if pending:
                time.sleep(5)
        return names

    def report(self, wanted: list[str]) -> int:
        for name in [*wanted, "orchestration"]:
            if name in self.errors:
                print(f"{name:14} FAILED  {self.errors[name]}")
            elif name in self.changes:
                print(f"{name:14} changed {len(self.changes[name])}: {', '.join(self.changes[name][:6])}")
            elif name in self.done:
                print(f"{name:14} ok, no change")
            elif name in wanted:
                print(f"{name:14} NOT DONE: no master to join (above)")
        return 1 if self.errors or set(wanted) - self.done else 0


def _cluster_module(repo: Path) -> Any:
    spec = importlib.util.spec_from_file_location("cluster", repo / "_modules" / "cluster.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory", type=Path, help="the SSH inventory (docs: README, 'Using it on real servers')")
    parser.add_argument("--only", help="comma-separated nodes (default: every node of the topology)")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="roster, known_hosts, salt-ssh's cache")
    args = parser.parse_args(argv)
    try:
        bootstrap = Bootstrap(args.inventory, workdir=args.workdir)
    except InventoryError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    return bootstrap.run(args.only.split(",") if args.only else None)


if __name__ == "__main__":
    sys.exit(main())
