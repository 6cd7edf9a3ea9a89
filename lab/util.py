"""Small helpers: logging with a node column, and commands that fail loudly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Where the lab keeps its nodes, keys, logs and state.
STATE = Path(os.environ.get("LAB_STATE", "/var/lib/ha-lab"))

_START = time.monotonic()


def log(who: str, message: str) -> None:
    print(f"[{time.monotonic() - _START:6.1f}s] {who:<9} {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], check: bool = True, capture: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its output so the cause is visible."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc


def salt_returns(text: str) -> dict:
    """The minions' returns in the salt CLI's `--out=json` output: one JSON
    object per minion as it returns, merged (pure). A minion that did not
    return is there too, with Salt's "Minion did not return" text.

    Not `--static`: in Salt 3008 that runs the job as a 100% batch, which
    first publishes a test.ping and waits for it (a second job on every
    minion, seconds per call), then leaves out whoever did not answer it."""
    decoder = json.JSONDecoder()
    returns: dict = {}
    at = text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            returns.update(value)
        at = text.find("{", end)
    return returns


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``."""
    prefix = str(path.resolve())
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    return [m for m in out.splitlines() if m == prefix or m.startswith(prefix + "/")]


def safe_rmtree(path: Path) -> None:
    """Remove a tree, first unmounting anything mounted inside it; never descends into a mount."""
    for mount in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    if mounts_under(path):
        raise RuntimeError(f"refusing to remove {path}: mounts remain under it")
    shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (PID 1 here never reaps)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # ProcessLookupError: it exited between the open and the read.
        return False


def children(pid: int) -> list[int]:
    """The process's children, over all its threads; what is left of them when
    it or one of its threads ends while they are read (none once it is gone)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def read_pid(path: Path) -> int | None:
    """The PID a pid file names, if that process is still alive."""
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None
