"""A lab node on a real Linux kernel in user mode (User-Mode Linux).

Used for the nodes whose seed paths need kernel features the host lacks
(lab/kernel.py): directors (IPVS), nas (nfsd) and web servers (NFS client).
Such a node boots the same rootfs overlay as an nspawn node, with systemd and a
salt-minion, so the same formulas apply unchanged. What differs:

- its root is the overlay directory through hostfs, and its kernel modules
  come from the host's user-mode-linux package (also through hostfs);
- its NICs are UML vector devices on taps that sit on the lab bridges (named
  like the nspawn nodes' switch-side veths, so cut/heal work the same), renamed
  to the topology's ethN by MAC, plus one management NIC for the exec agent
  (lab/agent.py) - the host cannot nsenter into another kernel;
- the nas boots from an ext4 disk image (ubd) holding its overlay: nfsd
  cannot export hostfs, and an NFSv4 server's pseudo-root ("/") must be
  exportable too. The image is a copy of the rootfs's own (made once) with
  the node's files written in by debugfs (make_root_disk).

Processes: the UML kernel is a host process (and its helper processes) in a
session of its own; the lab stops it by PID (poweroff through the agent, then
SIGKILL to that session).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from lab import agent, kernel, rootfs
from lab.net import SWITCH, host_ifname
from lab.topology import MGMT_SWITCH_ADDRESS, LabNode
from lab.util import STATE, alive, log, read_pid, run

MEMORY_MB = {"nas": 768, "director": 768, "web": 768}
# Host scheduling of a node's user-mode kernel (and of every host process it
# makes: each guest process is one), by role. The lab's nodes share the
# host's cores, where real directors have a machine each: a director that
# waits behind the others (a highstate elsewhere, a booting node) misses its
# 0.1 s VRRP adverts and the standby takes the VIPs for nothing. Niceness
# -10 still left gaps of 0.1-0.38 s in the guest (docs/lab.md); a low
# realtime priority on the host leaves none. Without realtime throttling
# (runtime -1, no limit to a spinning guest) the lab falls back to niceness.
HOST_RR_PRIORITY = {"director": 10}
FALLBACK_NICE = -10
RT_RUNTIME = Path("/proc/sys/kernel/sched_rt_runtime_us")
RT_PERIOD = Path("/proc/sys/kernel/sched_rt_period_us")
# With RT group scheduling (cgroup v1), the root cpu group's budget is the
# one that holds for the lab's kernels; the kernel's global one caps it.
RT_GROUP = Path("/sys/fs/cgroup/cpu")
# The realtime budget while the lab runs: the directors' kernels get at most
# 80 ms of every 100 ms of a core. The kernel's default (950 ms of every
# second) let two busy directors hold both cores for most of a second, and
# every server's health check timed out on both at once (docs/lab.md).
LAB_RT_BUDGET = (80_000, 100_000)
RT_SAVED = STATE / "host-rt-budget.json"
ROOT_DISK_MB = 3072
AGENT_PATH = "/usr/local/lib/lab/agent.py"
UNUSED_GENERATORS = (
    "systemd-cryptsetup-generator",
    "systemd-debug-generator",
    "systemd-getty-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-rc-local-generator",
    "systemd-run-generator",  # systemd.run= on the kernel command line
    # Units for SysV scripts without a native unit: here only ipvsadm's, whose
    # service (restoring saved IPVS rules at boot) the lab never runs;
    # keepalived programs IPVS. The slowest generator: 0.4 s per run.
    "systemd-sysv-generator",
    "systemd-system-update-generator",
    "systemd-veritysetup-generator",
)
# Boot units for what a lab node does not use, each an exec of a systemd
# binary (0.2-0.5 CPU-s under a user-mode kernel): configfs, FUSE and their
# mounts, loop/dm/pstore modules, kernel-command-line network units, utmp
# records, e2scrub, and the journal's flush to disk (the journal stays in
# /run: JOURNALD_CONF).
UNUSED_UNITS = (
    "modprobe@configfs.service",
    "sys-kernel-config.mount",
    "modprobe@fuse.service",
    "sys-fs-fuse-connections.mount",
    "modprobe@dm_mod.service",
    "modprobe@efi_pstore.service",
    "modprobe@loop.service",
    "systemd-network-generator.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-journal-flush.service",
    "e2scrub_reap.service",
)
JOURNALD_CONF = "/etc/systemd/journald.conf.d/lab.conf"


def memory_mb(node: LabNode) -> int:
    return max([MEMORY_MB.get(role, 768) for role in node.roles] or [768])


def modules_for(node: LabNode) -> list[str]:
    """Modules loaded at boot (busybox-free: systemd-modules-load uses kmod, which follows soft deps)."""
    mods = ["crc32c_generic"]
    if "director" in node.roles:
        mods += ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_wlc", "nf_conntrack"]
    if "nas" in node.roles:
        mods += ["nfsd"]
    if "web" in node.roles:
        mods += ["nfs", "nfsv4"]
    return mods


def on_disk(node: LabNode) -> bool:
    """Boots from an ext4 image rather than its overlay through hostfs (an NFS server)."""
    return "nas" in node.roles


def files_for(node: LabNode) -> dict[str, str]:
    """The files a UML node needs on top of an nspawn node's (pure)."""
    version = kernel.uml_version()
    fstab = [f"none /usr/lib/modules hostfs {kernel.uml_kernel()[1]} 0 0"]
    if on_disk(node):
        fstab.insert(0, "/dev/ubda / ext4 defaults 0 0")
    files = {
        "/etc/fstab": "# Written by the lab (user-mode kernel node)\n" + "\n".join(fstab) + "\n",
        "/etc/modules-load.d/lab.conf": "\n".join(modules_for(node)) + "\n",
        # The modules live on a hostfs mount: load them once it is there.
        "/etc/systemd/system/systemd-modules-load.service.d/lab.conf": "[Unit]\nRequiresMountsFor=/usr/lib/modules\n",
        "/etc/lab-kernel": f"user-mode Linux {version}\n",
        # A node's journal lives as long as the node (journalctl works as ever).
        JOURNALD_CONF: "[Journal]\nStorage=volatile\n",
        "/etc/systemd/system/lab-agent.service": (
            "[Unit]\nDescription=Lab exec agent (management NIC only; lab plumbing, not the cluster)\n"
            "After=systemd-networkd.service\n\n[Service]\n"
            f"ExecStart=/usr/bin/python3 {AGENT_PATH} serve {node.mgmt_address} {agent.PORT} {MGMT_SWITCH_ADDRESS}\n"
            "Restart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
        AGENT_PATH: Path(agent.__file__).read_text(),
    }
    if "nfsd" in modules_for(node):
        # nfs-server (enabled on the nas) mounts the nfsd filesystem early in
        # the boot: once the module can load, not before the modules' mount.
        files["/etc/systemd/system/proc-fs-nfsd.mount.d/lab.conf"] = "[Unit]\nAfter=systemd-modules-load.service\n"
    for link in node.links:
        files[f"/etc/systemd/network/10-{link.ifname}.link"] = (
            f"[Match]\nMACAddress={link.mac}\n\n[Link]\nName={link.ifname}\n"
        )
    return files


def links_for(node: LabNode) -> dict[str, str]:
    """Symlinks to set in the node. Debian's UML kernel has the legacy x_tables
    (iptable_nat, iptable_filter, ip6table_filter) but its nf_tables has no ip,
    ip6 or inet family: its iptables and ip6tables are the legacy ones, as on
    any host whose kernel lacks a feature of the default backend."""
    tools = [f"{family}{suffix}" for family in ("iptables", "ip6tables") for suffix in ("", "-restore", "-save")]
    links = {f"/etc/alternatives/{tool}": f"/usr/sbin/{tool.replace('tables', 'tables-legacy', 1)}" for tool in tools}
    # Nobody logs in to a lab node (no console; the lab's agent runs commands),
    # and under a user-mode kernel logind took 6-7 s of CPU at each boot.
    links["/etc/systemd/system/systemd-logind.service"] = "/dev/null"
    for unit in UNUSED_UNITS:
        links[f"/etc/systemd/system/{unit}"] = "/dev/null"
    # Generators for hardware and boot setups a lab node does not have: each
    # runs at boot and at every daemon-reload (which each `systemctl enable`
    # does), 0.1-0.2 s apiece under a user-mode kernel.
    for generator in UNUSED_GENERATORS:
        links[f"/etc/systemd/system-generators/{generator}"] = "/dev/null"
    return links


def pid_file(base: Path) -> Path:
    return base / "uml.pid"


def pid(base: Path) -> int | None:
    return read_pid(pid_file(base))


def make_root_disk(path: Path, tree: Path, lower: Path, upper: Path) -> None:
    """The node's ext4 disk (sparse), holding its overlay's merged tree: a copy
    of the rootfs's own image (made once per rootfs) with the node's upper
    layer written in by debugfs, or mke2fs -d of the whole tree when that
    layer holds what debugfs_script does not write (or debugfs failed)."""
    if path.exists():
        return
    script = debugfs_script(upper, lower)
    if script is not None:
        subprocess.run(["cp", "--sparse=always", str(base_disk(lower)), str(path)], check=True)
        if _debugfs(path, script):
            return
        path.unlink()
    _mkfs(path, tree)


def base_disk(lower: Path) -> Path:
    """The rootfs's ext4 image, made on first use."""
    image = rootfs.disk_image(lower)
    if not image.exists():
        for stale in image.parent.glob(f".{image.name}-*"):  # an interrupted build's
            stale.unlink()
        partial = image.with_name(f".{image.name}-{os.getpid()}")
        _mkfs(partial, lower)
        partial.rename(image)
    return image


def _mkfs(path: Path, tree: Path) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(ROOT_DISK_MB * 1024 * 1024)
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(path)])


def debugfs_script(upper: Path, lower: Path) -> list[str] | None:
    """debugfs commands that put an overlay's upper layer onto an image of
    its lower one: new directories, regular files (debugfs keeps their mode)
    and symlinks, replacing the lower layer's files, with any owner but root
    set afterwards. None when the layer holds anything else: whiteouts,
    opaque directories, devices, a directory replacing a file or the reverse,
    names with blanks or quotes."""
    commands: list[str] = []
    for here, dirnames, filenames in os.walk(upper):
        for name in sorted(dirnames) + sorted(filenames):
            source = Path(here) / name
            target = "/" + source.relative_to(upper).as_posix()
            mode = source.lstat()
            below = _lstat(lower / target.lstrip("/"))
            if not _plain(str(source)) or (
                below is not None and stat.S_ISDIR(below.st_mode) != stat.S_ISDIR(mode.st_mode)
            ):
                return None
            if stat.S_ISDIR(mode.st_mode):
                if _opaque(source):
                    return None
                if below is not None:
                    continue
                steps = [f"mkdir {target}", f"sif {target} mode 0{mode.st_mode:o}"]
            elif stat.S_ISREG(mode.st_mode):
                steps = [f"write {source} {target}"]  # with the file's mode, owned by root
            elif stat.S_ISLNK(mode.st_mode) and _plain(link := os.readlink(source)):
                steps = [f"symlink {target} {link}"]
            else:
                return None
            if mode.st_uid or mode.st_gid:
                steps += [f"sif {target} uid {mode.st_uid}", f"sif {target} gid {mode.st_gid}"]
            commands += ([f"rm {target}"] if below is not None else []) + steps
    return commands


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _plain(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c in "\"\\'" for c in name)


def _opaque(directory: Path) -> bool:
    """Marked by overlayfs as hiding the lower layer's directory of that name."""
    try:
        return os.getxattr(directory, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def _debugfs(image: Path, script: list[str]) -> bool:
    """Run the commands on the image; False when debugfs reported an error."""
    proc = subprocess.run(
        ["debugfs", "-w", "-f", "-", str(image)], input="\n".join(script) + "\n", capture_output=True, text=True
    )
    errors = [line for line in proc.stderr.splitlines() if line and not line.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        log("lab", f"{image}: debugfs failed ({'; '.join(errors[:3]) or proc.returncode}): the disk is made anew")
        return False
    return True


def command(node: LabNode, base: Path, root: Path) -> list[str]:
    cmd = [
        *kernel.uml_kernel()[0],
        f"umid={node.name}",
        f"uml_dir={base / 'uml'}",
        f"mem={memory_mb(node)}M",
        *(
            ["root=/dev/ubda", "rootfstype=ext4", f"ubd0={base / 'root.img'}"]
            if on_disk(node)
            else ["root=/dev/root", "rootfstype=hostfs", f"rootflags={root}"]
        ),
        "rw",
        "init=/lib/systemd/systemd",
        "systemd.show_status=0",
        # Debian's user-mode kernel makes 256 legacy BSD pty pairs: 512 of the
        # node's ~690 devices, each one a udev event at boot (udev's coldplug
        # took 12-13 s of a 27 s boot). Nothing here uses them (/dev/pts does).
        "pty.legacy_count=0",
    ]
    for index, link in enumerate(node.links):
        tap = host_ifname(node.name, link.ifname)
        cmd.append(f"vec{index}:transport=tap,ifname={tap},mac={link.mac},mtu={link.mtu}")
    return [*cmd, "con=null", "con0=null,fd:1"]


def host_scheduling(node: LabNode, budget: tuple[int, int] | None) -> tuple[str, int]:
    """How the node's kernel runs on the host: ("rr", priority), ("nice",
    niceness) or ("normal", 0); budget is the host's realtime (runtime,
    period) in microseconds, None when realtime tasks are not throttled."""
    priority = max((HOST_RR_PRIORITY.get(role, 0) for role in node.roles), default=0)
    if not priority:
        return ("normal", 0)
    if budget is None or budget[0] < 0:
        return ("nice", FALLBACK_NICE)
    return ("rr", priority)


def rt_budget_files(group: Path = RT_GROUP) -> tuple[Path, Path]:
    """The (runtime, period) files of the realtime budget that holds for the
    lab's kernels on this host."""
    if (group / "cpu.rt_runtime_us").exists():
        return group / "cpu.rt_runtime_us", group / "cpu.rt_period_us"
    return RT_RUNTIME, RT_PERIOD


def read_rt_budget(files: tuple[Path, Path]) -> tuple[int, int] | None:
    """The budget in force, None when there is none (runtime -1 or no files)."""
    try:
        runtime, period = (int(f.read_text()) for f in files)
    except (OSError, ValueError):
        return None
    return None if runtime < 0 else (runtime, period)


def rt_budget_writes(current: tuple[int, int], wanted: tuple[int, int]) -> list[tuple[int, int]]:
    """The writes, as (index into the files, value), that move the budget
    from current to wanted with the runtime never above the period (the
    kernel refuses that): a shorter period after its runtime, a longer one
    before it."""
    runtime, period = 0, 1
    order = (runtime, period) if wanted[period] < current[period] else (period, runtime)
    return [(i, wanted[i]) for i in order if wanted[i] != current[i]]


def set_rt_budget(
    files: tuple[Path, Path], wanted: tuple[int, int] = LAB_RT_BUDGET, saved: Path = RT_SAVED
) -> tuple[int, int] | None:
    """Put the lab's realtime budget in force (before any realtime kernel
    runs), keeping the host's own in saved for restore_rt_budget. Returns the
    budget in force; the host's unchanged one if the kernel refused."""
    current = read_rt_budget(files)
    if current is None or current == wanted:
        return current
    if not saved.exists():
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"files": [str(f) for f in files], "budget": list(current)}))
    try:
        for index, value in rt_budget_writes(current, wanted):
            files[index].write_text(f"{value}\n")
    except OSError as exc:
        log("lab", f"the host kept its realtime budget {current} ({exc})")
    return read_rt_budget(files)


def restore_rt_budget(saved: Path = RT_SAVED) -> None:
    """Give the host back the realtime budget set_rt_budget found."""
    if not saved.exists():
        return
    record = json.loads(saved.read_text())
    files = (Path(record["files"][0]), Path(record["files"][1]))
    original = (int(record["budget"][0]), int(record["budget"][1]))
    current = read_rt_budget(files)
    if current is not None:
        for index, value in rt_budget_writes(current, original):
            files[index].write_text(f"{value}\n")
    saved.unlink()


def _apply_host_scheduling(policy: tuple[str, int]) -> None:
    """In the kernel's process before it starts (Popen's preexec_fn)."""
    kind, value = policy
    if kind == "rr":
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(value))
    elif kind == "nice":
        os.nice(value)


def start(node: LabNode, base: Path, root: Path, lower: Path, log_path: Path) -> int:
    """Boot the node's kernel (no-op when it runs): root is its overlay's merged
    tree, lower the rootfs under it. Returns the kernel's PID."""
    running = pid(base)
    if running:
        return running
    (base / "uml").mkdir(parents=True, exist_ok=True)
    if on_disk(node):
        make_root_disk(base / "root.img", root, lower, base / "upper")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    budget_files = rt_budget_files()
    policy = host_scheduling(node, read_rt_budget(budget_files))
    if policy[0] == "nice":
        log(node.name, f"the host has no realtime throttling ({budget_files[0]}): niceness {policy[1]} instead")
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", SWITCH, *command(node, base, root)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            cwd=base,
            preexec_fn=lambda: _apply_host_scheduling(policy),
        )
    pid_file(base).write_text(str(proc.pid))
    return proc.pid


def execute(
    node_name: str, address: str, argv: list[str], timeout: float, stdin: str = ""
) -> subprocess.CompletedProcess:
    """Run argv in the node through its agent (the client runs in the switch namespace)."""
    request = {"argv": argv, "stdin": stdin, "timeout": timeout}
    proc = subprocess.run(
        ["ip", "netns", "exec", SWITCH, "python3", "-m", "lab.agent", "call", address, str(agent.PORT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout + 20,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        answer = {"rc": 255, "stdout": "", "stderr": f"{node_name}: agent client failed: {proc.stderr}"}
    return subprocess.CompletedProcess(argv, answer["rc"], answer["stdout"], answer["stderr"])


def session_pids(leader: int) -> list[int]:
    """The UML kernel and its helper processes: every process of its session."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _session(int(e.name)) == leader]


def stop(base: Path, timeout: float = 5) -> None:
    """Kill the node's kernel and its helper processes (its session), by PID.

    No clean shutdown first: a lab node's disk state is thrown away with its
    overlay, and a guest poweroff under UML takes tens of seconds."""
    leader = pid(base)
    if leader is not None:
        for victim in session_pids(leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while alive(leader) and time.monotonic() < deadline:
            time.sleep(0.1)
    pid_file(base).unlink(missing_ok=True)


# The kernel binary's name: the host package's (/usr/bin/linux) or Debian 13's in its tree (linux.uml).
KERNEL_NAMES = (b"linux", b"linux.uml")


def leftovers(state: Path) -> list[int]:
    """PIDs of user-mode kernels this lab started whose pid file is gone (their
    argv names a node directory under the lab's state): a crash or an
    interrupted run. ``down`` kills their sessions."""
    marker = f"uml_dir={state}/nodes/"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                ours = any(a.decode(errors="replace").startswith(marker) for a in argv)
                if ours and os.path.basename(argv[0]) in KERNEL_NAMES:
                    found.append(int(entry.name))
    return found


def kill_sessions(pids: list[int]) -> None:
    for leader in sorted({_session(p) for p in pids} - {None}):
        for victim in session_pids(leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def _stat(pid_: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state is [0]); raises OSError if gone."""
    return Path(f"/proc/{pid_}/stat").read_text().rsplit(")", 1)[1].split()


def _session(pid_: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(_stat(pid_)[3])
    return None


def memory_kb(base: Path) -> int:
    """PSS of the UML kernel's processes (its guest memory is a shared mapping among them)."""
    leader = pid(base)
    if leader is None:
        return 0
    total = 0
    for process in session_pids(leader):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(base: Path) -> float:
    """CPU time the host spent on the UML kernel's processes (exited guest
    processes included: their host processes are the kernel's children)."""
    leader = pid(base)
    return 0.0 if leader is None else sum(process_cpu_seconds(p) for p in session_pids(leader))


def process_cpu_seconds(pid_: int) -> float:
    """utime + stime + cutime + cstime of a process, in seconds (0 if it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return sum(int(f) for f in _stat(pid_)[11:15]) / os.sysconf("SC_CLK_TCK")
    return 0.0
