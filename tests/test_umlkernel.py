"""Debian 13's user-mode kernel on this Debian 12 host (lab/umlkernel.py): a
Debian 13 tree that mmdebstrap and apt install into the lab's cache (installed
here first if it is not there: the lab needs Debian's mirror for its rootfs
anyway), run inside that tree on its own C library.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab import kernel, umlkernel


@pytest.fixture(scope="module")
def installed():
    base = umlkernel.ensure()
    assert base is not None, "Debian 13's user-mode-linux could not be installed (see the line above)"
    return base


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


def test_the_lab_boots_the_installed_kernel_newer_than_the_hosts_package(installed, monkeypatch):
    run_kernel, modules = kernel.uml_kernel()
    assert run_kernel == umlkernel.command(installed) and modules == umlkernel.uml_modules(installed)
    printed = subprocess.run([*run_kernel, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert printed == kernel.uml_version()
    monkeypatch.setenv("LAB_UML", "package")
    assert kernel.uml_kernel() == kernel.UML_PACKAGE
    assert version_tuple(printed) > version_tuple(kernel.uml_version())


def test_the_host_c_library_could_not_run_it(installed):
    """Why the tree has its own C library: on Debian 12's the binary does not start."""
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    alone = subprocess.run([installed / umlkernel.BINARY, "--version"], capture_output=True, text=True)
    if version_tuple(glibc) >= (2, 38):  # a Debian 13 host: it runs on the host's as well
        assert alone.returncode == 0
    else:
        assert alone.returncode != 0 and "GLIBC_2.38" in alone.stderr


def test_the_kernel_runs_a_process_here_preloading_the_shim_only_on_a_cpu_with_amx(installed):
    """Linux 6.12's buffer for the extended registers is smaller than the
    XSAVE area of a CPU with AMX (11008 bytes): there, and only there, the
    kernel runs with lab/uml_xstate.c preloaded."""
    assert umlkernel.trial(installed) is None
    amx = " amx_tile" in Path("/proc/cpuinfo").read_text()
    assert (installed / umlkernel.PRELOAD).exists() == amx
