"""The web servers' copy of the docroot (salt/apache/files/docroot-copy.sh),
run here on directories standing in for the NFS mount and the copy.

A copy follows the docroot it came from, deletions included, and never
follows a source that is not that docroot: an export without the marker (a
nas rebuilt empty, a mount that is not there) or with another one.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab import catalogue

SCRIPT = Path(__file__).resolve().parent.parent / "salt" / "apache" / "files" / "docroot-copy.sh"
MARKER = catalogue.runtime("webcontent", "marker")


def run_copy(source: Path, copy: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), str(source), str(copy), MARKER], capture_output=True, text=True, timeout=60, check=False
    )


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def docroot(tmp_path: Path) -> tuple[Path, Path]:
    source, copy = tmp_path / "export", tmp_path / "copy"
    source.mkdir()
    copy.mkdir()
    (source / MARKER).write_text("docroot-one\n")
    (source / "index.php").write_text("<?php echo 1;\n")
    (source / "img").mkdir()
    (source / "img" / "a.png").write_bytes(b"\x89PNG one")
    return source, copy


def test_a_first_copy_takes_the_docroot_and_then_follows_it(docroot):
    source, copy = docroot
    assert run_copy(source, copy).returncode == 0
    assert tree(copy) == tree(source)
    (source / "img" / "a.png").unlink()
    (source / "new.html").write_text("published\n")
    (source / "index.php").write_text("<?php echo 2;\n")
    proc = run_copy(source, copy)
    assert proc.returncode == 0, proc.stderr
    assert tree(copy) == tree(source)
    assert not (copy / "img" / "a.png").exists()


def test_an_export_without_its_marker_leaves_the_copy_as_it_is(docroot):
    """A nas rebuilt empty (or a mount that is not there) must not empty the copies."""
    source, copy = docroot
    assert run_copy(source, copy).returncode == 0
    before = tree(copy)
    for path in sorted(source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    proc = run_copy(source, copy)
    assert proc.returncode != 0
    assert "copy kept as it is" in proc.stderr and MARKER in proc.stderr
    assert tree(copy) == before
    # Not mounted at all: the mount point does not even exist.
    source.rmdir()
    assert run_copy(source, copy).returncode != 0
    assert tree(copy) == before


def test_another_docroot_is_not_copied_over_this_one(docroot):
    """An export made anew (another marker) while the copies held the old
    content: they keep it until an operator decides."""
    source, copy = docroot
    assert run_copy(source, copy).returncode == 0
    before = tree(copy)
    (source / MARKER).write_text("docroot-two\n")
    (source / "index.php").unlink()
    proc = run_copy(source, copy)
    assert proc.returncode != 0
    assert "is not the docroot" in proc.stderr
    assert tree(copy) == before


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_a_stale_mount_is_mounted_again_and_the_copy_follows(docroot, tmp_path):
    """A nas rebuilt on a new disk: the web server's mount answers "Stale
    file handle" (stood in for here by stat, umount and mount on the PATH);
    the script mounts it again, then copies from it."""
    source, copy = docroot
    assert run_copy(source, copy).returncode == 0
    mount_point, bin_dir, calls = source.parent, tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    hidden = tmp_path / "export-of-the-new-nas"
    source.rename(hidden)
    (hidden / "published-after.html").write_text("new\n")
    # Stale until mounted again; mounting brings the export back.
    stub(
        bin_dir, "stat", f"[ -e {source} ] && exit 0\necho \"stat: cannot statx '$1': Stale file handle\" >&2\nexit 1\n"
    )
    stub(bin_dir, "umount", f'echo "umount $*" >> {calls}\n')
    stub(bin_dir, "mount", f'echo "mount $*" >> {calls}\nmv {hidden} {source}\n')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    argv = ["sh", str(SCRIPT), str(source), str(copy), MARKER, str(mount_point)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "is stale" in proc.stderr
    assert calls.read_text().splitlines() == [f"umount -l {mount_point}", f"mount {mount_point}"]
    assert (copy / "published-after.html").read_text() == "new\n"


def test_an_unreachable_nas_is_not_mounted_again(docroot, tmp_path):
    """Unreadable but not stale (a nas cut off, a mount missing): nothing is
    mounted or unmounted, and the copy is kept."""
    source, copy = docroot
    assert run_copy(source, copy).returncode == 0
    before = tree(copy)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (source / MARKER).unlink()
    stub(bin_dir, "umount", f'echo "umount $*" >> {calls}\n')
    stub(bin_dir, "mount", f'echo "mount $*" >> {calls}\n')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    argv = ["sh", str(SCRIPT), str(source), str(copy), MARKER, str(source.parent)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode != 0 and "copy kept as it is" in proc.stderr
    assert not calls.exists()
    assert tree(copy) == before
