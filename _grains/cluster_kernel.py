"""
Kernel features the cluster's formulas depend on, as grains.

``cluster_kernel:ipvs``        the IPVS load balancer is usable (built in, loaded,
                               or a loadable module is installed)
``cluster_kernel:nfs_server``  the kernel NFS server (nfsd) is usable
``cluster_kernel:nfs_client``  the kernel NFS client is usable

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


def features(filesystems: set[str] | None = None, ipvs_proc: bool | None = None, available=_module_available) -> dict:
    """The feature map; arguments exist so tests can feed it other kernels."""
    filesystems = _filesystems() if filesystems is None else filesystems
    ipvs_proc = os.path.exists("/proc/net/ip_vs") if ipvs_proc is None else ipvs_proc
    return {
        "ipvs": ipvs_proc or available("ip_vs"),
        "nfs_server": "nfsd" in filesystems or available("nfsd"),
        "nfs_client": bool({"nfs", "nfs4"} & filesystems) or available("nfs"),
    }


def cluster_kernel() -> dict:
    return {"cluster_kernel": features()}
