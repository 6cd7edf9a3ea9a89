"""Benchmark of the one-host lab (prints figures; not a test).

    .venv/bin/python bench/lab_boot.py [--cold]

--cold removes the cached rootfs first, to time the one-off build. The script
then times a warm `up` from nothing to every minion answering, reports each
node's memory (PSS) after boot and after a highstate, and leaves the lab down.
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
    print(f"\n{'node':10} {'PSS after boot':>15} {'after highstate':>16}")
    for name in sorted(lab.nodes, key=lambda n: (lab.nodes[n].order, n)):
        print(f"{name:10} {booted[name]:12.0f} MB {applied[name]:13.0f} MB")
    count = len(lab.nodes)
    print(f"{'mean':10} {sum(booted.values()) / count:12.0f} MB {sum(applied.values()) / count:13.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
