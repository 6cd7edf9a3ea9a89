"""Benchmark of the one-host lab (prints figures; not a test).

    .venv/bin/python -m lab.bench.boot [--cold] [--compare] [--compare-uml]

--cold removes the cached rootfs first, to time the one-off build. The script
then times what `make lab` does on a warm cache, without its verify step:
from nothing to every node booted and highstated; reports each node's kernel
(host, or user-mode for the nodes that need IPVS/NFS the host lacks), its boot
time (start to systemd running), memory (PSS) and host CPU time after the
highstate, and leaves the lab down. It also prints how busy the host's CPUs
were meanwhile: the work divided by the cores is the least wall time this
machine needs for it, however the steps overlap.

--compare-uml times the same on Debian 12's user-mode kernel as well
(LAB_UML=package) instead of Debian 13's (lab/umlkernel.py).

--compare times the same with LAB_KERNEL=host as well (every node a
container, IPVS and NFS unavailable where the host kernel lacks them): the
difference is what the user-mode kernels add to `make lab`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from lab import node, rootfs
from lab.cli import Lab
from lab.util import safe_rmtree


def host_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host since boot, over all cores
    (/proc/stat: user nice system idle iowait irq softirq steal; guest time is
    already in user). Time stolen by the hypervisor is neither."""
    with open("/proc/stat", encoding="ascii") as handle:
        user, nice, system, idle, iowait, irq, softirq, _steal = (int(f) for f in handle.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return busy / tick, (busy + idle + iowait) / tick


def run(
    kernel_mode: str, uml: str = "auto"
) -> tuple[Lab, list[tuple[str, str]], dict[str, tuple[float, float]], float]:
    os.environ["LAB_KERNEL"] = kernel_mode
    os.environ["LAB_UML"] = uml
    label = kernel_mode if uml == "auto" else f"{kernel_mode}, LAB_UML={uml}"
    lab = Lab()
    lab.down()
    figures = []
    busy_before, all_before = host_cpu_seconds()
    started = time.monotonic()
    # As `make lab`: the servers boot and are highstated while the directors' highstate runs.
    lab.up(apply_servers=True)
    lab.apply(skip_applied=True)
    total = time.monotonic() - started
    busy, everything = host_cpu_seconds()
    busy -= busy_before
    cores = os.cpu_count() or 1
    figures.append((f"[{label}] up + highstate (make lab without verify)", f"{total:.1f} s"))
    figures.append(
        (
            f"[{label}] host CPU busy meanwhile",
            f"{busy:.0f} CPU-s on {cores} cores ({100 * busy / (everything - all_before):.0f}%)",
        )
    )
    figures.append((f"[{label}] that work / {cores} cores: least wall time", f"{busy / cores:.0f} s"))
    applied = {name: (node.memory_kb(name) / 1024, node.cpu_seconds(name)) for name in lab.nodes}
    lab.down()
    return lab, figures, applied, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="rebuild the rootfs first and time it")
    parser.add_argument("--compare", action="store_true", help="also time a lab without user-mode kernels")
    parser.add_argument(
        "--compare-uml", action="store_true", help="also time the lab on Debian 12's user-mode kernel (LAB_UML=package)"
    )
    args = parser.parse_args()
    Lab().down()
    figures: list[tuple[str, str]] = []
    if args.cold:
        safe_rmtree(rootfs.path())
        started = time.monotonic()
        rootfs.build()
        figures.append(("cold rootfs build (mmdebstrap + Salt)", f"{time.monotonic() - started:.0f} s"))
    rootfs.build()
    lab, more, applied, total = run("auto")
    figures += more
    if args.compare:
        _, more, _, host_total = run("host")
        figures += more
        figures.append(("added by the user-mode kernels", f"{total - host_total:.1f} s"))
    if args.compare_uml:
        _, more, _, package_total = run("auto", uml="package")
        figures += more
        figures.append(("saved by Debian 13's user-mode kernel", f"{package_total - total:.1f} s"))
    print("\nfigure                                                   value")
    for what, value in figures:
        print(f"{what:56} {value}")
    print(f"\n{'node':10} {'kernel':7} {'boot':>7} {'PSS after highstate':>20} {'host CPU':>10}")
    for name in sorted(lab.nodes, key=lambda n: (lab.nodes[n].order, n)):
        kind = "user" if lab.nodes[name].platform == "uml" else "host"
        boot = lab.boot_seconds.get(name, 0.0)
        pss, cpu = applied[name]
        print(f"{name:10} {kind:7} {boot:5.1f} s {pss:17.0f} MB {cpu:7.0f} s")
    for kind in ("uml", "nspawn"):
        names = [n for n in lab.nodes if lab.nodes[n].platform == kind]
        if names:
            pss = sum(applied[n][0] for n in names) / len(names)
            cpu = sum(applied[n][1] for n in names) / len(names)
            boot = sum(lab.boot_seconds.get(n, 0.0) for n in names) / len(names)
            print(f"{'mean ' + kind:18} {boot:5.1f} s {pss:17.0f} MB {cpu:7.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
