"""The cluster_kernel grain's pure parts: what it concludes from a kernel's and an init's traces."""

from __future__ import annotations

from pathlib import Path

from conftest import load_module

grain = load_module("_grains/cluster_kernel.py", "cluster_kernel")

# /proc/cpuinfo's first lines as a lab director (Debian 13's user-mode kernel)
# and a host printed them.
UML_CPUINFO = "processor\t: 0\nvendor_id\t: User Mode Linux\nmodel name\t: UML\nmode\t\t: skas\n"
HOST_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n"


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


def test_features_of_a_container_and_of_a_user_mode_kernel(tmp_path):
    def none(_: str) -> bool:
        return False

    def yes() -> bool:
        return True

    def no() -> bool:
        return False

    host_cpus = str(tmp_path / "cpuinfo-host")
    Path(host_cpus).write_text(HOST_CPUINFO)
    uml_cpus = str(tmp_path / "cpuinfo-uml")
    Path(uml_cpus).write_text(UML_CPUINFO)
    container = grain.features(
        {"nfsd", "ext4"}, False, none, container=True, proc_connector=yes, nftables=yes, cpuinfo=host_cpus
    )
    assert container == {
        "ipvs": False,
        "nfs_server": True,
        "nfs_client": False,
        "process_events": False,
        "nftables": True,
        "user_mode": False,
    }
    # Debian's user-mode kernel: IPVS and NFS, but no process events
    # connector, and no nftables family but the bridge's.
    uml = grain.features({"nfs", "nfsd"}, True, none, container=False, proc_connector=no, nftables=no, cpuinfo=uml_cpus)
    assert uml == {
        "ipvs": True,
        "nfs_server": True,
        "nfs_client": True,
        "process_events": False,
        "nftables": False,
        "user_mode": True,
    }
    assert grain.user_mode(str(tmp_path / "absent")) is False
    server = grain.features({"nfs"}, True, none, container=False, proc_connector=yes, nftables=yes)
    assert server["process_events"] is True
