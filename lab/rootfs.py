"""The lab's one Debian 12 root filesystem, built once by mmdebstrap and cached.

mmdebstrap (apt underneath: parallel downloads, one dpkg run) builds the same
package set as debootstrap in about half the time (51 s against 97 s here).

Every node boots this tree (read-only lower layer of a per-node overlay). It
holds every package the formulas install, so that `pkg.installed` is a no-op on
nodes that have no route to a registry, and Salt 3008 from PyPI in /opt/salt.
Services are installed disabled; a node starts with its roles' services
enabled, as apt leaves them on a server that installed those packages
(`lab.catalogue.services`: under a user-mode kernel each `systemctl enable`
reloads systemd, 4 CPU-s a service, so the highstate should find them so).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import catalogue
from lab.util import log, mounts_under, run, safe_rmtree

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SALT_REQUIREMENT = "salt==3008.4"
CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/ha-lab"))

# Base system, then every role's packages (the catalogue of roles), then
# the tools of the lab-only client and upstream nodes.
SYSTEM_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "udev",  # user-mode kernel nodes: names their NICs (.link files); networkd waits for it there
    "dbus",
    "kmod",
    "iproute2",
    "iputils-ping",
    "procps",
    "psmisc",
    "ca-certificates",
    "less",
    "openssl",
    "python3",
    "python3-venv",
    # A bare lab's nodes are reached as real servers are: sshd with a host
    # key of each node's own (the image holds none), salt-ssh from `operator`.
    "openssh-server",
    "openssh-client",
]
LAB_TOOLS = ["curl", "apache2-utils", "dnsperf"]
PACKAGES = list(dict.fromkeys([*SYSTEM_PACKAGES, *catalogue.packages(), *LAB_TOOLS]))

# Installed but not started at boot (a node enables its roles' services):
# the formulas' services and what else their packages enable.
DISABLED_UNITS = [
    *catalogue.units(),
    "apache-htcacheclean",
    "nfs-kernel-server",
    "ipvsadm",
    "rpcbind.service",
    "rpcbind.socket",
    "nfs-client.target",
    "remote-fs.target",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "ssh.service",
]
MASKED_UNITS = ["e2scrub_reap.service", "systemd-timesyncd.service", "getty@tty1.service"]


def _salt_unit(daemon: str, extra: str = "", online: bool = True) -> str:
    """A systemd unit for a Salt daemon from /opt/salt (pip installs none)."""
    order = "After=network-online.target\nWants=network-online.target" if online else "After=network.target"
    return (
        f"[Unit]\nDescription=Salt {daemon} (lab)\n{order}\n\n"
        f"[Service]\nExecStart=/opt/salt/bin/salt-{daemon}\nKillMode=process\nRestart=on-failure\n{extra}\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


UNITS = {
    # The master binds its configured address: it waits for the network.
    "salt-master.service": _salt_unit("master", "LimitNOFILE=16384\n"),
    # The minion retries until it reaches its master (as Salt's own unit, it
    # only orders after network.target): under a user-mode kernel waiting for
    # network-online cost 10 s of every boot.
    "salt-minion.service": _salt_unit("minion", online=False),
}


BUILDER = ["mmdebstrap", "--quiet", "--variant=minbase"]


def fingerprint() -> str:
    """Changes whenever what goes into the rootfs changes."""
    text = "\n".join(
        [*BUILDER, SUITE, MIRROR, SALT_REQUIREMENT, *PACKAGES, *DISABLED_UNITS, *MASKED_UNITS, *UNITS.values()]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def disk_image(root: Path) -> Path:
    """Where a rootfs's ext4 image is kept (lab/uml.py makes it when a node first boots from a disk)."""
    return root.with_name(root.name + ".ext4")


def path() -> Path:
    return CACHE / f"rootfs-{SUITE}-{fingerprint()}"


def _chroot(root: Path, *cmd: str, **env: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    run(["chroot", str(root), *cmd], env={**clean, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C", **env})


def build_wheels() -> Path:
    """Wheels of Salt and everything it needs, for the nodes' Python 3.11."""
    wheels = CACHE / f"wheels-{SALT_REQUIREMENT}"
    if not (wheels / ".complete").exists():
        log("rootfs", f"building wheels for {SALT_REQUIREMENT}")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "-w",
                str(wheels),
                SALT_REQUIREMENT,
            ]
        )
        (wheels / ".complete").touch()
    return wheels


def build(force: bool = False) -> Path:
    """Return the cached rootfs, building it first if needed."""
    target = path()
    if target.exists() and not force:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in CACHE.glob(".build-*"):
        safe_rmtree(stale)
    work = CACHE / f".build-{fingerprint()}-{os.getpid()}"
    started = time.monotonic()
    log("rootfs", f"building {target.name} ({BUILDER[0]} {SUITE}; a minute or two, once)")
    with ThreadPoolExecutor(max_workers=1) as pool:
        wheels_job = pool.submit(build_wheels)  # from PyPI while Debian's packages come
        run([*BUILDER, "--include=" + ",".join(PACKAGES), SUITE, str(work), MIRROR])
        wheels = wheels_job.result()
    mounts = []
    try:
        for fs, sub in (("proc", "proc"), ("sysfs", "sys")):
            run(["mount", "-t", fs, fs, str(work / sub)])
            mounts.append(work / sub)
        shutil.copy("/etc/resolv.conf", work / "etc/resolv.conf")
        policy = work / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        log("rootfs", f"installing {SALT_REQUIREMENT} into /opt/salt")
        _chroot(work, "python3", "-m", "venv", "/opt/salt")
        # Wheels are built on the host (which has a compiler and reaches the
        # registry); the node's venv installs them offline.
        shutil.copytree(wheels, work / "tmp/wheels")
        _chroot(
            work,
            "/opt/salt/bin/pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            "/tmp/wheels",
            SALT_REQUIREMENT,
        )
        shutil.rmtree(work / "tmp/wheels")
        for name, text in UNITS.items():
            (work / "etc/systemd/system" / name).write_text(text)
        for unit in DISABLED_UNITS:
            subprocess.run(["chroot", str(work), "systemctl", "disable", unit], capture_output=True, check=False)
        _chroot(work, "systemctl", "mask", *MASKED_UNITS)
        for host_key in (work / "etc/ssh").glob("ssh_host_*"):
            host_key.unlink()  # made by the package for the image: every node would share them
        _chroot(work, "systemctl", "enable", "systemd-networkd.service")
        for link in ("salt-master", "salt-minion", "salt-call", "salt", "salt-key", "salt-run"):
            os.symlink(f"/opt/salt/bin/{link}", work / "usr/local/bin" / link)
        policy.unlink()
        (work / "etc/resolv.conf").unlink()
        (work / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")
        _chroot(work, "apt-get", "clean")
        shutil.rmtree(work / "var/lib/apt/lists", ignore_errors=True)
        (work / "var/lib/apt/lists/partial").mkdir(parents=True)
    finally:
        for mount in reversed(mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
    if mounts_under(work):
        raise RuntimeError(f"{work}: still has mounts, not publishing it")
    disk_image(target).unlink(missing_ok=True)  # made from what this replaces
    work.rename(target)
    log("rootfs", f"built {target} in {time.monotonic() - started:.0f} s")
    return target
