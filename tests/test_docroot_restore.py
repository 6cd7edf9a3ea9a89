"""A nas that lost its docroot takes it back from a web server's copy
(salt/nfs/files/docroot-restore.sh), here from a real rsync daemon on
loopback that runs the apache formula's own configuration
(salt/apache/files/rsyncd.conf.jinja) over a directory standing in for a
copy.

Restored byte for byte, owners and modes included, the marker last; a
source that does not answer or holds no copy restores nothing; an export
that holds its marker is left alone; the daemon serves the copy read-only
and to its one allowed address only."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from conftest import REPO
from lab import catalogue
from lab.bench import wait_for

SCRIPT = REPO / "salt" / "nfs" / "files" / "docroot-restore.sh"
RSYNCD = REPO / "salt" / "apache" / "files" / "rsyncd.conf.jinja"
MARKER = catalogue.runtime("webcontent", "marker")
MODULE = "docroot"


def free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restore(docroot: Path, *sources: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPT), str(docroot), MARKER, *sources], capture_output=True, text=True, timeout=120, check=False
    )


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file and directory below root: content (b"" for a directory), mode and owner."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (b"" if path.is_dir() else path.read_bytes(), st.st_mode, st.st_uid)
    return out


def daemon(tmp_path: Path, copy: Path, allowed: str) -> Iterator[str]:
    port = free_port()
    config = tmp_path / f"rsyncd-{port}.conf"
    text = jinja2.Template(RSYNCD.read_text()).render(
        rsync={"port": port, "module": MODULE}, copy={"path": str(copy)}, nas=allowed, lock_file=tmp_path / "lock"
    )
    config.write_text(text + f"pid file = {tmp_path}/rsyncd-{port}.pid\n")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={config}"], stderr=subprocess.PIPE)
    try:

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        assert wait_for(listening, 10) is not None, "the rsync daemon did not listen"
        yield f"rsync://127.0.0.1:{port}/{MODULE}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A web server's copy: the marker, pages, a subdirectory, a file of
    another owner (www-data's uid on Debian), all readable by everyone."""
    root = tmp_path / "copy"
    (root / "img").mkdir(parents=True)
    root.chmod(0o755)
    (root / "img").chmod(0o755)
    (root / MARKER).write_text("3f1c-docroot-identity\n")
    (root / "index.php").write_text("<?php echo 'index';\n")
    (root / "img" / "logo.png").write_bytes(os.urandom(70000))
    (root / "owned.txt").write_text("owned by another user\n")
    os.chown(root / "owned.txt", 33, 33)
    for path in (root / MARKER, root / "index.php", root / "img" / "logo.png", root / "owned.txt"):
        path.chmod(0o644)
    return root


@pytest.fixture
def offered(tmp_path: Path, copy: Path) -> Iterator[str]:
    yield from daemon(tmp_path, copy, "127.0.0.1")


def test_an_export_without_its_docroot_takes_a_copy_back_byte_for_byte(tmp_path, copy, offered):
    docroot = tmp_path / "export" / "www"
    # The first source is down, the second holds the copy.
    out = restore(docroot, f"rsync://127.0.0.1:{free_port()}/{MODULE}", offered)
    assert out.returncode == 0, out.stderr
    assert f"restored {docroot} from {offered}" in out.stdout
    assert tree(docroot) == tree(copy)
    # Restored: the next run leaves it alone, even with the copy changed.
    (copy / "index.php").write_text("changed on the copy\n")
    again = restore(docroot, offered)
    assert again.returncode == 0 and "nothing to restore" in again.stdout
    assert (docroot / "index.php").read_text() == "<?php echo 'index';\n"


def test_no_copy_anywhere_restores_nothing_and_leaves_no_marker(tmp_path, copy):
    docroot = tmp_path / "export" / "www"
    (copy / MARKER).unlink()  # a copy that never took the docroot's identity
    sources = list(daemon(tmp_path, copy, "127.0.0.1"))  # started and stopped: its port refuses now
    port = free_port()
    out = restore(docroot, f"rsync://127.0.0.1:{port}/{MODULE}", *sources)
    assert out.returncode == 0, out.stderr
    assert "no copy of the docroot" in out.stdout
    assert not (docroot / MARKER).exists()


def test_a_copy_without_its_marker_is_no_copy(tmp_path, copy):
    docroot = tmp_path / "export" / "www"
    (copy / MARKER).unlink()
    for source in daemon(tmp_path, copy, "127.0.0.1"):
        out = restore(docroot, source)
        assert out.returncode == 0 and "no copy of the docroot" in out.stdout, (out.stdout, out.stderr)
        assert not (docroot / "index.php").exists()


def test_the_copy_is_read_only_and_offered_to_the_allowed_address_only(tmp_path, copy):
    # Writing into the module is refused.
    for source in daemon(tmp_path, copy, "127.0.0.1"):
        planted = tmp_path / "planted.txt"
        planted.write_text("defaced\n")
        push = subprocess.run(["rsync", str(planted), f"{source}/"], capture_output=True, text=True, timeout=60)
        assert push.returncode != 0 and "read only" in push.stderr, push.stderr
        assert not (copy / "planted.txt").exists()
    # Another address than the nas's: refused, nothing listed.
    for source in daemon(tmp_path, copy, "127.0.0.2"):
        pull = subprocess.run(["rsync", "--list-only", f"{source}/"], capture_output=True, text=True, timeout=60)
        # (rsync 3.2 says "access denied", 3.5 "Unknown module": either way nothing listed.)
        assert pull.returncode != 0 and pull.stdout == "" and "@ERROR" in pull.stderr, pull.stderr
        out = restore(tmp_path / "export" / "www", source)
        assert "no copy of the docroot" in out.stdout, (out.stdout, out.stderr)
