"""Listen to the Salt master's event bus from outside the lab.

    python -m lab events TAGMATCH [--count N] [--timeout S]

runs ``salt-run state.event`` where the master runs, for at most S seconds,
and prints one ``tag {json}`` line per event. ``listen`` starts that in the
background (benchmarks and tests subscribe, act, then read); ``parse`` turns
its output into (tag, data) pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys

from lab.topology import REPO


def listen(tagmatch: str, count: int | None = None, timeout: float = 30) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lab", "events", tagmatch, "--timeout", str(timeout)]
    if count:
        argv += ["--count", str(count)]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def parse(output: str, prefix: str = "") -> list[tuple[str, dict]]:
    events = []
    for line in output.splitlines():
        parts = line.split(None, 1)  # state.event separates tag and data with a tab
        if len(parts) == 2 and parts[0].startswith(prefix) and parts[1].startswith("{"):
            events.append((parts[0], json.loads(parts[1])))
    return events


def salt_run_argv(tagmatch: str, count: int | None, timeout: float) -> list[str]:
    argv = ["timeout", str(int(timeout)), "salt-run", "state.event", f"tagmatch={tagmatch}"]
    return [*argv, f"count={count}"] if count else argv
