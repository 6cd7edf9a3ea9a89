"""tools/setup-host: `make lab` and `make test` set the host up themselves,
or stop at once with one line naming what is missing (never a traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "tools" / "setup-host"


def packages(kind: str) -> list[str]:
    rows = [line.split() for line in (REPO / "tools" / "host-packages").read_text().splitlines()]
    return [row[0] for row in rows if row and not row[0].startswith("#") and row[1] == kind]


def copy_with_list(tmp_path: Path, lines: list[str]) -> Path:
    """The script beside a package list of the test's own."""
    shutil.copy(SCRIPT, tmp_path / "setup-host")
    (tmp_path / "host-packages").write_text("\n".join(lines) + "\n")
    return tmp_path / "setup-host"


def fake_apt(tmp_path: Path) -> tuple[Path, Path]:
    """A bin directory whose apt-get records its arguments instead of installing."""
    bin_dir, record = tmp_path / "bin", tmp_path / "apt-get.calls"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    (bin_dir / "apt-get").chmod(0o755)
    return bin_dir, record


def test_the_list_covers_what_the_ci_installed_before():
    assert {"mmdebstrap", "systemd-container", "user-mode-linux", "python3-venv"} <= set(packages("lab"))
    assert {"haproxy", "chromium", "ipvsadm", "nftables", "iptables"} <= set(packages("test"))


def test_root_on_debian_installs_only_what_is_missing(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.fail("run as root (as make test is)")
    script = copy_with_list(tmp_path, ["dpkg     lab   installed on every Debian", "ha-lab-no-such-pkg test  missing"])
    bin_dir, record = fake_apt(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    lab = subprocess.run([str(script), "lab"], capture_output=True, text=True, env=env)
    assert lab.returncode == 0 and not record.exists(), lab  # dpkg is there: nothing to do
    test = subprocess.run([str(script), "test"], capture_output=True, text=True, env=env)
    assert test.returncode == 0, test
    assert record.read_text().splitlines() == ["update -qq", "install -y -qq ha-lab-no-such-pkg"]


def test_not_root_stops_with_one_line():
    # A directory nobody (the unprivileged user) may read: pytest's are root's only.
    with tempfile.TemporaryDirectory(prefix="setup-host-") as where:
        os.chmod(where, 0o755)
        script = copy_with_list(Path(where), ["dpkg     lab   installed on every Debian"])
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(script), "lab"],
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("make lab needs root"), proc.stderr


def test_not_debian_stops_with_one_line_naming_the_packages(tmp_path: Path):
    script = copy_with_list(tmp_path, ["mmdebstrap lab builds the rootfs", "haproxy test the real HAProxy"])
    bare = tmp_path / "bare"
    bare.mkdir()
    for tool in ("sh", "awk", "dirname", "id", "grep"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    proc = subprocess.run(["/bin/sh", str(script), "test"], capture_output=True, text=True, env={"PATH": str(bare)})
    assert proc.returncode == 1, proc
    assert proc.stderr == "make test needs a Debian 12 host (apt, dpkg) with: mmdebstrap haproxy\n", proc.stderr
