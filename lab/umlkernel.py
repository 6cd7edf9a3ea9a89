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

The kernel is used only once it has run a process on this host (``runs``).
It restores its processes' extended registers from a buffer of a fixed size,
and a host whose XSAVE area is larger (a CPU with AMX: 11008 bytes) refuses
that ("ptrace set fp regs failed, errno = 14"): every process of a node dies.
There the kernel runs with ``lab/uml_xstate.c`` preloaded, built once into
the cache with the host's C compiler, which sends the area whole.

Without the network, or if any step fails, the lab says why and boots Debian
12's package kernel (``kernel.UML_PACKAGE``), only slower.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

from lab.rootfs import CACHE, MIRROR
from lab.util import STATE, log, run, safe_rmtree

SUITE = "trixie"
PACKAGE = "user-mode-linux"
BINARY = "usr/bin/linux.uml"
MODULES = "usr/lib/uml/modules"
# The tree's own C library (Debian amd64's path).
LIBRARIES = "usr/lib/x86_64-linux-gnu"
# Written into a tree once its kernel ran a process on this host (RUNS), or
# could not (FAILS, with the reason); PRELOAD names the library it needs.
RUNS = ".runs"
FAILS = ".fails"
PRELOAD = ".preload"
SHIM = Path(__file__).with_name("uml_xstate.c")
# The trial: the tree's own dynamic loader as init (every tree has it: the
# kernel needs it). Started without arguments it prints its usage and exits
# 1, so the kernel's panic says "exitcode=0x00000100"; a process the kernel
# could not run died of a signal (SIGSEGV: 0x0000000b).
TRIAL_INIT = "/lib64/ld-linux-x86-64.so.2"
EXIT_CODE = re.compile(r"Attempted to kill init! exitcode=0x([0-9a-f]+)")
XSAVE_REFUSED = "ptrace set fp regs failed"
# What a node's kernel reads and writes on the host, bound into the tree at
# the same paths: devices (/dev/shm for its memory, /dev/net/tun for its
# NICs), /proc and /sys, its node's directory and disk (the lab's state), the
# rootfs, its own modules and the preloaded library (the lab's cache).
HOST_DIRS = ("/dev", "/proc", "/sys", "/tmp", str(STATE), str(CACHE))
# Binds each host directory that exists into the tree, then runs the kernel
# there: $0 is the tree, the arguments are the kernel's.
IN_TREE = (
    'tree=$0; for d in {dirs}; do [ -d "$d" ] || continue; mkdir -p "$tree$d"; '
    'mount --rbind "$d" "$tree$d"; done; {preload}exec chroot "$tree" /{binary} "$@"'
)


def trees() -> list[Path]:
    """The installed trees in the cache, oldest first."""
    found = sorted(CACHE.glob(f"{PACKAGE}-{SUITE}-*/.complete"), key=lambda p: p.stat().st_mtime)
    return [p.parent for p in found]


def cached() -> Path | None:
    """The newest installed tree whose kernel runs a process on this host, if any."""
    return next((tree for tree in reversed(trees()) if (tree / RUNS).exists()), None)


def ensure() -> Path | None:
    """The cached kernel tree that runs here, installed and tried first when
    there is none; None (and a line saying why) when it cannot be had: the
    lab then boots Debian 12's."""
    if (ready := cached()) is not None:
        return ready
    installed = trees()
    try:
        if installed and (installed[-1] / FAILS).exists():
            # Tried on this host already: not installed and tried again.
            raise RuntimeError((installed[-1] / FAILS).read_text().strip())
        tree = installed[-1] if installed else install()
        runs(tree)
        return tree
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
        log("kernel", f"Debian {SUITE}'s {PACKAGE} not used ({str(err).splitlines()[0]}): Debian 12's is used")
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


def trial_failure(console: str) -> str | None:
    """Why the trial's kernel could not run its process, from the kernel's
    console; None when the process ran and exited by itself."""
    found = EXIT_CODE.search(console)
    if found and int(found.group(1), 16) & 0x7F == 0:
        return None
    lines = [line.strip() for line in console.splitlines() if "errno" in line or "exitcode" in line]
    return f"its kernel cannot run a process here: {'; '.join(lines[:2]) or 'no exit code printed'}"


def trial(tree: Path) -> str | None:
    """Boot the tree's kernel with its own loader as the only process: why
    that process could not run, or None."""
    with tempfile.TemporaryDirectory(prefix="uml-trial-", dir="/tmp") as uml_dir:
        argv = [*command(tree), f"uml_dir={uml_dir}", "mem=64M", "root=/dev/root", "rootfstype=hostfs"]
        argv += ["rootflags=/", "ro", f"init={TRIAL_INIT}", "con=null", "con0=null,fd:1"]
        console = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=120).stdout
    return trial_failure(console)


def build_shim() -> Path:
    """lab/uml_xstate.c built into the cache (once per version of its source)."""
    source = SHIM.read_bytes()
    target = CACHE / f"uml-xstate-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if not target.exists():
        work = target.with_suffix(f".{os.getpid()}")
        run(["cc", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(work), str(SHIM), "-ldl"])
        work.rename(target)
    return target


def runs(tree: Path) -> None:
    """Mark the tree as usable once its kernel ran a process here, with the
    shim preloaded if it needed it; else mark it with the reason and raise."""
    (tree / PRELOAD).unlink(missing_ok=True)
    failure = trial(tree)
    if failure is not None and XSAVE_REFUSED in failure:
        (tree / PRELOAD).write_text(f"{build_shim()}\n")
        failure = trial(tree)
        if failure is None:
            log("kernel", f"this host's XSAVE area is larger than the kernel's buffer: it runs with {SHIM.name}")
    if failure is None:
        (tree / RUNS).write_text(f"{TRIAL_INIT} ran\n")
        return
    (tree / PRELOAD).unlink(missing_ok=True)
    (tree / FAILS).write_text(failure + "\n")
    raise RuntimeError(failure)


def command(base: Path) -> list[str]:
    """How to run the tree's kernel (argv before the kernel's own arguments):
    chrooted into the tree, so on its own loader and C library, in a private
    mount namespace (the binds vanish with the kernel's processes)."""
    shim = base / PRELOAD
    # The library is in the cache, bound into the tree at its own path.
    preload = f"LD_PRELOAD={shim.read_text().strip()} " if shim.exists() else ""
    script = IN_TREE.format(dirs=" ".join(HOST_DIRS), binary=BINARY, preload=preload)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(base)]


def uml_modules(base: Path) -> Path:
    return base / MODULES
