"""Which kernel gives the lab IPVS and NFS: the host's, a user-mode one, or none.

The seed's IPVS (directors) and NFS (nas server, web clients) paths need kernel
features. Where the host kernel has them the nodes use it directly (nspawn
containers share the host kernel). Where it does not, the nodes that need them
boot Debian's User-Mode Linux kernel instead (package user-mode-linux), which
ships both as modules: Debian 13's when the lab could install it (lab/umlkernel.py:
it needs about half the host CPU of Debian 12's), else the host's package.
Only when neither works is a feature unavailable, and the reason says why.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab import umlkernel
from lab.topology import repo_module

# Debian's package on the host (apt-get install user-mode-linux).
UML_PACKAGE = (["/usr/bin/linux"], Path("/usr/lib/uml/modules"))
HOST = "host kernel"
UML = "user-mode kernel"

# Feature -> (host evidence, module files a UML kernel needs for it)
NEEDS = {
    "ipvs": ("kernel/net/netfilter/ipvs/ip_vs.ko",),
    "nfs": ("kernel/fs/nfsd/nfsd.ko", "kernel/fs/nfs/nfsv4.ko"),
}


@dataclass(frozen=True)
class FeaturePath:
    feature: str
    path: str  # HOST, UML or "unavailable"
    reason: str

    @property
    def uml(self) -> bool:
        return self.path == UML

    def describe(self) -> str:
        return f"{self.path} ({self.reason})" if self.reason else self.path


def host_has(feature: str) -> bool:
    """The host kernel has it built in, loaded, or as an installed module it
    can load: what the minions' `cluster_kernel` grain would say on it."""
    found = repo_module("_grains/cluster_kernel.py").features(
        container=True, proc_connector=lambda: False, nftables=lambda: False
    )
    if feature == "ipvs":
        return found["ipvs"]
    if feature == "nfs":
        return found["nfs_server"] and found["nfs_client"]
    raise ValueError(f"unknown kernel feature {feature!r}")


def package_kernel_forced() -> bool:
    """LAB_UML=package: the host's package kernel, even with Debian 13's cached."""
    return os.environ.get("LAB_UML", "auto") == "package"


def uml_kernel() -> tuple[list[str], Path]:
    """How to run the user-mode kernel (argv up to the binary) and its modules
    directory: Debian 13's from the lab's cache when there, else the host's package."""
    installed = None if package_kernel_forced() else umlkernel.cached()
    if installed is not None:
        return umlkernel.command(installed), umlkernel.uml_modules(installed)
    return UML_PACKAGE


def uml_version() -> str | None:
    run_kernel, modules = uml_kernel()
    if shutil.which(run_kernel[0]) is None or not modules.is_dir():
        return None
    versions = sorted(p.name for p in modules.iterdir() if p.is_dir())
    return versions[-1] if versions else None


def uml_has(feature: str) -> tuple[bool, str]:
    version = uml_version()
    run_kernel, modules = uml_kernel()
    if version is None:
        return False, f"no user-mode kernel ({run_kernel[0]} and {modules}: apt-get install user-mode-linux)"
    base = modules / version
    missing = [m for m in NEEDS[feature] if not any(base.glob(m + "*"))]
    if missing:
        return False, f"the user-mode kernel {version} lacks {', '.join(missing)}"
    if shutil.which("modprobe") is None:
        return False, "modprobe (kmod) is missing on the host: the user-mode nodes load modules with it"
    return True, version


def choose(feature: str, mode: str | None = None) -> FeaturePath:
    """How the lab provides ``feature``. LAB_KERNEL=host|uml forces a path (for tests of either)."""
    mode = mode or os.environ.get("LAB_KERNEL", "auto")
    if mode not in ("auto", "host", "uml"):
        raise ValueError(f"LAB_KERNEL={mode!r}: expected auto, host or uml")
    if mode != "uml" and host_has(feature):
        return FeaturePath(feature, HOST, "")
    ok, detail = uml_has(feature)
    if ok and mode != "host":
        why = "forced by LAB_KERNEL=uml" if mode == "uml" and host_has(feature) else f"the host kernel lacks {feature}"
        return FeaturePath(feature, UML, f"Linux {detail} in user mode; {why}")
    host_reason = f"the host kernel lacks {feature}"
    return FeaturePath(feature, "unavailable", f"{host_reason}; {detail}" if not ok else host_reason)


def paths() -> dict[str, FeaturePath]:
    return {feature: choose(feature) for feature in NEEDS}


def uml_roles(chosen: dict[str, FeaturePath]) -> set[str]:
    """Roles whose nodes boot the user-mode kernel: directors for IPVS; nas and web for NFS."""
    roles = set()
    if chosen["ipvs"].uml:
        roles.add("director")
    if chosen["nfs"].uml:
        roles |= {"nas", "web"}
    return roles
