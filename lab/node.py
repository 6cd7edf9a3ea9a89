"""A lab node: a per-node overlay of the cached rootfs, booted by systemd-nspawn
inside the node's network namespace (or by a user-mode kernel, lab/uml.py),
started and stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from lab import uml
from lab.topology import REPO, LabNode
from lab.util import STATE, alive, children, read_pid, run, safe_rmtree

REPO_IN_NAS = "/srv/cluster"
SECRETS_IN_MASTER = "/etc/salt/cluster-secrets/secrets.sls"
# The checkout's build products, hidden from the master (start()).
UNDEPLOYED = (".venv", "build")


def node_dir(name: str) -> Path:
    return STATE / "nodes" / name


def merged(name: str) -> Path:
    return node_dir(name) / "root"


def pid_file(name: str) -> Path:
    return node_dir(name) / "nspawn.pid"


def uml_marker(name: str) -> Path:
    """Present while the node runs a user-mode kernel; holds its agent's address."""
    return node_dir(name) / "uml.json"


def uml_address(name: str) -> str | None:
    try:
        return json.loads(uml_marker(name).read_text())["agent"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def nspawn_pid(name: str) -> int | None:
    return read_pid(pid_file(name))


def leader_pid(name: str) -> int | None:
    """The node's first process on the host (a container's systemd, a
    user-mode kernel's host process); None when it is not running."""
    return backend(name).leader_pid(name)


def is_mounted(path: Path) -> bool:
    return run(["findmnt", "-rn", str(path)], check=False).returncode == 0


def mount(node: LabNode, rootfs: Path) -> Path:
    base = node_dir(node.name)
    root = merged(node.name)
    if is_mounted(root):
        return root
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={rootfs},upperdir={base / 'upper'},workdir={base / 'work'}",
            str(root),
        ]
    )
    return root


def write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():  # links inside a node point into the node, not the host
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def symlink(root: Path, rel: str, target: str) -> None:
    path = root / rel.lstrip("/")
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def start(node: LabNode, rootfs: Path, log_path: Path) -> int:
    """Boot the node (no-op when it runs) from its overlay on rootfs (mount());
    returns the PID of its backend's process (nspawn, or the UML kernel)."""
    if node.platform == "uml":
        uml_marker(node.name).write_text(json.dumps({"agent": node.mgmt_address}))
        return USER_MODE.start(node, rootfs, log_path)
    return CONTAINER.start(node, rootfs, log_path)


CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


def cgroup_dirs(name: str) -> list[Path]:
    """The node's own cgroup in each hierarchy systemd uses (v1 name=systemd and v2)."""
    return [Path(root, "halab", name) for root in CGROUP_ROOTS if Path(root, "cgroup.procs").exists()]


def remove_cgroups(name: str) -> None:
    """Remove the node's cgroup subtrees, deepest first (they are empty once it stopped)."""
    for group in cgroup_dirs(name):
        if not group.exists():
            continue
        for directory in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            group.rmdir()


def kill_leftovers() -> list[int]:
    """Kill what still runs in the lab's cgroups (a node whose pid file was lost,
    e.g. an interrupted run): every process there was started by the lab."""
    killed = []
    for root in CGROUP_ROOTS:
        base = Path(root, "halab")
        if not base.exists():
            continue
        for procs in base.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                        killed.append(int(pid))
    return killed


def remove_cgroup_root() -> None:
    for name in {p.name for root in CGROUP_ROOTS for p in Path(root, "halab").glob("*") if p.is_dir()}:
        remove_cgroups(name)
    for root in CGROUP_ROOTS:
        with contextlib.suppress(OSError):
            Path(root, "halab").rmdir()


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """nsenter argv for an nspawn node (a user-mode node is reached through execute)."""
    leader = leader_pid(name)
    if leader is None:
        raise RuntimeError(f"node {name} is not running")
    return [
        "nsenter",
        "-t",
        str(leader),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "--",
        "/usr/bin/env",
        "-i",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        *argv,
    ]


def execute(
    name: str, argv: list[str], timeout: float = 120, check: bool = False, stdin: str = ""
) -> subprocess.CompletedProcess:
    proc = backend(name).execute(name, argv, timeout, stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(argv)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def wait_booted(name: str, timeout: float = 60) -> str:
    """Wait until systemd in the node has finished starting up; return its state."""
    deadline = time.monotonic() + timeout
    state = "not started"
    while time.monotonic() < deadline:
        if leader_pid(name) is not None:
            # One call that returns when the boot is over, not a poll: under a
            # user-mode kernel every systemctl costs the booting node CPU time
            # (polling every 0.3 s took a few seconds of each boot).
            remaining = max(5.0, deadline - time.monotonic())
            try:
                proc = execute(name, ["systemctl", "is-system-running", "--wait"], timeout=remaining)
            except subprocess.TimeoutExpired:
                continue
            state = proc.stdout.strip() or "unknown"
            if state in ("running", "degraded"):
                return state
        time.sleep(0.5)
    raise TimeoutError(f"node {name} did not boot in {timeout:.0f} s (last state: {state})")


def stop(name: str, timeout: float = 20) -> None:
    """Stop the node by PID (its backend's way)."""
    backend(name).stop(name, timeout)


def unmount(name: str) -> None:
    remove_cgroups(name)
    root = merged(name)
    for _ in range(3):
        if not is_mounted(root):
            break
        run(["umount", str(root)], check=False)
        if is_mounted(root):
            time.sleep(0.5)
            run(["umount", "-l", str(root)], check=False)
    safe_rmtree(node_dir(name))


def memory_kb(name: str) -> int:
    """Proportional set size (PSS) of every process of the node."""
    return backend(name).memory_kb(name)


def cpu_seconds(name: str) -> float:
    """CPU time the host has spent on the node so far."""
    return backend(name).cpu_seconds(name)


def state_file() -> Path:
    return STATE / "lab.json"


def save_state(data: dict) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps(data, indent=2))


def mode_file() -> Path:
    return STATE / "mode"


def bare_mode() -> bool:
    """Whether the lab runs bare (nodes without Salt, for tools/bootstrap.py)."""
    try:
        return mode_file().read_text().strip() == "bare"
    except FileNotFoundError:
        return False


def load_state() -> dict:
    try:
        return json.loads(state_file().read_text())
    except FileNotFoundError:
        return {}


def other_checkout(state: dict, repo: Path) -> str | None:
    """The checkout a running lab was started from, when it is not ``repo``
    (a lab from before checkouts were recorded counts as another's)."""
    if not state:
        return None
    checkout = state.get("checkout", "an unrecorded checkout")
    return None if checkout == str(repo) else checkout


# ---------------------------------------------------------------------------
# Node backends: one interface, two kinds of node
# ---------------------------------------------------------------------------


class Backend(Protocol):
    """How a kind of node is started, entered, measured and stopped."""

    def start(self, node: LabNode, rootfs: Path, log_path: Path) -> int: ...
    def leader_pid(self, name: str) -> int | None: ...
    def execute(self, name: str, argv: list[str], timeout: float, stdin: str) -> subprocess.CompletedProcess: ...
    def stop(self, name: str, timeout: float) -> None: ...
    def memory_kb(self, name: str) -> int: ...
    def cpu_seconds(self, name: str) -> float: ...


class Container:
    """A systemd-nspawn container in the node's network namespace, on the host's kernel."""

    def start(self, node: LabNode, rootfs: Path, log_path: Path) -> int:
        pid = nspawn_pid(node.name)
        if pid:
            return pid
        cmd = [
            "systemd-nspawn",
            "--boot",
            "--keep-unit",
            "--register=no",
            "--quiet",
            "--directory",
            str(merged(node.name)),
            "--machine",
            node.name,
            "--hostname",
            node.name,
            "--network-namespace-path",
            f"/run/netns/{node.netns}",
            "--capability",
            "CAP_NET_ADMIN,CAP_NET_RAW,CAP_SYS_ADMIN,CAP_SYS_MODULE",
            "--console",
            "passive",
            "--resolv-conf",
            "off",
            "--timezone",
            "off",
            "--link-journal",
            "no",
        ]
        if node.extra.get("checkout"):
            # A bare lab's operator runs tools/bootstrap.py from a checkout.
            cmd += ["--bind-ro", f"{REPO}:{REPO_IN_NAS}"]
            cmd += [f"--tmpfs={REPO_IN_NAS}/{name}:ro" for name in UNDEPLOYED if (REPO / name).is_dir()]
        if node.runs_master or node.extra_master:
            cmd += ["--bind-ro", f"{REPO}:{REPO_IN_NAS}"]
            # The master sees a checkout as deployed, without this one's build
            # products: Salt's roots fileserver walks every file under a file root
            # (the repo root is one) whenever its file list is 20 s old, and
            # file_ignore_regex filters names without pruning the walk. The
            # .venv's 19 000 files cost 2-3 s of every highstate (measured).
            cmd += [f"--tmpfs={REPO_IN_NAS}/{name}:ro" for name in UNDEPLOYED if (REPO / name).is_dir()]
            # The checkout's secrets, where a master keeps them: a pillar root
            # outside the file roots (etc/salt/master).
            cmd += ["--bind-ro", f"{REPO / 'pillar' / 'secrets.sls'}:{SECRETS_IN_MASTER}"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Each node's systemd gets a cgroup subtree of its own: nodes left in the
        # same cgroup create the same unit cgroups and trip over each other.
        groups = cgroup_dirs(node.name)
        for group in groups:
            group.mkdir(parents=True, exist_ok=True)
        join = "".join(f'echo $$ > "{group}/cgroup.procs" && ' for group in groups)
        cmd = ["sh", "-c", f'{join}exec "$@"', "nspawn", *cmd]
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                # The node owns its network namespace: let it set net.* sysctls
                # (ip_forward, ip_nonlocal_bind) as a real host would.
                env={**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"},
            )
        pid_file(node.name).write_text(str(proc.pid))
        return proc.pid

    def leader_pid(self, name: str) -> int | None:
        """The container's PID 1 (systemd), a child of the nspawn process."""
        pid = nspawn_pid(name)
        if pid is None:
            return None
        return next((child for child in children(pid) if alive(child)), None)

    def execute(self, name: str, argv: list[str], timeout: float, stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run(exec_argv(name, argv), input=stdin, capture_output=True, text=True, timeout=timeout)

    def stop(self, name: str, timeout: float) -> None:
        """SIGTERM to nspawn (a clean container shutdown), then SIGKILL."""
        pid = nspawn_pid(name)
        if pid is not None:
            leader = self.leader_pid(name)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            for victim in (leader, pid):
                if victim and alive(victim):
                    os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        pid_file(name).unlink(missing_ok=True)

    def memory_kb(self, name: str) -> int:
        leader = self.leader_pid(name)
        if leader is None:
            return 0
        pids = [leader]
        total = 0
        seen = set()
        while pids:
            pid = pids.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            pids.extend(children(pid))
        return total

    def cpu_seconds(self, name: str) -> float:
        """Its cgroup's usage."""
        for group in cgroup_dirs(name):
            with contextlib.suppress(OSError, StopIteration, ValueError):
                lines = (group / "cpu.stat").read_text().splitlines()
                return int(next(line.split()[1] for line in lines if line.startswith("usage_usec "))) / 1e6
        return 0.0


class UserMode:
    """A user-mode kernel (lab/uml.py), entered through its exec agent."""

    def start(self, node: LabNode, rootfs: Path, log_path: Path) -> int:
        return uml.start(node, node_dir(node.name), merged(node.name), rootfs, log_path)

    def leader_pid(self, name: str) -> int | None:
        return uml.pid(node_dir(name))

    def execute(self, name: str, argv: list[str], timeout: float, stdin: str) -> subprocess.CompletedProcess:
        return uml.execute(name, uml_address(name) or "", argv, timeout=timeout, stdin=stdin)

    def stop(self, name: str, timeout: float) -> None:
        uml.stop(node_dir(name))

    def memory_kb(self, name: str) -> int:
        return uml.memory_kb(node_dir(name))

    def cpu_seconds(self, name: str) -> float:
        return uml.cpu_seconds(node_dir(name))


CONTAINER, USER_MODE = Container(), UserMode()


def backend(name: str) -> Backend:
    """The node's backend: user-mode while its marker says so (start() writes it)."""
    return USER_MODE if uml_address(name) else CONTAINER
