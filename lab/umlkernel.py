"""Debian 13's user-mode kernel, for a Debian 12 host.

Debian 12's user-mode-linux (Linux 6.1) makes every fork, exec and syscall of a
node cost dearly; Debian 13's (6.12) does the same work in about half the host
CPU (measured on this machine kind: 200 fork+exec 7.7 -> 2.6 s, a Python import
set 1.4 -> 0.7 s; `make lab` warm 4:48 -> 3:31). Its package cannot be installed
on Debian 12: it depends on Debian 13's C library (libc6 >= 2.38).

So the lab has mmdebstrap and apt install it into a small Debian 13 tree of
its own, in its cache (``--variant=extract``: the package and what it depends
on, the C library among them, unpacked; apt checks the archive's signatures
with the host's debian-archive-keyring, which holds Debian 13's keys), and
boots it inside that tree (``chroot``, in a mount namespace of its own where
the host directories the kernel uses are bound at their own paths): it runs
on the tree's loader and C library. No file of the package is changed and the
host's C library is not involved.

Not ``ld.so --library-path BINARY``: run that way the kernel finds the heap
after the loader, far from its own image, and refuses to boot ("Too few
physical memory" after adding the gap to its memory size).

Without the network, or if any step fails, the lab says why and boots Debian
12's package kernel (``kernel.UML_PACKAGE``), only slower.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lab.rootfs import CACHE, MIRROR
from lab.util import STATE, log, run, safe_rmtree

SUITE = "trixie"
PACKAGE = "user-mode-linux"
BINARY = "usr/bin/linux.uml"
MODULES = "usr/lib/uml/modules"
# The tree's own C library (Debian amd64's path).
LIBRARIES = "usr/lib/x86_64-linux-gnu"
# What a node's kernel reads and writes on the host, bound into the tree at
# the same paths: devices (/dev/shm for its memory, /dev/net/tun for its
# NICs), /proc and /sys, its node's directory and disk (the lab's state), the
# rootfs and its own modules (the lab's cache).
HOST_DIRS = ("/dev", "/proc", "/sys", "/tmp", str(STATE), str(CACHE))
# Binds each host directory that exists into the tree, then runs the kernel
# there: $0 is the tree, the arguments are the kernel's.
IN_TREE = (
    'tree=$0; for d in {dirs}; do [ -d "$d" ] || continue; mkdir -p "$tree$d"; '
    'mount --rbind "$d" "$tree$d"; done; exec chroot "$tree" /{binary} "$@"'
)


def cached() -> Path | None:
    """The newest installed and checked kernel tree in the cache, if any."""
    found = sorted(CACHE.glob(f"{PACKAGE}-{SUITE}-*/.complete"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def ensure() -> Path | None:
    """The cached Debian 13 kernel, installed first when there is none; None (and
    a line saying why) when it cannot be had: the lab then boots Debian 12's."""
    if (ready := cached()) is not None:
        return ready
    try:
        return install()
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
        log("kernel", f"Debian {SUITE}'s {PACKAGE} not installed ({str(err).splitlines()[0]}): Debian 12's is used")
        return None


def install() -> Path:
    """Install the package into a Debian 13 tree of its own; return the tree."""
    log("kernel", f"installing Debian {SUITE}'s {PACKAGE} (a faster user-mode kernel than Debian 12's)")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f".{PACKAGE}-{SUITE}-{os.getpid()}"
    safe_rmtree(work)
    # Debian 13 systems have a merged /usr (its loader is /lib64/... -> /usr/lib64/...).
    merged_usr = "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"
    run(["mmdebstrap", "--quiet", "--variant=extract", merged_usr, f"--include={PACKAGE}", SUITE, str(work), MIRROR])
    modules = sorted(p.name for p in (work / MODULES).iterdir()) if (work / MODULES).is_dir() else []
    printed = subprocess.run([*command(work), "--version"], capture_output=True, text=True, check=False)
    if not modules or printed.returncode != 0 or printed.stdout.strip() != modules[-1]:
        raise RuntimeError(f"{work / BINARY} does not run here: {printed.stderr.strip()[:200]}")
    target = CACHE / f"{PACKAGE}-{SUITE}-{modules[-1]}"
    safe_rmtree(target)
    (work / ".complete").write_text(modules[-1] + "\n")
    work.rename(target)
    log("kernel", f"Debian {SUITE}'s {PACKAGE} (Linux {modules[-1]}) in {target}")
    return target


def command(base: Path) -> list[str]:
    """How to run the tree's kernel (argv before the kernel's own arguments):
    chrooted into the tree, so on its own loader and C library, in a private
    mount namespace (the binds vanish with the kernel's processes)."""
    script = IN_TREE.format(dirs=" ".join(HOST_DIRS), binary=BINARY)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(base)]


def uml_modules(base: Path) -> Path:
    return base / MODULES
