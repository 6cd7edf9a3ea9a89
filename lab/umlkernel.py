"""Debian 13's user-mode kernel, for a Debian 12 host.

Debian 12's user-mode-linux (Linux 6.1) makes every fork, exec and syscall of a
node cost dearly; Debian 13's (6.12) does the same work in about half the host
CPU (measured on this machine kind: 200 fork+exec 7.7 -> 2.6 s, a Python import
set 1.4 -> 0.7 s; `make lab` warm 4:48 -> 3:31). Its package cannot be installed
on Debian 12 (it depends on libc6 >= 2.38 and would pull in Debian 13's C
library), so the lab fetches it as apt would, unpacks it into its cache, and
boots the nodes from there:

- ``InRelease`` is checked with ``gpgv`` against debian-archive-keyring (which
  holds Debian 13's keys), ``Packages.xz`` and the ``.deb`` by the SHA-256 the
  signed index gives;
- the binary asks glibc 2.38 for three C23 functions only (``__isoc23_strtol``,
  ``__isoc23_strtoul``, ``__isoc23_sscanf``: the C99 ones plus ``0b`` numbers);
  on an older glibc its references are bound to the C99 functions instead
  (``bind_to_older_glibc``), and it must then print its version to be used.

Without the network, or if any step fails, the lab says why and boots Debian
12's package kernel (``kernel.UML_PACKAGE``), only slower.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import shutil
import struct
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from lab.rootfs import CACHE, MIRROR
from lab.util import log, run

SUITE = "trixie"
PACKAGE = "user-mode-linux"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
BINARY = "usr/bin/linux.uml"
ORIGINAL = BINARY + ".debian"  # the package's own binary, when it had to be rebound
MODULES = "usr/lib/uml/modules"
# The only glibc >= 2.38 symbols the binary may use: each is its C99 namesake
# that also reads 0b-prefixed numbers (C23), which the kernel's options never use.
C23_PREFIX = b"__isoc23_"
C23_VERSION = b"GLIBC_2.38"
BASE_VERSION = b"GLIBC_2.2.5"


def cached() -> Path | None:
    """The newest unpacked and checked kernel in the cache, if any."""
    found = sorted(CACHE.glob(f"{PACKAGE}-*/.complete"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def ensure() -> Path | None:
    """The cached Debian 13 kernel, fetched first when there is none; None (and
    a line saying why) when it cannot be had: the lab then boots Debian 12's."""
    if (ready := cached()) is not None:
        return ready
    try:
        return fetch()
    except (OSError, RuntimeError, ValueError) as err:
        log("kernel", f"Debian {SUITE}'s {PACKAGE} not fetched ({str(err).splitlines()[0]}): Debian 12's is used")
        return None


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def _checked(data: bytes, sha256: str, what: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{what}: SHA-256 mismatch")
    return data


def signed_index_sha256(release: str, path: str) -> str:
    """The SHA-256 a (verified) Release text gives for one index file (pure)."""
    in_sha256 = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.startswith("SHA256:")
            continue
        fields = line.split()
        if in_sha256 and len(fields) == 3 and fields[2] == path:
            return fields[0]
    raise ValueError(f"the Release file lists no SHA256 for {path}")


def package_stanza(packages: str, name: str) -> dict[str, str]:
    """The fields of one binary package in a Packages index (pure)."""
    for stanza in packages.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.MULTILINE))
        if fields.get("Package") == name:
            return fields
    raise ValueError(f"no package {name} in the index")


def fetch() -> Path:
    dists = f"{MIRROR}/dists/{SUITE}"
    log("kernel", f"fetching Debian {SUITE}'s {PACKAGE} (a faster user-mode kernel than Debian 12's)")
    with tempfile.TemporaryDirectory(prefix="uml-") as tmp:
        in_release = Path(tmp) / "InRelease"
        in_release.write_bytes(_get(f"{dists}/InRelease"))
        release = run(["gpgv", "--keyring", str(KEYRING), "--output", "-", str(in_release)], capture=True).stdout
        index_path = "main/binary-amd64/Packages.xz"
        index = _checked(_get(f"{dists}/{index_path}"), signed_index_sha256(release, index_path), index_path)
        fields = package_stanza(lzma.decompress(index).decode(), PACKAGE)
        deb = Path(tmp) / "uml.deb"
        deb.write_bytes(_checked(_get(f"{MIRROR}/{fields['Filename']}"), fields["SHA256"], fields["Filename"]))
        target = CACHE / f"{PACKAGE}-{fields['Version']}"
        shutil.rmtree(target, ignore_errors=True)
        run(["dpkg-deb", "-x", str(deb), str(target)])
    binary = target / BINARY
    if not _loads(binary):
        original = binary.rename(target / ORIGINAL)  # kept as the package shipped it
        binary.write_bytes(bind_to_older_glibc(original.read_bytes()))
        binary.chmod(0o755)
    modules = sorted(p.name for p in (target / MODULES).iterdir())
    if not modules or not _loads(binary, expect=modules[-1]):
        raise RuntimeError(f"{binary} does not run here")
    (target / ".complete").write_text(fields["Version"] + "\n")
    log("kernel", f"Debian {SUITE}'s {PACKAGE} {fields['Version']} (Linux {modules[-1]}) in {target}")
    return target


def _loads(binary: Path, expect: str = "") -> bool:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and expect in proc.stdout


def bind_to_older_glibc(elf: bytes) -> bytes:
    """Bind an x86-64 executable's glibc 2.38 C23 references (``__isoc23_X``)
    to the C99 functions ``X`` of glibc 2.2.5 (pure). Refuses (ValueError) when
    anything else needs glibc 2.38."""
    data = bytearray(elf)
    if data[:5] != b"\x7fELF\x02":
        raise ValueError("not a 64-bit ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * entsize) for i in range(count)]
    names_offset = headers[names_index][4]

    def cstring(offset: int) -> bytes:
        return bytes(data[offset : data.index(b"\0", offset)])

    sections = {cstring(names_offset + h[0]): h for h in headers}
    dynstr, dynsym, versym, verneed = (
        sections[name][4] for name in (b".dynstr", b".dynsym", b".gnu.version", b".gnu.version_r")
    )
    # The needs of libc.so.6: (offset, name, version index) of each entry.
    _, aux_count, _, aux_offset, _ = struct.unpack_from("<HHIII", data, verneed)
    needs, offset = [], verneed + aux_offset
    for _ in range(aux_count):
        _, _, index, name, following = struct.unpack_from("<IHHII", data, offset)
        needs.append((offset, cstring(dynstr + name), index, name))
        offset += following
    base = next((name for _, version, _, name in needs if version == BASE_VERSION), None)
    c23 = [(offset, index) for offset, version, index, _ in needs if version == C23_VERSION]
    if base is None or not c23:
        raise ValueError(f"no {C23_VERSION.decode()} or {BASE_VERSION.decode()} version needed")
    (c23_offset, c23_index) = c23[0]
    for i in range(sections[b".dynsym"][5] // 24):
        (name,) = struct.unpack_from("<I", data, dynsym + i * 24)
        (index,) = struct.unpack_from("<H", data, versym + 2 * i)
        if index & 0x7FFF != c23_index:
            continue
        symbol = cstring(dynstr + name)
        if not symbol.startswith(C23_PREFIX):
            raise ValueError(f"{symbol.decode()} needs {C23_VERSION.decode()}")
        struct.pack_into("<I", data, dynsym + i * 24, name + len(C23_PREFIX))
    struct.pack_into("<IHHI", data, c23_offset, _elf_hash(BASE_VERSION), 0, c23_index, base)
    return bytes(data)


def _elf_hash(name: bytes) -> int:
    value = 0
    for byte in name:
        value = (value << 4) + byte
        high = value & 0xF0000000
        if high:
            value ^= high >> 24
        value &= ~high & 0xFFFFFFFF
    return value


def uml_binary(base: Path) -> str:
    return str(base / BINARY)


def uml_modules(base: Path) -> Path:
    return base / MODULES
