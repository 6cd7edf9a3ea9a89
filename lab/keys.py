"""Salt keys made by the lab: the master's pair, and one pair per minion whose
public half the lab places in the master's accepted keys (no auto-accept)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def generate(directory: Path, name: str) -> tuple[str, str]:
    """(private PEM, public PEM) of a new 2048-bit pair, made by salt-key itself."""
    directory.mkdir(parents=True, exist_ok=True)
    pem, pub = directory / f"{name}.pem", directory / f"{name}.pub"
    if not pem.exists():
        salt_key = str(Path(sys.executable).with_name("salt-key"))
        subprocess.run(
            [salt_key, f"--gen-keys={name}", f"--gen-keys-dir={directory}", "--keysize=2048"],
            check=True,
            capture_output=True,
        )
    return pem.read_text(), pub.read_text()


def ssh_pair(directory: Path, name: str) -> tuple[str, str]:
    """(OpenSSH private key, public key line) of a new Ed25519 pair, kept in
    ``directory``: a bare node's host key, or the lab operator's login key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / name, directory / f"{name}.pub"
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        text = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        private.touch(mode=0o600)
        private.write_text(text)
        public.write_text(line.decode() + "\n")
    return private.read_text(), public.read_text().strip()
