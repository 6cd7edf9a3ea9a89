"""Benchmark of the one-host lab (prints figures; not a test).

    .venv/bin/python bench/lab_boot.py [--cold]

--cold removes the cached rootfs first, to time the one-off build. The script
then times a warm `up` from nothing to every minion answering, reports each
node's kernel (host, or user-mode for the nodes that need IPVS/NFS the host
lacks), its boot time (start to systemd running) and memory (PSS) after boot
and after a highstate, and leaves the lab down.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import node, rootfs
from lab.cli import Lab
from lab.util import safe_rmtree


def memory(lab: Lab) -> dict[str, float]:
    return {name: node.memory_kb(name) / 1024 for name in lab.nodes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="rebuild the rootfs first and time it")
    args = parser.parse_args()
    lab = Lab()
    lab.down()
    figures: list[tuple[str, str]] = []
    if args.cold:
        safe_rmtree(rootfs.path())
        started = time.monotonic()
        rootfs.build()
        figures.append(("cold rootfs build (debootstrap + Salt)", f"{time.monotonic() - started:.0f} s"))
    rootfs.build()
    started = time.monotonic()
    lab.up()
    figures.append(("warm up: nothing -> every minion answering", f"{time.monotonic() - started:.1f} s"))
    booted = memory(lab)
    started = time.monotonic()
    lab.apply()
    figures.append(("first highstate on all nodes", f"{time.monotonic() - started:.1f} s"))
    applied = memory(lab)
    lab.down()
    print("\nfigure                                         value")
    for what, value in figures:
        print(f"{what:46} {value}")
    print(f"\n{'node':10} {'kernel':7} {'boot':>7} {'PSS after boot':>15} {'after highstate':>16}")
    for name in sorted(lab.nodes, key=lambda n: (lab.nodes[n].order, n)):
        kind = "user" if lab.nodes[name].platform == "uml" else "host"
        boot = lab.boot_seconds.get(name, 0.0)
        print(f"{name:10} {kind:7} {boot:5.1f} s {booted[name]:12.0f} MB {applied[name]:13.0f} MB")
    for kind in ("uml", "nspawn"):
        names = [n for n in lab.nodes if lab.nodes[n].platform == kind]
        if names:
            mean = sum(applied[n] for n in names) / len(names)
            boot = sum(lab.boot_seconds.get(n, 0.0) for n in names) / len(names)
            print(f"{'mean ' + kind:18} {boot:5.1f} s {'':15} {mean:13.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
