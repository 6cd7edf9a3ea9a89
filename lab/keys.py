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
