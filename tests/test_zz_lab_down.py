"""Runs last: the shared lab comes down and leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labtools import lab

pytestmark = pytest.mark.usefixtures("running_lab")


def test_zz_down_leaves_nothing_behind():
    pids = [p.read_text() for p in Path("/var/lib/ha-lab/nodes").glob("*/nspawn.pid")]
    pids += [p.read_text() for p in Path("/var/lib/ha-lab/nodes").glob("*/uml.pid")]
    lab("down", timeout=300)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "halab-" not in netns
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    assert "/var/lib/ha-lab" not in mounts
    assert not any(Path(root, "halab").exists() for root in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"))
    for pid in pids:
        try:
            state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state == "Z", f"node process {pid} (nspawn or user-mode kernel) still running"
    # Nothing that ran inside the nodes survives them.
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        assert not ("/opt/salt/bin/salt-" in cmdline and state != "Z"), f"left running: {proc.name} {cmdline}"
        assert not ("uml_dir=/var/lib/ha-lab/" in cmdline and state != "Z"), f"user-mode kernel left: {proc.name}"
