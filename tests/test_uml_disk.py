"""The nas's disk image (lab/uml.py): the rootfs's ext4 image, copied, with the
node's overlay upper layer written in by debugfs; a whole mke2fs -d otherwise.
Real debugfs and mke2fs on small trees, read back with debugfs and checked by
e2fsck."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from lab import rootfs, uml


def layers(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A lower tree (a tiny rootfs), an upper layer over it, and the merged view."""
    lower, upper, merged = (tmp_path / name for name in ("rootfs", "upper", "merged"))
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "hostname").write_text("rootfs\n")
    (lower / "etc" / "os-release").write_text("ID=debian\n")
    (upper / "etc" / "salt" / "pki").mkdir(parents=True)
    (upper / "etc" / "hostname").write_text("nas\n")
    key = upper / "etc" / "salt" / "pki" / "minion.pem"
    key.write_text("PRIVATE\n")
    key.chmod(0o600)
    (upper / "etc" / "salt" / "pki").chmod(0o700)
    (upper / "etc" / "lab-link").symlink_to("/etc/hostname")
    (upper / "var" / "lib" / "app").mkdir(parents=True)
    (upper / "var" / "lib" / "app" / "state").write_text("{}\n")
    for path in (upper / "var" / "lib" / "app", upper / "var" / "lib" / "app" / "state"):
        os.chown(path, 1000, 1001)
    return lower, upper, merged


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True).stdout


def merge(lower: Path, upper: Path, merged: Path) -> None:
    """The merged view, as overlayfs shows it (for the fallback path): copy, upper last."""
    subprocess.run(["cp", "-a", f"{lower}/.", str(merged)], check=True)
    subprocess.run(["cp", "-a", f"{upper}/.", str(merged)], check=True)


def test_script_writes_new_directories_files_and_links_and_replaces_lower_files(tmp_path):
    lower, upper, _ = layers(tmp_path)
    script = uml.debugfs_script(upper, lower)
    assert script is not None
    # /etc exists below: not made again; the rootfs's hostname is replaced.
    assert "mkdir /etc" not in script
    assert script.index("rm /etc/hostname") < script.index(f"write {upper}/etc/hostname /etc/hostname")
    assert "mkdir /etc/salt/pki" in script
    assert "sif /etc/salt/pki mode 040700" in script
    assert "sif /var/lib/app/state uid 1000" in script and "sif /var/lib/app/state gid 1001" in script
    assert not any(line.startswith("sif /etc/hostname") for line in script)  # root's: nothing to set
    # New paths are not removed first (an rm of a missing name is an error).
    assert "rm /etc/salt/pki/minion.pem" not in script
    assert "symlink /etc/lab-link /etc/hostname" in script
    assert script.index("mkdir /etc/salt") < script.index("mkdir /etc/salt/pki")


@pytest.mark.parametrize("case", ["whiteout", "opaque", "file over a directory", "blank in a name"])
def test_script_refuses_what_it_cannot_write(tmp_path, case):
    lower, upper, _ = layers(tmp_path)
    if case == "whiteout":  # overlayfs's mark of a file deleted from the lower layer
        os.mknod(upper / "etc" / "os-release", stat.S_IFCHR | 0o600, 0)
    elif case == "opaque":
        os.setxattr(upper / "etc" / "salt", "trusted.overlay.opaque", b"y")
    elif case == "file over a directory":
        (lower / "etc" / "salt").mkdir()
        (upper / "etc" / "salt" / "pki" / "minion.pem").unlink()
        (upper / "etc" / "salt" / "pki").rmdir()
        (upper / "etc" / "salt").rmdir()
        (upper / "etc" / "salt").write_text("not a directory\n")
    else:
        (upper / "etc" / "two words").write_text("x\n")
    assert uml.debugfs_script(upper, lower) is None


def test_disk_holds_the_merged_tree_with_modes_and_is_clean(tmp_path):
    lower, upper, merged = layers(tmp_path)
    image = tmp_path / "root.img"
    uml.make_root_disk(image, merged, lower, upper)
    base = rootfs.disk_image(lower)
    assert base.exists()  # made once, kept for the next disk of this rootfs
    assert debugfs(image, "cat /etc/hostname") == "nas\n"
    assert debugfs(image, "cat /etc/os-release") == "ID=debian\n"
    assert debugfs(image, "cat /etc/salt/pki/minion.pem") == "PRIVATE\n"
    assert "Mode:  0600" in debugfs(image, "stat /etc/salt/pki/minion.pem")
    assert "Mode:  0700" in debugfs(image, "stat /etc/salt/pki")
    assert 'Fast link dest: "/etc/hostname"' in debugfs(image, "stat /etc/lab-link")
    for path in ("/var/lib/app", "/var/lib/app/state"):
        assert "User:  1000   Group:  1001" in debugfs(image, f"stat {path}")
    assert "User:     0   Group:     0" in debugfs(image, "stat /etc/salt/pki/minion.pem")
    assert debugfs(base, "cat /etc/hostname") == "rootfs\n"  # the base is untouched
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    # Sparse: the copy did not fill the 3 GB the guest sees.
    assert image.stat().st_blocks * 512 < 64 * 1024 * 1024 < image.stat().st_size


def test_disk_falls_back_to_the_whole_tree(tmp_path):
    lower, upper, merged = layers(tmp_path)
    os.mknod(upper / "etc" / "os-release", stat.S_IFCHR | 0o600, 0)  # deleted in the merged view
    merged.mkdir()
    merge(lower, upper, merged)
    (merged / "etc" / "os-release").unlink()
    image = tmp_path / "root.img"
    uml.make_root_disk(image, merged, lower, upper)
    assert not rootfs.disk_image(lower).exists()
    assert debugfs(image, "cat /etc/hostname") == "nas\n"
    assert (
        "File not found"
        in subprocess.run(["debugfs", "-R", "stat /etc/os-release", str(image)], capture_output=True, text=True).stderr
    )
