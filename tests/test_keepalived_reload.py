"""keepalived-reload (salt/keepalived/files/keepalived-reload.sh) against a
stand-in systemctl on PATH that records its calls: a reload that ends is
waited for, one that never ends (keepalived 2.2.7 lost count of its
children) is cancelled and keepalived restarted, within the timeout."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "salt" / "keepalived" / "files" / "keepalived-reload.sh"

# The stand-in: `show` answers the state file's content; `list-jobs` a
# running reload job while the state is "reloading"; every call is logged.
SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1" in
show) cat "$STATE" ;;
list-jobs) [ "$(cat "$STATE")" = reloading ] && echo "4711 keepalived.service reload running" ;;
cancel|restart) echo active > "$STATE" ;;
reload)
    echo reloading > "$STATE"
    [ "$ENDS_AFTER" -ge 0 ] && (sleep "$ENDS_AFTER"; echo active > "$STATE") &
    ;;
esac
exit 0
"""


def run(tmp_path: Path, ends_after: float, timeout: int) -> tuple[subprocess.CompletedProcess, list[str], float]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    calls, state = tmp_path / "calls", tmp_path / "state"
    state.write_text("active\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "STATE": str(state)}
    env["ENDS_AFTER"] = str(ends_after)
    started = time.monotonic()
    proc = subprocess.run(
        ["sh", str(SCRIPT), "keepalived", str(timeout)], capture_output=True, text=True, env=env, timeout=60
    )
    return proc, calls.read_text().splitlines(), time.monotonic() - started


def test_a_reload_that_ends_is_waited_for(tmp_path):
    proc, calls, took = run(tmp_path, ends_after=1, timeout=10)
    assert proc.returncode == 0 and "keepalived reloaded" in proc.stdout, proc.stderr
    assert calls[0] == "reload --no-block keepalived"
    assert not any(c.startswith(("cancel", "restart")) for c in calls), calls
    assert 1 <= took < 5, took


def test_a_reload_that_never_ends_is_cancelled_and_keepalived_restarted(tmp_path):
    proc, calls, took = run(tmp_path, ends_after=-1, timeout=2)
    assert proc.returncode == 0, proc.stderr
    assert "did not finish its reload within 2 s" in proc.stderr
    assert calls[-2:] == ["cancel 4711", "restart keepalived"], calls
    assert 2 <= took < 6, took
