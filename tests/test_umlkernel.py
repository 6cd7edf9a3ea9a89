"""Debian 13's user-mode kernel on this Debian 12 host (lab/umlkernel.py).

The index parsers are pure; the rest uses the kernel the lab fetched into its
cache (fetched here first if it is not there: the lab needs Debian's mirror for
its rootfs anyway).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from lab import kernel, umlkernel

RELEASE = """Origin: Debian
Suite: stable
Codename: trixie
MD5Sum:
 0f0f0f0f 100 main/binary-amd64/Packages.xz
SHA256:
 aaaa 10 main/binary-all/Packages.xz
 bbbb 20 main/binary-amd64/Packages.xz
 cccc 30 main/binary-amd64/Packages.xz.extra
"""

PACKAGES = """Package: user-mode-linux-doc
Version: 6.12um1
Filename: pool/main/u/user-mode-linux/user-mode-linux-doc_6.12um1_all.deb

Package: user-mode-linux
Version: 6.12um1+b22
Depends: libc6 (>= 2.38)
Filename: pool/main/u/user-mode-linux/user-mode-linux_6.12um1+b22_amd64.deb
SHA256: 6930e97133531bab93f83b6d691a94f5872505d8f5d88c1f3f1296da0820a3a0
"""


def test_the_signed_release_gives_each_index_its_sha256():
    assert umlkernel.signed_index_sha256(RELEASE, "main/binary-amd64/Packages.xz") == "bbbb"
    with pytest.raises(ValueError, match=r"no SHA256 for main/binary-i386/Packages\.xz"):
        umlkernel.signed_index_sha256(RELEASE, "main/binary-i386/Packages.xz")


def test_the_package_is_found_by_its_exact_name():
    fields = umlkernel.package_stanza(PACKAGES, "user-mode-linux")
    assert fields["Version"] == "6.12um1+b22"
    assert fields["Filename"].endswith("user-mode-linux_6.12um1+b22_amd64.deb")
    with pytest.raises(ValueError, match="no package uml-utilities"):
        umlkernel.package_stanza(PACKAGES, "uml-utilities")


@pytest.fixture(scope="module")
def fetched():
    base = umlkernel.ensure()
    assert base is not None, "Debian 13's user-mode-linux could not be fetched (see the line above)"
    return base


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_the_lab_boots_the_fetched_kernel_newer_than_the_hosts_package(fetched, monkeypatch):
    binary, modules = kernel.uml_kernel()
    assert binary == umlkernel.uml_binary(fetched) and modules == umlkernel.uml_modules(fetched)
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert printed == kernel.uml_version()
    monkeypatch.setenv("LAB_UML", "package")
    assert kernel.uml_kernel() == kernel.UML_PACKAGE
    assert version_tuple(printed) > version_tuple(kernel.uml_version())


def test_on_an_older_glibc_only_the_c23_functions_are_rebound(fetched):
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    if version_tuple(glibc) >= (2, 38):  # a Debian 13 host: the package's binary as it is
        assert not (fetched / umlkernel.ORIGINAL).exists()
        return
    original = (fetched / umlkernel.ORIGINAL).read_bytes()
    refused = subprocess.run([fetched / umlkernel.ORIGINAL, "--version"], capture_output=True, text=True)
    assert refused.returncode != 0 and "GLIBC_2.38" in refused.stderr
    rebound = umlkernel.bind_to_older_glibc(original)
    assert rebound == (fetched / umlkernel.BINARY).read_bytes()
    changed = [i for i, (a, b) in enumerate(zip(original, rebound, strict=True)) if a != b]
    assert 0 < len(changed) <= 3 * 2 + 8, "only three symbol names' offsets and one version entry"


def test_a_binary_needing_glibc_238_for_anything_else_is_refused(fetched):
    original = next(p for p in (fetched / umlkernel.ORIGINAL, fetched / umlkernel.BINARY) if p.exists()).read_bytes()
    renamed = original.replace(b"__isoc23_strtol\0", b"__isoc99_strtol\0", 1)
    assert renamed != original
    with pytest.raises(ValueError, match=r"__isoc99_strtol needs GLIBC_2\.38"):
        umlkernel.bind_to_older_glibc(renamed)
    with pytest.raises(ValueError, match="not a 64-bit ELF"):
        umlkernel.bind_to_older_glibc(b"#!/bin/sh\n")
