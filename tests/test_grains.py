"""The cluster_kernel grain's pure parts: what it concludes from a kernel's and an init's traces."""

from __future__ import annotations

from conftest import load_module

grain = load_module("_grains/cluster_kernel.py", "cluster_kernel")


def test_a_container_is_told_by_systemds_marker_or_its_inits_environment(tmp_path):
    marker, environ = tmp_path / "container", tmp_path / "environ"
    environ.write_bytes(b"HOME=/\0TERM=linux\0")
    assert not grain.in_container(str(marker), str(environ))
    environ.write_bytes(b"HOME=/\0container=systemd-nspawn\0")
    assert grain.in_container(str(marker), str(environ))
    environ.write_bytes(b"HOME=/\0")
    marker.write_text("docker\n")
    assert grain.in_container(str(marker), str(environ))
    assert not grain.in_container(str(tmp_path / "none"), str(tmp_path / "none"))


def test_features_of_a_container_and_of_a_user_mode_kernel():
    def none(_: str) -> bool:
        return False

    def yes() -> bool:
        return True

    def no() -> bool:
        return False

    container = grain.features({"nfsd", "ext4"}, False, none, container=True, proc_connector=yes, nftables=yes)
    assert container == {
        "ipvs": False,
        "nfs_server": True,
        "nfs_client": False,
        "process_events": False,
        "nftables": True,
    }
    # Debian's user-mode kernel: IPVS and NFS, but no process events
    # connector, and no nftables family but the bridge's.
    uml = grain.features({"nfs", "nfsd"}, True, none, container=False, proc_connector=no, nftables=no)
    assert uml == {"ipvs": True, "nfs_server": True, "nfs_client": True, "process_events": False, "nftables": False}
    server = grain.features({"nfs"}, True, none, container=False, proc_connector=yes, nftables=yes)
    assert server["process_events"] is True
