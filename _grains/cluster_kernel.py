"""
Kernel features the cluster's formulas depend on, as grains.

``cluster_kernel:ipvs``        the IPVS load balancer is usable (built in, loaded,
                               or a loadable module is installed)
``cluster_kernel:nfs_server``  the kernel NFS server (nfsd) is usable
``cluster_kernel:nfs_client``  the kernel NFS client is usable
``cluster_kernel:process_events`` the kernel's process events connector is
                               usable (keepalived's vrrp_track_process): not
                               inside a container, where the connector only
                               works in the initial network namespace

Formulas use them to run keepalived VRRP-only and to serve the docroot from a
local copy where the kernel lacks the feature, and say so in the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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


def features(
    filesystems: set[str] | None = None,
    ipvs_proc: bool | None = None,
    available=_module_available,
    container: bool | None = None,
) -> dict:
    """The feature map; arguments exist so tests can feed it other kernels."""
    filesystems = _filesystems() if filesystems is None else filesystems
    ipvs_proc = os.path.exists("/proc/net/ip_vs") if ipvs_proc is None else ipvs_proc
    return {
        "ipvs": ipvs_proc or available("ip_vs"),
        "nfs_server": "nfsd" in filesystems or available("nfsd"),
        "nfs_client": bool({"nfs", "nfs4"} & filesystems) or available("nfs"),
        "process_events": not (in_container() if container is None else container),
    }


def cluster_kernel() -> dict:
    return {"cluster_kernel": features()}
