"""
Kernel features the cluster's formulas depend on, as grains.

``cluster_kernel:ipvs``        the IPVS load balancer is usable (built in, loaded,
                               or a loadable module is installed)
``cluster_kernel:nfs_server``  the kernel NFS server (nfsd) is usable
``cluster_kernel:nfs_client``  the kernel NFS client is usable
``cluster_kernel:nftables``    nftables can filter IPv4 and IPv6 here (its inet
                               family: every Debian kernel; not Debian's
                               user-mode kernel, whose nf_tables has no ip,
                               ip6 or inet family)
``cluster_kernel:process_events`` the kernel's process events connector is
                               usable (keepalived's vrrp_track_process): the
                               kernel has it (Debian's does; its user-mode
                               kernel does not), and this is not a container
                               (it works only in the initial network namespace)

Formulas use them to run keepalived VRRP-only, to serve the docroot from a
local copy and to load the host firewall with iptables where the kernel lacks
the feature, and say so in the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time

# Only this function is a grain; the helpers stay importable for tests.
__load__ = ["cluster_kernel"]


def _filesystems() -> set[str]:
    try:
        with open("/proc/filesystems", encoding="ascii") as handle:
            return {line.split()[-1] for line in handle if line.strip()}
    except OSError:
        return set()


def _module_available(name: str) -> bool:
    """A loadable module for the running kernel is installed (modules are not loaded here)."""
    modinfo = shutil.which("modinfo") or "/sbin/modinfo"
    if not os.path.exists("/proc/modules") or not os.path.exists(modinfo):
        return False
    try:
        return subprocess.run([modinfo, "-n", name], capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def in_container(run_marker: str = "/run/systemd/container", init_environ: str = "/proc/1/environ") -> bool:
    """systemd-nspawn, LXC, Docker and podman mark their containers one of these two ways."""
    if os.path.exists(run_marker):
        return True
    try:
        with open(init_environ, "rb") as handle:
            return any(item.startswith(b"container=") for item in handle.read().split(b"\0"))
    except OSError:
        return False


def _nftables_inet() -> bool:
    """`nft --check` of a new inet table: the kernel validates it (and loads
    nf_tables if need be) without committing anything. Where nft is not
    installed yet (a server before its first highstate) the kernel is taken
    to be a distribution's, which has the family."""
    nft = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if nft is None:
        return True
    try:
        probe = subprocess.run(
            [nft, "--check", "add table inet cluster_kernel_probe"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE, PROC_EVENT_NONE = 1, 2, 0
NLMSG_DONE = 3


def _cn_proc_message(op: int) -> bytes:
    """A netlink message carrying a connector message to the process events connector."""
    payload = struct.pack("=I", op)
    cn_msg = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return struct.pack("=IHHII", 16 + len(cn_msg), NLMSG_DONE, 0, 0, os.getpid()) + cn_msg


def _proc_connector(timeout: float = 0.25) -> bool:
    """The kernel acknowledges a subscription to process events, as keepalived
    waits for it (a connector without CONFIG_PROC_EVENTS stays silent). The
    acknowledgement is queued before send() returns, so the wait is only ever
    spent where there is none: on a user-mode kernel, at every grains load."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR) as sock:
            sock.bind((os.getpid(), CN_IDX_PROC))
            sock.settimeout(timeout)
            sock.send(_cn_proc_message(PROC_CN_MCAST_LISTEN))
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    data = sock.recv(4096)
                    # nlmsghdr (16) + cn_msg (20), then the event: what (u32) first.
                    if len(data) >= 40 and struct.unpack_from("=I", data, 36)[0] == PROC_EVENT_NONE:
                        return True
                return False
            finally:
                sock.send(_cn_proc_message(PROC_CN_MCAST_IGNORE))
    except (OSError, AttributeError):
        return False


def features(
    filesystems: set[str] | None = None,
    ipvs_proc: bool | None = None,
    available=_module_available,
    container: bool | None = None,
    proc_connector=_proc_connector,
    nftables=_nftables_inet,
) -> dict:
    """The feature map; arguments exist so tests can feed it other kernels."""
    filesystems = _filesystems() if filesystems is None else filesystems
    ipvs_proc = os.path.exists("/proc/net/ip_vs") if ipvs_proc is None else ipvs_proc
    return {
        "ipvs": ipvs_proc or available("ip_vs"),
        "nfs_server": "nfsd" in filesystems or available("nfsd"),
        "nfs_client": bool({"nfs", "nfs4"} & filesystems) or available("nfs"),
        "process_events": not (in_container() if container is None else container) and proc_connector(),
        "nftables": nftables(),
    }


def cluster_kernel() -> dict:
    return {"cluster_kernel": features()}
